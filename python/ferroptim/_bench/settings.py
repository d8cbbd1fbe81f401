"""What one run measures (`Settings`) and the default cases it measures."""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

from ferroptim._bench.cases import Case
from ferroptim._bench.registry import BenchOptimizer

# The cases when `--sizes` and `--scaling-sizes` are not given, and with `--quick`.
DEFAULT_SIZES = "1K,100K,4M,32M,mlp,gpt2,100x1K"
QUICK_SIZES = "1K,100K,mlp,100x1K"
DEFAULT_SCALING_SIZES = "100K,1M"
QUICK_SCALING_SIZES = "100K"
# The same for the optimizers that are not element-wise (Adafactor, Muon), which are made for
# matrices: Muon steps a 1-D tensor with Adam. `--sizes gpt2` is Muon's realistic case, but
# Newton-Schulz on its 48 block matrices takes seconds per step and peer.
MATRIX_SIZES = "mlp,768*768,768*3072"
QUICK_MATRIX_SIZES = "mlp,128*512"
MATRIX_SCALING_SIZES = "768*768"
QUICK_MATRIX_SCALING_SIZES = "128*512"
# The marginal cost of one more small tensor is read off these two cases of the main table.
MARGINAL_PAIR = ("1K", "100x1K")
# The sparse benchmark (`--sparse`): the embedding table and the gradient rows of a step.
SPARSE_TABLE = "1000000*64"
QUICK_SPARSE_TABLE = "10000*64"
SPARSE_ROWS_PER_STEP = 512
# The distributed benchmark (`--distributed`): the rank counts, the cases and the optimizer.
DISTRIBUTED_RANKS = "1,2,4"
QUICK_DISTRIBUTED_RANKS = "1,2"
DISTRIBUTED_SIZES = "4M,32M,gpt2"
QUICK_DISTRIBUTED_SIZES = "100K,mlp"
DISTRIBUTED_OPTIMIZERS = ("adam",)


@dataclasses.dataclass(frozen=True)
class SparseCase:
    """The case of the sparse benchmark: a float32 embedding table and how many gradient rows
    (`ferroptim.IndexedSlices`) each step gives it.

    Args:
        rows: the table's rows (the vocabulary).
        columns: its columns (the embedding width).
        rows_per_step: gradient rows per step, drawn with replacement (a row drawn twice is
            one row with the sum of both values).
    """

    rows: int
    columns: int
    rows_per_step: int

    @property
    def name(self) -> str:
        """The table as `--table` spells it, e.g. "1000000*64"."""
        return f"{self.rows}*{self.columns}"

    @property
    def elements(self) -> int:
        """The table's elements."""
        return self.rows * self.columns


@dataclasses.dataclass(frozen=True)
class DistributedRun:
    """How the distributed benchmark launches its ranks.

    Args:
        ranks: the rank counts, one `mpiexec` launch each.
        bucket_size: `DistributedOptimizer`'s `bucket_size`, in bytes.
        mpiexec: the launcher's command (its program and any options of its own), to which
            `-n <ranks>` and the rank's command are appended; empty for the `mpiexec` beside
            this Python, else the one on PATH.
    """

    ranks: Tuple[int, ...]
    bucket_size: int
    mpiexec: Tuple[str, ...] = ()


@dataclasses.dataclass
class Settings:
    """What one benchmark run measures and how long it times each peer.

    Args:
        optimizers: registry keys of `OPTIMIZERS`.
        sizes: cases of the element-wise optimizers.
        scaling_sizes: cases of the thread-scaling table (ferroptim and roofline only).
        threads: thread counts of the scaling table; the main table runs with the largest.
        min_block: seconds a timed block lasts at least (calls are looped to fill it).
        repeats: timed blocks per peer (fewer, but at least `min_repeats`, past `budget`).
        min_repeats: timed blocks every peer gets.
        budget: seconds of timed blocks after which a slow peer stops repeating.
        json_path: where to write the raw results, or None.
        seed: seed of the random parameters and gradients.
        matrix_sizes, matrix_scaling_sizes: `sizes` and `scaling_sizes` of the optimizers
            that are not element-wise, or None for the same as the others'.
        sparse: the case of the sparse benchmark, which this run measures instead of the
            others when given (`optimizers` are then keys of `sparse.SPARSE_OPTIMIZERS`); None
            for the main benchmark.
        distributed: the launches of the distributed benchmark, which this run measures
            instead of the others when given (on `sizes`, `repeats` timed steps per mode);
            None for the main benchmark.
    """

    optimizers: List[str]
    sizes: List[Case]
    scaling_sizes: List[Case]
    threads: List[int]
    min_block: float = 0.025
    repeats: int = 7
    min_repeats: int = 3
    budget: float = 3.0
    json_path: Optional[str] = None
    seed: int = 0
    matrix_sizes: Optional[List[Case]] = None
    matrix_scaling_sizes: Optional[List[Case]] = None
    sparse: Optional[SparseCase] = None
    distributed: Optional[DistributedRun] = None

    @property
    def main_threads(self) -> int:
        """The thread count of the main table."""
        return max(self.threads)

    def cases(self, spec: BenchOptimizer) -> List[Case]:
        """The cases `spec` runs.

        Args:
            spec: the optimizer.
        """
        return _by_kind(spec, self.sizes, self.matrix_sizes)

    def scaling_cases(self, spec: BenchOptimizer) -> List[Case]:
        """The thread-scaling cases `spec` runs.

        Args:
            spec: the optimizer.
        """
        return _by_kind(spec, self.scaling_sizes, self.matrix_scaling_sizes)


def _by_kind(
    spec: BenchOptimizer, cases: List[Case], matrix_cases: Optional[List[Case]]
) -> List[Case]:
    # An optimizer that is not element-wise runs on matrices, unless the list was given (then
    # matrix_cases is None: a list given applies to every optimizer).
    return cases if spec.element_wise or matrix_cases is None else matrix_cases
