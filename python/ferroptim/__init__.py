"""ferroptim: Keras 3 optimizers for NumPy training loops, as fused SIMD multithreaded Rust kernels.

>>> import numpy as np
>>> import ferroptim as fo
>>> w = np.ones(4, dtype=np.float32)
>>> opt = fo.optimizers.Adam(learning_rate=1e-3)
>>> _ = opt.apply_gradients([(np.full(4, 0.5, dtype=np.float32), w)])
"""

import os as _os
import warnings as _warnings

import numpy as _np

from ferroptim import _native, optimizers
from ferroptim._indexed_slices import IndexedSlices

__version__: str = _native.__version__

__all__ = ["IndexedSlices", "optimizers", "set_num_threads", "get_num_threads", "__version__"]

_MAX_THREADS = 1024


def _check_num_threads_variable() -> None:
    """`FERROPTIM_NUM_THREADS` follows `set_num_threads`'s rule (an int from 1 to 1024); the
    kernels ignore any other value and use the number of CPUs, and this says so once."""
    value = _os.environ.get("FERROPTIM_NUM_THREADS")
    if value is None or value.strip() == "":
        return
    digits = value.strip().removeprefix("+")
    # The spellings Rust's integer parser takes (no "1_000", no other scripts' digits).
    n = int(digits) if digits.isascii() and digits.isdigit() else 0
    if not 1 <= n <= _MAX_THREADS:
        _warnings.warn(
            f"FERROPTIM_NUM_THREADS must be an int from 1 to {_MAX_THREADS}. Received: "
            f"{value!r}; using the number of CPUs instead ({_native.get_num_threads()}).",
            RuntimeWarning,
            stacklevel=3,
        )


_check_num_threads_variable()


def set_num_threads(n: int) -> None:
    """Set the number of threads the kernels use.

    Args:
        n: an int from 1 to 1024 (`FERROPTIM_NUM_THREADS` follows the same rule).
    """
    if isinstance(n, bool) or not isinstance(n, (int, _np.integer)):
        raise TypeError(f"`n` must be an int >= 1. Received: n={n!r}")
    if n < 1:
        raise ValueError(f"`n` must be an int >= 1. Received: n={n}")
    _native.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of threads the kernels use."""
    return _native.get_num_threads()
