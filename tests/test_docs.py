"""The documentation's Python snippets run and their assertions hold.

Every fenced ```python block of the README and of `docs/` runs, in order, one namespace per
page (a page's later blocks may use what its earlier ones defined), in a temporary working
directory. A block that cannot run here (an MPI launch, a sketch with placeholders) is preceded
by the line `<!-- no-run -->`, so leaving one out is a visible choice. The site itself is built
by `mkdocs build --strict` in `.ci/run`.
"""

import inspect
import os
import pathlib
import re

import pytest

import ferroptim as fo
from ferroptim.distributed import DistributedOptimizer
from ferroptim.optimizers import checkpoint, schedules

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


# --- every public object documents its arguments -------------------------------------------------


def _public_functions():
    """(name, the object whose docstring documents it, function) of every public function,
    constructor and method: `mkdocs build --strict` refuses an argument documented that the
    signature lacks, this test one that the docstring lacks."""
    objects = [getattr(fo.optimizers, name) for name in fo.optimizers.__all__]
    objects += [getattr(schedules, name) for name in schedules.__all__]
    objects += [fo.IndexedSlices, fo.set_num_threads, fo.get_num_threads, DistributedOptimizer]
    objects += [getattr(checkpoint, name) for name in ("save", "load", "load_state", "read_header")]
    for obj in objects:
        if inspect.isfunction(obj):
            yield obj.__name__, obj, obj
        elif inspect.isclass(obj):
            # A class documents its constructor's arguments in the class docstring (Keras's
            # style, and what mkdocstrings' `merge_init_into_class` renders).
            if obj.__init__ is not object.__init__:
                yield obj.__name__, obj, obj.__init__
            for name, member in vars(obj).items():
                function = getattr(member, "__func__", member)
                if not name.startswith("_") and inspect.isfunction(function):
                    yield f"{obj.__name__}.{name}", function, function


def _documented_arguments(doc):
    """The names of a Google-style `Args:` section, in order (None without one)."""
    section = re.search(r"^Args:\n((?:    .*\n|\n)*)", doc + "\n", re.MULTILINE)
    if section is None:
        return None
    return [
        re.match(r"    (\*{0,2}\w+):", line).group(1)
        for line in section.group(1).split("\n")
        if re.match(r"    \S", line)
    ]


def _declared_arguments(function):
    """The arguments as the function's source declares them (not the Keras signature that
    `keras_signature` gives an optimizer's constructor), starred as a docstring names them."""
    function = getattr(function, "__wrapped__", function)
    parameters = list(inspect.signature(function).parameters.values())
    if "." in function.__qualname__ and parameters and parameters[0].name in ("self", "cls"):
        parameters = parameters[1:]
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return [stars.get(p.kind, "") + p.name for p in parameters]


PUBLIC = list(_public_functions())


@pytest.mark.parametrize(
    "documented, function", [f[1:] for f in PUBLIC], ids=[f[0] for f in PUBLIC]
)
def test_every_argument_is_documented_in_order(documented, function):
    doc = inspect.getdoc(documented)
    assert doc
    declared = _declared_arguments(function)
    if declared:
        assert _documented_arguments(doc) == declared
