"""NumPy peers of the element-wise optimizers (Adam's family is in `numpy_adam_steps`): each
step twice, as a NumPy user writes it (`<name>_numpy`: Keras's formulas with temporaries, one
tensor at a time) and as a careful one does (`<name>_numpy_out`: in-place ufuncs over
preallocated scratch).

Every step here and in `numpy_adam_steps` and `numpy_matrix_steps` is called as the
benchmark's registry calls it, `<name>_numpy(params, grads, slots, iterations, **hyper)` and
`<name>_numpy_out(params, grads, slots, scratch, iterations, **hyper)`:

- params: the parameters, updated in place.
- grads: the gradients, one per parameter.
- slots: the optimizer's state, updated in place; each step's docstring gives its layout.
- scratch: per parameter, arrays of the parameter's shape for the step to overwrite; each
  `_out` step's docstring says how many (the record's `scratch_per_tensor`).
- iterations: the steps done before this one (t = iterations + 1), as in Keras.
- hyper: the optimizer's constructor arguments, named as in Keras. A step reads the ones its
  formulas use (the module's `itemgetter`s, one per optimizer, shared by its two steps) and
  ignores the others, e.g. `initial_accumulator_value`, which only sets the slots' start.

Every step must do ferroptim's work: tests/test_bench.py checks that three steps agree with
ferroptim's.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Sequence

import numpy as np

from ferroptim._bench.cases import Arrays

# A step's `slots` and `scratch`: per group, one array per parameter (Nadam's slots end with
# its 0-d scalar, Muon's hold None where a parameter has no such slot).
Slots = Sequence[Any]

# The hyperparameters each optimizer's steps read, in the order they unpack them.
_SGD = itemgetter("learning_rate", "momentum")
_RMSPROP = itemgetter("learning_rate", "rho", "momentum", "epsilon", "centered")
_ADAGRAD = itemgetter("learning_rate", "epsilon")
_ADADELTA = itemgetter("learning_rate", "rho", "epsilon")
_LION = itemgetter("learning_rate", "beta_1", "beta_2")
_FTRL = itemgetter("learning_rate", "learning_rate_power", "beta")


def sgd_numpy(params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any) -> None:
    """SGD with momentum as a NumPy user writes it (keras/src/optimizers/sgd.py order).

    Slots: `[momentums]`, one array per parameter, updated in place.
    """
    learning_rate, momentum = _SGD(hyper)
    del iterations
    (momentums,) = slots
    for p, g, m in zip(params, grads, momentums):
        m[...] = m * momentum - g * learning_rate
        p += m


def sgd_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """SGD with momentum in in-place ufuncs over one scratch array per parameter (no
    temporaries)."""
    learning_rate, momentum = _SGD(hyper)
    del iterations
    (momentums,) = slots
    for p, g, m, (s,) in zip(params, grads, momentums, scratch):
        np.multiply(g, learning_rate, out=s)
        m *= momentum
        m -= s
        p += m


def rmsprop_numpy(
    params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any
) -> None:
    """RMSprop as a NumPy user writes it (keras/src/optimizers/rmsprop.py order: epsilon
    inside the square root).

    Slots: `[velocities]`, then `momentums` if momentum > 0, then `average_gradients` if
    centered (Keras's three groups), each one array per parameter, updated in place.
    """
    learning_rate, rho, momentum, epsilon, centered = _RMSPROP(hyper)
    del iterations
    velocities = slots[0]
    momentums = slots[1] if momentum > 0 else None
    average_gradients = slots[-1] if centered else None
    for i, (p, g) in enumerate(zip(params, grads)):
        v = velocities[i]
        v[...] = rho * v + (1 - rho) * g * g
        if average_gradients is not None:
            a = average_gradients[i]
            a[...] = rho * a + (1 - rho) * g
            denominator = v - a * a + epsilon
        else:
            denominator = v + epsilon
        increment = learning_rate * g / np.sqrt(denominator)
        if momentums is not None:
            m = momentums[i]
            m[...] = momentum * m + increment
            p -= m
        else:
            p -= increment


def rmsprop_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """RMSprop in in-place ufuncs over one scratch array per parameter (no temporaries)."""
    learning_rate, rho, momentum, epsilon, centered = _RMSPROP(hyper)
    del iterations
    velocities = slots[0]
    momentums = slots[1] if momentum > 0 else None
    average_gradients = slots[-1] if centered else None
    for i, (p, g, (s,)) in enumerate(zip(params, grads, scratch)):
        v = velocities[i]
        v *= rho
        np.multiply(g, g, out=s)
        s *= 1 - rho
        v += s
        if average_gradients is not None:
            a = average_gradients[i]
            a *= rho
            np.multiply(g, 1 - rho, out=s)
            a += s
            np.multiply(a, a, out=s)
            np.subtract(v, s, out=s)
            s += epsilon
        else:
            np.add(v, epsilon, out=s)
        np.sqrt(s, out=s)
        np.divide(g, s, out=s)
        s *= learning_rate
        if momentums is not None:
            m = momentums[i]
            m *= momentum
            m += s
            p -= m
        else:
            p -= s


def adagrad_numpy(
    params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any
) -> None:
    """Adagrad as a NumPy user writes it (keras/src/optimizers/adagrad.py order: epsilon
    inside the square root).

    Slots: `[accumulators]`, one array per parameter, updated in place.
    """
    learning_rate, epsilon = _ADAGRAD(hyper)
    del iterations
    (accumulators,) = slots
    for p, g, acc in zip(params, grads, accumulators):
        acc += g * g
        p -= learning_rate * g / np.sqrt(acc + epsilon)


def adagrad_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """Adagrad in in-place ufuncs over one scratch array per parameter (no temporaries)."""
    learning_rate, epsilon = _ADAGRAD(hyper)
    del iterations
    (accumulators,) = slots
    for p, g, acc, (s,) in zip(params, grads, accumulators, scratch):
        np.multiply(g, g, out=s)
        acc += s
        np.add(acc, epsilon, out=s)
        np.sqrt(s, out=s)
        np.divide(g, s, out=s)
        s *= learning_rate
        p -= s


def adadelta_numpy(
    params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any
) -> None:
    """Adadelta as a NumPy user writes it (keras/src/optimizers/adadelta.py order).

    Slots: `[accumulated_grads, accumulated_delta_vars]`, each one array per parameter,
    updated in place.
    """
    learning_rate, rho, epsilon = _ADADELTA(hyper)
    del iterations
    accumulated_grads, accumulated_delta_vars = slots
    for p, g, eg, edx in zip(params, grads, accumulated_grads, accumulated_delta_vars):
        eg[...] = rho * eg + (1 - rho) * g * g
        delta = -np.sqrt(edx + epsilon) * g / np.sqrt(eg + epsilon)
        edx[...] = rho * edx + (1 - rho) * delta * delta
        p += learning_rate * delta


def adadelta_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """Adadelta in in-place ufuncs over two scratch arrays per parameter (no temporaries)."""
    learning_rate, rho, epsilon = _ADADELTA(hyper)
    del iterations
    accumulated_grads, accumulated_delta_vars = slots
    for p, g, eg, edx, (s, t) in zip(
        params, grads, accumulated_grads, accumulated_delta_vars, scratch
    ):
        eg *= rho
        np.multiply(g, g, out=s)
        s *= 1 - rho
        eg += s
        # s = -delta: the sign is folded into the final subtraction.
        np.add(edx, epsilon, out=s)
        np.sqrt(s, out=s)
        s *= g
        np.add(eg, epsilon, out=t)
        np.sqrt(t, out=t)
        s /= t
        edx *= rho
        np.multiply(s, s, out=t)
        t *= 1 - rho
        edx += t
        s *= learning_rate
        p -= s


def lion_numpy(params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any) -> None:
    """Lion as a NumPy user writes it (keras/src/optimizers/lion.py order).

    Slots: `[momentums]`, one array per parameter, updated in place.
    """
    learning_rate, beta_1, beta_2 = _LION(hyper)
    del iterations
    (momentums,) = slots
    for p, g, m in zip(params, grads, momentums):
        p -= learning_rate * np.sign(m * beta_1 + g * (1 - beta_1))
        m[...] = m * beta_2 + g * (1 - beta_2)


def lion_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """Lion in in-place ufuncs over two scratch arrays per parameter (no temporaries)."""
    learning_rate, beta_1, beta_2 = _LION(hyper)
    del iterations
    (momentums,) = slots
    for p, g, m, (s, t) in zip(params, grads, momentums, scratch):
        np.multiply(m, beta_1, out=s)
        np.multiply(g, 1 - beta_1, out=t)
        s += t
        np.sign(s, out=s)
        s *= learning_rate
        p -= s
        m *= beta_2
        np.multiply(g, 1 - beta_2, out=t)
        m += t


def ftrl_numpy(params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any) -> None:
    """FTRL as a NumPy user writes it (keras/src/optimizers/ftrl.py order); the parameters are
    replaced in place.

    Slots: `[accumulators, linears]`, each one array per parameter, updated in place.
    """
    learning_rate, learning_rate_power, beta = _FTRL(hyper)
    del iterations
    power = -learning_rate_power
    l1 = hyper["l1_regularization_strength"]
    l2 = hyper["l2_regularization_strength"] + beta / (2 * learning_rate)
    l2_shrinkage_regularization_strength = hyper["l2_shrinkage_regularization_strength"]
    accumulators, linears = slots
    for p, g, n, z in zip(params, grads, accumulators, linears):
        grad_to_use = g + 2 * l2_shrinkage_regularization_strength * p
        new_n = n + g * g
        sigma = (new_n**power - n**power) / learning_rate
        z += grad_to_use - sigma * p
        quadratic = new_n**power / learning_rate + 2 * l2
        p[...] = (np.clip(z, -l1, l1) - z) / quadratic
        n[...] = new_n


def _power_out(x: np.ndarray, power: float, out: np.ndarray) -> None:
    # `x ** 0.5` takes NumPy's square-root fast path, `np.power(x, 0.5, out=)` does not: a
    # careful user calls np.sqrt for the default learning_rate_power.
    if power == 0.5:
        np.sqrt(x, out=out)
    else:
        np.power(x, power, out=out)


def ftrl_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """FTRL in in-place ufuncs over two scratch arrays per parameter (no temporaries)."""
    learning_rate, learning_rate_power, beta = _FTRL(hyper)
    del iterations
    power = -learning_rate_power
    l1 = hyper["l1_regularization_strength"]
    l2 = hyper["l2_regularization_strength"] + beta / (2 * learning_rate)
    shrinkage = 2 * hyper["l2_shrinkage_regularization_strength"]
    accumulators, linears = slots
    for p, g, n, z, (s, t) in zip(params, grads, accumulators, linears, scratch):
        _power_out(n, power, t)
        np.multiply(g, g, out=s)
        n += s
        _power_out(n, power, s)
        # t = grad_to_use - sigma * p = g + p * (2 * l2_shrinkage - (new_n**power -
        # n**power) / learning_rate): the shrinkage joins sigma's factor of p, no scratch.
        t -= s
        t *= 1 / learning_rate
        if shrinkage:
            t += shrinkage
        t *= p
        t += g
        z += t
        s *= 1 / learning_rate
        s += 2 * l2
        np.clip(z, -l1, l1, out=t)
        t -= z
        np.divide(t, s, out=p)
