"""Running: every case of every optimizer asked, its peers built, timed and freed in turn,
with the progress on stderr (stdout carries the report)."""

from __future__ import annotations

import gc
import math
import os
import platform
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

import numpy as np

from ferroptim._bench.cases import DTYPE, Arrays, Case, make_arrays
from ferroptim._bench.machine import (
    available_memory,
    busy_warning,
    format_gb,
    load_average,
    peak_rss,
    run_bytes,
)
from ferroptim._bench.peers import (
    MAIN_PEERS,
    Unavailable,
    build_peers,
    ferroptim_peer,
    import_torch,
    numpy_peer,
    roofline_peer,
    set_threads,
    torch_peer,
    with_threads,
)
from ferroptim._bench.progress import Progress
from ferroptim._bench.registry import OPTIMIZERS, BenchOptimizer
from ferroptim._bench.results import CaseResult, Report, ScalingResult
from ferroptim._bench.settings import Settings
from ferroptim._bench.timing import Peer, time_peers

# Orders of magnitude for the progress bar's estimate of a case's seconds (only their ratios
# matter): a fused step streams about 10 GB/s; NumPy's steps, with their temporaries and one
# pass per operation, take several times ferroptim's; a call costs some microseconds per
# tensor; drawing a random float32 costs some nanoseconds; a matrix product some GFLOP/s.
STREAM_BYTES_PER_S = 10e9
PEER_SLOWDOWN = {"ferroptim": 1.0, "roofline": 1.0, "numpy": 10.0, "numpy_out": 7.0, "torch": 1.5}
SECONDS_PER_TENSOR = 3e-6
SECONDS_PER_RANDOM = 8e-9
# Building the peers and collecting the previous case's arrays.
SECONDS_PER_CASE = 0.05
FLOP_PER_S = 50e9


def log(message: str) -> None:
    """Print a line of progress on stderr (stdout carries the report).

    Args:
        message: the line.
    """
    print(message, file=sys.stderr, flush=True)


def _main_peers(
    spec: BenchOptimizer,
    params: Arrays,
    grads: Arrays,
    names: Optional[Sequence[str]],
    threads: int,
) -> Tuple[List[Peer], Dict[str, str]]:
    # The peers of the main table that can run here, in MAIN_PEERS order, and why the others
    # cannot.
    builders: Dict[str, Callable[[], Peer]] = {
        "ferroptim": lambda: ferroptim_peer(spec, params, grads, names=names),
        "roofline": lambda: roofline_peer(spec, params, grads),
        "numpy": lambda: numpy_peer(spec, params, grads, names),
        "numpy_out": lambda: numpy_peer(spec, params, grads, names, out=True),
        "torch": lambda: torch_peer(spec, params, grads, threads),
    }
    return build_peers(builders, MAIN_PEERS)


def run_case(
    spec: BenchOptimizer,
    case: Case,
    settings: Settings,
    on_block: Optional[Callable[[float, str], None]] = None,
) -> CaseResult:
    """Time every peer of the main table on one case; their arrays are freed on return.

    Args:
        spec: the optimizer.
        case: the parameter shapes.
        settings: thread count and timing settings.
        on_block: told before each timed block how far the case is (`time_peers`).
    """
    threads = settings.main_threads
    set_threads(threads)
    params, grads = make_arrays(case, settings.seed)
    peers, unavailable = _main_peers(spec, params, grads, case.names, threads)
    timings = time_peers(peers, settings, spec.settle, on_block)
    labels = {peer.name: peer.label for peer in peers if peer.label}
    result = CaseResult(
        spec.name,
        case,
        threads,
        spec.bytes_per_element(DTYPE().itemsize),
        timings,
        unavailable,
        labels,
    )
    del peers, params, grads
    gc.collect()
    return result


def run_scaling(
    spec: BenchOptimizer,
    case: Case,
    settings: Settings,
    on_block: Optional[Callable[[float, str], None]] = None,
) -> ScalingResult:
    """ferroptim and the roofline at every thread count, the counts alternating by block.

    Args:
        spec: the optimizer.
        case: the parameter shapes.
        settings: thread counts and timing settings.
        on_block: told before each timed block how far the case is (`time_peers`).
    """
    params, grads = make_arrays(case, settings.seed)
    peers = []
    for n in settings.threads:
        peers.append(with_threads(ferroptim_peer(spec, params, grads, case.names), n))
        if spec.element_wise:
            peers.append(with_threads(roofline_peer(spec, params, grads), n))
    timings = time_peers(peers, settings, spec.settle, on_block)
    set_threads(settings.main_threads)
    result = ScalingResult(
        spec.name,
        case,
        {
            n: {
                peer: timings[f"{peer}@{n}"]
                for peer in ("ferroptim", "roofline")
                if f"{peer}@{n}" in timings
            }
            for n in settings.threads
        },
    )
    del peers, params, grads
    gc.collect()
    return result


def environment() -> Dict[str, Any]:
    """What the numbers depend on: versions, SIMD level, threads, CPU."""
    import ferroptim
    from ferroptim import _native

    try:
        torch_version: Optional[str] = import_torch().__version__
        torch_note = f"torch {torch_version}"
    except Unavailable as reason:
        torch_version, torch_note = None, f"torch: {reason}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "ferroptim": ferroptim.__version__,
        "simd_level": _native.simd_level(),
        "default_threads": ferroptim.get_num_threads(),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "numpy": np.__version__,
        "torch": torch_version,
        "torch_note": torch_note,
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other work on the machine skews the absolute times (and thread scaling most).
        "load_average": load_average(),
    }


def settle_allocator() -> None:
    """Free one large block, as a training process long since has, so that NumPy's temporaries
    are served as they are there (without a page fault per 4 KiB)."""
    # glibc serves blocks above a threshold with fresh mmap pages (a page fault per 4 KiB on
    # first touch) and raises that threshold, up to 32 MiB, each time such a block is freed.
    # A training process has long since freed large activations, so its threshold sits at the
    # top; a fresh process would instead charge NumPy's temporaries for page faults depending
    # on which cases ran before (7x at 100K). Freeing one large block reaches the steady state.
    block = np.empty(31 * 2**20, dtype=np.uint8)
    del block


def _step_seconds(spec: BenchOptimizer, case: Case) -> float:
    # ferroptim's step, roughly: streaming its bytes (Adafactor's passes too), plus Muon's
    # Newton-Schulz matrix products.
    streams = spec.bytes_per_element(DTYPE().itemsize) or 3 * 28
    seconds = case.elements * streams / STREAM_BYTES_PER_S + SECONDS_PER_TENSOR * len(case.shapes)
    ns_steps = spec.kwargs.get("ns_steps", 0)
    for shape in case.shapes:
        if ns_steps and len(shape) == 2:
            small, large = sorted(shape)
            # Each iteration: X Xt, its square, and that times X.
            seconds += ns_steps * (4 * small * small * large + 2 * small**3) / FLOP_PER_S
    return seconds


def estimated_seconds(
    spec: BenchOptimizer, case: Case, settings: Settings, peers: Sequence[str]
) -> float:
    """A rough estimate of a case's seconds, which weighs it in the progress bar's time left:
    making its arrays, then each peer's warm-up and timed blocks as `time_peers` runs them.

    Args:
        spec: the optimizer.
        case: the case.
        settings: the block length, repeats and budget.
        peers: the peers that run.
    """
    seconds = SECONDS_PER_CASE + 2 * case.elements * SECONDS_PER_RANDOM
    step = _step_seconds(spec, case)
    for peer in peers:
        # NumPy's matrix products are BLAS's, as fast as ferroptim's.
        slowdown = PEER_SLOWDOWN.get(peer.split("@")[0], 1.0) if spec.element_wise else 1.5
        block = max(settings.min_block, step * slowdown)
        # Past the budget a peer stops at min_repeats blocks.
        repeats = min(
            settings.repeats, max(settings.min_repeats, math.ceil(settings.budget / block))
        )
        # Warming up runs a step, then blocks of growing length up to one full block.
        seconds += (repeats + 2) * (block + spec.settle)
    return seconds


def announce(largest_bytes: int, largest: str, env: Dict[str, Any]) -> None:
    """Say on stderr the memory the run needs (and warn when the machine has less available),
    and warn when other work loads the machine.

    Args:
        largest_bytes: the bytes the largest case needs.
        largest: its name; "" when the run has no case (then nothing is said of memory).
        env: `environment()`.
    """
    # The interpreter, NumPy and ferroptim, loaded already, stay beside every case.
    needed = peak_rss() + largest_bytes
    available = available_memory()
    if largest:
        line = f"This run needs about {format_gb(needed)} of RAM at its peak ({largest})"
        log(line + (f"; {format_gb(available)} available." if available is not None else "."))
    if largest and available is not None and needed > available:
        log(
            f"warning: {format_gb(needed)} is more than the {format_gb(available)} available: "
            "expect swapping or the out-of-memory killer; choose smaller --sizes."
        )
    busy = busy_warning(env["load_average"], env["cores"])
    if busy is not None:
        log(f"warning: {busy}.")


def run(settings: Settings, progress_stream: Optional[TextIO] = None) -> Report:
    """Run the whole benchmark (progress goes to stderr).

    Args:
        settings: what to measure.
        progress_stream: where the progress goes (default: sys.stderr); a bar when it is a
            terminal and rich imports, plain lines otherwise.
    """
    settle_allocator()
    env = environment()
    original_threads = env["default_threads"]
    torch = env["torch"] is not None
    main_peers = [p for p in MAIN_PEERS if torch or p != "torch"]
    tasks: List[Tuple[str, BenchOptimizer, Case, float]] = []
    for name in settings.optimizers:
        spec = OPTIMIZERS[name]
        for case in settings.cases(spec):
            seconds = estimated_seconds(spec, case, settings, main_peers)
            tasks.append(("main", spec, case, seconds))
        for case in settings.scaling_cases(spec):
            peers = [
                f"{peer}@{n}"
                for n in settings.threads
                for peer in (["ferroptim", "roofline"] if spec.element_wise else ["ferroptim"])
            ]
            tasks.append(("scaling", spec, case, estimated_seconds(spec, case, settings, peers)))
    announce(*run_bytes([(spec, case) for _, spec, case, _ in tasks], torch), env)
    cases, scaling = [], []
    progress = Progress([seconds for *_, seconds in tasks], progress_stream)
    try:
        with progress:
            for kind, spec, case, _ in tasks:
                tensors = f"{len(case.shapes)} tensor{'s' if len(case.shapes) > 1 else ''}"
                if kind == "main":
                    progress.begin(
                        f"{spec.name} {case.name}", f"{case.elements:,} elements, {tensors}"
                    )
                    cases.append(run_case(spec, case, settings, progress.part))
                else:
                    threads = ", ".join(map(str, settings.threads))
                    progress.begin(f"{spec.name} {case.name} scaling", f"on {threads} threads")
                    scaling.append(run_scaling(spec, case, settings, progress.part))
    finally:
        set_threads(original_threads)
    return Report(settings, env, cases, scaling, peak_rss())
