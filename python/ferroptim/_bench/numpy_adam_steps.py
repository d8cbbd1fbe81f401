"""NumPy peers of Adam and the optimizers built on its two moving averages (Adamax, Nadam,
Lamb, ScheduleFreeAdamW), as a NumPy user writes them and with `out=` (see `numpy_steps` for
the conventions).
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import Any, Tuple

import numpy as np

from ferroptim._bench.cases import Arrays
from ferroptim._bench.numpy_steps import Slots

# The hyperparameters each optimizer's steps read, in the order they unpack them.
_ADAM = itemgetter("learning_rate", "beta_1", "beta_2", "epsilon")
_SCHEDULE_FREE = itemgetter("learning_rate", "beta_1", "beta_2", "epsilon", "warmup_steps")


def adam_numpy(params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any) -> None:
    """Adam as a NumPy user writes it (keras/src/optimizers/adam.py order, "epsilon hat").

    Slots: `[momentums, velocities]`, each one array per parameter, updated in place.
    """
    learning_rate, beta_1, beta_2, epsilon = _ADAM(hyper)
    t = iterations + 1
    alpha = learning_rate * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    momentums, velocities = slots
    for p, g, m, v in zip(params, grads, momentums, velocities):
        m += (g - m) * (1 - beta_1)
        v += (g * g - v) * (1 - beta_2)
        p -= (m * alpha) / (np.sqrt(v) + epsilon)


def _adam_moments_out(
    g: np.ndarray, m: np.ndarray, v: np.ndarray, s: np.ndarray, beta_1: float, beta_2: float
) -> None:
    # Adam's two moving averages (Nadam's and Lamb's too) with `out=`: m += (g - m) * (1 -
    # beta_1), v += (g * g - v) * (1 - beta_2), through the scratch s.
    np.subtract(g, m, out=s)
    s *= 1 - beta_1
    m += s
    np.multiply(g, g, out=s)
    s -= v
    s *= 1 - beta_2
    v += s


def adam_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """Adam in in-place ufuncs over one scratch array per parameter (no temporaries)."""
    learning_rate, beta_1, beta_2, epsilon = _ADAM(hyper)
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


def lamb_numpy(params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any) -> None:
    """Lamb as a NumPy user writes it (keras/src/optimizers/lamb.py order).

    Slots: `[momentums, velocities]`, each one array per parameter, updated in place.
    """
    learning_rate, beta_1, beta_2, epsilon = _ADAM(hyper)
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


def lamb_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """Lamb in in-place ufuncs over one scratch array per parameter (no temporaries; the norms
    are BLAS dot products)."""
    learning_rate, beta_1, beta_2, epsilon = _ADAM(hyper)
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


def adamax_numpy(
    params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any
) -> None:
    """Adamax as a NumPy user writes it (keras/src/optimizers/adamax.py order).

    Slots: `[momentums, norms]`, each one array per parameter, updated in place.
    """
    learning_rate, beta_1, beta_2, epsilon = _ADAM(hyper)
    momentums, norms = slots
    t = iterations + 1
    for p, g, m, u in zip(params, grads, momentums, norms):
        m += (g - m) * (1 - beta_1)
        u[...] = np.maximum(beta_2 * u, np.abs(g))
        p -= learning_rate * m / ((1 - beta_1**t) * (u + epsilon))


def adamax_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """Adamax in in-place ufuncs over one scratch array per parameter (no temporaries)."""
    learning_rate, beta_1, beta_2, epsilon = _ADAM(hyper)
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


def _nadam_scalars(
    u_product: np.ndarray, iterations: int, beta_1: float, beta_2: float
) -> Tuple[float, float, float, float, float]:
    # Once per step, before any tensor: the momentum-cache product advances (kept in the
    # parameters' dtype, as Keras keeps it).
    t = iterations + 1
    u_t = beta_1 * (1 - 0.5 * 0.96**t)
    u_t_1 = beta_1 * (1 - 0.5 * 0.96 ** (t + 1))
    u_product[()] = u_product * u_t
    u_product_t = float(u_product)
    return u_t, u_t_1, u_product_t, u_product_t * u_t_1, beta_2**t


def nadam_numpy(params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any) -> None:
    """Nadam as a NumPy user writes it (keras/src/optimizers/nadam.py order).

    Slots: `[momentums, velocities, u_product]`: two lists of one array per parameter and
    the 0-d momentum-cache product, all updated in place.
    """
    learning_rate, beta_1, beta_2, epsilon = _ADAM(hyper)
    momentums, velocities, u_product = slots
    u_t, u_t_1, u_product_t, u_product_t_1, beta_2_power = _nadam_scalars(
        u_product, iterations, beta_1, beta_2
    )
    for p, g, m, v in zip(params, grads, momentums, velocities):
        m += (g - m) * (1 - beta_1)
        v += (g * g - v) * (1 - beta_2)
        m_hat = u_t_1 * m / (1 - u_product_t_1) + (1 - u_t) * g / (1 - u_product_t)
        v_hat = v / (1 - beta_2_power)
        p -= (m_hat * learning_rate) / (np.sqrt(v_hat) + epsilon)


def nadam_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """Nadam in in-place ufuncs over two scratch arrays per parameter (no temporaries)."""
    learning_rate, beta_1, beta_2, epsilon = _ADAM(hyper)
    momentums, velocities, u_product = slots
    u_t, u_t_1, u_product_t, u_product_t_1, beta_2_power = _nadam_scalars(
        u_product, iterations, beta_1, beta_2
    )
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


def schedule_free_adamw_numpy(
    params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any
) -> None:
    """ScheduleFreeAdamW as a NumPy user writes it (keras/src/optimizers/schedule_free_adamw.py
    order): the parameters hold y, the `momentums` z.

    Slots: `[momentums, velocities]` (z, starting as copies of the parameters, and the
    second moment), each one array per parameter, updated in place.
    """
    learning_rate, beta_1, beta_2, epsilon, warmup_steps = _SCHEDULE_FREE(hyper)
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


def schedule_free_adamw_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """ScheduleFreeAdamW in in-place ufuncs over two scratch arrays per parameter (no
    temporaries)."""
    learning_rate, beta_1, beta_2, epsilon, warmup_steps = _SCHEDULE_FREE(hyper)
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
