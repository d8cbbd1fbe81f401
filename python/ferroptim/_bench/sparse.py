"""The sparse benchmark (`python -m ferroptim bench --sparse`): steps of an embedding table whose
gradient is a few rows (`ferroptim.IndexedSlices`), against the dense step they replace.

Each optimizer of `SPARSE_OPTIMIZERS` is timed with these peers, their blocks alternating as in
the main benchmark:

- ferroptim: `opt.apply_gradients` with an `IndexedSlices` gradient;
- dense: the same optimizer's step on a dense gradient of the whole table (what the sparse step
  saves; the same step for Adam and lazy Adam, whose `lazy` concerns sparse gradients only);
- numpy: `numpy_sparse_steps`, the same algorithm by fancy indexing (repeated rows summed
  with `np.add.at`);
- torch: `torch.optim`'s sparse path, the gradient a sparse COO tensor of the table's shape as
  `nn.Embedding(sparse=True)` makes it: `SGD`, `Adagrad` and `SparseAdam`, when torch imports.

The rows of a step are drawn uniformly with replacement from a fixed-seed generator. The steps
cycle through `INDEX_BATCHES` batches of indices, enough rows that they do not stay in the
processor's caches between two visits (a training loop over a large vocabulary reads most of its
rows from memory), and `VALUE_BATCHES` arrays of values.

Before timing an optimizer, `check_peers` steps a small table with every peer of the same
algorithm and compares their updates with ferroptim's: the report gives the largest difference.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

import numpy as np

from ferroptim._bench.cases import DTYPE, Arrays, parse_case
from ferroptim._bench.machine import format_gb, peak_rss
from ferroptim._bench.numpy_sparse_steps import (
    adagrad_sparse_numpy,
    adam_lazy_sparse_numpy,
    adam_sparse_numpy,
    sgd_sparse_numpy,
)
from ferroptim._bench.peers import Unavailable, build_peers, import_torch, set_threads
from ferroptim._bench.progress import Progress
from ferroptim._bench.registry import OPTIMIZERS
from ferroptim._bench.report import (
    environment_line,
    format_rate,
    format_speedup,
    format_us,
    missing_notes,
    ratio,
)
from ferroptim._bench.results import PeerTimings, settings_json
from ferroptim._bench.runner import announce, environment, settle_allocator
from ferroptim._bench.settings import Settings, SparseCase
from ferroptim._bench.tables import Block, Heading, Notes, Paragraph, Table, to_markdown
from ferroptim._bench.timing import Peer, Timing, time_peers

# The peers, in the order their blocks alternate, and their names in the report.
SPARSE_PEERS = ("ferroptim", "dense", "numpy", "torch")
SPARSE_PEER_TITLES = {
    "ferroptim": "ferroptim sparse",
    "dense": "ferroptim dense",
    "numpy": "NumPy sparse",
    "torch": "torch sparse",
}
# A cycle of index batches draws INDEX_BATCHES * rows_per_step rows: of the default table about
# 410,000 distinct ones, 100 MiB of each float32 array 64 wide, three times a 32 MiB
# last-level cache.
INDEX_BATCHES = 1024
VALUE_BATCHES = 8
# The small case `check_peers` steps: rows repeat often in a batch (48 draws from 64 rows).
CHECK_CASE = SparseCase(rows=64, columns=8, rows_per_step=48)
CHECK_STEPS = 3
# Largest difference between a peer's update and ferroptim's, relative to the largest update,
# that `check_peers` accepts. The same algorithm differs by float32 rounding: the table's own
# (an ulp of |w| ~ 3 is 1e-4 of Adam's three updates of ~1e-3), the per-step scalars' (Adam's
# alpha in double here, in float32 there; torch's Adagrad adds epsilon outside the square
# root) and the order of additions (torch's SGD adds a repeated row's values to the table one
# at a time, rounding the table after each). Another algorithm differs by the update's order
# of magnitude (lazy Adam against Keras's: every row whose moments decayed).
CHECK_TOLERANCE = 1e-3

SPARSE_COLUMNS = (
    "optimizer",
    "peer",
    "us per step",
    "Mrows/s",
    "dense step / step",
    "vs ferroptim sparse",
)

Batch = Tuple[np.ndarray, np.ndarray]


def _sparse_adam_torch(
    torch: Any,
    tensors: list,
    implementation: Mapping[str, Any],
    *,
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
) -> Any:
    # SparseAdam adds eps to the uncorrected sqrt(v), as Keras does: lazy Adam's rule.
    return torch.optim.SparseAdam(
        tensors, lr=learning_rate, betas=(beta_1, beta_2), eps=epsilon, **implementation
    )


@dataclasses.dataclass(frozen=True)
class SparseOptimizer:
    """One optimizer of the sparse benchmark, as every peer runs it.

    Args:
        name: the `--optimizers` spelling with `--sparse`, e.g. "adam_lazy".
        keras_name: the class name in `ferroptim.optimizers`, e.g. "Adam".
        kwargs: constructor arguments (Keras names) given to every peer, every hyperparameter
            the NumPy step reads among them.
        lazy: whether ferroptim's optimizer is built with `lazy=True`.
        slot_inits: the initial value of each slot, in Keras's slot order.
        numpy_step: the NumPy peer's step (`numpy_sparse_steps`).
        scratch: how many arrays of the table's shape `numpy_step` overwrites.
        torch_optimizer: `f(torch, tensors, implementation, **kwargs)` building the torch
            optimizer that steps a sparse gradient with the same algorithm (as the registry's
            records build theirs; `implementation` is `{}`: torch's sparse paths are neither
            fused nor foreach), or None.
        no_torch: why there is no torch peer, when `torch_optimizer` is None.
    """

    name: str
    keras_name: str
    kwargs: Mapping[str, Any]
    lazy: bool
    slot_inits: Tuple[float, ...]
    numpy_step: Callable[..., None]
    scratch: int = 0
    torch_optimizer: Optional[Callable[..., Any]] = None
    no_torch: str = ""

    def make(self) -> Any:
        """A fresh ferroptim optimizer."""
        import ferroptim

        lazy = {"lazy": True} if self.lazy else {}
        return getattr(ferroptim.optimizers, self.keras_name)(**self.kwargs, **lazy)


_ADAM_KWARGS = OPTIMIZERS["adam"].kwargs

# Keyed by the `--optimizers` name with `--sparse`. SGD without momentum and Adagrad leave a row
# whose gradient is zero as it is, so Keras's numbers touch the given rows only; Adam's moments
# decay everywhere, so its Keras numbers ("adam") pass over the whole table, where lazy Adam
# ("adam_lazy") updates the given rows only.
SPARSE_OPTIMIZERS: Dict[str, SparseOptimizer] = {
    spec.name: spec
    for spec in [
        # torch's SGD steps a sparse gradient on its single-tensor path,
        # `param.add_(grad, alpha=-lr)`; its Adagrad adds eps to sqrt(accumulator) where Keras
        # adds it inside the square root (the numbers differ slightly, the work does not).
        SparseOptimizer(
            "sgd",
            "SGD",
            {**OPTIMIZERS["sgd"].kwargs, "momentum": 0.0},
            False,
            (),
            sgd_sparse_numpy,
            0,
            OPTIMIZERS["sgd"].torch_optimizer,
        ),
        SparseOptimizer(
            "adagrad",
            "Adagrad",
            OPTIMIZERS["adagrad"].kwargs,
            False,
            (0.1,),
            adagrad_sparse_numpy,
            0,
            OPTIMIZERS["adagrad"].torch_optimizer,
        ),
        SparseOptimizer(
            "adam_lazy",
            "Adam",
            _ADAM_KWARGS,
            True,
            (0.0, 0.0),
            adam_lazy_sparse_numpy,
            0,
            _sparse_adam_torch,
        ),
        SparseOptimizer(
            "adam",
            "Adam",
            _ADAM_KWARGS,
            False,
            (0.0, 0.0),
            adam_sparse_numpy,
            2,
            None,
            "torch has no Adam for sparse gradients that decays every row's moments "
            "(SparseAdam is lazy Adam)",
        ),
    ]
}


def parse_table(text: str, rows_per_step: int) -> SparseCase:
    """A `--table` entry and `--rows-per-step` as a SparseCase (a ValueError names the bad one).

    Args:
        text: "<rows>*<cols>", e.g. "1000000*64".
        rows_per_step: gradient rows per step, at least 1.
    """
    try:
        shapes = parse_case(text).shapes
    except ValueError:
        shapes = ()
    if len(shapes) != 1 or len(shapes[0]) != 2:
        raise ValueError(f"--table: expected <rows>*<cols>, e.g. 1000000*64, got {text!r}")
    if rows_per_step < 1:
        raise ValueError(f"--rows-per-step: expected a positive integer, got {rows_per_step}")
    rows, columns = shapes[0]
    return SparseCase(rows, columns, rows_per_step)


def make_batches(case: SparseCase, seed: int, count: int = INDEX_BATCHES) -> List[Batch]:
    """The (indices, values) of `count` steps: indices drawn uniformly with replacement, int64;
    values float32, standard normal scaled by 1e-2, `VALUE_BATCHES` arrays shared in turn.

    Args:
        case: the table and the rows per step.
        seed: the random seed.
        count: how many batches of indices.
    """
    rng = np.random.default_rng(seed)
    shape = (case.rows_per_step, case.columns)
    values = []
    for _ in range(min(count, VALUE_BATCHES)):
        batch = rng.standard_normal(shape, dtype=DTYPE)
        batch *= 0.01
        values.append(batch)
    return [
        (rng.integers(0, case.rows, case.rows_per_step), values[k % len(values)])
        for k in range(count)
    ]


def _touch(arrays: Arrays) -> None:
    # Writes every page of fresh zeros (calloc maps them on first write), so the timed steps,
    # which reach a few random rows each, do not pay for page faults a long-running training
    # loop paid once; x + 0 is x for every slot value.
    for array in arrays:
        array += 0


def ferroptim_peer(spec: SparseOptimizer, table: np.ndarray, batches: Sequence[Batch]) -> Peer:
    """ferroptim through its public API: `opt.apply_gradients([(IndexedSlices, table)])`.

    Args:
        spec: the optimizer.
        table: the parameter, updated in place.
        batches: the gradients' rows, cycled through.
    """
    import ferroptim

    optimizer = spec.make()
    optimizer.build([table])
    _touch([v for v in optimizer.variables if v.shape == table.shape])
    grads = itertools.cycle(
        [ferroptim.IndexedSlices(values, indices, table.shape) for indices, values in batches]
    )

    def step() -> None:
        optimizer.apply_gradients([(next(grads), table)])

    return Peer("ferroptim", step)


def dense_peer(spec: SparseOptimizer, table: np.ndarray, grad: np.ndarray) -> Peer:
    """ferroptim's step on a dense gradient of the whole table.

    Args:
        spec: the optimizer.
        table: the parameter, updated in place.
        grad: a dense gradient of the table's shape.
    """
    optimizer = spec.make()

    def step() -> None:
        optimizer.apply_gradients([(grad, table)])

    return Peer("dense", step)


def numpy_peer(spec: SparseOptimizer, table: np.ndarray, batches: Sequence[Batch]) -> Peer:
    """The NumPy step (`spec.numpy_step`) with its own slots and scratch.

    Args:
        spec: the optimizer.
        table: the parameter, updated in place.
        batches: the gradients' rows, cycled through.
    """
    slots = [np.full_like(table, value) for value in spec.slot_inits]
    scratch = [np.empty_like(table) for _ in range(spec.scratch)]
    cycle, counter = itertools.cycle(batches), itertools.count()
    numpy_step = spec.numpy_step

    def step() -> None:
        indices, values = next(cycle)
        numpy_step(table, indices, values, slots, scratch, next(counter), **spec.kwargs)

    return Peer("numpy", step)


def torch_peer(
    spec: SparseOptimizer, table: np.ndarray, batches: Sequence[Batch], threads: int
) -> Peer:
    """torch.optim on CPU with a sparse COO gradient (uncoalesced: torch sums the repeated rows
    in its step), over the same memory as the other peers (`torch.from_numpy`).

    Args:
        spec: the optimizer.
        table: the parameter; the tensor shares its memory.
        batches: the gradients' rows, cycled through.
        threads: torch's intra-op thread count for the run.
    """
    torch = import_torch()
    if spec.torch_optimizer is None:
        raise Unavailable(spec.no_torch)
    torch.set_num_threads(threads)
    # torch's default (no invariant checks on the sparse tensors its optimizers build), made
    # explicit: left implicit, torch warns at its first sparse step.
    torch.sparse.check_sparse_tensor_invariants.disable()
    weight = torch.from_numpy(table)
    weight.requires_grad_(True)
    grads = itertools.cycle(
        [
            torch.sparse_coo_tensor(
                torch.from_numpy(indices).unsqueeze(0),
                torch.from_numpy(values),
                table.shape,
                check_invariants=True,
            )
            for indices, values in batches
        ]
    )
    optimizer = spec.torch_optimizer(torch, [weight], {}, **spec.kwargs)
    label = f"torch {torch.__version__} {type(optimizer).__name__}, sparse COO gradient"

    def step() -> None:
        weight.grad = next(grads)
        optimizer.step()

    return Peer("torch", step, lambda: torch.set_num_threads(threads), label)


def check_peers(spec: SparseOptimizer, seed: int = 0) -> Dict[str, float]:
    """Steps a small table (`CHECK_CASE`, rows repeating in every batch) `CHECK_STEPS` times
    with ferroptim and with each sparse peer that can run here, from the same start, and
    compares their updates.

    Args:
        spec: the optimizer.
        seed: the random seed of the table and the batches.

    Returns:
        Peer name -> the largest difference between its update and ferroptim's, relative to
        ferroptim's largest update (0.0: the same numbers).

    Raises:
        RuntimeError: a peer's update differs by more than `CHECK_TOLERANCE`: it is not
            ferroptim's algorithm.
    """
    case = CHECK_CASE
    start = np.random.default_rng(seed).standard_normal((case.rows, case.columns), dtype=DTYPE)
    batches = make_batches(case, seed + 1, CHECK_STEPS)
    builders: Dict[str, Callable[[np.ndarray], Peer]] = {
        "ferroptim": lambda table: ferroptim_peer(spec, table, batches),
        "numpy": lambda table: numpy_peer(spec, table, batches),
        "torch": lambda table: torch_peer(spec, table, batches, threads=1),
    }
    tables: Dict[str, np.ndarray] = {}
    for name, build in builders.items():
        table = start.copy()
        try:
            peer = build(table)
        except Unavailable:
            continue
        for _ in range(CHECK_STEPS):
            peer.step()
        tables[name] = table
    ours = tables.pop("ferroptim") - start
    scale = float(np.max(np.abs(ours)))
    differences = {
        name: float(np.max(np.abs((table - start) - ours))) / scale
        for name, table in tables.items()
    }
    for name, difference in differences.items():
        if not difference <= CHECK_TOLERANCE:
            raise RuntimeError(
                f"{spec.name}: the {name} peer's update differs from ferroptim's by "
                f"{difference:.2e} of the largest update: not the same algorithm"
            )
    return differences


@dataclasses.dataclass
class SparseResult(PeerTimings):
    """The timings of one optimizer of the sparse benchmark.

    Args:
        optimizer: `SPARSE_OPTIMIZERS` key.
        timings: peer name -> Timing, for the peers that ran.
        unavailable: peer name -> why it did not run.
        labels: peer name -> descriptive label, where it has one.
        check: peer name -> `check_peers`'s difference from ferroptim's update.
    """

    optimizer: str
    timings: Dict[str, Timing]
    unavailable: Dict[str, str]
    labels: Dict[str, str]
    check: Dict[str, float]

    def to_json(self) -> Dict[str, Any]:
        """The result as plain JSON values."""
        return {
            "optimizer": self.optimizer,
            "peers": {name: timing.to_json() for name, timing in self.timings.items()},
            "unavailable": self.unavailable,
            "labels": self.labels,
            "check": self.check,
        }


@dataclasses.dataclass
class SparseReport:
    """Everything one run of the sparse benchmark measured.

    Args:
        settings: what was asked (`settings.sparse` is the case).
        env: `runner.environment()`.
        distinct_rows: the mean number of distinct rows per step over the batches.
        results: one per optimizer, in order.
        peak_rss: the process's peak resident set size at the end of the run, in bytes, or
            None when not measured.
    """

    settings: Settings
    env: Dict[str, Any]
    distinct_rows: float
    results: List[SparseResult]
    peak_rss: Optional[int] = None

    @property
    def case(self) -> SparseCase:
        """The table and the rows per step."""
        assert self.settings.sparse is not None
        return self.settings.sparse

    def find(self, optimizer: str) -> Optional[SparseResult]:
        """The result of `optimizer`, or None when it did not run.

        Args:
            optimizer: `SPARSE_OPTIMIZERS` key.
        """
        return next((r for r in self.results if r.optimizer == optimizer), None)

    def to_json(self) -> Dict[str, Any]:
        """The raw results as plain JSON values."""
        return {
            "environment": self.env,
            "settings": settings_json(self.settings),
            "distinct_rows_per_step": self.distinct_rows,
            "results": [result.to_json() for result in self.results],
            "peak_rss_bytes": self.peak_rss,
        }


def run_optimizer(
    spec: SparseOptimizer,
    table: np.ndarray,
    grad: np.ndarray,
    batches: Sequence[Batch],
    settings: Settings,
    on_block: Optional[Callable[[float, str], None]] = None,
) -> SparseResult:
    """Check, then time every peer of one optimizer; their state is freed on return.

    Args:
        spec: the optimizer.
        table: the parameter every peer updates in place.
        grad: the dense peer's gradient.
        batches: the sparse peers' rows.
        settings: thread count and timing settings.
        on_block: told before each timed block how far the optimizer is (`time_peers`).
    """
    check = check_peers(spec, settings.seed)
    threads = settings.main_threads
    set_threads(threads)
    builders: Dict[str, Callable[[], Peer]] = {
        "ferroptim": lambda: ferroptim_peer(spec, table, batches),
        "dense": lambda: dense_peer(spec, table, grad),
        "numpy": lambda: numpy_peer(spec, table, batches),
        "torch": lambda: torch_peer(spec, table, batches, threads),
    }
    peers, unavailable = build_peers(builders, SPARSE_PEERS)
    timings = time_peers(peers, settings, on_block=on_block)
    labels = {peer.name: peer.label for peer in peers if peer.label}
    del peers
    gc.collect()
    return SparseResult(spec.name, timings, unavailable, labels, check)


def run_bytes(case: SparseCase, optimizers: Sequence[str], torch: bool) -> int:
    """The most bytes the sparse benchmark holds at once: the table and the dense peer's
    gradient, and, for one optimizer at a time, the slots of each of its peers and the NumPy
    peer's scratch, all of the table's size (the batches of rows are small beside them).

    Args:
        case: the table.
        optimizers: `SPARSE_OPTIMIZERS` keys of the run.
        torch: whether torch runs (its optimizers keep their own slots).
    """
    tables = 0
    for name in optimizers:
        spec = SPARSE_OPTIMIZERS[name]
        # ferroptim sparse, ferroptim dense, NumPy, and torch when it has this optimizer.
        peers = 3 + (1 if torch and spec.torch_optimizer is not None else 0)
        tables = max(tables, peers * len(spec.slot_inits) + spec.scratch)
    return case.elements * DTYPE().itemsize * (2 + tables)


def run(settings: Settings, progress_stream: Optional[TextIO] = None) -> SparseReport:
    """Run the sparse benchmark (progress goes to stderr).

    Args:
        settings: what to measure; `settings.sparse` is the case.
        progress_stream: where the progress goes (default: sys.stderr); a bar when it is a
            terminal and rich imports, plain lines otherwise.
    """
    case = settings.sparse
    if case is None:
        raise ValueError("the sparse benchmark needs settings.sparse")
    settle_allocator()
    env = environment()
    original_threads = env["default_threads"]
    needed = run_bytes(case, settings.optimizers, env["torch"] is not None)
    announce(needed, f"the {case.name} table", env)
    rng = np.random.default_rng(settings.seed)
    table = rng.standard_normal((case.rows, case.columns), dtype=DTYPE)
    grad = rng.standard_normal(table.shape, dtype=DTYPE)
    grad *= 0.01
    batches = make_batches(case, settings.seed + 1)
    distinct = float(np.mean([len(np.unique(indices)) for indices, _ in batches]))
    results = []
    # Every optimizer times the same peers on the same table: alike enough to weigh the same.
    progress = Progress([1.0] * len(settings.optimizers), progress_stream, what="optimizers")
    try:
        with progress:
            for name in settings.optimizers:
                progress.begin(name, f"table {case.name}, {case.rows_per_step} rows per step")
                spec = SPARSE_OPTIMIZERS[name]
                results.append(run_optimizer(spec, table, grad, batches, settings, progress.part))
    finally:
        set_threads(original_threads)
    return SparseReport(settings, env, distinct, results, peak_rss())


def sparse_rows(report: SparseReport) -> List[List[str]]:
    """The table's cells, one row per (optimizer, peer that ran), columns as `SPARSE_COLUMNS`.

    Args:
        report: the run.
    """
    case = report.case
    rows = []
    for result in report.results:
        dense, ours = result.best("dense"), result.best("ferroptim")
        for peer in SPARSE_PEERS:
            seconds = result.best(peer)
            if seconds is None:
                continue
            # A dense step consumes a gradient row for every row of the table.
            rows_per_step = case.rows if peer == "dense" else case.rows_per_step
            rows.append(
                [
                    result.optimizer,
                    SPARSE_PEER_TITLES[peer],
                    format_us(seconds),
                    format_rate(ratio(rows_per_step / 1e6, seconds)),
                    format_speedup(ratio(dense, seconds)),
                    format_speedup(ratio(seconds, ours)),
                ]
            )
    return rows


def _format_difference(value: float) -> str:
    return "0 (the same numbers)" if value == 0 else f"{value:.1e}"


def report_blocks(report: SparseReport) -> List[Block]:
    """The report of a sparse run, as blocks to print as Markdown or draw for the terminal:
    measurements and ratios.

    Args:
        report: the run.
    """
    case = report.case
    megabytes = case.elements * np.dtype(DTYPE).itemsize / 1e6
    blocks: List[Block] = [
        Heading("ferroptim sparse benchmark", 2),
        Paragraph(environment_line(report.env, report.settings)),
        Paragraph(
            f"An embedding table of {case.rows:,} x {case.columns} float32 ({megabytes:,.0f} MB "
            f"per array) and a gradient of {case.rows_per_step} rows per step "
            f"(`ferroptim.IndexedSlices`), drawn uniformly with replacement "
            f"({report.distinct_rows:,.1f} distinct on average); the steps cycle through "
            f"{INDEX_BATCHES} batches of rows. sgd has no momentum; adam gives Keras's numbers "
            "(the moments of every row decay, a pass over the whole table); adam_lazy updates "
            "the given rows only (`Adam(lazy=True)`)."
        ),
        Table(
            SPARSE_COLUMNS,
            sparse_rows(report),
            title="Mrows/s counts gradient rows (a dense step's gradient has one per row of "
            'the table); "dense step / step" is the time of ferroptim\'s step on a dense '
            'gradient of the whole table over this peer\'s; "vs ferroptim sparse" this '
            "peer's time over ferroptim's sparse step",
        ),
    ]
    notes = missing_notes(
        [
            (SPARSE_PEER_TITLES[peer], r.optimizer, reason)
            for r in report.results
            for peer, reason in r.unavailable.items()
        ],
        [r.optimizer for r in report.results],
    )
    notes += sorted(
        f"{SPARSE_PEER_TITLES[peer]} ({r.optimizer}): {label}"
        for r in report.results
        for peer, label in r.labels.items()
    )
    checks = [
        f"{r.optimizer}: "
        + ", ".join(
            f"{SPARSE_PEER_TITLES[peer]} {_format_difference(value)}"
            for peer, value in r.check.items()
        )
        for r in report.results
        if r.check
    ]
    if checks:
        notes.append(
            f"Checked before timing, after {CHECK_STEPS} steps on a {CHECK_CASE.rows} x "
            f"{CHECK_CASE.columns} table ({CHECK_CASE.rows_per_step} rows per step, repeated "
            "rows summed), the largest difference from ferroptim's update, relative to its "
            "largest: " + "; ".join(checks) + "."
        )
    if report.peak_rss:
        notes.append(f"This run's peak memory: {format_gb(report.peak_rss)} (resident set).")
    if notes:
        blocks += [Heading("Notes"), Notes(notes)]
    return blocks


def render_markdown(report: SparseReport) -> str:
    """The Markdown report of a sparse run: measurements and ratios.

    Args:
        report: the run.
    """
    return to_markdown(report_blocks(report))
