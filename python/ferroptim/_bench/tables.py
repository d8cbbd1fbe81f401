"""The report as a list of blocks (`Block`: a heading, a paragraph, a table, notes), printed
either as Markdown (`--markdown`, for pasting) or drawn for the terminal at its width.

The terminal view uses rich when it imports (the `bench` extra); without it the Markdown is
printed instead, its columns padded so it still reads as a table. `import ferroptim` never
imports rich: this module imports it inside the function that draws.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, List, Optional, Sequence, TextIO, Union

# How to get the nicer output, said once when rich (or matplotlib, for --plot) is missing.
EXTRA_HINT = 'pip install "ferroptim[bench]"'


@dataclasses.dataclass
class Heading:
    """A title.

    Args:
        text: the title.
        level: 2 for the report's title, 3 for a section's.
    """

    text: str
    level: int = 3


@dataclasses.dataclass
class Paragraph:
    """A paragraph of Markdown text (code spans in backticks).

    Args:
        text: the paragraph, on one line.
    """

    text: str


@dataclasses.dataclass
class Notes:
    """A bulleted list of Markdown lines.

    Args:
        items: the notes, each on one line.
    """

    items: List[str]


@dataclasses.dataclass
class Table:
    """A table of text cells.

    Args:
        columns: the header cells.
        rows: the body's cells, row by row.
        left: how many leading columns are names (left-aligned); the rest are numbers
            (right-aligned).
        title: a line above the table (its unit, what its ratios divide), or "".
    """

    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    left: int = 2
    title: str = ""


@dataclasses.dataclass
class Raw:
    """Markdown lines given as they are (a section `benches/bench.py` appends).

    Args:
        lines: the lines.
    """

    lines: List[str]


Block = Union[Heading, Paragraph, Notes, Table, Raw]


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]], left: int) -> str:
    """A Markdown table, its columns padded to the widest cell so the text reads as a table
    too.

    Args:
        columns: the header cells.
        rows: the body's cells, row by row.
        left: how many leading columns are names (left-aligned); the rest are numbers.
    """
    widths = [max([3, len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        ":" + "-" * (width - 1) if i < left else "-" * (width - 1) + ":"
        for i, width in enumerate(widths)
    ]
    return "\n".join([line(columns), line(rule), *(line(row) for row in rows)])


def to_markdown(blocks: Sequence[Block]) -> str:
    """The report as Markdown text.

    Args:
        blocks: the report's blocks, in order.
    """
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Notes):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            table = markdown_table(block.columns, block.rows, block.left)
            parts.append(f"{block.title}\n\n{table}" if block.title else table)
        else:
            parts.append("\n".join(block.lines))
    return "\n\n".join(parts) + "\n"


def from_markdown(lines: Sequence[str]) -> List[Block]:
    """Markdown lines (a `Raw` block) as blocks, so that their tables are drawn as the
    report's own: headings, tables, bulleted notes and paragraphs, split at blank lines.

    Args:
        lines: the Markdown, one line per item (a paragraph on one line).
    """
    blocks: List[Block] = []
    table: List[List[str]] = []

    def cells(line: str) -> List[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    for line in [*lines, ""]:
        if line.startswith("|"):
            table.append(cells(line))
            continue
        if table:
            # The rule under the header says which columns are left-aligned.
            rule = table[1] if len(table) > 1 else []
            left = sum(1 for cell in rule if not cell.endswith(":"))
            blocks.append(Table(table[0], table[2:], left=left))
            table = []
        if line.startswith("#"):
            marks = len(line) - len(line.lstrip("#"))
            blocks.append(Heading(line[marks:].strip(), marks))
        elif line.startswith("- "):
            if blocks and isinstance(blocks[-1], Notes):
                blocks[-1].items.append(line[2:])
            else:
                blocks.append(Notes([line[2:]]))
        elif line.strip():
            blocks.append(Paragraph(line))
    return blocks


def import_optional(name: str) -> Optional[Any]:
    """The module `name` of the `bench` extra, or None when it is not installed.

    Args:
        name: the module, e.g. "rich.console".
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def has_rich() -> bool:
    """Whether rich imports (tables drawn at the terminal's width, a progress bar)."""
    return import_optional("rich.console") is not None


def _rich_table(block: Table, columns: Sequence[int]) -> Any:
    # The table of `block`'s name columns and of its columns `columns`.
    from rich import box
    from rich.table import Table as RichTable

    table = RichTable(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    shown = [*range(block.left), *columns]
    for j in shown:
        table.add_column(
            block.columns[j],
            justify="left" if j < block.left else "right",
            overflow="fold",
            style="bold" if j == 0 else None,
        )
    for row in block.rows:
        table.add_row(*(row[j] for j in shown))
    return table


def _fitting_parts(console: Any, block: Table) -> List[Any]:
    """`block` as rich tables no wider than the console: the whole table when it fits, else
    its number columns split over several tables, each repeating the name columns (rich would
    otherwise fold every cell over several lines)."""
    from rich.cells import cell_len

    cells = [
        max([cell_len(column), *(cell_len(row[j]) for row in block.rows)])
        for j, column in enumerate(block.columns)
    ]

    def width(columns: Sequence[int]) -> int:
        # Unfolded cells, and three spaces between two columns (a space of padding on each
        # side of the box's blank rule); no padding at the edges.
        shown = [*range(block.left), *columns]
        return sum(cells[j] for j in shown) + 3 * (len(shown) - 1)

    parts: List[List[int]] = [[]]
    for j in range(block.left, len(block.columns)):
        if parts[-1] and width([*parts[-1], j]) > console.width:
            parts.append([])
        parts[-1].append(j)
    return [_rich_table(block, columns) for columns in parts]


def render_terminal(blocks: Sequence[Block], stream: TextIO, width: Optional[int] = None) -> None:
    """Draw the report for a terminal: rich tables no wider than `width` when rich imports,
    else the padded Markdown.

    Args:
        blocks: the report's blocks, in order.
        stream: where to write.
        width: the width to fit (default: the terminal's when `stream` is one, else
            `COLUMNS`, else 80).
    """
    console_module = import_optional("rich.console")
    if console_module is None:
        stream.write(to_markdown(blocks))
        stream.flush()
        return
    from rich.markdown import Markdown
    from rich.text import Text

    console = console_module.Console(
        file=stream,
        width=width,
        highlight=False,
        emoji=False,
        soft_wrap=False,
    )
    for i, block in enumerate(blocks):
        # rich's Markdown opens a list with a blank line of its own.
        if i and not isinstance(block, Notes):
            console.print()
        if isinstance(block, Heading):
            style = "bold underline" if block.level <= 2 else "bold"
            console.print(Text(block.text, style=style))
        elif isinstance(block, Paragraph):
            console.print(Markdown(block.text))
        elif isinstance(block, Notes):
            console.print(Markdown("\n".join(f"- {item}" for item in block.items)))
        elif isinstance(block, Table):
            # The title on a line of its own, which wraps at the console's width rather than
            # at the table's.
            if block.title:
                console.print(Text(block.title, style="italic"))
            parts = _fitting_parts(console, block)
            for k, part in enumerate(parts):
                if k:
                    console.print()
                console.print(part)
        else:
            render_terminal(from_markdown(block.lines), stream, width)
