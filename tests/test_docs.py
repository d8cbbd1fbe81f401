"""The documentation's Python snippets run and their assertions hold.

Every fenced ```python block of the README and of `docs/` runs, in order, one namespace per
page (a page's later blocks may use what its earlier ones defined), in a temporary working
directory. A block that cannot run here (an MPI launch, a sketch with placeholders) is preceded
by the line `<!-- no-run -->`, so leaving one out is a visible choice. The site itself is built
by `mkdocs build --strict` in `.ci/run`.
"""

import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(r"(<!-- no-run -->\n)?```python\n(.*?)\n```", re.DOTALL)


def snippets(page):
    """The page's runnable python blocks, each with its line number."""
    text = page.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start(2)) + 1, match.group(2))
        for match in FENCE.finditer(text)
        if match.group(1) is None
    ]


def test_the_pages_hold_snippets():
    # A change of the fence syntax would otherwise skip every block silently.
    assert sum(len(snippets(page)) for page in PAGES) >= 10


@pytest.mark.parametrize(
    "page", [p for p in PAGES if snippets(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_snippets_of_a_page_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for line, code in snippets(page):
        compiled = compile(code, f"{page.relative_to(ROOT)}:{line}", "exec")
        exec(compiled, namespace)
    assert os.getcwd() == str(tmp_path)
