"""The report of a run, as blocks (`tables.Block`) printed as Markdown or drawn for the
terminal: the environment; the main benchmark's time per step, memory traffic and speed-ups;
the optimizers that are not element-wise; the marginal cost of a tensor; thread scaling; the
peers that did not run, each named once. Measurements and ratios only.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ferroptim._bench.machine import busy_warning, format_gb
from ferroptim._bench.peers import MAIN_PEERS, PEER_TITLES
from ferroptim._bench.results import CaseResult, PeerTimings, Report
from ferroptim._bench.settings import MARGINAL_PAIR, Settings
from ferroptim._bench.tables import (
    Block,
    Heading,
    Notes,
    Paragraph,
    Raw,
    Table,
    to_markdown,
)
from ferroptim._bench.tables import markdown_table as markdown_table  # for benches/bench.py

# A section a caller appends to the report, as Markdown lines (`benches/bench.py` appends the
# targets).
Section = Callable[[Report], List[str]]

NA = "n/a"

# The main benchmark's three tables (a peer that ran in no row loses its column): the time per
# step of every peer; the memory traffic against the roofline; elements per second and the
# speed-ups over the peers.
TIME_TITLES = ("optimizer", "case", "elements")
TRAFFIC_COLUMNS = ("optimizer", "case", "GB/s", "roofline GB/s", "of roofline")
SPEED_TITLES = ("optimizer", "case", "Gelem/s")
# The optimizers that are not element-wise: milliseconds per step, then Melem/s and speed-ups.
MATRIX_TIME_TITLES = ("optimizer", "case", "elements", "tensors")
MATRIX_SPEED_TITLES = ("optimizer", "case", "Melem/s")
# The peers compared with ferroptim in the speed-up columns.
RIVALS = ("numpy", "numpy_out", "torch")
MARGINAL_COLUMNS = ("optimizer", "peer", "1 x 1K us", "100 x 1K us", "us per extra tensor")
SCALING_COLUMNS = (
    "optimizer",
    "case",
    "threads",
    "ferroptim us",
    "speedup",
    "roofline us",
    "roofline speedup",
)


def _format_load(load: Optional[Sequence[float]]) -> str:
    if load is None:
        return "load average unknown"
    return "load average " + " ".join(f"{value:.2f}" for value in load) + " at start"


def environment_line(env: Dict[str, Any], settings: Settings) -> str:
    """The sentence under a report's title: versions, threads, CPU, load, and how the peers
    were timed.

    Args:
        env: `runner.environment()`.
        settings: the run's settings.
    """
    # A missing torch is named once, in the notes of the peers that did not run.
    torch = f"torch {env['torch']}; " if env.get("torch") else ""
    busy = " (busy: noisy times)" if busy_warning(env["load_average"], env["cores"]) else ""
    return (
        f"ferroptim {env['ferroptim']}, SIMD level {env['simd_level']}, "
        f"{settings.main_threads} thread(s) on {env['cores']} core(s) ({env['cpu']}); "
        f"NumPy {env['numpy']}; {torch}Python {env['python']}; "
        f"{_format_load(env['load_average'])}{busy}. float32. "
        f"Best of {settings.repeats} timed blocks of >= {settings.min_block * 1e3:g} ms per peer, "
        f"peers alternating, all in one process."
    )


def format_us(seconds: Optional[float]) -> str:
    """Microseconds with three significant digits or so ("2.37", "25.3", "1,234"), or n/a.

    Args:
        seconds: the time, or None when it was not measured.
    """
    if seconds is None:
        return NA
    us = seconds * 1e6
    if us < 10:
        return f"{us:.2f}"
    if us < 100:
        return f"{us:.1f}"
    return f"{us:,.0f}"


def _format_ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return NA
    ms = seconds * 1e3
    if ms < 1:
        return f"{ms:.3f}"
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def format_rate(value: Optional[float]) -> str:
    """A rate with three significant digits or so ("2.47", "51.4", "123"), two below 0.1
    ("0.015"), or n/a.

    Args:
        value: the rate, or None when it was not measured.
    """
    if value is None:
        return NA
    if 0 < value < 0.1:
        return f"{value:.2g}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def format_ratio(value: Optional[float]) -> str:
    """A fraction with two decimals ("0.85", the fraction of the roofline), or n/a.

    Args:
        value: the fraction, or None when it was not measured.
    """
    return NA if value is None else f"{value:.2f}"


def format_speedup(value: Optional[float]) -> str:
    """A speedup ("2.58x", "12.3x"), or n/a.

    Args:
        value: the ratio of times, or None when it was not measured.
    """
    if value is None:
        return NA
    if value >= 100:
        return f"{value:,.0f}x"
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    """numerator / denominator, or None when either was not measured (or the denominator is not
    positive).

    Args:
        numerator, denominator: the two values, None when not measured.
    """
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def gelem_per_s(result: CaseResult, peer: str) -> Optional[float]:
    """10^9 parameter elements `peer` updates per second on `result`'s case, or None when it
    did not run.

    Args:
        result: the case's timings.
        peer: the peer's name.
    """
    return ratio(result.case.elements / 1e9, result.best(peer))


def _peers_that_ran(results: Sequence[PeerTimings], peers: Sequence[str]) -> List[str]:
    # A peer that ran in no row has no column: the notes say why, once.
    return [peer for peer in peers if any(r.best(peer) is not None for r in results)]


def _element_wise(report: Report) -> List[CaseResult]:
    return [r for r in report.cases if r.bytes_per_element is not None]


def _matrix(report: Report) -> List[CaseResult]:
    return [r for r in report.cases if r.bytes_per_element is None]


def main_tables(report: Report) -> List[Table]:
    """The element-wise optimizers' tables: microseconds per step of every peer; memory
    traffic against the roofline; Gelem/s and the speed-ups over the other peers. None when no
    element-wise optimizer ran.

    Args:
        report: the run.
    """
    results = _element_wise(report)
    if not results:
        return []
    peers = _peers_that_ran(results, MAIN_PEERS)
    rivals = [peer for peer in peers if peer in RIVALS]
    times, traffic, speed = [], [], []
    for r in results:
        fo, roof, bpe = r.best("ferroptim"), r.best("roofline"), r.bytes_per_element
        assert bpe is not None
        names = [r.optimizer, r.case.name]
        times.append([*names, f"{r.case.elements:,}", *(format_us(r.best(p)) for p in peers)])
        traffic.append(
            [
                *names,
                format_rate(ratio(r.case.elements * bpe / 1e9, fo)),
                format_rate(ratio(r.case.elements * bpe / 1e9, roof)),
                format_ratio(ratio(roof, fo)),
            ]
        )
        speed.append(
            [
                *names,
                format_rate(gelem_per_s(r, "ferroptim")),
                *(format_speedup(ratio(r.best(p), fo)) for p in rivals),
            ]
        )
    return [
        Table(
            [*TIME_TITLES, *(PEER_TITLES[p] for p in peers)],
            times,
            title="Microseconds per step (the best timed block of each peer)",
        ),
        Table(
            TRAFFIC_COLUMNS,
            traffic,
            title="Memory traffic: the bytes a fused step moves per second, against the "
            "roofline (a pass over the same bytes that does no arithmetic)",
        ),
        Table(
            [*SPEED_TITLES, *(f"vs {PEER_TITLES[p]}" for p in rivals)],
            speed,
            title="10^9 elements updated per second by ferroptim, and its speed-up over each "
            "peer (the peer's time over ferroptim's)",
        ),
    ]


def matrix_tables(report: Report) -> List[Table]:
    """The tables of the optimizers that are not element-wise (no roofline): milliseconds per
    step of every peer; Melem/s and ferroptim's speed-ups. None when none of them ran.

    Args:
        report: the run.
    """
    results = _matrix(report)
    if not results:
        return []
    peers = _peers_that_ran(results, [p for p in MAIN_PEERS if p != "roofline"])
    rivals = [peer for peer in peers if peer in RIVALS]
    times, speed = [], []
    for r in results:
        fo = r.best("ferroptim")
        names = [r.optimizer, r.case.name]
        times.append(
            [
                *names,
                f"{r.case.elements:,}",
                str(len(r.case.shapes)),
                *(_format_ms(r.best(p)) for p in peers),
            ]
        )
        speed.append(
            [
                *names,
                format_rate(ratio(r.case.elements / 1e6, fo)),
                *(format_speedup(ratio(r.best(p), fo)) for p in rivals),
            ]
        )
    return [
        Table(
            [*MATRIX_TIME_TITLES, *(PEER_TITLES[p] for p in peers)],
            times,
            title="Milliseconds per step",
        ),
        Table(
            [*MATRIX_SPEED_TITLES, *(f"vs {PEER_TITLES[p]}" for p in rivals)],
            speed,
            title="10^6 elements updated per second by ferroptim, and its speed-up over each peer",
        ),
    ]


def marginal(report: Report) -> List[Tuple[str, str, float, float, float]]:
    """Marginal cost of one more small tensor: (optimizer, peer, t(1 x 1K), t(100 x 1K),
    (t(100 x 1K) - t(1 x 1K)) / 99), in seconds, for every peer measured on both cases.

    Args:
        report: the run; empty when it lacks either case of `MARGINAL_PAIR`.
    """
    rows = []
    for name in report.settings.optimizers:
        small, large = (report.find(name, case) for case in MARGINAL_PAIR)
        if small is None or large is None:
            continue
        extra = len(large.case.shapes) - len(small.case.shapes)
        for peer in MAIN_PEERS:
            t1, t100 = small.best(peer), large.best(peer)
            if t1 is not None and t100 is not None:
                rows.append((name, peer, t1, t100, (t100 - t1) / extra))
    return rows


def scaling_table(report: Report) -> Optional[Table]:
    """The thread-scaling table: ferroptim's and the roofline's time at each thread count and
    the speed-up over the first count given; without the roofline's columns when no optimizer
    of it had one. None when the run had no scaling case.

    Args:
        report: the run.
    """
    if not report.scaling:
        return None
    peers = [
        peer
        for peer in ("ferroptim", "roofline")
        if any(peer in timings for r in report.scaling for timings in r.timings.values())
    ]
    rows = []
    for result in report.scaling:
        base = result.timings[report.settings.threads[0]]
        for n, timings in result.timings.items():
            row = [result.optimizer, result.case.name, str(n)]
            for peer in peers:
                best = timings[peer].best if peer in timings else None
                first = base[peer].best if peer in base else None
                row += [format_us(best), format_speedup(ratio(first, best))]
            rows.append(row)
    columns = SCALING_COLUMNS[:3] + tuple(
        column
        for peer in peers
        for column in (SCALING_COLUMNS[3:5] if peer == "ferroptim" else SCALING_COLUMNS[5:])
    )
    return Table(
        columns,
        rows,
        title=f"Microseconds per step at each thread count, and the speed-up over "
        f"{report.settings.threads[0]} thread(s)",
    )


def missing_notes(
    unavailable: Sequence[Tuple[str, str, str]], optimizers: Sequence[str]
) -> List[str]:
    """The peers that did not run, each reason said once: "torch: not installed, ..." when
    it held for every optimizer, else with the optimizers it held for.

    Args:
        unavailable: (peer title, optimizer, why) for every case where a peer did not run.
        optimizers: the optimizers of the run, in order.
    """
    held: Dict[Tuple[str, str], List[str]] = {}
    for peer, optimizer, reason in unavailable:
        names = held.setdefault((peer, reason), [])
        if optimizer not in names:
            names.append(optimizer)
    notes = []
    for (peer, reason), names in held.items():
        everywhere = set(names) >= set(optimizers)
        ordered = [name for name in optimizers if name in names]
        notes.append(
            f"{peer}: {reason}" if everywhere else f"{peer} ({', '.join(ordered)}): {reason}"
        )
    return notes


def report_blocks(report: Report, sections: Sequence[Section] = ()) -> List[Block]:
    """The report of a run, as blocks to print as Markdown or draw for the terminal.

    Args:
        report: the run.
        sections: more sections to append, in order, each a function of the report returning
            its Markdown lines (none to leave it out).
    """
    blocks: List[Block] = [
        Heading("ferroptim benchmark", 2),
        Paragraph(environment_line(report.env, report.settings)),
    ]
    blocks += main_tables(report)
    matrix = matrix_tables(report)
    if matrix:
        blocks += [
            Heading("Optimizers that are not element-wise"),
            Paragraph(
                "Adafactor reduces the rows and columns of each matrix and needs the RMS of "
                "its update before applying it; Muon multiplies matrices (Newton-Schulz) for "
                "its 2-D parameters and runs Adam on the others and on embeddings. Neither step "
                "is one pass over memory: no roofline. NumPy's matrix products run on its BLAS "
                "with the BLAS's own thread count."
            ),
            *matrix,
        ]
    costs = marginal(report)
    if costs:
        blocks += [
            Heading("Marginal cost of one more 1K tensor in a call"),
            Table(
                MARGINAL_COLUMNS,
                [
                    [name, PEER_TITLES[peer], format_us(t1), format_us(t100), format_us(extra)]
                    for name, peer, t1, t100, extra in costs
                ],
            ),
        ]
    scaling = scaling_table(report)
    if scaling is not None:
        blocks += [Heading("Thread scaling"), scaling]
    notes = missing_notes(
        [
            (PEER_TITLES[peer], r.optimizer, reason)
            for r in report.cases
            for peer, reason in r.unavailable.items()
            # The section's paragraph says why these have no roofline.
            if not (peer == "roofline" and r.bytes_per_element is None)
        ],
        report.settings.optimizers,
    )
    notes += sorted(
        {
            f"{PEER_TITLES.get(peer, peer)} ({r.optimizer}): {label}"
            for r in report.cases
            for peer, label in r.labels.items()
        }
    )
    if report.peak_rss:
        notes.append(f"This run's peak memory: {format_gb(report.peak_rss)} (resident set).")
    if notes:
        blocks += [Heading("Notes"), Notes(notes)]
    for section in sections:
        lines = section(report)
        if lines:
            blocks.append(Raw(lines))
    return blocks


def render_markdown(report: Report, sections: Sequence[Section] = ()) -> str:
    """The Markdown report of a run: measurements and ratios.

    Args:
        report: the run.
        sections: more sections to append, in order, each a function of the report returning
            its Markdown lines (none to leave it out).
    """
    return to_markdown(report_blocks(report, sections))
