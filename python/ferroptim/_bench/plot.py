"""`--plot FILE`: a bar chart of a run's throughput, one bar per peer and case.

The main benchmark gets one panel per optimizer, its cases along the x axis and a bar per peer
giving 10^9 parameter elements updated per second (the roofline's bar is the memory floor's
rate). The sparse benchmark gets one panel, its optimizers along the x axis and steps per
second (not the table's gradient rows per second, in which the dense step, whose gradient has
a row for every row of the table, would look the fastest). The y axis is logarithmic: the
rates span three orders of magnitude from 1K elements to GPT-2.

matplotlib (the `bench` extra) is imported only when a plot is drawn, and draws without pyplot
and its global backend (a `Figure` saved through its own Agg canvas), so it never opens a
window.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

from ferroptim._bench.peers import MAIN_PEERS, PEER_TITLES
from ferroptim._bench.report import gelem_per_s, ratio
from ferroptim._bench.results import Report
from ferroptim._bench.settings import Settings
from ferroptim._bench.sparse import SPARSE_PEER_TITLES, SPARSE_PEERS, SparseReport
from ferroptim._bench.tables import EXTRA_HINT, import_optional

# One color per peer, the same in every panel (matplotlib's default cycle, in peer order).
COLORS = ("#1f77b4", "#7f7f7f", "#ff7f0e", "#2ca02c", "#d62728")

# A panel's bars: x tick labels, then per peer (its title, one rate or None per tick).
Panel = Tuple[str, List[str], List[Tuple[str, List[Optional[float]]]]]


def check_available(settings: Settings) -> None:
    """Raise ValueError, saying what to do, when `--plot` cannot draw this run.

    Args:
        settings: the run.
    """
    if settings.distributed is not None:
        raise ValueError("--plot draws the main and the sparse benchmarks, not --distributed")
    if import_optional("matplotlib.figure") is None:
        raise ValueError(f"--plot needs matplotlib: {EXTRA_HINT}")


def panels(report: Union[Report, SparseReport]) -> List[Panel]:
    """What the chart shows: (title, x tick labels, [(peer title, rate per tick)]) per panel
    (Gelem/s, or the sparse benchmark's steps per second); a peer that did not run in a case
    has None there (no bar).

    Args:
        report: the run.
    """
    if isinstance(report, SparseReport):
        case = report.case
        ticks = [result.optimizer for result in report.results]
        bars = []
        for peer in SPARSE_PEERS:
            rates = [ratio(1.0, result.best(peer)) for result in report.results]
            if any(rate is not None for rate in rates):
                bars.append((SPARSE_PEER_TITLES[peer], rates))
        title = f"{case.rows:,} x {case.columns} table, {case.rows_per_step} rows per step"
        return [(title, ticks, bars)]
    out: List[Panel] = []
    for name in report.settings.optimizers:
        results = [result for result in report.cases if result.optimizer == name]
        if not results:
            continue
        ticks = [result.case.name for result in results]
        bars = []
        for peer in MAIN_PEERS:
            rates = [gelem_per_s(result, peer) for result in results]
            if any(rate is not None for rate in rates):
                bars.append((PEER_TITLES[peer], rates))
        out.append((name, ticks, bars))
    return out


def plot_report(report: Union[Report, SparseReport], path: str) -> Any:
    """Draw the run's bar chart to `path` (its format by extension, e.g. .png, .svg).

    Args:
        report: the run (the main or the sparse benchmark).
        path: the file to write.

    Returns:
        The matplotlib Figure drawn.
    """
    figure_module = import_optional("matplotlib.figure")
    if figure_module is None:
        raise RuntimeError(f"--plot needs matplotlib: {EXTRA_HINT}")
    from matplotlib import ticker

    sparse = isinstance(report, SparseReport)
    drawn = panels(report)
    widest = max((len(ticks) for _, ticks, _ in drawn), default=1)
    figure = figure_module.Figure(
        figsize=(max(6.0, 1.1 * widest + 2.0), 3.2 * max(len(drawn), 1)), layout="constrained"
    )
    axes = figure.subplots(max(len(drawn), 1), 1, squeeze=False)[:, 0]
    colors: Dict[str, str] = {}
    handles: Dict[str, Any] = {}
    for ax, (title, ticks, bars) in zip(axes, drawn):
        width = 0.8 / max(len(bars), 1)
        for k, (peer, rates) in enumerate(bars):
            color = colors.setdefault(peer, COLORS[len(colors) % len(COLORS)])
            xs = [
                i + (k - (len(bars) - 1) / 2) * width
                for i, rate in enumerate(rates)
                if rate is not None
            ]
            heights = [rate for rate in rates if rate is not None]
            drawn_bars = ax.bar(xs, heights, width, label=peer, color=color)
            handles.setdefault(peer, drawn_bars)
        ax.set_xticks(range(len(ticks)), ticks)
        ax.set_yscale("log")
        # Ticks at 1, 2 and 5 of each decade, labelled as plain numbers ("0.2", "50").
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(title, loc="left")
        ax.set_ylabel("steps/s" if sparse else "Gelem/s")
        ax.grid(axis="y", which="both", alpha=0.3)
    # One legend for every panel (a peer has the same color in each), below them, where it
    # hides no bar.
    figure.legend(
        list(handles.values()), list(handles), loc="outside lower center", ncols=len(handles)
    )
    figure.suptitle(
        "ferroptim sparse benchmark: steps per second"
        if sparse
        else "ferroptim benchmark: 10^9 elements updated per second",
        x=0.0,
        horizontalalignment="left",
    )
    figure.savefig(path, dpi=110)
    return figure
