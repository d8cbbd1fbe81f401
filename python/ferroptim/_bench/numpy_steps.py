"""NumPy peers of the element-wise optimizers (Adam's family is in `numpy_adam_steps`): each
step twice, as a NumPy user writes it (`<name>_numpy`: Keras's formulas with temporaries, one
tensor at a time) and as a careful one does (`<name>_numpy_out`: in-place ufuncs over
preallocated scratch).

Hyperparameters arrive as keyword arguments named as in Keras; `iterations` is the step count
before this step (t = iterations + 1), as in Keras. Every step must do ferroptim's work:
tests/test_bench.py checks that three steps agree with ferroptim's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ferroptim._bench.cases import Arrays


def sgd_numpy(
    params: Arrays,
    grads: Arrays,
    slots: Sequence[Arrays],
    iterations: int,
    *,
    learning_rate: float,
    momentum: float,
) -> None:
    """SGD with momentum as a NumPy user writes it (keras/src/optimizers/sgd.py order).

    Args:
        params: parameters, updated in place.
        grads: gradients, one per parameter.
        slots: `[momentums]`, one array per parameter, updated in place.
        iterations: steps done before this one (unused: SGD has no step-dependent scalar).
        learning_rate: the step size.
        momentum: the momentum coefficient.
    """
    del iterations
    (momentums,) = slots
    for p, g, m in zip(params, grads, momentums):
        m[...] = m * momentum - g * learning_rate
        p += m


def sgd_numpy_out(
    params: Arrays,
    grads: Arrays,
    slots: Sequence[Arrays],
    scratch: Sequence[Arrays],
    iterations: int,
    *,
    learning_rate: float,
    momentum: float,
) -> None:
    """SGD with momentum in in-place ufuncs over preallocated scratch (no temporaries).

    Args:
        params, grads, slots, iterations, learning_rate, momentum: as in `sgd_numpy`.
        scratch: per parameter, `[s]`: one array of the parameter's shape to overwrite.
    """
    del iterations
    (momentums,) = slots
    for p, g, m, (s,) in zip(params, grads, momentums, scratch):
        np.multiply(g, learning_rate, out=s)
        m *= momentum
        m -= s
        p += m


def rmsprop_numpy(
    params: Arrays,
    grads: Arrays,
    slots: Sequence[Arrays],
    iterations: int,
    *,
    learning_rate: float,
    rho: float,
    momentum: float,
    epsilon: float,
    centered: bool,
) -> None:
    """RMSprop as a NumPy user writes it (keras/src/optimizers/rmsprop.py order: epsilon
    inside the square root).

    Args:
        params: parameters, updated in place.
        grads: gradients, one per parameter.
        slots: `[velocities]`, then `momentums` if momentum > 0, then `average_gradients` if
            centered (Keras's three groups), each one array per parameter, updated in place.
        iterations: steps done before this one (unused: RMSprop has no bias correction).
        learning_rate, rho, momentum, epsilon, centered: Keras's RMSprop hyperparameters.
    """
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
    params: Arrays,
    grads: Arrays,
    slots: Sequence[Arrays],
    scratch: Sequence[Arrays],
    iterations: int,
    *,
    learning_rate: float,
    rho: float,
    momentum: float,
    epsilon: float,
    centered: bool,
) -> None:
    """RMSprop in in-place ufuncs over preallocated scratch (no temporaries).

    Args:
        params, grads, slots, iterations, learning_rate, rho, momentum, epsilon, centered: as in
            `rmsprop_numpy`.
        scratch: per parameter, `[s]`: one array of the parameter's shape to overwrite.
    """
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
    params: Arrays,
    grads: Arrays,
    slots: Sequence[Arrays],
    iterations: int,
    *,
    learning_rate: float,
    initial_accumulator_value: float,
    epsilon: float,
) -> None:
    """Adagrad as a NumPy user writes it (keras/src/optimizers/adagrad.py order: epsilon
    inside the square root).

    Args:
        params: parameters, updated in place.
        grads: gradients, one per parameter.
        slots: `[accumulators]`, one array per parameter, updated in place.
        iterations: steps done before this one (unused).
        learning_rate, epsilon: Keras's Adagrad hyperparameters.
        initial_accumulator_value: unused here: it is the accumulators' initial value.
    """
    del iterations, initial_accumulator_value
    (accumulators,) = slots
    for p, g, acc in zip(params, grads, accumulators):
        acc += g * g
        p -= learning_rate * g / np.sqrt(acc + epsilon)


def adagrad_numpy_out(
    params: Arrays,
    grads: Arrays,
    slots: Sequence[Arrays],
    scratch: Sequence[Arrays],
    iterations: int,
    *,
    learning_rate: float,
    initial_accumulator_value: float,
    epsilon: float,
) -> None:
    """Adagrad in in-place ufuncs over preallocated scratch (no temporaries).

    Args:
        params, grads, slots, iterations, learning_rate, initial_accumulator_value, epsilon:
            as in `adagrad_numpy`.
        scratch: per parameter, `[s]`: one array of the parameter's shape to overwrite.
    """
    del iterations, initial_accumulator_value
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
    params: Arrays,
    grads: Arrays,
    slots: Sequence[Arrays],
    iterations: int,
    *,
    learning_rate: float,
    rho: float,
    epsilon: float,
) -> None:
    """Adadelta as a NumPy user writes it (keras/src/optimizers/adadelta.py order).

    Args:
        params: parameters, updated in place.
        grads: gradients, one per parameter.
        slots: `[accumulated_grads, accumulated_delta_vars]`, each one array per parameter,
            updated in place.
        iterations: steps done before this one (unused).
        learning_rate, rho, epsilon: Keras's Adadelta hyperparameters.
    """
    del iterations
    accumulated_grads, accumulated_delta_vars = slots
    for p, g, eg, edx in zip(params, grads, accumulated_grads, accumulated_delta_vars):
        eg[...] = rho * eg + (1 - rho) * g * g
        delta = -np.sqrt(edx + epsilon) * g / np.sqrt(eg + epsilon)
        edx[...] = rho * edx + (1 - rho) * delta * delta
        p += learning_rate * delta


def adadelta_numpy_out(
    params: Arrays,
    grads: Arrays,
    slots: Sequence[Arrays],
    scratch: Sequence[Arrays],
    iterations: int,
    *,
    learning_rate: float,
    rho: float,
    epsilon: float,
) -> None:
    """Adadelta in in-place ufuncs over preallocated scratch (no temporaries).

    Args:
        params, grads, slots, iterations, learning_rate, rho, epsilon: as in `adadelta_numpy`.
        scratch: per parameter, `[s, t]`: two arrays of the parameter's shape to overwrite.
    """
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


def lion_numpy(
    params: Arrays,
    grads: Arrays,
    slots: Sequence[Arrays],
    iterations: int,
    *,
    learning_rate: float,
    beta_1: float,
    beta_2: float,
) -> None:
    """Lion as a NumPy user writes it (keras/src/optimizers/lion.py order).

    Args:
        params: parameters, updated in place.
        grads: gradients, one per parameter.
        slots: `[momentums]`, one array per parameter, updated in place.
        iterations: steps done before this one (unused).
        learning_rate, beta_1, beta_2: Keras's Lion hyperparameters.
    """
    del iterations
    (momentums,) = slots
    for p, g, m in zip(params, grads, momentums):
        p -= learning_rate * np.sign(m * beta_1 + g * (1 - beta_1))
        m[...] = m * beta_2 + g * (1 - beta_2)


def lion_numpy_out(
    params: Arrays,
    grads: Arrays,
    slots: Sequence[Arrays],
    scratch: Sequence[Arrays],
    iterations: int,
    *,
    learning_rate: float,
    beta_1: float,
    beta_2: float,
) -> None:
    """Lion in in-place ufuncs over preallocated scratch (no temporaries).

    Args:
        params, grads, slots, iterations, learning_rate, beta_1, beta_2: as in `lion_numpy`.
        scratch: per parameter, `[s, t]`: two arrays of the parameter's shape to overwrite.
    """
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


def ftrl_numpy(
    params: Arrays,
    grads: Arrays,
    slots: Sequence[Arrays],
    iterations: int,
    *,
    learning_rate: float,
    learning_rate_power: float,
    initial_accumulator_value: float,
    l1_regularization_strength: float,
    l2_regularization_strength: float,
    l2_shrinkage_regularization_strength: float,
    beta: float,
) -> None:
    """FTRL as a NumPy user writes it (keras/src/optimizers/ftrl.py order).

    Args:
        params: parameters, replaced in place.
        grads: gradients, one per parameter.
        slots: `[accumulators, linears]`, each one array per parameter, updated in place.
        iterations: steps done before this one (unused).
        learning_rate, learning_rate_power, l1_regularization_strength,
        l2_regularization_strength, l2_shrinkage_regularization_strength, beta: Keras's Ftrl
            hyperparameters.
        initial_accumulator_value: unused here: it is the accumulators' initial value.
    """
    del iterations, initial_accumulator_value
    power = -learning_rate_power
    l1 = l1_regularization_strength
    l2 = l2_regularization_strength + beta / (2 * learning_rate)
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
    params: Arrays,
    grads: Arrays,
    slots: Sequence[Arrays],
    scratch: Sequence[Arrays],
    iterations: int,
    *,
    learning_rate: float,
    learning_rate_power: float,
    initial_accumulator_value: float,
    l1_regularization_strength: float,
    l2_regularization_strength: float,
    l2_shrinkage_regularization_strength: float,
    beta: float,
) -> None:
    """FTRL in in-place ufuncs over preallocated scratch (no temporaries).

    Args:
        params, grads, slots, iterations, learning_rate, learning_rate_power,
        initial_accumulator_value, l1_regularization_strength, l2_regularization_strength,
        l2_shrinkage_regularization_strength, beta: as in `ftrl_numpy`.
        scratch: per parameter, `[s, t]`: two arrays of the parameter's shape to overwrite.
    """
    del iterations, initial_accumulator_value
    power = -learning_rate_power
    l1 = l1_regularization_strength
    l2 = l2_regularization_strength + beta / (2 * learning_rate)
    shrinkage = 2 * l2_shrinkage_regularization_strength
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
