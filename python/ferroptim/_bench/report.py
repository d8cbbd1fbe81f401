"""The Markdown report of a run: the environment, the main table, the table of the optimizers
that are not element-wise, the marginal cost of a tensor, thread scaling; measurements and
ratios only.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ferroptim._bench.peers import MAIN_PEERS, PEER_TITLES
from ferroptim._bench.results import Report
from ferroptim._bench.settings import MARGINAL_PAIR, Settings

# A section a caller appends to the report (`benches/bench.py` appends the targets).
Section = Callable[[Report], List[str]]

NA = "n/a"

MAIN_COLUMNS = (
    "optimizer",
    "case",
    "elements",
    "ferroptim us",
    "Gelem/s",
    "GB/s",
    "roofline us",
    "roofline GB/s",
    "of roofline",
    "NumPy us",
    "vs NumPy",
    "NumPy out= us",
    "vs NumPy out=",
    "torch us",
    "vs torch",
)
MATRIX_COLUMNS = (
    "optimizer",
    "case",
    "elements",
    "tensors",
    "ferroptim ms",
    "Melem/s",
    "NumPy ms",
    "vs NumPy",
    "NumPy out= ms",
    "vs NumPy out=",
    "torch ms",
    "vs torch",
)
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
    return (
        f"ferroptim {env['ferroptim']}, SIMD level {env['simd_level']}, "
        f"{settings.main_threads} thread(s) on {env['cores']} core(s) ({env['cpu']}); "
        f"NumPy {env['numpy']}; {env['torch_note']}; Python {env['python']}; "
        f"{_format_load(env['load_average'])}. float32. "
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


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]], left: int) -> str:
    """A Markdown table.

    Args:
        columns: the header cells.
        rows: the body's cells, row by row.
        left: how many leading columns are names (left-aligned); the rest are numbers.
    """
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(":---" if i < left else "---:" for i in range(len(columns))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main_rows(report: Report) -> List[List[str]]:
    """The main table's cells, one row per (element-wise optimizer, case), columns as
    `MAIN_COLUMNS`.

    Args:
        report: the run.
    """
    rows = []
    for result in report.cases:
        if result.bytes_per_element is None:
            continue
        fo, roof = result.best("ferroptim"), result.best("roofline")
        elements, bpe = result.case.elements, result.bytes_per_element
        rows.append(
            [
                result.optimizer,
                result.case.name,
                f"{elements:,}",
                format_us(fo),
                format_rate(ratio(elements / 1e9, fo)),
                format_rate(ratio(elements * bpe / 1e9, fo)),
                format_us(roof),
                format_rate(ratio(elements * bpe / 1e9, roof)),
                format_ratio(ratio(roof, fo)),
                format_us(result.best("numpy")),
                format_speedup(ratio(result.best("numpy"), fo)),
                format_us(result.best("numpy_out")),
                format_speedup(ratio(result.best("numpy_out"), fo)),
                format_us(result.best("torch")),
                format_speedup(ratio(result.best("torch"), fo)),
            ]
        )
    return rows


def matrix_rows(report: Report) -> List[List[str]]:
    """The cells of the table of the optimizers that are not element-wise (no roofline, no
    bytes per element), one row per (optimizer, case), columns as `MATRIX_COLUMNS`.

    Args:
        report: the run.
    """
    rows = []
    for result in report.cases:
        if result.bytes_per_element is not None:
            continue
        fo = result.best("ferroptim")
        rows.append(
            [
                result.optimizer,
                result.case.name,
                f"{result.case.elements:,}",
                str(len(result.case.shapes)),
                _format_ms(fo),
                format_rate(ratio(result.case.elements / 1e6, fo)),
            ]
        )
        for peer in ("numpy", "numpy_out", "torch"):
            rows[-1] += [
                _format_ms(result.best(peer)),
                format_speedup(ratio(result.best(peer), fo)),
            ]
    return rows


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


def scaling_rows(report: Report) -> List[List[str]]:
    """The scaling table's cells, columns as `SCALING_COLUMNS`; speedups are against the
    first thread count given.

    Args:
        report: the run.
    """
    rows = []
    for result in report.scaling:
        base = result.timings[report.settings.threads[0]]
        for n, peers in result.timings.items():
            row = [result.optimizer, result.case.name, str(n)]
            # No roofline for an optimizer that is not element-wise: n/a.
            for peer in ("ferroptim", "roofline"):
                best = peers[peer].best if peer in peers else None
                first = base[peer].best if peer in base else None
                row += [format_us(best), format_speedup(ratio(first, best))]
            rows.append(row)
    return rows


def render_markdown(report: Report, sections: Sequence[Section] = ()) -> str:
    """The Markdown report of a run: measurements and ratios.

    Args:
        report: the run.
        sections: more sections to append, in order, each a function of the report returning
            its Markdown lines (none to leave it out).
    """
    out = ["## ferroptim benchmark", "", environment_line(report.env, report.settings)]
    rows = main_rows(report)
    if rows:
        out += ["", markdown_table(MAIN_COLUMNS, rows, left=2)]
    rows = matrix_rows(report)
    if rows:
        out += [
            "",
            "### Optimizers that are not element-wise",
            "",
            "Adafactor reduces the rows and columns of each matrix and needs the RMS of "
            "its update before applying it; Muon multiplies matrices (Newton-Schulz) for "
            "its 2-D parameters and runs Adam on the others and on embeddings. Neither step "
            "is one pass over memory: no roofline. Milliseconds per step. NumPy's matrix "
            "products run on its BLAS with the BLAS's own thread count.",
            "",
            markdown_table(MATRIX_COLUMNS, rows, left=2),
        ]
    notes = sorted(
        {f"{peer}: {reason}" for r in report.cases for peer, reason in r.unavailable.items()}
        | {
            f"{peer} ({r.optimizer}): {label}"
            for r in report.cases
            for peer, label in r.labels.items()
        }
    )
    if notes:
        out += [""] + [f"- {note}" for note in notes]
    costs = marginal(report)
    if costs:
        out += [
            "",
            "### Marginal cost of one more 1K tensor in a call",
            "",
            markdown_table(
                MARGINAL_COLUMNS,
                [
                    [name, PEER_TITLES[peer], format_us(t1), format_us(t100), format_us(extra)]
                    for name, peer, t1, t100, extra in costs
                ],
                left=2,
            ),
        ]
    if report.scaling:
        out += [
            "",
            "### Thread scaling",
            "",
            markdown_table(SCALING_COLUMNS, scaling_rows(report), left=2),
        ]
    for section in sections:
        lines = section(report)
        if lines:
            out += ["", *lines]
    return "\n".join(out) + "\n"
