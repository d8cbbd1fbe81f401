"""Benchmark harness behind `python -m ferroptim bench` and `benches/bench.py`.

Every number is measured in one process run, next to its peers, so the ratios mean something
even on a noisy shared machine where absolute times drift from run to run:

- ferroptim: `opt.apply_gradients(zip(grads, params))`, the public API;
- NumPy as a user writes it: the Keras formulas with temporaries, one tensor at a time;
- NumPy with `out=`: in-place ufuncs and preallocated scratch, the best a careful user can do;
- torch: `torch.optim.<Name>(fused=True)` on CPU over the same memory, when torch imports;
- roofline: `_native.roofline`, a streaming kernel that moves the same bytes as the step through
  the same driver with no arithmetic to speak of. It is the floor a step can approach. Adafactor
  and Muon are not element-wise (row and column reductions; matrix products): they have no
  roofline and a table of their own, and by default run on matrices, not 1-D tensors.

Timing: each peer is warmed up, then called in a loop for a block of at least `min_block`
seconds; blocks of all peers of a case alternate (round robin) so a noisy moment hurts them
alike; the table reports the best block (the least disturbed one), the JSON keeps every block.

One module per job:

- `numpy_steps`, `numpy_adam_steps`, `numpy_matrix_steps`: the NumPy peers' steps (and the
  state of the optimizers that are not element-wise);
- `registry`: `OPTIMIZERS`, what the benchmark covers; a new optimizer is one record there;
- `cases`: the parameter lists `--sizes` names, and their random arrays;
- `settings`: what a run measures, and the default cases;
- `timing`: alternating timed blocks;
- `peers`: the contestants of a case (ferroptim, roofline, NumPy, NumPy out=, torch);
- `results`, `runner`: running every case, and what it measured;
- `machine`: the memory a run needs and reached, and whether other work loads the machine;
- `progress`: the progress on stderr, a bar (rich) on a terminal, plain lines elsewhere;
- `report`: the report's tables (measurements and ratios), and the peers that did not run;
- `tables`: a report printed as Markdown (`--markdown`) or drawn to the terminal's width;
- `plot`: `--plot`, a bar chart of elements per second (matplotlib);
- `sparse`, `numpy_sparse_steps`: the sparse benchmark (`--sparse`): an embedding table whose
  gradient is a few rows (`ferroptim.IndexedSlices`), ferroptim's sparse step against its
  dense step, NumPy by fancy indexing and torch's sparse optimizers; its peers, run and table;
- `distributed`, `distributed_rank`: the distributed benchmark (`--distributed`):
  `ferroptim.distributed.DistributedOptimizer` under `mpiexec` at several rank counts,
  allreduce against ZeRO-1, its launches and table, and what each rank runs and measures;
- `cli`: the options, and a run printed (and written as JSON, and plotted).

rich and matplotlib (the `bench` extra) are imported only where they draw, never by
`import ferroptim`; without them the benchmark prints plain lines and Markdown.
"""

from ferroptim._bench.cases import Case, parse_case
from ferroptim._bench.cli import (
    DESCRIPTION,
    add_arguments,
    execute,
    main,
    run_parsed,
    settings_from_args,
)
from ferroptim._bench.distributed import DistributedReport, DistributedResult
from ferroptim._bench.peers import make_scratch
from ferroptim._bench.registry import OPTIMIZERS, BenchOptimizer
from ferroptim._bench.report import Section, render_markdown
from ferroptim._bench.results import CaseResult, Report, ScalingResult
from ferroptim._bench.runner import run
from ferroptim._bench.settings import (
    DEFAULT_SIZES,
    QUICK_MATRIX_SCALING_SIZES,
    QUICK_MATRIX_SIZES,
    DistributedRun,
    Settings,
    SparseCase,
)
from ferroptim._bench.sparse import SPARSE_OPTIMIZERS, SparseReport, SparseResult
from ferroptim._bench.timing import Peer, Timing, time_peers

__all__ = [
    "DEFAULT_SIZES",
    "DESCRIPTION",
    "OPTIMIZERS",
    "QUICK_MATRIX_SCALING_SIZES",
    "QUICK_MATRIX_SIZES",
    "BenchOptimizer",
    "Case",
    "CaseResult",
    "DistributedReport",
    "DistributedResult",
    "DistributedRun",
    "Peer",
    "Report",
    "ScalingResult",
    "Section",
    "SPARSE_OPTIMIZERS",
    "Settings",
    "SparseCase",
    "SparseReport",
    "SparseResult",
    "Timing",
    "add_arguments",
    "execute",
    "main",
    "make_scratch",
    "parse_case",
    "render_markdown",
    "run",
    "run_parsed",
    "settings_from_args",
    "time_peers",
]
