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


# --- the base arguments are documented once, in `Optimizer` ---------------------------------------

OPTIMIZER_CLASSES = [
    getattr(fo.optimizers, name)
    for name in fo.optimizers.__all__
    if inspect.isclass(getattr(fo.optimizers, name))
    and issubclass(getattr(fo.optimizers, name), fo.optimizers.Optimizer)
    and getattr(fo.optimizers, name) is not fo.optimizers.Optimizer
]


def _entries(doc):
    """The `Args:` entries of a docstring by name, each its text with the lines joined."""
    section = re.search(r"^Args:\n((?:    .*\n|\n)*)", doc + "\n", re.MULTILINE).group(1)
    return {
        match.group(1): " ".join(match.group(2).split())
        for match in re.finditer(r"^    (\*{0,2}\w+):(.*(?:\n {8}.*)*)", section, re.MULTILINE)
    }


def test_the_base_entries_are_optimizers():
    base = _entries(inspect.getdoc(fo.optimizers.Optimizer))
    shared = 0
    for cls in OPTIMIZER_CLASSES:
        doc = inspect.getdoc(cls)
        assert not re.search(r"^\s*\{\{\w+\}\}\s*$", doc, re.MULTILINE), cls
        written = inspect.getsource(cls).split('"""')[1]  # the docstring as the source has it
        for name, text in _entries(doc).items():
            # An entry the class's source does not hold is the base class's, verbatim.
            if f"\n        {name}:" not in written:
                assert text == base[name], (cls, name)
                shared += 1
    # The optimizers take most of them from `Optimizer` (not all: AdamW and Muon document
    # their own `weight_decay`, Nadam its own `**kwargs`; the wrappers none).
    assert shared >= 14 * 10


def _subclass(doc, clipnorm=None):
    class Custom(fo.optimizers.SGD):
        __doc__ = doc

        def __init__(self, learning_rate=0.01, clipnorm=clipnorm, **kwargs):
            super().__init__(learning_rate, clipnorm=clipnorm, **kwargs)

    return Custom


def test_a_subclass_docstring_gets_the_base_entries():
    doc = """A custom SGD.

    Args:
        learning_rate: the learning rate.
        {{base_optimizer_keyword_args}}
        {{base_optimizer_kwargs}}
    """
    entries = _entries(inspect.getdoc(_subclass(doc)))
    base = _entries(inspect.getdoc(fo.optimizers.Optimizer))
    assert list(entries) == ["learning_rate", *list(base)[1:]]
    assert entries["clipnorm"] == base["clipnorm"]
    assert entries["**kwargs"] == base["**kwargs"]
    # A placeholder named inside a sentence is text, not a placeholder.
    inline = "Uses `{{base_optimizer_kwargs}}`.\n\n    Args:\n        lr: x.\n    "
    assert _subclass(inline).__doc__ == inline


def test_a_changed_default_or_an_unknown_placeholder_is_refused():
    doc = "A custom SGD.\n\n    Args:\n        {{base_optimizer_keyword_args}}\n    "
    with pytest.raises(TypeError, match=r"changes the default of \['clipnorm'\]"):
        _subclass(doc, clipnorm=1.0)
    with pytest.raises(TypeError, match="unknown placeholder"):
        _subclass(doc.replace("keyword_args", "other"))
