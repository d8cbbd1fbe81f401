"""Timing: every peer of a case in alternating blocks, so a noisy moment on a shared machine
hurts them alike.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from ferroptim._bench.settings import Settings


@dataclasses.dataclass
class Peer:
    """One contestant of a case: a step to time, and what to do before each of its blocks.

    Args:
        name: "ferroptim", "numpy", "numpy_out", "torch" or "roofline" (or a variant name).
        step: runs one optimizer step.
        setup: called before each timed block (e.g. to set the thread count), or None.
        label: what the notes call it (e.g. "torch fused"), when it differs from `name`.
    """

    name: str
    step: Callable[[], None]
    setup: Optional[Callable[[], None]] = None
    label: Optional[str] = None


@dataclasses.dataclass
class Timing:
    """The timed blocks of one peer.

    Args:
        calls_per_block: how many steps each block loops.
        per_call: seconds per step, one entry per block.
    """

    calls_per_block: int
    per_call: List[float]

    @property
    def best(self) -> float:
        """Seconds per step of the least disturbed block."""
        return min(self.per_call)

    @property
    def median(self) -> float:
        """Median seconds per step over the blocks."""
        return statistics.median(self.per_call)

    def to_json(self) -> Dict[str, Any]:
        """The timing as plain JSON values."""
        return {
            "best_s": self.best,
            "median_s": self.median,
            "calls_per_block": self.calls_per_block,
            "per_call_s": self.per_call,
        }


def _block(step: Callable[[], None], calls: int) -> float:
    # As timeit does: a collection triggered by one peer's garbage must not land in another's
    # block.
    collecting = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            step()
        return time.perf_counter() - start
    finally:
        if collecting:
            gc.enable()


def _calls_per_block(peer: Peer, min_block: float) -> int:
    # Grows the loop until one block lasts min_block; the blocks run here also warm the peer
    # up (lazy slot creation, page faults of fresh buffers, thread pool start).
    calls = 1
    while True:
        elapsed = _block(peer.step, calls)
        if elapsed >= min_block:
            return calls
        calls = max(calls * 2, math.ceil(calls * 1.2 * min_block / max(elapsed, 1e-9)))


def time_peers(
    peers: Sequence[Peer],
    settings: Settings,
    settle: float = 0.0,
    on_block: Optional[Callable[[float, str], None]] = None,
) -> Dict[str, Timing]:
    """Time every peer in alternating blocks.

    Args:
        peers: the contestants; their steps must be ready to run (state built lazily is fine).
        settings: block length, repeats and budget.
        settle: seconds to sleep before each peer's calibration and each timed block, so that
            the threads the previous block woke have gone idle (`BenchOptimizer.settle`).
        on_block: called before each peer's calibration and each timed block with the share
            of the blocks done and what runs next (`Progress.part`), or None.
    """
    # A peer's calibration counts as one block; a peer past the budget skips its last ones.
    blocks = len(peers) * (1 + settings.repeats)
    done = 0

    def starting(peer: Peer, what: str) -> None:
        if on_block is not None:
            on_block(done / blocks, f"{peer.name}, {what}")

    calls: Dict[str, int] = {}
    for peer in peers:
        starting(peer, "warm-up")
        if peer.setup is not None:
            peer.setup()
        if settle:
            time.sleep(settle)
        peer.step()
        calls[peer.name] = _calls_per_block(peer, settings.min_block)
        done += 1
    samples: Dict[str, List[float]] = {peer.name: [] for peer in peers}
    spent = dict.fromkeys(samples, 0.0)
    for round_ in range(settings.repeats):
        for peer in peers:
            if round_ >= settings.min_repeats and spent[peer.name] > settings.budget:
                done += 1
                continue
            starting(peer, f"block {round_ + 1} of {settings.repeats}")
            if peer.setup is not None:
                peer.setup()
            if settle:
                time.sleep(settle)
            elapsed = _block(peer.step, calls[peer.name])
            spent[peer.name] += elapsed
            samples[peer.name].append(elapsed / calls[peer.name])
            done += 1
    return {name: Timing(calls[name], per_call) for name, per_call in samples.items()}
