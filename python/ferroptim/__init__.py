"""ferroptim: Keras 3 optimizers for NumPy training loops, as fused SIMD multithreaded Rust kernels.

>>> import numpy as np
>>> import ferroptim as fo
>>> w = np.ones(4, dtype=np.float32)
>>> opt = fo.optimizers.Adam(learning_rate=1e-3)
>>> _ = opt.apply_gradients([(np.full(4, 0.5, dtype=np.float32), w)])
"""

import numpy as np

from ferroptim import _native
from ferroptim import optimizers

__version__: str = _native.__version__

__all__ = ["optimizers", "set_num_threads", "get_num_threads", "__version__"]


def set_num_threads(n: int) -> None:
    """Set the number of threads the kernels use.

    Args:
        n: an int from 1 to 1024.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"`n` must be an int >= 1. Received: n={n!r}")
    if n < 1:
        raise ValueError(f"`n` must be an int >= 1. Received: n={n}")
    _native.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of threads the kernels use."""
    return _native.get_num_threads()
