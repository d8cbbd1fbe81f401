"""Running: every case of every optimizer asked, its peers built, timed and freed in turn."""

from __future__ import annotations

import gc
import os
import platform
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ferroptim._bench.cases import DTYPE, Arrays, Case, make_arrays
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
from ferroptim._bench.registry import OPTIMIZERS, BenchOptimizer
from ferroptim._bench.report import format_us
from ferroptim._bench.results import CaseResult, Report, ScalingResult
from ferroptim._bench.settings import Settings
from ferroptim._bench.timing import Peer, time_peers


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


def run_case(spec: BenchOptimizer, case: Case, settings: Settings) -> CaseResult:
    """Time every peer of the main table on one case; their arrays are freed on return.

    Args:
        spec: the optimizer.
        case: the parameter shapes.
        settings: thread count and timing settings.
    """
    threads = settings.main_threads
    set_threads(threads)
    params, grads = make_arrays(case, settings.seed)
    peers, unavailable = _main_peers(spec, params, grads, case.names, threads)
    timings = time_peers(peers, settings, spec.settle)
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


def run_scaling(spec: BenchOptimizer, case: Case, settings: Settings) -> ScalingResult:
    """ferroptim and the roofline at every thread count, the counts alternating by block.

    Args:
        spec: the optimizer.
        case: the parameter shapes.
        settings: thread counts and timing settings.
    """
    params, grads = make_arrays(case, settings.seed)
    peers = []
    for n in settings.threads:
        peers.append(with_threads(ferroptim_peer(spec, params, grads, case.names), n))
        if spec.element_wise:
            peers.append(with_threads(roofline_peer(spec, params, grads), n))
    timings = time_peers(peers, settings)
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
        torch_version, torch_note = None, str(reason)
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
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
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


def run(settings: Settings) -> Report:
    """Run the whole benchmark (progress goes to stderr).

    Args:
        settings: what to measure.
    """
    settle_allocator()
    env = environment()
    original_threads = env["default_threads"]
    cases, scaling = [], []
    try:
        for name in settings.optimizers:
            spec = OPTIMIZERS[name]
            for case in settings.cases(spec):
                log(
                    f"[{name} {case.name}] {case.elements:,} elements, "
                    f"{len(case.shapes)} tensors ..."
                )
                result = run_case(spec, case, settings)
                log(
                    "    "
                    + ", ".join(
                        f"{peer} {format_us(result.best(peer))} us" for peer in result.timings
                    )
                )
                cases.append(result)
            for case in settings.scaling_cases(spec):
                log(f"[{name} {case.name}] thread scaling over {settings.threads} ...")
                scaling.append(run_scaling(spec, case, settings))
    finally:
        set_threads(original_threads)
    return Report(settings, env, cases, scaling)
