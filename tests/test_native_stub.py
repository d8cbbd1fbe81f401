"""The update-rule part of `_native.pyi` is generated from the native module's own declaration.

Each rule function is declared once, in the `rules!` macro of `src/py/rules.rs`; the native
module exports that declaration (`rule_signatures()`) and each function's docstring. The stub's
rule section and its `__all__` are written from them, between the markers below, so a new rule
needs no hand-written stub. This test fails when the stub and the built module disagree; run

    python tests/test_native_stub.py

to rewrite the generated parts (stubtest, in `.ci/run`, checks the rest of the stub).
"""

import pathlib
import sys
import textwrap
from typing import Any, Dict, List

from ferroptim import _native

STUB = pathlib.Path(__file__).resolve().parent.parent / "python" / "ferroptim" / "_native.pyi"
BEGIN = "# --- update rules: generated from rule_signatures() by tests/test_native_stub.py ---\n"
END = "# --- end of the generated update rules ---\n"

# The annotation of each kind of argument `rule_signatures()` reports.
ANNOTATIONS = {
    "params": "Sequence[NDArray[np.floating]]",
    "grads": "Sequence[_Gradient]",
    "slots": "Sequence[NDArray[np.floating]]",
    "optional_slots": "Optional[Sequence[NDArray[np.floating]]]",
    "real": "float",
    "int": "int",
    "bool": "bool",
    "options": "Optional[StepOptions]",
    "names": "Optional[Sequence[str]]",
}


def _argument(arg: Dict[str, Any]) -> str:
    text = f"    {arg['name']}: {ANNOTATIONS[arg['kind']]}"
    if "default" in arg:
        text += f" = {arg['default']!r}"
    return text + ",\n"


def _function(name: str, arguments: List[Dict[str, Any]]) -> str:
    doc = textwrap.indent(getattr(_native, name).__doc__.strip(), "    ").lstrip()
    return (
        f"def {name}(\n"
        + "".join(_argument(arg) for arg in arguments)
        + f') -> None:\n    """{doc}"""\n'
    )


def generated_rules() -> str:
    """The stub's rule section, markers included."""
    signatures = _native.rule_signatures()
    return BEGIN + "\n" + "\n".join(_function(n, a) for n, a in signatures.items()) + "\n" + END


def generated_all() -> str:
    """The stub's `__all__`: every public name of the module, sorted."""
    names = sorted(n for n in dir(_native) if not n.startswith("_") or n == "__version__")
    return "__all__ = [\n" + "".join(f'    "{n}",\n' for n in names) + "]\n"


def expected_stub(stub: str) -> str:
    """`stub` with its generated parts rewritten."""
    start, end = stub.index(BEGIN), stub.index(END) + len(END)
    stub = stub[:start] + generated_rules() + stub[end:]
    start = stub.index("__all__ = [\n")
    end = stub.index("]\n", start) + 2
    return stub[:start] + generated_all() + stub[end:]


def test_rule_stubs_are_generated_from_the_declaration():
    stub = STUB.read_text()
    assert stub == expected_stub(stub), (
        "_native.pyi disagrees with the native module's rule declaration: "
        "run `python tests/test_native_stub.py` to regenerate it"
    )


def test_every_rule_is_in_the_stub():
    # The generated section covers every declared rule, each with its docstring.
    stub = STUB.read_text()
    section = stub[stub.index(BEGIN) : stub.index(END)]
    for name in _native.rule_signatures():
        assert f"\ndef {name}(\n" in section
        assert getattr(_native, name).__doc__


if __name__ == "__main__":
    text = STUB.read_text()
    new = expected_stub(text)
    if new != text:
        STUB.write_text(new)
        print(f"rewrote {STUB.name}", file=sys.stderr)
