"""Data-parallel training over MPI (`ferroptim.distributed`), run the way users run it:
`mpiexec -n N python -m mpi4py distributed_worker.py <scenario>` in a subprocess with a timeout.

- Every optimizer and variant of the table, and the wrappers, at 1 to 4 ranks, state sharded and
  not: the parameters equal, bit for bit, a single process stepping on the averaged gradient,
  on every rank; with sharded state a rank holds about 1/N of the state of an element-wise rule.
- Tiny buckets, ferroptim threads per rank, fewer tensors than ranks; striped buckets of
  bounded size, and no temporary that grows with the model.
- A checkpoint saved at 4 ranks is the single-process format (loaded here, without MPI) and
  resumes at 1 and 3 ranks, bit for bit.
- A bad gradient on one rank raises the same exception on every rank and changes nothing.
- A rank that dies, or raises outside a step, ends the job instead of hanging it.

mpi4py and the MPICH runtime come with the test extras (`pip install -e ".[test]"`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict, List

import numpy as np
import pytest

import ferroptim as fo
from distributed_cases import MPIEXEC, averaged, bits, gradients, make, model
from optimizers_under_test import OPTIMIZERS, LearningRate

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distributed_worker.py")


def launch(n: int, scenario: str, arguments: Dict[str, Any], timeout: float = 180) -> Any:
    """Run a scenario on `n` ranks; rank 0's JSON result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [HERE] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    result = subprocess.run(
        [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", WORKER, scenario]
        + [json.dumps(arguments)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["size"] == n
    return out["result"]


def _json_cases() -> List[List[Any]]:
    """Every record's variants whose arguments travel as JSON (a learning-rate schedule built
    per test does not; schedules play no part in distribution), and the wrappers."""
    cases = []
    for case in OPTIMIZERS:
        for kwargs in case.numerics:
            if not any(isinstance(v, LearningRate) for v in kwargs.values()):
                cases.append([case.name, dict(kwargs)])
    cases += [["LossScaleOptimizer", {"learning_rate": 0.01}], ["MultiOptimizer", {}]]
    return cases


ELEMENTWISE = {case.name for case in OPTIMIZERS if case.elementwise} | {
    "LossScaleOptimizer",
    "MultiOptimizer",
}


@pytest.mark.parametrize("shard", [True, False], ids=["zero1", "allreduce"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_every_optimizer_equals_one_process_on_the_averaged_gradient(n, shard):
    cases = _json_cases()
    results = launch(
        n,
        "train",
        {"cases": cases, "shard": shard, "steps": 3, "bucket": 256, "tensors": "mixed"},
    )
    assert len(results) == len(cases)
    for case in results:
        what = f"{case['name']}({case['kwargs']}) at {n} ranks"
        for rank, row in enumerate(case["ranks"]):
            assert row["error"] is None, f"{what}, rank {rank}: {row['error']}"
            assert row["same_as_rank_0"], f"{what}: rank {rank} differs from rank 0"
            assert row["bitwise"], f"{what}, rank {rank}: off by {row['worst']}"
        if shard and n > 1 and case["name"] in ELEMENTWISE and not case["kwargs"].get("clipnorm"):
            # The state of an element-wise rule is split evenly (a few scalars aside).
            held = max(row["state"] for row in case["ranks"])
            single = case["ranks"][0]["single_state"]
            assert held <= single / n + 8, f"{what}: a rank holds {held} of {single} elements"
        if not shard:
            assert all(row["state"] == row["single_state"] for row in case["ranks"]), what


@pytest.mark.parametrize(
    "arguments",
    [
        {"bucket": 8, "tensors": "mixed"},
        {"bucket": 12, "tensors": "mixed", "threads": 1},
        {"bucket": 1 << 20, "tensors": "mixed", "threads": 3},
        {"bucket": 64, "tensors": "few"},
        {"bucket": 64, "tensors": "mixed", "form": "list"},
        {"bucket": 64, "tensors": "mixed", "form": "pairs"},
    ],
    ids=[
        "8-byte buckets",
        "12-byte buckets, 1 thread",
        "3 threads",
        "fewer tensors than ranks",
        "lists",
        "apply_gradients",
    ],
)
def test_buckets_threads_and_small_models(arguments):
    cases = [["Adam", {"amsgrad": True}], ["Nadam", {}], ["Lamb", {}], ["Adafactor", {}]]
    results = launch(4, "train", {"cases": cases, "shard": True, "steps": 2, **arguments})
    for case in results:
        assert all(row["bitwise"] and row["error"] is None for row in case["ranks"]), case


@pytest.mark.parametrize("n", [1, 3, 4])
def test_buckets_are_striped_and_bound_the_memory(n):
    # 1.2 M float32 elements and a float64 scalar, 64 KiB buckets: bucket k is the k-th slice
    # of every rank's range, so each float32 `Alltoallv` sends to every rank; no buffer of a
    # collective exceeds the bucket size, the exchange keeps one send and one receive buffer,
    # and a step allocates nothing that grows with the model (4.8 MB here).
    bucket = 64 * 1024
    per_rank = 1_200_000 // n
    stripe = bucket // (4 * n)
    expected = 2 * (-(-per_rank // stripe) + 1)
    for mode, rows in launch(n, "buckets", {"bucket": bucket}).items():
        for row in rows:
            assert row["largest_buffer"] <= bucket, (mode, row)
            assert row["receivers"] == sorted({1, n}), (mode, row)
            assert row["collectives"] == expected, (mode, row)
            assert row["buffer_bytes"] <= 2 * bucket, (mode, row)
            assert row["temporaries"] < bucket, (mode, row)


def test_checkpoint_saved_at_4_ranks_resumes_at_1_and_3(tmp_path):
    path = str(tmp_path / "distributed.fo")
    steps, more = 3, 2
    launch(4, "checkpoint", {"path": path, "phase": "save", "steps": steps, "more": more})

    # The single-process reference of the first steps (4 ranks' averages).
    def reference_after(size_after: int):
        params = model()
        opt = fo.optimizers.Adam(learning_rate=0.01, amsgrad=True, use_ema=True)
        for step in range(steps):
            opt.apply(averaged(params, step, 4), params)
        saved = ([np.array(v, copy=True) for v in opt.variables], bits(params))
        for step in range(steps, steps + more):
            opt.apply(averaged(params, step, size_after), params)
        return saved, bits(params)

    (state, saved_params), _ = reference_after(1)
    # The file is the single-process format: loaded here, without MPI.
    params = model()
    loaded = fo.optimizers.Optimizer.load(path, params)
    assert type(loaded) is fo.optimizers.Adam
    assert bits(params) == saved_params
    assert len(loaded.variables) == len(state)
    for ours, theirs in zip(loaded.variables, state):
        assert np.asarray(ours).tobytes() == theirs.tobytes()

    for size in (1, 3):
        rows = launch(
            size, "checkpoint", {"path": path, "phase": "resume", "steps": steps, "more": more}
        )
        _, expected = reference_after(size)
        for rank, row in enumerate(rows):
            assert row["iterations"] == steps + more
            assert row["bits"] == expected, f"resumed at {size} ranks: rank {rank} differs"


def test_schedule_free_swaps_and_ema_finalization_span_the_ranks():
    for rows in launch(3, "swaps", {"steps": 3}):
        assert all(row == [True, True] for row in rows), rows


@pytest.mark.parametrize("kind", ["shape", "dtype", "none", "unknown", "single_pair", "key_pairs"])
def test_a_bad_gradient_on_one_rank_raises_on_every_rank(kind):
    rows = launch(3, "errors", {"kind": kind})
    raised = [row["raised"] for row in rows]
    assert raised[0] is not None and all(r == raised[0] for r in raised), raised
    assert raised[0][0] in ("ValueError", "TypeError")
    if kind != "none":  # a gradient on some ranks only: no one rank is wrong
        assert raised[0][1].endswith("(rank 1)"), raised
    if kind in ("single_pair", "key_pairs"):
        assert "pair" in raised[0][1], raised
    assert all(row["unchanged"] for row in rows), rows


@pytest.mark.parametrize("scenario", ["killed", "raised_outside"])
def test_a_rank_that_dies_ends_the_job(scenario):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [MPIEXEC, "-n", "3", sys.executable, "-m", "mpi4py", WORKER, scenario],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode != 0
    assert "finished" not in result.stdout


def test_the_gradient_generator_is_what_the_ranks_average():
    # The reference's average is the left-to-right sum in rank order, divided by N.
    params = model()
    g = [gradients(params, 0, r) for r in range(3)]
    for key, value in averaged(params, 0, 3).items():
        expected = ((g[0][key] + g[1][key]) + g[2][key]) / 3
        assert value.tobytes() == expected.tobytes()
    assert make("MultiOptimizer", {}).__class__ is fo.optimizers.MultiOptimizer
