"""NumPy peers of the element-wise optimizers: each step twice, as a NumPy user writes it
(`<name>_numpy`: Keras's formulas with temporaries, one tensor at a time) and as a careful one
does (`<name>_numpy_out`: in-place ufuncs over preallocated scratch).

Hyperparameters arrive as keyword arguments named as in Keras; `iterations` is the step count
before this step (t = iterations + 1), as in Keras. Every step must do ferroptim's work:
tests/test_bench.py checks that three steps agree with ferroptim's.
"""

from __future__ import annotations

import math
from typing import Any, Sequence, Tuple

import numpy as np

from ferroptim._bench.cases import Arrays


def sgd_numpy(params: Arrays, grads: Arrays, slots: Sequence[Arrays], iterations: int, *,
              learning_rate: float, momentum: float) -> None:
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


def sgd_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Arrays],
                  scratch: Sequence[Arrays], iterations: int, *,
                  learning_rate: float, momentum: float) -> None:
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


def adam_numpy(params: Arrays, grads: Arrays, slots: Sequence[Arrays], iterations: int, *,
               learning_rate: float, beta_1: float, beta_2: float, epsilon: float) -> None:
    """Adam as a NumPy user writes it (keras/src/optimizers/adam.py order, "epsilon hat").

    Args:
        params: parameters, updated in place.
        grads: gradients, one per parameter.
        slots: `[momentums, velocities]`, each one array per parameter, updated in place.
        iterations: steps done before this one.
        learning_rate, beta_1, beta_2, epsilon: Keras's Adam hyperparameters.
    """
    t = iterations + 1
    alpha = learning_rate * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    momentums, velocities = slots
    for p, g, m, v in zip(params, grads, momentums, velocities):
        m += (g - m) * (1 - beta_1)
        v += (g * g - v) * (1 - beta_2)
        p -= (m * alpha) / (np.sqrt(v) + epsilon)


def _adam_moments_out(g: np.ndarray, m: np.ndarray, v: np.ndarray, s: np.ndarray,
                      beta_1: float, beta_2: float) -> None:
    # Adam's two moving averages (Nadam's and Lamb's too) with `out=`: m += (g - m) * (1 -
    # beta_1), v += (g * g - v) * (1 - beta_2), through the scratch s.
    np.subtract(g, m, out=s)
    s *= 1 - beta_1
    m += s
    np.multiply(g, g, out=s)
    s -= v
    s *= 1 - beta_2
    v += s


def adam_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Arrays],
                   scratch: Sequence[Arrays], iterations: int, *,
                   learning_rate: float, beta_1: float, beta_2: float, epsilon: float) -> None:
    """Adam in in-place ufuncs over preallocated scratch (no temporaries).

    Args:
        params, grads, slots, iterations, learning_rate, beta_1, beta_2, epsilon: as in
            `adam_numpy`.
        scratch: per parameter, `[s]`: one array of the parameter's shape to overwrite.
    """
    t = iterations + 1
    alpha = learning_rate * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    momentums, velocities = slots
    for p, g, m, v, (s,) in zip(params, grads, momentums, velocities, scratch):
        _adam_moments_out(g, m, v, s, beta_1, beta_2)
        np.sqrt(v, out=s)
        s += epsilon
        np.divide(m, s, out=s)
        s *= alpha
        p -= s


def rmsprop_numpy(params: Arrays, grads: Arrays, slots: Sequence[Arrays], iterations: int, *,
                  learning_rate: float, rho: float, momentum: float, epsilon: float,
                  centered: bool) -> None:
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


def rmsprop_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Arrays],
                      scratch: Sequence[Arrays], iterations: int, *, learning_rate: float,
                      rho: float, momentum: float, epsilon: float, centered: bool) -> None:
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


def adagrad_numpy(params: Arrays, grads: Arrays, slots: Sequence[Arrays], iterations: int, *,
                  learning_rate: float, initial_accumulator_value: float,
                  epsilon: float) -> None:
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


def adagrad_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Arrays],
                      scratch: Sequence[Arrays], iterations: int, *, learning_rate: float,
                      initial_accumulator_value: float, epsilon: float) -> None:
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


def adadelta_numpy(params: Arrays, grads: Arrays, slots: Sequence[Arrays], iterations: int, *,
                   learning_rate: float, rho: float, epsilon: float) -> None:
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


def adadelta_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Arrays],
                       scratch: Sequence[Arrays], iterations: int, *, learning_rate: float,
                       rho: float, epsilon: float) -> None:
    """Adadelta in in-place ufuncs over preallocated scratch (no temporaries).

    Args:
        params, grads, slots, iterations, learning_rate, rho, epsilon: as in `adadelta_numpy`.
        scratch: per parameter, `[s, t]`: two arrays of the parameter's shape to overwrite.
    """
    del iterations
    accumulated_grads, accumulated_delta_vars = slots
    for p, g, eg, edx, (s, t) in zip(params, grads, accumulated_grads, accumulated_delta_vars,
                                     scratch):
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


def adamax_numpy(params: Arrays, grads: Arrays, slots: Sequence[Arrays], iterations: int, *,
                 learning_rate: float, beta_1: float, beta_2: float, epsilon: float) -> None:
    """Adamax as a NumPy user writes it (keras/src/optimizers/adamax.py order).

    Args:
        params: parameters, updated in place.
        grads: gradients, one per parameter.
        slots: `[momentums, norms]`, each one array per parameter, updated in place.
        iterations: steps done before this one.
        learning_rate, beta_1, beta_2, epsilon: Keras's Adamax hyperparameters.
    """
    t = iterations + 1
    momentums, norms = slots
    for p, g, m, u in zip(params, grads, momentums, norms):
        m += (g - m) * (1 - beta_1)
        u[...] = np.maximum(beta_2 * u, np.abs(g))
        p -= learning_rate * m / ((1 - beta_1**t) * (u + epsilon))


def adamax_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Arrays],
                     scratch: Sequence[Arrays], iterations: int, *, learning_rate: float,
                     beta_1: float, beta_2: float, epsilon: float) -> None:
    """Adamax in in-place ufuncs over preallocated scratch (no temporaries).

    Args:
        params, grads, slots, iterations, learning_rate, beta_1, beta_2, epsilon: as in
            `adamax_numpy`.
        scratch: per parameter, `[s]`: one array of the parameter's shape to overwrite.
    """
    t = iterations + 1
    step_size = learning_rate / (1 - beta_1**t)
    momentums, norms = slots
    for p, g, m, u, (s,) in zip(params, grads, momentums, norms, scratch):
        np.subtract(g, m, out=s)
        s *= 1 - beta_1
        m += s
        u *= beta_2
        np.abs(g, out=s)
        np.maximum(u, s, out=u)
        np.add(u, epsilon, out=s)
        np.divide(m, s, out=s)
        s *= step_size
        p -= s


def _nadam_scalars(u_product: np.ndarray, iterations: int, beta_1: float,
                   beta_2: float) -> Tuple[float, float, float, float, float]:
    # Once per step, before any tensor: the momentum-cache product advances (kept in the
    # parameters' dtype, as Keras keeps it).
    t = iterations + 1
    u_t = beta_1 * (1 - 0.5 * 0.96**t)
    u_t_1 = beta_1 * (1 - 0.5 * 0.96 ** (t + 1))
    u_product[()] = u_product * u_t
    u_product_t = float(u_product)
    return u_t, u_t_1, u_product_t, u_product_t * u_t_1, beta_2**t


def nadam_numpy(params: Arrays, grads: Arrays, slots: Sequence[Any], iterations: int, *,
                learning_rate: float, beta_1: float, beta_2: float, epsilon: float) -> None:
    """Nadam as a NumPy user writes it (keras/src/optimizers/nadam.py order).

    Args:
        params: parameters, updated in place.
        grads: gradients, one per parameter.
        slots: `[momentums, velocities, u_product]`: two lists of one array per parameter and
            the 0-d momentum-cache product, all updated in place.
        iterations: steps done before this one.
        learning_rate, beta_1, beta_2, epsilon: Keras's Nadam hyperparameters.
    """
    momentums, velocities, u_product = slots
    u_t, u_t_1, u_product_t, u_product_t_1, beta_2_power = _nadam_scalars(
        u_product, iterations, beta_1, beta_2)
    for p, g, m, v in zip(params, grads, momentums, velocities):
        m += (g - m) * (1 - beta_1)
        v += (g * g - v) * (1 - beta_2)
        m_hat = u_t_1 * m / (1 - u_product_t_1) + (1 - u_t) * g / (1 - u_product_t)
        v_hat = v / (1 - beta_2_power)
        p -= (m_hat * learning_rate) / (np.sqrt(v_hat) + epsilon)


def nadam_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Any],
                    scratch: Sequence[Arrays], iterations: int, *, learning_rate: float,
                    beta_1: float, beta_2: float, epsilon: float) -> None:
    """Nadam in in-place ufuncs over preallocated scratch (no temporaries).

    Args:
        params, grads, slots, iterations, learning_rate, beta_1, beta_2, epsilon: as in
            `nadam_numpy`.
        scratch: per parameter, `[s, t]`: two arrays of the parameter's shape to overwrite.
    """
    momentums, velocities, u_product = slots
    u_t, u_t_1, u_product_t, u_product_t_1, beta_2_power = _nadam_scalars(
        u_product, iterations, beta_1, beta_2)
    m_scale = u_t_1 / (1 - u_product_t_1)
    g_scale = (1 - u_t) / (1 - u_product_t)
    v_scale = 1 / (1 - beta_2_power)
    for p, g, m, v, (s, t) in zip(params, grads, momentums, velocities, scratch):
        _adam_moments_out(g, m, v, s, beta_1, beta_2)
        np.multiply(m, m_scale, out=s)
        np.multiply(g, g_scale, out=t)
        s += t
        np.multiply(v, v_scale, out=t)
        np.sqrt(t, out=t)
        t += epsilon
        s /= t
        s *= learning_rate
        p -= s


def lion_numpy(params: Arrays, grads: Arrays, slots: Sequence[Arrays], iterations: int, *,
               learning_rate: float, beta_1: float, beta_2: float) -> None:
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


def lion_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Arrays],
                   scratch: Sequence[Arrays], iterations: int, *, learning_rate: float,
                   beta_1: float, beta_2: float) -> None:
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


def ftrl_numpy(params: Arrays, grads: Arrays, slots: Sequence[Arrays], iterations: int, *,
               learning_rate: float, learning_rate_power: float,
               initial_accumulator_value: float, l1_regularization_strength: float,
               l2_regularization_strength: float, l2_shrinkage_regularization_strength: float,
               beta: float) -> None:
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


def ftrl_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Arrays],
                   scratch: Sequence[Arrays], iterations: int, *, learning_rate: float,
                   learning_rate_power: float, initial_accumulator_value: float,
                   l1_regularization_strength: float, l2_regularization_strength: float,
                   l2_shrinkage_regularization_strength: float, beta: float) -> None:
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


def lamb_numpy(params: Arrays, grads: Arrays, slots: Sequence[Arrays], iterations: int, *,
               learning_rate: float, beta_1: float, beta_2: float, epsilon: float) -> None:
    """Lamb as a NumPy user writes it (keras/src/optimizers/lamb.py order).

    Args:
        params: parameters, updated in place.
        grads: gradients, one per parameter.
        slots: `[momentums, velocities]`, each one array per parameter, updated in place.
        iterations: steps done before this one.
        learning_rate, beta_1, beta_2, epsilon: Keras's Lamb hyperparameters.
    """
    t = iterations + 1
    momentums, velocities = slots
    for p, g, m, v in zip(params, grads, momentums, velocities):
        m += (g - m) * (1 - beta_1)
        v += (g * g - v) * (1 - beta_2)
        update = (m / (1 - beta_1**t)) / (np.sqrt(v / (1 - beta_2**t)) + epsilon)
        w_norm = np.sqrt(np.sum(p**2))
        r_norm = np.sqrt(np.sum(update**2))
        ratio = w_norm / r_norm if w_norm > 0 and r_norm > 0 else 1.0
        p -= ratio * learning_rate * update


def lamb_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Arrays],
                   scratch: Sequence[Arrays], iterations: int, *, learning_rate: float,
                   beta_1: float, beta_2: float, epsilon: float) -> None:
    """Lamb in in-place ufuncs over preallocated scratch (no temporaries; the norms are BLAS
    dot products).

    Args:
        params, grads, slots, iterations, learning_rate, beta_1, beta_2, epsilon: as in
            `lamb_numpy`.
        scratch: per parameter, `[s]`: one array of the parameter's shape to overwrite.
    """
    t = iterations + 1
    m_scale = 1 / (1 - beta_1**t)
    v_scale = 1 / (1 - beta_2**t)
    momentums, velocities = slots
    for p, g, m, v, (s,) in zip(params, grads, momentums, velocities, scratch):
        _adam_moments_out(g, m, v, s, beta_1, beta_2)
        np.multiply(v, v_scale, out=s)
        np.sqrt(s, out=s)
        s += epsilon
        np.divide(m, s, out=s)
        s *= m_scale
        flat_p, flat_s = p.reshape(-1), s.reshape(-1)
        w_norm = math.sqrt(float(np.dot(flat_p, flat_p)))
        r_norm = math.sqrt(float(np.dot(flat_s, flat_s)))
        ratio = w_norm / r_norm if w_norm > 0 and r_norm > 0 else 1.0
        s *= ratio * learning_rate
        p -= s


def schedule_free_adamw_numpy(params: Arrays, grads: Arrays, slots: Sequence[Arrays],
                              iterations: int, *, learning_rate: float, beta_1: float,
                              beta_2: float, epsilon: float, warmup_steps: int) -> None:
    """ScheduleFreeAdamW as a NumPy user writes it (keras/src/optimizers/schedule_free_adamw.py
    order): the parameters hold y, the `momentums` z.

    Args:
        params: parameters (y), updated in place.
        grads: gradients, one per parameter.
        slots: `[momentums, velocities]` (z, starting as copies of the parameters, and the
            second moment), each one array per parameter, updated in place.
        iterations: steps done before this one.
        learning_rate, beta_1, beta_2, epsilon, warmup_steps: Keras's ScheduleFreeAdamW
            hyperparameters.
    """
    t = iterations + 1
    lr = learning_rate * min(t / warmup_steps, 1.0) if warmup_steps > 0 else learning_rate
    c = 1 / t
    momentums, velocities = slots
    for y, g, z, v in zip(params, grads, momentums, velocities):
        z_old = z.copy()
        v += (g * g - v) * (1 - beta_2)
        denominator = np.sqrt(v / (1 - beta_2**t)) + epsilon
        z -= lr * g / denominator
        x_old = (y - (1 - beta_1) * z_old) / beta_1
        x_new = (1 - c) * x_old + c * z
        y[...] = (1 - beta_1) * z + beta_1 * x_new


def schedule_free_adamw_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Arrays],
                                  scratch: Sequence[Arrays], iterations: int, *,
                                  learning_rate: float, beta_1: float, beta_2: float,
                                  epsilon: float, warmup_steps: int) -> None:
    """ScheduleFreeAdamW in in-place ufuncs over preallocated scratch (no temporaries).

    Args:
        params, grads, slots, iterations, learning_rate, beta_1, beta_2, epsilon,
        warmup_steps: as in `schedule_free_adamw_numpy`.
        scratch: per parameter, `[s, x]`: two arrays of the parameter's shape to overwrite.
    """
    t = iterations + 1
    lr = learning_rate * min(t / warmup_steps, 1.0) if warmup_steps > 0 else learning_rate
    c = 1 / t
    v_scale = 1 / (1 - beta_2**t)
    momentums, velocities = slots
    for y, g, z, v, (s, x) in zip(params, grads, momentums, velocities, scratch):
        # x_old first, while z is still z_old.
        np.multiply(z, 1 - beta_1, out=x)
        np.subtract(y, x, out=x)
        x *= 1 / beta_1
        np.multiply(g, g, out=s)
        s -= v
        s *= 1 - beta_2
        v += s
        np.multiply(v, v_scale, out=s)
        np.sqrt(s, out=s)
        s += epsilon
        np.divide(g, s, out=s)
        s *= lr
        z -= s
        x *= 1 - c
        np.multiply(z, c, out=s)
        x += s
        np.multiply(z, 1 - beta_1, out=s)
        np.multiply(x, beta_1, out=y)
        y += s
