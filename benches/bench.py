"""Developer entry point of the benchmark: `python benches/bench.py [options]`.

The same harness and options as `python -m ferroptim bench` (see benches/README.md), and one
more section at the end of its report: the project's performance targets, stated here
(`targets`), each with what the run measured and whether it is met. The user-facing command
reports measurements and ratios only; the targets are the team's.
"""

import sys
from typing import List, Optional, Tuple

from ferroptim._bench import OPTIMIZERS, Report, main
from ferroptim._bench.report import (
    NA,
    format_ratio,
    format_speedup,
    format_us,
    marginal,
    markdown_table,
    ratio,
)

TARGET_COLUMNS = ("target", "measured", "met")


def targets(report: Report) -> List[Tuple[str, str, Optional[bool]]]:
    """The performance targets that this run measured: (target, measured, met); met is None
    when a peer the target compares with (torch) did not run.

    Args:
        report: the run.
    """
    rows: List[Tuple[str, str, Optional[bool]]] = []

    def ratio_target(
        case: str,
        text: str,
        peer: str,
        bound: float,
        roofline: bool = False,
        optimizer: str = "adam",
    ) -> None:
        result = report.find(optimizer, case)
        if result is None:
            return
        fo, other = result.best("ferroptim"), result.best(peer)
        value = ratio(other, fo)
        if value is None:
            rows.append((text, f"{peer} not measured", None))
        else:
            shown = format_ratio(value) if roofline else format_speedup(value)
            rows.append((text, shown, value >= bound))

    def time_target(case: str, text: str, bound_us: float) -> None:
        result = report.find("adam", case)
        seconds = None if result is None else result.best("ferroptim")
        if seconds is not None:
            rows.append((text, f"{format_us(seconds)} us", seconds * 1e6 <= bound_us))

    ratio_target("32M", "Adam 32M: >= 0.9 of the roofline", "roofline", 0.9, roofline=True)
    ratio_target("32M", "Adam 32M: >= 1.0x torch fused", "torch", 1.0)
    ratio_target("32M", "Adam 32M: >= 10x NumPy", "numpy", 10.0)
    ratio_target("100K", "Adam 100K: >= 3x torch fused", "torch", 3.0)
    time_target("1K", "Adam 1K, one tensor: <= 3 us per call", 3.0)
    time_target("mlp", "Adam MLP 784-256-128-10: <= 40 us per step", 40.0)
    ratio_target("gpt2", "Adam GPT-2 small: no slower than torch fused", "torch", 1.0)
    # Every other optimizer's kernel is held to the floor of its own streams (Adam, above, to
    # a stricter bound).
    for name in report.settings.optimizers:
        if name != "adam" and OPTIMIZERS[name].element_wise:
            ratio_target(
                "32M",
                f"{name} 32M: >= 0.85 of the roofline",
                "roofline",
                0.85,
                roofline=True,
                optimizer=name,
            )
    for name, peer, _, _, extra in marginal(report):
        if name == "adam" and peer == "ferroptim":
            rows.append(
                (
                    "Adam: one more 1K tensor in a call <= 1 us",
                    f"{format_us(extra)} us",
                    extra <= 1e-6,
                )
            )
    threads = report.settings.threads
    if 1 in threads and max(threads) >= 2:
        for result in report.scaling:
            if result.optimizer == "adam":
                speedup = (
                    result.timings[1]["ferroptim"].best
                    / result.timings[max(threads)]["ferroptim"].best
                )
                rows.append(
                    (
                        f"Adam {result.case.name}: {max(threads)} threads >= 1.8x one",
                        format_speedup(speedup),
                        speedup >= 1.8,
                    )
                )
    return rows


def targets_section(report: Report) -> List[str]:
    """The report's section of targets, as Markdown lines; none when the run measured none.

    Args:
        report: the run.
    """
    goals = targets(report)
    if not goals:
        return []
    return [
        "### Targets",
        "",
        markdown_table(
            TARGET_COLUMNS,
            [
                [text, value, NA if met is None else "yes" if met else "**no**"]
                for text, value, met in goals
            ],
            left=1,
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(sections=[targets_section]))
