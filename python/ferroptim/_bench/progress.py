"""The progress of a run on stderr: how many cases are done, how long the rest should take,
and which case (and which peer of it) runs now, so that a long case is not silent.

Nothing of it runs while a block is timed: the bar is redrawn when a case or a block starts,
not by a thread of its own.

A bar (rich) when stderr is a terminal and rich imports; otherwise one plain line as each case
starts, which is what a CI log or a file wants. The time left weighs every case by an estimate
of its seconds (`runner.estimated_seconds`): the estimates need only be right relative to one
another, since the rate measured on the cases done scales them to this machine.
"""

from __future__ import annotations

import sys
import time
from typing import Any, List, Optional, TextIO

from ferroptim._bench.tables import import_optional

# How much the estimates count against the measured rate in the time left: as much as a run of
# this share of the total estimate.
PRIOR_SHARE = 0.25


def format_duration(seconds: float) -> str:
    """A duration as m:ss, or h:mm:ss from an hour.

    Args:
        seconds: the duration.
    """
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Progress over a list of tasks (the cases of a run), each weighed by its estimated
    seconds; a context manager.

    Args:
        weights: every task's estimated seconds, in the order they run.
        stream: where progress goes (default: sys.stderr).
        bar: draw a bar (rich); default: when `stream` is a terminal and rich imports.
        what: what a task is called in the summary line ("cases").
    """

    def __init__(
        self,
        weights: List[float],
        stream: Optional[TextIO] = None,
        bar: Optional[bool] = None,
        what: str = "cases",
    ) -> None:
        self.weights = [max(weight, 1e-3) for weight in weights]
        self.stream = sys.stderr if stream is None else stream
        self.what = what
        self.rich: Any = None
        if bar is None:
            bar = bool(getattr(self.stream, "isatty", lambda: False)())
        if bar:
            self.rich = import_optional("rich.progress")
        self.count = 0
        self.done_weight = 0.0
        self.label = ""
        self.started = time.perf_counter()
        self._bar: Any = None
        self._task: Any = None
        self._fraction = 0.0

    @property
    def total(self) -> int:
        """How many tasks there are."""
        return len(self.weights)

    def __enter__(self) -> Progress:
        self.started = time.perf_counter()
        if self.rich is not None:
            from rich.console import Console
            from rich.table import Column

            rp = self.rich

            def fixed(width: int) -> Column:
                return Column(no_wrap=True, width=width)

            # The count, the bar and the times keep their width; what runs now takes the rest
            # of the line, cut short with an ellipsis on a narrow terminal.
            count = len(f"{self.total}/{self.total} {self.what}")
            self._bar = rp.Progress(
                rp.TextColumn("{task.fields[count]}", table_column=fixed(count)),
                rp.BarColumn(bar_width=16, table_column=fixed(16)),
                rp.TimeElapsedColumn(table_column=fixed(7)),
                rp.TextColumn("elapsed,", table_column=fixed(8)),
                rp.TimeRemainingColumn(table_column=fixed(7)),
                rp.TextColumn("left", table_column=fixed(4)),
                rp.TextColumn(
                    "{task.description}",
                    table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
                ),
                console=Console(file=self.stream),
                transient=False,
                # Redrawn between timed blocks only: a refreshing thread would take the GIL
                # and a processor from the steps being timed.
                auto_refresh=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(
                "", total=sum(self.weights), count=f"0/{self.total} {self.what}"
            )
        return self

    def __exit__(self, *exc_info: Any) -> None:
        elapsed = format_duration(time.perf_counter() - self.started)
        if self._bar is not None:
            if exc_info[0] is None:
                self._bar.update(
                    self._task,
                    completed=sum(self.weights),
                    description="done",
                    count=f"{self.total}/{self.total} {self.what}",
                    refresh=True,
                )
            self._bar.__exit__(*exc_info)
        elif exc_info[0] is None:
            self._line(f"done: {self.count} {self.what} in {elapsed}")

    def _line(self, message: str) -> None:
        print(message, file=self.stream, flush=True)

    def seconds_left(self, now: Optional[float] = None) -> float:
        """The estimated seconds left: the remaining tasks' weights, scaled by the time the
        done ones took over their weights (blended with 1, the estimates' own scale).

        Args:
            now: `time.perf_counter()` (default: read it).
        """
        remaining = sum(self.weights[self.count :]) + self._current_weight() * (1 - self._fraction)
        elapsed = (time.perf_counter() if now is None else now) - self.started
        done = self.done_weight + self._current_weight() * self._fraction
        # The measured rate, weighed against the estimates' own (1) as if they had been right
        # for a quarter of the run: the first small cases say little about the large ones.
        prior = PRIOR_SHARE * sum(self.weights)
        return remaining * (elapsed + prior) / (done + prior)

    def _current_weight(self) -> float:
        return self.weights[self.count - 1] if 0 < self.count <= self.total else 0.0

    def begin(self, label: str, about: str = "") -> None:
        """The next task starts (the previous one, if any, is done).

        Args:
            label: what runs, e.g. "adam 32M".
            about: more about it for the plain lines, e.g. "32,000,000 elements, 1 tensor"
                (the bar keeps to the label, to fit a terminal's line).
        """
        if 0 < self.count <= self.total:
            self.done_weight += self._current_weight()
        self.count += 1
        self.label = label
        self._fraction = 0.0
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=self.done_weight,
                description=label,
                count=f"{self.count}/{self.total} {self.what}",
                refresh=True,
            )
        else:
            now = time.perf_counter()
            elapsed = format_duration(now - self.started)
            left = format_duration(self.seconds_left(now))
            about = f" ({about})" if about else ""
            self._line(
                f"[{self.count}/{self.total}] {label}{about}: {elapsed} elapsed, about {left} left"
            )

    def part(self, fraction: float, detail: str) -> None:
        """How far the running task is; shown on the bar only (a plain log gets no line per
        timed block).

        Args:
            fraction: the share of the task done, in [0, 1].
            detail: what it does now, e.g. "NumPy, block 3 of 7".
        """
        self._fraction = min(max(fraction, 0.0), 1.0)
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=self.done_weight + self._current_weight() * self._fraction,
                description=f"{self.label}: {detail}",
                refresh=True,
            )
