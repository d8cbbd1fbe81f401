"""What the machine gives a run and what a run asks of it: the memory the chosen cases need
(said before the run starts), the memory available, the peak a run reached, and whether other
work loads the processors (timings are noisy then).
"""

from __future__ import annotations

import math
import os
import resource
import sys
from typing import Optional, Sequence, Tuple

from ferroptim._bench.cases import DTYPE, Case
from ferroptim._bench.registry import BenchOptimizer

# The default run (SGD and Adam at every default size) peaked at this resident set size,
# measured with `/usr/bin/time -v` on a 2-core x86-64 Linux machine without torch: Adam on
# GPT-2 small, whose 124M parameters and gradients every peer shares, with two slots per peer
# beside them (torch's two more add 1 GB).
DEFAULT_RUN_PEAK = 5.7e9
# The same for `--quick` and for `--sparse` (its default 10^6 x 64 table: Adam's peers).
QUICK_RUN_PEAK = 60e6
SPARSE_RUN_PEAK = 2.6e9

# The arrays of a NumPy step as a user writes it live at once beside the state, per tensor:
# Adam's `m_hat / (sqrt(v_hat) + eps)` holds three temporaries of the tensor's size.
NUMPY_TEMPORARIES = 3
# Peers that hold their own copy of the optimizer's slots: ferroptim, roofline, NumPy,
# NumPy out=, and torch when it imports.
STATEFUL_PEERS = 4
# A load average per core above this means other work holds at least half the processors.
BUSY_LOAD_PER_CORE = 0.5


def format_gb(size: float) -> str:
    """Bytes as GB (10^9 bytes) with one decimal, or MB below 1 GB.

    Args:
        size: the bytes.
    """
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:,.0f} MB"


def case_bytes(spec: BenchOptimizer, case: Case, torch: bool) -> int:
    """The bytes one case of the main benchmark holds at its peak: the parameters and
    gradients every peer shares, each peer's slots, and NumPy's temporaries and scratch (the
    size of the largest tensor).

    Args:
        spec: the optimizer.
        case: the case.
        torch: whether torch runs (one more copy of the slots).
    """
    itemsize = DTYPE().itemsize
    # An optimizer that is not element-wise keeps at most a momentum and a second moment per
    # element (Muon's AdamW path; Adafactor's are smaller, factored).
    slots = len(spec.slot_inits) if spec.element_wise else 2
    peers = STATEFUL_PEERS + (1 if torch and spec.torch_optimizer is not None else 0)
    largest = max((math.prod(shape) for shape in case.shapes), default=0)
    per_largest = NUMPY_TEMPORARIES + spec.scratch_per_tensor
    return itemsize * (case.elements * (2 + peers * slots) + largest * per_largest)


def run_bytes(cases: Sequence[Tuple[BenchOptimizer, Case]], torch: bool) -> Tuple[int, str]:
    """The most any case of a run needs (cases run one at a time, each freed before the next),
    and that case's name ("adam gpt2").

    Args:
        cases: (optimizer, case) of every case the run times.
        torch: whether torch runs.
    """
    most, name = 0, ""
    for spec, case in cases:
        size = case_bytes(spec, case, torch)
        if size > most:
            most, name = size, f"{spec.name} {case.name}"
    return most, name


def available_memory() -> Optional[int]:
    """The bytes the system can give a new process without swapping (`MemAvailable`), or
    None where it does not say."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def peak_rss() -> int:
    """The peak resident set size of this process so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux counts KiB, macOS bytes.
    return peak if sys.platform == "darwin" else peak * 1024


def load_average() -> Optional[Tuple[float, float, float]]:
    """The 1, 5 and 15 minute load averages, or None where the system has none."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return one, five, fifteen


def busy_warning(load: Optional[Sequence[float]], cores: Optional[int]) -> Optional[str]:
    """A warning when other work loads the machine (the last minute's load average is at least
    half the cores), else None.

    Args:
        load: the load averages (`load_average()`), or None when unknown.
        cores: the processor count.
    """
    if load is None or not cores or load[0] < BUSY_LOAD_PER_CORE * cores:
        return None
    return (
        f"the machine is busy (load average {load[0]:.2f} on {cores} cores): other work "
        "shares the processors and the memory bandwidth, so the times are noisy; the "
        "ratios of one run suffer less than the absolute times"
    )
