"""The constructor arguments of an optimizer: Keras's signature for a subclass and the
documentation of its base arguments, Keras's checks of the base class's arguments, and the
look-up behind Keras 2's `lr=` alias.
"""

from __future__ import annotations

import collections
import inspect
import math
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ferroptim.optimizers._variables import MAX_ACCUMULATION_STEPS, is_number

__all__ = [
    "auto_name",
    "check_base_arguments",
    "check_keras_signature",
    "constructor_repr",
    "default_argument",
    "expand_base_arguments_doc",
    "keras2_arguments",
]


# `Optimizer.__init__`'s arguments that every subclass repeats in Keras's order.
_BASE_SKIPPED = ("self", "learning_rate", "name", "kwargs")


def check_keras_signature(init: Callable[..., None], name: Optional[str]) -> None:
    """Check that a subclass's `__init__` declares Keras's whole signature (called by the class
    statement's `name=`, see `_rule.RuleDeclaration`); a TypeError when the class is defined
    otherwise.

    Keras's signature is `learning_rate`, the optimizer's own arguments, every argument of the
    base class in `BaseOptimizer`'s order (a subclass may declare one of them among its own, as
    AdamW declares `weight_decay` second, or change its default, as Muon), `name` (default:
    `name`), Keras's later own arguments (Muon's), then `**kwargs`; all but `**kwargs` may be
    given by position (`RMSprop(0.5, 0.8, 0.25, 0.125, True, 0.01)` sets `weight_decay`). Each
    class spells it out, as Keras does, so that a type checker, `help()` and `inspect` read the
    same signature the call binds; this keeps the copies true.

    Args:
        init: the subclass's own `__init__`.
        name: Keras's default `name` for the class (None: an automatic name).
    """
    from ferroptim.optimizers.optimizer import Optimizer

    base = {
        p.name: p
        for p in inspect.signature(Optimizer.__init__).parameters.values()
        if p.name not in _BASE_SKIPPED
    }
    parameters = list(inspect.signature(init).parameters.values())[1:]
    names = [p.name for p in parameters]
    problems = []
    if names[:1] != ["learning_rate"]:
        problems.append("`learning_rate` first")
    if not parameters or parameters[-1].kind is not inspect.Parameter.VAR_KEYWORD:
        problems.append("`**kwargs` last")
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters[:-1]):
        problems.append("every argument but `**kwargs` positional or keyword")
    if "name" not in names:
        problems.append("`name`")
    else:
        at = names.index("name")
        if parameters[at].default != name:
            problems.append(f"`name` defaulting to {name!r}")
        start = at
        while start > 0 and names[start - 1] in base:
            start -= 1
        early = set(names[:start])
        if names[start:at] != [n for n in base if n not in early]:
            problems.append(
                "the base class's arguments in its order before `name`: " + ", ".join(base)
            )
    if problems:
        raise TypeError(
            f"`{init.__qualname__}` must declare Keras's signature: " + "; ".join(problems)
        )


# The placeholders of an optimizer's `Args:` section, each on a line of its own, as Keras's
# docstrings hold `{{base_optimizer_keyword_args}}`: the class statement replaces them with the
# entries of `Optimizer`'s docstring, so that the base arguments are documented once and every
# optimizer's docstring (`help()`, `inspect.getdoc`, the API reference) still lists its whole
# signature in order. The first stands for the base arguments `weight_decay` ... `name` that the
# class does not document itself (AdamW documents `weight_decay` among its own), the second for
# `**kwargs`, which comes after Keras's later own arguments (`lazy`, Muon's).
BASE_ARGUMENTS_PLACEHOLDER = "{{base_optimizer_keyword_args}}"
KWARGS_PLACEHOLDER = "{{base_optimizer_kwargs}}"
# A line that holds only a placeholder (one named in the text, `{{...}}`, stays as it is).
_PLACEHOLDER_LINE = re.compile(r"^[ \t]*\{\{\w+\}\}[ \t]*$", re.MULTILINE)


def _argument_entries(doc: str) -> Dict[str, List[str]]:
    """The entries of a Google-style `Args:` section by argument name (stars dropped), each as
    its lines indented relative to the section (the first line not indented)."""
    lines = inspect.cleandoc(doc).splitlines()
    entries: Dict[str, List[str]] = {}
    current: Optional[List[str]] = None
    inside = False
    for line in lines:
        if not inside:
            inside = line == "Args:"
            continue
        if line.strip() and not line.startswith("    "):
            break  # the next section or paragraph
        match = re.match(r"    \*{0,2}(\w+):", line)
        if match:
            current = entries[match.group(1)] = [line[4:]]
        elif current is not None and line.startswith("    "):
            current.append(line[4:])
    return entries


def expand_base_arguments_doc(cls: type) -> None:
    """Replace the placeholders of `cls`'s own docstring (see `BASE_ARGUMENTS_PLACEHOLDER`)
    with the entries of `Optimizer`'s docstring, indented as the placeholder's line (called by
    the class statement, see `_rule.RuleDeclaration`); nothing without a placeholder.

    Args:
        cls: the optimizer class being defined.
    """
    doc = cls.__dict__.get("__doc__")
    if not doc or not _PLACEHOLDER_LINE.search(doc):
        return
    from ferroptim.optimizers.optimizer import Optimizer

    shared = _argument_entries(Optimizer.__doc__ or "")
    own = _argument_entries(doc)
    base = [
        name
        for name in inspect.signature(Optimizer.__init__).parameters
        if name not in ("self", "learning_rate", "kwargs") and name not in own
    ]
    # The shared entries state the base class's defaults: a class that changes one (Muon's
    # `weight_decay`) documents that argument itself.
    ours = inspect.signature(cls.__dict__.get("__init__", cls)).parameters
    theirs = inspect.signature(Optimizer.__init__).parameters
    changed = [
        n for n in base if n != "name" and n in ours and ours[n].default != theirs[n].default
    ]
    if changed:
        raise TypeError(
            f"`{cls.__qualname__}` changes the default of {changed}: its docstring must "
            "document them itself"
        )
    expansions = {BASE_ARGUMENTS_PLACEHOLDER: base, KWARGS_PLACEHOLDER: ["kwargs"]}
    lines = []
    for line in doc.split("\n"):
        names = expansions.get(line.strip())
        if names is None:
            if _PLACEHOLDER_LINE.fullmatch(line):
                raise TypeError(f"`{cls.__qualname__}`'s docstring has an unknown placeholder")
            lines.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        lines += [indent + entry for name in names for entry in shared[name]]
    cls.__doc__ = "\n".join(lines)


def check_base_arguments(
    gradient_accumulation_steps: Any,
    use_ema: bool,
    ema_momentum: Any,
    ema_overwrite_frequency: Any,
    clipnorm: Any,
    clipvalue: Any,
    global_clipnorm: Any,
) -> None:
    """Keras's checks of the base class's arguments, with its messages (a ValueError)."""
    if gradient_accumulation_steps:
        # The kernels take an integer step count, hence the isinstance check Keras lacks.
        if (
            not isinstance(gradient_accumulation_steps, (int, np.integer))
            or not gradient_accumulation_steps >= 2
        ):
            raise ValueError(
                "`gradient_accumulation_steps` must be an integer >= 2. "
                "Received: gradient_accumulation_steps="
                f"{gradient_accumulation_steps}"
            )
        if gradient_accumulation_steps > MAX_ACCUMULATION_STEPS:
            raise ValueError(
                "`gradient_accumulation_steps` must be at most 2**32 - 1 (the kernels "
                "count in 32 bits). Received: gradient_accumulation_steps="
                f"{gradient_accumulation_steps}"
            )
    if use_ema:
        if ema_momentum > 1 or ema_momentum < 0:
            raise ValueError(
                f"`ema_momentum` must be in the range [0, 1]. Received: ema_momentum={ema_momentum}"
            )
        if ema_overwrite_frequency and (
            not isinstance(ema_overwrite_frequency, int) or ema_overwrite_frequency < 1
        ):
            raise ValueError(
                "`ema_overwrite_frequency` must be an integer >= 1 or "
                "None. Received: ema_overwrite_frequency="
                f"{ema_overwrite_frequency}"
            )
    if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
        raise ValueError(
            "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can "
            f"be set. Received: clipnorm={clipnorm}, "
            f"clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
        )


def default_argument(cls: type, argument: str) -> Any:
    """The default object of `argument` in the most derived `__init__` signature that has one.

    Keras 2's `lr=` may only replace a `learning_rate` the caller did not give; the default is
    compared by identity, which a value the caller typed can never share.
    """
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameter = inspect.signature(init).parameters.get(argument)
        if parameter is not None:
            return parameter.default
    return inspect.Parameter.empty


def keras2_arguments(cls: type, learning_rate: Any, kwargs: Dict[str, Any]) -> Tuple[Any, Any]:
    """The learning rate and Keras 2's `decay` from the base class's `**kwargs`, which take
    only Keras 2's spellings: `lr` (an alias of `learning_rate`, refused alongside it) and
    `decay` (a float >= 0). Anything else is a ValueError."""
    if "lr" in kwargs:
        lr = kwargs.pop("lr")
        if learning_rate is not default_argument(cls, "learning_rate"):
            raise ValueError(
                "Both `learning_rate` and its Keras 2 alias `lr` were given; pass only "
                f"`learning_rate`. Received: learning_rate={learning_rate}, lr={lr}"
            )
        learning_rate = lr
    decay = kwargs.pop("decay", None)
    if decay is not None and (not is_number(decay) or not math.isfinite(decay) or decay < 0):
        raise ValueError(f"Argument `decay` must be a float >= 0. Received: decay={decay}")
    if kwargs:
        raise ValueError(f"Argument(s) not recognized: {kwargs}")
    return learning_rate, decay


# Per-process counters behind automatic names ("adam", "adam_1", ...), as Keras's `uniquify`.
_NAME_UIDS: Dict[str, int] = collections.defaultdict(int)


def _to_snake_case(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def auto_name(class_name: str) -> str:
    """A new automatic name from the class name: "adam", "adam_1", ... (Keras's `uniquify`)."""
    prefix = _to_snake_case(class_name)
    uid = _NAME_UIDS[prefix]
    _NAME_UIDS[prefix] += 1
    return prefix if uid == 0 else f"{prefix}_{uid}"


def _same(value: Any, default: Any) -> bool:
    if default is None and isinstance(value, (list, tuple)) and not value:
        return True  # an empty list kept for None (Muon's `exclude_layers`)
    if value is default:
        return True
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # an object whose comparison raises
        return False


def constructor_repr(obj: Any, config: Dict[str, Any]) -> str:
    """`Class(argument=value, ...)`: the constructor call that makes `obj`, with the arguments
    of `config` that differ from the constructor's defaults (every required one), in the
    signature's order, then the keys that only `**kwargs` takes (Keras 2's `decay`). A value
    that is a serialized object in `config` (a wrapper's optimizer) is shown as the object the
    attribute of the same name holds; an automatic `name` is left out.

    Args:
        obj: an optimizer, an `OptimizerMap` or a schedule.
        config: its `get_config()`, with any value replaced by what should be shown.
    """
    cls = type(obj)
    shown = []
    seen = set()
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            continue
        key = parameter.name
        seen.add(key)
        if key not in config:
            continue
        value = config[key]
        if isinstance(value, dict) and "class_name" in value and hasattr(obj, key):
            value = getattr(obj, key)
        default = parameter.default
        if default is not inspect.Parameter.empty and _same(value, default):
            continue
        if key == "name" and (
            value is None or re.fullmatch(_to_snake_case(cls.__name__) + r"(_\d+)?", value)
        ):
            continue
        shown.append(f"{key}={value!r}")
    shown += [f"{key}={value!r}" for key, value in config.items() if key not in seen]
    return f"{cls.__name__}({', '.join(shown)})"
