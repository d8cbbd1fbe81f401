"""What a run measured: one `CaseResult` per (optimizer, case), one `ScalingResult` per
thread-scaling case, gathered in a `Report`; each turns into plain JSON values.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

from ferroptim._bench.cases import Case, parse_case
from ferroptim._bench.settings import Settings
from ferroptim._bench.timing import Timing


def settings_json(settings: Settings) -> Dict[str, Any]:
    """A run's settings as plain JSON values (a case by its name).

    Args:
        settings: the run's settings.
    """
    values = dataclasses.asdict(settings)
    for key in ["sizes", "scaling_sizes", "matrix_sizes", "matrix_scaling_sizes"]:
        cases = getattr(settings, key)
        values[key] = None if cases is None else [case.name for case in cases]
    return values


class PeerTimings:
    """What a result with a `timings` mapping (peer name -> Timing, for the peers that ran)
    answers about it."""

    timings: Dict[str, Timing]

    def best(self, peer: str) -> Optional[float]:
        """Best seconds per step of `peer`, or None when it did not run.

        Args:
            peer: the peer's name.
        """
        timing = self.timings.get(peer)
        return None if timing is None else timing.best


def case_json(optimizer: str, case: Case) -> Dict[str, Any]:
    """The fields every result's JSON opens with: the optimizer and its case."""
    return {
        "optimizer": optimizer,
        "case": case.name,
        "elements": case.elements,
        "tensors": len(case.shapes),
    }


@dataclasses.dataclass
class CaseResult(PeerTimings):
    """The timings of one (optimizer, case).

    Args:
        optimizer: registry key.
        case: the case.
        threads: ferroptim's (and torch's) thread count.
        bytes_per_element: bytes a fused step moves per element; None when the optimizer is
            not element-wise.
        timings: peer name -> Timing, for the peers that ran.
        unavailable: peer name -> why it did not run.
        labels: peer name -> descriptive label, where it has one.
    """

    optimizer: str
    case: Case
    threads: int
    bytes_per_element: Optional[int]
    timings: Dict[str, Timing]
    unavailable: Dict[str, str]
    labels: Dict[str, str]

    def to_json(self) -> Dict[str, Any]:
        """The result as plain JSON values."""
        return {
            **case_json(self.optimizer, self.case),
            "threads": self.threads,
            "bytes_per_element": self.bytes_per_element,
            "peers": {name: timing.to_json() for name, timing in self.timings.items()},
            "unavailable": self.unavailable,
            "labels": self.labels,
        }


@dataclasses.dataclass
class ScalingResult:
    """ferroptim and roofline at each thread count on one case.

    Args:
        optimizer: registry key.
        case: the case.
        timings: thread count -> {"ferroptim": Timing, "roofline": Timing}, without the
            roofline for an optimizer that is not element-wise.
    """

    optimizer: str
    case: Case
    timings: Dict[int, Dict[str, Timing]]

    def to_json(self) -> Dict[str, Any]:
        """The result as plain JSON values."""
        return {
            "optimizer": self.optimizer,
            "case": self.case.name,
            "elements": self.case.elements,
            "threads": {
                str(n): {peer: timing.to_json() for peer, timing in peers.items()}
                for n, peers in self.timings.items()
            },
        }


@dataclasses.dataclass
class Report:
    """Everything one run measured.

    Args:
        settings: what was asked.
        env: `runner.environment()`: what the numbers depend on.
        cases: main table results, in order.
        scaling: thread-scaling results, in order.
        peak_rss: the process's peak resident set size at the end of the run, in bytes, or
            None when not measured.
    """

    settings: Settings
    env: Dict[str, Any]
    cases: List[CaseResult]
    scaling: List[ScalingResult]
    peak_rss: Optional[int] = None

    def find(self, optimizer: str, case: str) -> Optional[CaseResult]:
        """The main-table result of `optimizer` on the case `case` spells, or None.

        Args:
            optimizer: registry key.
            case: a `--sizes` entry; cases match by shapes, so "1K" finds "1000".
        """
        shapes = parse_case(case).shapes
        for result in self.cases:
            if result.optimizer == optimizer and result.case.shapes == shapes:
                return result
        return None

    def to_json(self) -> Dict[str, Any]:
        """The raw results as plain JSON values."""
        return {
            "environment": self.env,
            "settings": settings_json(self.settings),
            "cases": [result.to_json() for result in self.cases],
            "scaling": [result.to_json() for result in self.scaling],
            "peak_rss_bytes": self.peak_rss,
        }
