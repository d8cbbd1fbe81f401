"""The command line: the options of `python -m ferroptim bench` (and of `benches/bench.py`),
turned into `Settings`, and a run (the main benchmark, with `--sparse` the sparse one, with
`--distributed` the distributed one) drawn for the terminal or printed as Markdown (and
written as JSON, and plotted, when asked).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import List, Optional, Sequence, TextIO, Union

from ferroptim._bench import distributed, plot, sparse
from ferroptim._bench.cases import Case, parse_case
from ferroptim._bench.machine import DEFAULT_RUN_PEAK, QUICK_RUN_PEAK, SPARSE_RUN_PEAK, format_gb
from ferroptim._bench.registry import DEFAULT_OPTIMIZERS, OPTIMIZERS
from ferroptim._bench.report import Section, report_blocks
from ferroptim._bench.results import Report
from ferroptim._bench.runner import log, run
from ferroptim._bench.settings import (
    DEFAULT_SCALING_SIZES,
    DEFAULT_SIZES,
    DISTRIBUTED_OPTIMIZERS,
    DISTRIBUTED_RANKS,
    DISTRIBUTED_SIZES,
    MATRIX_SCALING_SIZES,
    MATRIX_SIZES,
    QUICK_DISTRIBUTED_RANKS,
    QUICK_DISTRIBUTED_SIZES,
    QUICK_MATRIX_SCALING_SIZES,
    QUICK_MATRIX_SIZES,
    QUICK_SCALING_SIZES,
    QUICK_SIZES,
    QUICK_SPARSE_TABLE,
    SPARSE_ROWS_PER_STEP,
    SPARSE_TABLE,
    DistributedRun,
    Settings,
)
from ferroptim._bench.sparse import SPARSE_OPTIMIZERS, SparseReport, parse_table
from ferroptim._bench.tables import EXTRA_HINT, Block, Raw, has_rich, render_terminal, to_markdown
from ferroptim.distributed import DEFAULT_BUCKET_SIZE

DESCRIPTION = (
    "Time ferroptim's optimizer steps against NumPy, NumPy with out=, torch (when "
    "installed) and a native roofline, in one process, and print tables of the time per "
    "step, the memory traffic and the speed-ups; with --sparse, the steps of an embedding "
    "table with row-sparse gradients instead; with --distributed, data-parallel steps over "
    "MPI at several rank counts. Memory: each case's arrays are freed before the next, so a "
    "run peaks at its largest case, where every peer keeps its own optimizer state beside "
    "the parameters and gradients they share. The default run takes about two minutes on 2 "
    f"cores and peaks at {format_gb(DEFAULT_RUN_PEAK)} of RAM (Adam on GPT-2 small's 124M "
    "parameters; 1 GB more with torch); --quick: seconds and "
    f"{format_gb(QUICK_RUN_PEAK)}; --sparse: "
    f"{format_gb(SPARSE_RUN_PEAK)}. A run says before it starts what its sizes need. "
    f"Progress bars, tables fitted to the terminal and --plot need `{EXTRA_HINT}`."
)


def _split(text: str) -> List[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options to `parser`.

    Args:
        parser: the parser of `python -m ferroptim bench` or of `benches/bench.py`.
    """
    cores = os.cpu_count() or 1
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small sizes ({QUICK_SIZES}) and short timing: a smoke test "
        "that finishes in well under a minute",
    )
    parser.add_argument(
        "--optimizers",
        metavar="LIST",
        help="comma-separated, from: "
        + ", ".join(OPTIMIZERS)
        + "; or all (default: "
        + ",".join(DEFAULT_OPTIMIZERS)
        + "); with --sparse, from: "
        + ", ".join(SPARSE_OPTIMIZERS)
        + " (default: all)",
    )
    parser.add_argument(
        "--sizes",
        metavar="LIST",
        help=f"cases of every optimizer (default: {DEFAULT_SIZES}; for "
        f"adafactor and muon, which are not element-wise: "
        f"{MATRIX_SIZES}); <n>[K|M] is one tensor of n elements (K=1e3, "
        "M=1e6), <rows>*<cols> one matrix, <count>x<n>[K|M] or "
        "<count>x<rows>*<cols> that many tensors, mlp is 784-256-128-10, "
        "gpt2 the 148 tensors of GPT-2 small",
    )
    parser.add_argument(
        "--scaling-sizes",
        metavar="LIST",
        help=f"cases of the thread-scaling table (default: "
        f"{DEFAULT_SCALING_SIZES}; adafactor and muon: "
        f"{MATRIX_SCALING_SIZES}; empty to skip)",
    )
    parser.add_argument(
        "--threads",
        metavar="LIST",
        default=f"1,{cores}" if cores > 1 else "1",
        help="thread counts compared in the scaling table; the main table "
        "uses the largest (default: 1,<cores>)",
    )
    parser.add_argument(
        "--repeats", type=int, metavar="N", help="timed blocks per peer (default: 7, quick: 3)"
    )
    parser.add_argument(
        "--min-block-ms",
        type=float,
        metavar="MS",
        help="minimum duration of a timed block (default: 25, quick: 10)",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the raw results (every timed block) as JSON"
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the report as Markdown tables, for pasting into a README or an issue "
        "(default: tables drawn to the terminal's width)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="also draw a bar chart of 10^9 elements updated per second by each peer and "
        "case, one panel per optimizer (with --sparse: steps per second), to FILE "
        "(PNG, or any format matplotlib writes by its extension); needs matplotlib",
    )
    group = parser.add_argument_group(
        "sparse gradients",
        "--sparse times the steps of an embedding table whose gradient is a few rows "
        "(ferroptim.IndexedSlices): ferroptim's sparse step against its dense step, NumPy "
        "doing the same by fancy indexing, and torch's sparse optimizers (when installed). "
        "--optimizers, --threads (the largest), --repeats, --min-block-ms, --json and --quick "
        "apply to it.",
    )
    group.add_argument(
        "--sparse",
        action="store_true",
        help="run the sparse benchmark instead of the main one",
    )
    group.add_argument(
        "--table",
        metavar="ROWS*COLS",
        help=f"the float32 table (default: {SPARSE_TABLE}, quick: {QUICK_SPARSE_TABLE})",
    )
    group.add_argument(
        "--rows-per-step",
        type=int,
        metavar="N",
        help=f"gradient rows per step, drawn with replacement (default: {SPARSE_ROWS_PER_STEP})",
    )
    group = parser.add_argument_group(
        "distributed training",
        "--distributed times DistributedOptimizer's step over MPI, allreduce "
        "(shard_state=False) against ZeRO-1 (shard_state=True), by launching `mpiexec -n N "
        "python -m mpi4py` for each N of --ranks (needs `pip install 'ferroptim[mpi]' mpich`): "
        "the step, its parts, and each rank's optimizer memory. --optimizers (default: "
        f"{','.join(DISTRIBUTED_OPTIMIZERS)}), --sizes (default: {DISTRIBUTED_SIZES}; quick: "
        f"{QUICK_DISTRIBUTED_SIZES}), --repeats (timed steps per mode), --json and --quick "
        "apply to it. Memory: every rank holds the parameters and its gradients, and with "
        "allreduce all of Adam's state and the averaged gradient: GPT-2 small takes about "
        "3 GB per rank with allreduce, 2 GB with ZeRO-1 at 4 ranks (parameters, gradients, "
        "state, buffers, a step's temporaries); the default run peaks at 12 GB of RAM.",
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="run the distributed benchmark instead of the main one",
    )
    group.add_argument(
        "--ranks",
        metavar="LIST",
        help=f"rank counts, one launch each (default: {DISTRIBUTED_RANKS}, quick: "
        f"{QUICK_DISTRIBUTED_RANKS}); more ranks than cores share them",
    )
    group.add_argument(
        "--bucket-size",
        metavar="BYTES",
        help="DistributedOptimizer's bucket_size, in bytes, with K, M or G for KiB, MiB, GiB "
        f"(default: {distributed.format_bytes(DEFAULT_BUCKET_SIZE)}, the library's)",
    )
    group.add_argument(
        "--mpiexec",
        metavar="COMMAND",
        help="the MPI launcher, with any options of its own (default: the mpiexec beside this "
        "Python, else on PATH)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Validate parsed options into Settings (a ValueError names the bad option).

    Args:
        args: the namespace `add_arguments` options were parsed into.
    """
    if args.sparse and args.distributed:
        raise ValueError("--sparse and --distributed are two benchmarks: give one")
    if not args.distributed and any(
        value is not None for value in (args.ranks, args.bucket_size, args.mpiexec)
    ):
        raise ValueError("--ranks, --bucket-size and --mpiexec apply with --distributed only")
    known = list(SPARSE_OPTIMIZERS if args.sparse else OPTIMIZERS)
    if args.optimizers is None:
        optimizers = (
            known
            if args.sparse
            else list(DISTRIBUTED_OPTIMIZERS if args.distributed else DEFAULT_OPTIMIZERS)
        )
    else:
        optimizers = [name.lower() for name in _split(args.optimizers)]
    if optimizers == ["all"]:
        optimizers = known
    unknown = [name for name in optimizers if name not in known]
    if unknown or not optimizers:
        raise ValueError(
            f"--optimizers: unknown {', '.join(unknown) or '(empty list)'}; "
            f"known{' with --sparse' if args.sparse else ''}: {', '.join(known)}, or all"
        )
    if args.sparse and (args.sizes is not None or args.scaling_sizes is not None):
        raise ValueError("--sizes and --scaling-sizes do not apply with --sparse (see --table)")
    if args.distributed and args.scaling_sizes is not None:
        raise ValueError("--scaling-sizes does not apply with --distributed (see --ranks)")
    if not args.sparse and (args.table is not None or args.rows_per_step is not None):
        raise ValueError("--table and --rows-per-step apply with --sparse only")
    try:
        threads = [int(n) for n in _split(args.threads)]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        raise ValueError(f"--threads: expected positive integers, got {args.threads!r}")

    def cases(given: Optional[str], default: str, quick: str) -> List[Case]:
        text = given if given is not None else quick if args.quick else default
        return [parse_case(item) for item in _split(text)]

    settings = Settings(
        optimizers=optimizers,
        sizes=cases(args.sizes, DEFAULT_SIZES, QUICK_SIZES),
        scaling_sizes=cases(args.scaling_sizes, DEFAULT_SCALING_SIZES, QUICK_SCALING_SIZES),
        threads=threads,
        json_path=args.json,
    )
    if args.sparse:
        # The sparse benchmark has one case of its own.
        settings.sizes, settings.scaling_sizes = [], []
        settings.sparse = parse_table(
            args.table or (QUICK_SPARSE_TABLE if args.quick else SPARSE_TABLE),
            SPARSE_ROWS_PER_STEP if args.rows_per_step is None else args.rows_per_step,
        )
    elif args.distributed:
        # Its own cases, on every optimizer; its ranks share the cores (no thread scaling).
        settings.sizes = cases(args.sizes, DISTRIBUTED_SIZES, QUICK_DISTRIBUTED_SIZES)
        settings.scaling_sizes = []
        settings.distributed = DistributedRun(
            ranks=distributed.parse_ranks(
                args.ranks or (QUICK_DISTRIBUTED_RANKS if args.quick else DISTRIBUTED_RANKS)
            ),
            bucket_size=DEFAULT_BUCKET_SIZE
            if args.bucket_size is None
            else distributed.parse_bytes(args.bucket_size),
            mpiexec=tuple(shlex.split(args.mpiexec or "")),
        )
    else:
        # A list given applies to every optimizer; the defaults differ by kind.
        if args.sizes is None:
            settings.matrix_sizes = cases(None, MATRIX_SIZES, QUICK_MATRIX_SIZES)
        if args.scaling_sizes is None:
            settings.matrix_scaling_sizes = cases(
                None, MATRIX_SCALING_SIZES, QUICK_MATRIX_SCALING_SIZES
            )
    if args.quick:
        settings.min_block, settings.repeats, settings.budget = 0.010, 3, 0.3
    if args.repeats is not None:
        if args.repeats < 1:
            raise ValueError(f"--repeats: expected a positive integer, got {args.repeats}")
        settings.repeats = args.repeats
    settings.min_repeats = min(settings.min_repeats, settings.repeats)
    if args.min_block_ms is not None:
        if not args.min_block_ms > 0:
            raise ValueError(f"--min-block-ms: expected a positive number, got {args.min_block_ms}")
        settings.min_block = args.min_block_ms / 1000
    return settings


def execute(
    settings: Settings,
    stdout: Optional[TextIO] = None,
    sections: Sequence[Section] = (),
    markdown: bool = False,
    plot_path: Optional[str] = None,
) -> Union[Report, SparseReport, distributed.DistributedReport]:
    """Run the benchmark (the sparse one when `settings.sparse` is given, the distributed one
    when `settings.distributed` is), print its report, write the JSON and the plot if asked.

    Args:
        settings: what to measure (`settings_from_args`).
        stdout: where the report goes (default: sys.stdout).
        sections: more sections of the main benchmark's report (`render_markdown`).
        markdown: print Markdown tables rather than tables drawn for the terminal.
        plot_path: where to draw the bar chart (`plot.plot_report`), or None.
    """
    if not has_rich():
        log(f"plain output: `{EXTRA_HINT}` for a progress bar and tables fitted to the terminal")
    report: Union[Report, SparseReport, distributed.DistributedReport]
    blocks: List[Block]
    if settings.distributed is not None:
        report = distributed.run(settings)
        blocks = [Raw(distributed.render_markdown(report).splitlines())]
    elif settings.sparse is not None:
        report = sparse.run(settings)
        blocks = sparse.report_blocks(report)
    else:
        report = run(settings)
        blocks = report_blocks(report, sections)
    stdout = sys.stdout if stdout is None else stdout
    if markdown:
        stdout.write(to_markdown(blocks))
        stdout.flush()
    else:
        render_terminal(blocks, stdout)
    if settings.json_path:
        with open(settings.json_path, "w", encoding="utf-8") as file:
            json.dump(report.to_json(), file, indent=1)
        log(f"raw results written to {settings.json_path}")
    if plot_path:
        assert not isinstance(report, distributed.DistributedReport)
        plot.plot_report(report, plot_path)
        log(f"plot written to {plot_path}")
    return report


def run_parsed(
    parser: argparse.ArgumentParser, args: argparse.Namespace, sections: Sequence[Section] = ()
) -> int:
    """Run the benchmark `args` asks for; a bad option is `parser`'s usage error (exit 2).

    Args:
        parser: the parser `add_arguments` was given, which reports a bad option.
        args: what it parsed.
        sections: more sections of the report (`render_markdown`).

    Returns:
        The exit status, 0.
    """
    try:
        settings = settings_from_args(args)
        if args.plot:
            # Said before the run, not after its minutes.
            plot.check_available(settings)
    except ValueError as error:
        parser.error(str(error))
    execute(settings, sections=sections, markdown=args.markdown, plot_path=args.plot)
    return 0


def main(argv: Optional[Sequence[str]] = None, sections: Sequence[Section] = ()) -> int:
    """The benchmark as a program of its own (`benches/bench.py`): the options of
    `python -m ferroptim bench`.

    Args:
        argv: the arguments, without the program name (default: sys.argv[1:]).
        sections: more sections of the report (`render_markdown`).
    """
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    add_arguments(parser)
    return run_parsed(parser, parser.parse_args(argv), sections)
