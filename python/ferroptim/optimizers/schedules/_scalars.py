"""NumPy scalar arithmetic of the schedules: Keras's dtypes, casts and promotion rules, XLA's
fused multiply-add, and the conversion of NumPy scalars back to Python ones for configs."""

import math
from typing import Any

import numpy as np


def compute_dtype(value: Any) -> Any:
    """The NumPy scalar type Keras computes a schedule in, given its initial learning rate.

    Keras uses ``convert_to_tensor(initial_learning_rate).dtype``: floatx (float32) for a Python
    number, the value's own dtype for a NumPy float. A Python int would give Keras an int32
    schedule that truncates every hyperparameter; a learning rate is never meant to be an integer,
    so integers compute in float32 here.
    """
    dtype = getattr(value, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind == "f":
        return np.dtype(dtype).type
    return np.float32


def cast_step(step: Any, dtype: Any) -> Any:
    """``step`` cast to ``dtype``, as Keras's ``ops.cast(step, dtype)``, for arithmetic.

    Constructing a NumPy scalar costs several times a scalar operation, so an integer step is
    returned as a Python float instead: NumPy treats a Python float as a weak scalar that is
    rounded to the dtype of the NumPy scalar it meets (NEP 50), which is the same cast. Every
    caller therefore combines the result with a ``dtype`` scalar before using its value.
    """
    if type(step) is int or isinstance(step, np.integer):
        return float(step)
    if type(step) is dtype:
        return step
    return dtype(step)


def floor(x: Any) -> Any:
    """``floor(x)``: a Python int for a finite ``x`` (cheaper than ``np.floor``), else ``x``."""
    try:
        return math.floor(x)
    except (OverflowError, ValueError):
        return x


def ceil(x: Any) -> Any:
    """``ceil(x)``: a Python int for a finite ``x`` (cheaper than ``np.ceil``), else ``x``."""
    try:
        return math.ceil(x)
    except (OverflowError, ValueError):
        return x


def fused_multiply_add(a: Any, b: Any, c: Any, one: Any) -> Any:
    """``a * b + c`` rounded once to the dtype of ``one``, as XLA's fused multiply-add gives it.

    For float32 and float16 operands the double product is exact, so rounding the double sum to
    the dtype is the single rounding of a true FMA (bar a double-rounding tie, which would need
    the exact sum to sit within 2**-53 of a float32 midpoint). For float64 there is no JAX
    reference (JAX computes in float32 unless x64 is enabled), so it stays two roundings.
    """
    if type(one) is np.float64:
        return a * b + c
    return one * (float(a) * float(b) + float(c))


def scalar_type(value: Any) -> Any:
    """The NumPy scalar type of ``convert_to_tensor(value)`` in Keras (Python int -> int32)."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        return np.dtype(dtype).type
    if isinstance(value, bool):
        return np.bool_
    if isinstance(value, int):
        return np.int32
    return np.float32


def promoted_type(types: Any) -> Any:
    """The dtype a sum of scalars of ``types`` ends in under Keras's promotion (int < float)."""
    floats = [t for t in types if np.dtype(t).kind == "f"]
    pool = floats or list(types)
    return max(pool, key=lambda t: np.dtype(t).itemsize)


def plain(value: Any) -> Any:
    """``value`` with NumPy scalars turned into Python scalars, as Keras's serializer does."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return {
            "class_name": "__numpy__",
            "config": {"value": value.tolist(), "dtype": value.dtype.name},
        }
    if isinstance(value, (np.generic, np.ndarray)):
        return value.item()
    return value
