"""`IndexedSlices`: a row-sparse gradient, as Keras and TensorFlow name it."""

from __future__ import annotations

import operator
from typing import Any, Tuple

import numpy as np

__all__ = ["IndexedSlices"]


def _shape(shape: Tuple[int, ...]) -> str:
    return str(tuple(shape))


class IndexedSlices:
    """A gradient that is zero outside a few rows of its variable: an embedding table's, whose
    batch looked up only those rows (Keras's and TensorFlow's `IndexedSlices`).

    It stands for the dense gradient `np.zeros(dense_shape)` with `values[k]` added at row
    `indices[k]`; a row that appears several times takes the sum of its values, in order of
    appearance (what `to_dense` computes). It is accepted wherever a gradient is, by every
    optimizer, next to dense gradients in the same step.

    By default a step with it gives the numbers of the dense step on `to_dense()` (Keras's), bit
    for bit, without creating that dense gradient: rules that leave a row with a zero gradient as
    it is (SGD without momentum, Adagrad) update only the given rows; the others, whose moments
    decay everywhere, still pass over the whole variable. The momentum-based optimizers take
    `lazy=True` to update only the given rows (a different algorithm, that of TensorFlow
    Addons' `LazyAdam` and PyTorch's `SparseAdam`).

    The arrays are read at each step, and checked there before anything changes: the indices
    must be in `range(dense_shape[0])` and not empty, `dense_shape` must be the variable's shape.

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> table = np.ones((4, 2), dtype=np.float32)
        >>> rows = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
        >>> g = fo.IndexedSlices(rows, [3, 0], table.shape)
        >>> g.to_dense()
        array([[3., 4.],
               [0., 0.],
               [0., 0.],
               [1., 2.]], dtype=float32)
        >>> fo.optimizers.SGD(learning_rate=0.5).apply([g], [table])
        >>> table
        array([[-0.5, -1. ],
               [ 1. ,  1. ],
               [ 1. ,  1. ],
               [ 0.5,  0. ]], dtype=float32)

    Args:
        values: the rows' values, an array of shape `(len(indices),) + dense_shape[1:]` of a
            real dtype (float32 or float64 are read as they are, other real dtypes as float64).
        indices: the row of each entry of `values`, a 1-D integer array.
        dense_shape: the shape of the dense gradient, which is the variable's.
    """

    __slots__ = ("values", "indices", "dense_shape")

    def __init__(self, values: Any, indices: Any, dense_shape: Any):
        values = np.asarray(values)
        indices = np.asarray(indices)
        try:
            shape = tuple(operator.index(n) for n in dense_shape)
        except TypeError:
            raise TypeError(
                f"`dense_shape` must be a tuple of ints. Received: dense_shape={dense_shape!r}"
            ) from None
        if not shape or min(shape) < 0:
            raise ValueError(
                "`dense_shape` must have at least one axis and no negative length. "
                f"Received: dense_shape={shape}"
            )
        if indices.dtype.kind not in "iu":
            raise TypeError(f"`indices` must be integers. Received dtype {indices.dtype}")
        if indices.ndim != 1:
            raise ValueError(f"`indices` must be 1-D. Received shape {_shape(indices.shape)}")
        if values.dtype.kind not in "fiu":
            raise TypeError(f"`values` must be real numbers. Received dtype {values.dtype}")
        expected = (len(indices),) + shape[1:]
        if values.shape != expected:
            raise ValueError(
                f"`values` has shape {_shape(values.shape)} but (len(indices),) + "
                f"dense_shape[1:] is {_shape(expected)}"
            )
        self.values = values
        self.indices = indices
        self.dense_shape = shape

    @property
    def dtype(self) -> np.dtype:
        """The dtype of `values`."""
        dtype: np.dtype = self.values.dtype
        return dtype

    @property
    def shape(self) -> Tuple[int, ...]:
        """The dense shape (as TensorFlow's `IndexedSlices.shape`)."""
        return self.dense_shape

    def to_dense(self) -> np.ndarray:
        """The dense gradient: zeros, with each entry of `values` added at its row in order."""
        dense = np.zeros(self.dense_shape, self.values.dtype)
        np.add.at(dense, self.indices, self.values)
        return dense

    def __repr__(self) -> str:
        return (
            f"IndexedSlices(rows={len(self.indices)}, dense_shape={self.dense_shape}, "
            f"dtype={self.values.dtype})"
        )


def check_sparse_gradient(g: IndexedSlices, param: np.ndarray, name: str) -> None:
    """Raise what a native call raises about the `IndexedSlices` gradient `g` of `param`, for a
    step of several calls checked before the first one writes."""
    what = f"the IndexedSlices gradient '{name}'"
    values, indices = g.values, g.indices
    if not isinstance(values, np.ndarray) or not isinstance(indices, np.ndarray):
        raise TypeError(f"{what}: `values` and `indices` must be numpy.ndarray")
    if tuple(g.dense_shape) != param.shape:
        raise ValueError(
            f"{what} has dense_shape {_shape(g.dense_shape)} but the parameter has shape "
            f"{_shape(param.shape)}"
        )
    if param.ndim == 0:
        raise ValueError(f"{what}: a scalar parameter has no rows to index")
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{what}: `indices` must be integers, got dtype {indices.dtype}")
    if indices.ndim != 1:
        raise ValueError(f"{what}: `indices` must be 1-D, got shape {_shape(indices.shape)}")
    if len(indices) == 0:
        raise ValueError(
            f"{what} has no rows (empty `indices`); pass None for a variable without a gradient"
        )
    low, high = int(indices.min()), int(indices.max())
    if low < 0:
        raise ValueError(f"{what}: index {low} is negative")
    if high >= param.shape[0]:
        raise ValueError(f"{what}: index {high} is out of range for {param.shape[0]} rows")
    if values.dtype.kind not in "fiu":
        raise TypeError(f"{what}: `values` has dtype {values.dtype}, which is not real")
    expected = (len(indices),) + param.shape[1:]
    if values.shape != expected:
        raise ValueError(
            f"{what}: `values` has shape {_shape(values.shape)} but (len(indices),) + "
            f"dense_shape[1:] is {_shape(expected)}"
        )
