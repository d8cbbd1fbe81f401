"""The messages of the commonest mistakes in a NumPy training loop, written once so that every
optimizer (and a wrapper that checks its arguments itself) says the same thing.

A message names the variable (its dict key, or its index in a list), its shape as a Python
tuple and its dtype, never its values (a 784x256 array prints 600 characters of numbers and
no name), and says how to fix the call.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, List, NoReturn, Optional, Sequence

import numpy as np

__all__ = [
    "describe",
    "raise_pairs_error",
    "raise_unknown_variable",
    "refuse_key_pairs",
    "warn_missing_gradients",
]

# The package's directory: a warning is attributed to the first frame outside it.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def describe(value: Any) -> str:
    """`shape (784, 256), dtype float32` for an array, its type's name for anything else."""
    if isinstance(value, np.ndarray):
        return f"shape {value.shape}, dtype {value.dtype}"
    return f"a {type(value).__name__}, not a NumPy array"


def _label(labels: Optional[Sequence[str]], k: int) -> str:
    return f"'{labels[k]}'" if labels is not None else f"at index {k}"


def raise_unknown_variable(
    variables: Sequence[Any],
    k: int,
    labels: Optional[Sequence[str]],
    grads: Optional[Sequence[Any]],
    known: Any,
) -> NoReturn:
    """Raise the ValueError for `variables[k]`, which is not a variable the optimizer was built
    on: a swapped call when a gradient is one of its variables, else an array it never saw.

    Args:
        variables: the variables of the call.
        k: the position of the first unknown one.
        labels: the variables' names (a dict's keys), or None to name them by index.
        grads: the gradients of the call, aligned with `variables`, or None.
        known: a function of an object: the name of the built variable it is (identity), or
            None.
    """
    if grads is not None:
        for j, g in enumerate(grads):
            name = known(g)
            if name is not None:
                raise ValueError(
                    f"The gradient {_label(labels, j)} is the optimizer's variable '{name}', "
                    f"and the variable {_label(labels, k)} ({describe(variables[k])}) is not "
                    "one of its variables: the gradients and the variables look swapped. "
                    "`apply_gradients` takes (gradient, variable) pairs, as "
                    "`zip(grads, params)` makes them; `apply` takes `(grads, params)`."
                )
    raise ValueError(
        f"Unknown variable {_label(labels, k)} ({describe(variables[k])}). This optimizer can "
        "only be called for the variables it was originally built with, and was built on "
        "other arrays. Parameters are updated in place, so rebinding a name to a new array "
        "(`w = w * 0.5`) detaches it from the optimizer: update it in place instead "
        "(`w *= 0.5`, `w[...] = ...`). When working with a new set of variables, you should "
        "recreate a new optimizer instance."
    )


def _is_pair(item: Any) -> bool:
    return type(item) in (tuple, list) and len(item) == 2


def raise_pairs_error(grads_and_vars: Any, pairs: List[Any]) -> NoReturn:
    """Raise the TypeError for an `apply_gradients` argument that is not an iterable of
    (gradient, variable) pairs: a single pair, a bare list of gradients, or another item."""
    k = next((k for k, item in enumerate(pairs) if not _is_pair(item)), None)
    if k is None:
        raise TypeError(
            "`apply_gradients` takes an iterable of (gradient, variable) pairs; "
            f"received {type(grads_and_vars).__name__} of {len(pairs)} items that are not "
            "all pairs."
        )
    arrays = all(isinstance(item, np.ndarray) for item in pairs)
    if arrays and type(grads_and_vars) is tuple and len(pairs) == 2:
        raise TypeError(
            "`apply_gradients` takes an iterable of (gradient, variable) pairs and received "
            f"one pair, a tuple of two arrays ({describe(pairs[0])}; {describe(pairs[1])}): "
            "wrap it in a list, `apply_gradients([(g, w)])`. (If these are the gradients of "
            "two variables, pair them with their variables: "
            "`apply_gradients(zip(grads, params))`.)"
        )
    if arrays:
        raise TypeError(
            "`apply_gradients` takes an iterable of (gradient, variable) pairs and received "
            f"{len(pairs)} arrays, gradients without their variables: pair them, "
            "`apply_gradients(zip(grads, params))`, or pass the gradients alone to "
            "`apply(grads)` once the optimizer is built (one per variable, in build order)."
        )
    item = pairs[k]
    shown = describe(item) if isinstance(item, np.ndarray) else repr(item)[:80]
    raise TypeError(
        "`apply_gradients` takes an iterable of (gradient, variable) pairs; the item at "
        f"index {k} is not a pair: {shown}"
    )


def refuse_key_pairs(pairs: List[Any]) -> None:
    """Raise a TypeError if a pair holds a string: `zip(grads, params)` over two dicts pairs
    their keys. Called when a step over `pairs` was refused, to say why."""
    for pair in pairs:
        if isinstance(pair[0], str) or isinstance(pair[1], str):
            raise TypeError(
                "`apply_gradients` received a pair of strings "
                f"({pair[0]!r}, {pair[1]!r}): `zip` over two dicts pairs their keys. For "
                "dicts, call `optimizer.apply(grads, params)`, which matches them by name, or "
                "zip their values: `zip(grads.values(), params.values())` (same key order)."
            )


def _outside_stacklevel() -> int:
    """The `stacklevel` of the first caller outside the package, for `warnings.warn` called by
    the caller of this function (a step reaches its warning through wrappers and the step
    guard, at a depth that varies)."""
    frame = sys._getframe(2)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn_missing_gradients(names: List[str]) -> None:
    """Keras's warning about variables without a gradient in a step (a None gradient, or a
    dict of gradients without their key), attributed to the caller's line."""
    warnings.warn(
        f"Gradients do not exist for variables {names} when minimizing the loss. If using "
        "`model.compile()`, did you forget to provide a `loss` argument? (A None gradient, "
        "or a dict of gradients without the variable's key, leaves the variable out of the "
        "step.)",
        stacklevel=_outside_stacklevel(),
    )
