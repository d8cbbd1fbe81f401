"""Correctly rounded powers, logs and cosines of NumPy scalars, for the numbers a step derives.

Keras computes a bias correction, Nadam's momentum cache or a schedule value as a tensor
operation in the variable's (or the schedule's) dtype. The same operation through NumPy is not
the same number everywhere: NumPy's float32 ufuncs (``np.power``, ``np.log``, ``np.cos``) take
SIMD approximations that differ between AVX2 and AVX-512 CPUs, and ``**`` on NumPy scalars or
``math.pow`` use the C library's, whose last bit varies between its versions. These helpers
return the correctly rounded result instead (``ferroptim._native.pow_f32`` and friends, plain
IEEE arithmetic in Rust): one well-defined number on every machine.

float16 goes through float32's functions and rounds once more (deterministic, as NumPy's
float16 conversion is exact rounding); any other float dtype through float64's.
"""

from typing import Any, Callable, Tuple

import numpy as np

from ferroptim import _native

__all__ = ["functions_for", "power"]

_FLOAT32 = (_native.pow_f32, _native.log_f32, _native.cos_f32)
_FLOAT64 = (_native.pow_f64, _native.log_f64, _native.cos_f64)


def functions_for(
    dtype: type,
) -> Tuple[Callable[[float, float], float], Callable[[float], float], Callable[[float], float]]:
    """``(pow, log, cos)`` correctly rounded to ``dtype``, each taking and returning Python
    floats (the arguments are rounded to ``dtype`` first, as a tensor op casts them).

    The results are exact values of ``dtype``: ``one * result`` with ``one = dtype(1)`` turns
    one into a NumPy scalar without another rounding.
    """
    if np.dtype(dtype).itemsize <= 4:
        return _FLOAT32
    return _FLOAT64


_POWER = {np.float32: _native.pow_f32, np.float64: _native.pow_f64}


def power(x: Any, y: Any) -> Any:
    """``x ** y`` for a NumPy float scalar ``x``, correctly rounded to ``x``'s dtype (``y`` is
    rounded to that dtype first)."""
    T = type(x)
    function: Callable[[float, float], float]
    function = _POWER.get(T) or functions_for(T)[0]
    return T(function(x, y))
