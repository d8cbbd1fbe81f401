"""examples/digits_distributed.py, run as its users run it: `mpiexec -n 4 python -m mpi4py
examples/digits_distributed.py --small` and the same at 1 rank, in subprocesses with timeouts.

- Both runs learn (test accuracy far above the 10% of chance) and reach the same accuracy;
  every rank of the 4 ends with the same parameters.
- The example's own single-process replay (`--compare`, on rank 0 of the 4-rank run, a plain
  `Adam` without MPI) is the 1-rank run, bit for bit, and differs from the 4-rank run by float32
  rounding only.
- The 4-rank run's checkpoint (its optimizer state sharded across the ranks, then gathered by
  `save`) loads here, without MPI, through `fo.optimizers.Optimizer.load`: its parameters give
  the accuracy the run reported, evaluated by this file's own forward pass, and its Adam slots
  are the 1-rank run's, up to the same rounding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict, Tuple

import numpy as np
import pytest

import ferroptim as fo
from distributed_cases import MPIEXEC
from test_examples import load_example

EXAMPLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "digits_distributed.py"
)
# --small: 3 epochs of the 1438 training images in global batches of 64, hidden width 32.
STEPS = 3 * (1438 // 64)
HIDDEN = 32


def run_example(n: int, *arguments: str) -> Dict[str, Any]:
    """The example at `n` ranks with `--small`; the JSON line rank 0 prints last."""
    result = subprocess.run(
        [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", EXAMPLE, "--small", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out: Dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["ranks"] == n
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(the 1-rank run, the 4-rank run with --compare), each with its checkpoint's path."""
    folder = tmp_path_factory.mktemp("digits")
    one = run_example(1, "--checkpoint", str(folder / "one.fo"))
    four = run_example(4, "--compare", "--checkpoint", str(folder / "four.fo"))
    one["checkpoint"], four["checkpoint"] = folder / "one.fo", folder / "four.fo"
    return one, four


def test_four_ranks_reach_the_accuracy_of_one_process(runs):
    one, four = runs
    assert one["steps"] == four["steps"] == STEPS
    assert four["ranks_agree"]
    assert one["accuracy"] > 0.85 and four["accuracy"] > 0.85
    # Equal up to float32 rounding of the gradient sums: at most one test image of 359 apart.
    assert abs(four["accuracy"] - one["accuracy"]) <= 1 / 359 + 1e-12
    assert four["test_loss"] == pytest.approx(one["test_loss"], rel=1e-4)


def test_the_single_process_replay_is_the_one_rank_run(runs):
    one, four = runs
    # A plain Adam on whole global batches and DistributedOptimizer at one rank: the same bits.
    assert four["single_accuracy"] == one["accuracy"]
    assert four["single_test_loss"] == one["test_loss"]
    # The 4-rank run differs from it by rounding, not by algorithm.
    assert four["first_gradient_difference"] < 1e-5
    assert four["parameter_difference"] < 1e-4
    assert four["predictions_differ"] <= 1


def load_checkpoint(path: Any) -> Tuple[Any, Dict[str, np.ndarray]]:
    params = {
        "hidden/kernel": np.zeros((64, HIDDEN), np.float32),
        "hidden/bias": np.zeros(HIDDEN, np.float32),
        "output/kernel": np.zeros((HIDDEN, 10), np.float32),
        "output/bias": np.zeros(10, np.float32),
    }
    return fo.optimizers.Optimizer.load(path, params), params


def test_the_four_rank_checkpoint_loads_without_mpi(runs):
    one, four = runs
    opt, params = load_checkpoint(four["checkpoint"])
    assert isinstance(opt, fo.optimizers.Adam)
    assert opt.iterations == STEPS
    data = load_example("digits_distributed").load_data()
    hidden = np.maximum(data.x_test @ params["hidden/kernel"] + params["hidden/bias"], 0)
    logits = hidden @ params["output/kernel"] + params["output/bias"]
    assert np.mean(np.argmax(logits, axis=1) == data.y_test) == four["accuracy"]

    single, single_params = load_checkpoint(one["checkpoint"])
    assert len(opt.variables) == len(single.variables) == 2 + 2 * len(params)
    for name in params:
        np.testing.assert_allclose(params[name], single_params[name], rtol=0, atol=1e-4)
    for state, reference in zip(opt.variables, single.variables):
        state, reference = np.asarray(state), np.asarray(reference)
        assert state.shape == reference.shape
        scale = float(np.max(np.abs(reference), initial=0.0))
        assert np.max(np.abs(state - reference), initial=0.0) <= 1e-4 * scale
