"""NumPy peers of the sparse benchmark (`sparse`): an optimizer step on an embedding table whose
gradient is a few rows (`ferroptim.IndexedSlices`), as a careful NumPy user writes it.

Every step is called as `<name>_sparse_numpy(table, indices, values, slots, scratch,
iterations, **hyper)`:

- table: the parameter, updated in place.
- indices, values: the gradient's rows, as `IndexedSlices` holds them (a row may appear more
  than once: its values add up).
- slots: the optimizer's state, arrays of the table's shape updated in place (Keras's slot
  order).
- scratch: arrays of the table's shape for the step to overwrite (empty for the steps that
  touch the given rows only; the record's `scratch` says how many).
- iterations: the steps done before this one (t = iterations + 1), as in Keras.
- hyper: the optimizer's constructor arguments, named as in Keras.

Each step first sums the rows that repeat (`summed_rows`), then updates the table and its
slots at those rows by fancy indexing, in float32 and in Keras's order of operations; the
per-step scalars (Adam's alpha) are Python floats. tests/test_bench.py checks that every step
gives ferroptim's numbers.
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import Any, Tuple

import numpy as np

from ferroptim._bench.cases import Arrays

# The hyperparameters each step reads, in the order it unpacks them.
_SGD = itemgetter("learning_rate")
_ADAGRAD = itemgetter("learning_rate", "epsilon")
_ADAM = itemgetter("learning_rate", "beta_1", "beta_2", "epsilon")


def summed_rows(indices: np.ndarray, values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a row-sparse gradient, ascending, and each one's summed values.

    `np.add.at` adds the values of a repeated row in their order of appearance, starting from
    zero: the sums the dense gradient `IndexedSlices.to_dense()` holds, bit for bit.

    Args:
        indices: the row of each entry of `values`.
        values: one row of values per index.
    """
    rows, inverse = np.unique(indices, return_inverse=True)
    summed = np.zeros((len(rows),) + values.shape[1:], values.dtype)
    np.add.at(summed, inverse, values)
    return rows, summed


def sgd_sparse_numpy(
    table: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    slots: Arrays,
    scratch: Arrays,
    iterations: int,
    **hyper: Any,
) -> None:
    """SGD without momentum (keras/src/optimizers/sgd.py: `w - g * lr`) on the given rows: a
    zero gradient leaves the others as they are. No slots."""
    learning_rate = _SGD(hyper)
    del slots, scratch, iterations
    rows, g = summed_rows(indices, values)
    table[rows] -= g * learning_rate


def adagrad_sparse_numpy(
    table: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    slots: Arrays,
    scratch: Arrays,
    iterations: int,
    **hyper: Any,
) -> None:
    """Adagrad (keras/src/optimizers/adagrad.py order: epsilon inside the square root) on the
    given rows: a zero gradient leaves the others and their accumulators as they are.

    Slots: `[accumulator]`.
    """
    learning_rate, epsilon = _ADAGRAD(hyper)
    del scratch, iterations
    (accumulator,) = slots
    rows, g = summed_rows(indices, values)
    acc = accumulator[rows]
    acc += g * g
    accumulator[rows] = acc
    table[rows] -= (g * learning_rate) / np.sqrt(acc + epsilon)


def _adam_alpha(learning_rate: float, beta_1: float, beta_2: float, iterations: int) -> float:
    t = iterations + 1
    return learning_rate * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)


def adam_lazy_sparse_numpy(
    table: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    slots: Arrays,
    scratch: Arrays,
    iterations: int,
    **hyper: Any,
) -> None:
    """Lazy Adam (`Adam(lazy=True)`; TensorFlow Addons' `LazyAdam`, PyTorch's `SparseAdam`):
    Keras's Adam on the given rows and their moments alone; the other rows' moments do not
    decay.

    Slots: `[momentum, velocity]`.
    """
    learning_rate, beta_1, beta_2, epsilon = _ADAM(hyper)
    del scratch
    alpha = _adam_alpha(learning_rate, beta_1, beta_2, iterations)
    momentum, velocity = slots
    rows, g = summed_rows(indices, values)
    m, v = momentum[rows], velocity[rows]
    m += (g - m) * (1 - beta_1)
    v += (g * g - v) * (1 - beta_2)
    momentum[rows], velocity[rows] = m, v
    table[rows] -= (m * alpha) / (np.sqrt(v) + epsilon)


def adam_sparse_numpy(
    table: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    slots: Arrays,
    scratch: Arrays,
    iterations: int,
    **hyper: Any,
) -> None:
    """Adam with Keras's numbers: the dense step on the gradient the rows stand for, every
    moment decaying, without building that gradient.

    Outside the rows the gradient is zero, and there Keras's `m + (g - m) * (1 - beta_1)` is
    `m - m * (1 - beta_1)` exactly (likewise for v): the whole table takes that in place through
    the scratch; the given rows, whose moments were read before, take the full rule; then every
    element moves by `(m * alpha) / (sqrt(v) + epsilon)`.

    Slots: `[momentum, velocity]`; scratch: two arrays.
    """
    learning_rate, beta_1, beta_2, epsilon = _ADAM(hyper)
    alpha = _adam_alpha(learning_rate, beta_1, beta_2, iterations)
    momentum, velocity = slots
    s, u = scratch
    rows, g = summed_rows(indices, values)
    m, v = momentum[rows], velocity[rows]
    np.multiply(momentum, 1 - beta_1, out=s)
    momentum -= s
    np.multiply(velocity, 1 - beta_2, out=s)
    velocity -= s
    m += (g - m) * (1 - beta_1)
    v += (g * g - v) * (1 - beta_2)
    momentum[rows], velocity[rows] = m, v
    np.sqrt(velocity, out=s)
    s += epsilon
    np.multiply(momentum, alpha, out=u)
    np.divide(u, s, out=u)
    table -= u
