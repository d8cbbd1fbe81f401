"""Benchmark harness behind `python -m ferroptim bench` and `benches/bench.py`.

Every number is measured in one process run, next to its peers, so the ratios mean something
even on a noisy shared machine where absolute times drift from run to run:

- ferroptim: `opt.apply_gradients(zip(grads, params))`, the public API;
- NumPy as a user writes it: the Keras formulas with temporaries, one tensor at a time;
- NumPy with `out=`: in-place ufuncs and preallocated scratch, the best a careful user can do;
- torch: `torch.optim.<Name>(fused=True)` on CPU over the same memory, when torch imports;
- roofline: `_native.roofline`, a streaming kernel that moves the same bytes as the step through
  the same driver with no arithmetic to speak of. It is the floor a step can approach. Adafactor
  and Muon are not element-wise (row and column reductions; matrix products): they have no
  roofline and a table of their own, and by default run on matrices, not 1-D tensors.

Timing: each peer is warmed up, then called in a loop for a block of at least `min_block`
seconds; blocks of all peers of a case alternate (round robin) so a noisy moment hurts them
alike; the table reports the best block (the least disturbed one), the JSON keeps every block.

A new optimizer is one entry in `OPTIMIZERS`: its constructor arguments, its slots (or a
function building its state), and its NumPy reference steps (which must do the same work as
ferroptim: tests check that they agree).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple,
                    Union)

import numpy as np

DTYPE = np.float32

Arrays = List[np.ndarray]
Shape = Tuple[int, ...]


# --------------------------------------------------------------------------------------------
# NumPy reference steps. Hyperparameters arrive as keyword arguments named as in Keras;
# `iterations` is the step count before this step (t = iterations + 1), as in Keras.


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
        np.subtract(g, m, out=s)
        s *= 1 - beta_1
        m += s
        np.multiply(g, g, out=s)
        s -= v
        s *= 1 - beta_2
        v += s
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
        np.subtract(g, m, out=s)
        s *= 1 - beta_1
        m += s
        np.multiply(g, g, out=s)
        s -= v
        s *= 1 - beta_2
        v += s
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
        np.subtract(g, m, out=s)
        s *= 1 - beta_1
        m += s
        np.multiply(g, g, out=s)
        s -= v
        s *= 1 - beta_2
        v += s
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


def adafactor_state(params: Arrays, names: Sequence[str], **hyperparameters: Any) -> List[Any]:
    """Adafactor's NumPy state, as Keras builds it: `[rs, cs, velocities]`, one entry per
    parameter; r (shape `p.shape[:-1]`) and c (`p.shape[:-2] + p.shape[-1:]`) for a parameter of
    rank >= 2, None below (Keras's unused placeholders), the velocity of the parameter's shape.

    Args:
        params: the parameters.
        names: their names (unused: Adafactor treats every variable alike).
        **hyperparameters: the optimizer's (unused).
    """
    del names, hyperparameters
    rs = [np.zeros(p.shape[:-1], p.dtype) if p.ndim >= 2 else None for p in params]
    cs = [np.zeros(p.shape[:-2] + p.shape[-1:], p.dtype) if p.ndim >= 2 else None
          for p in params]
    return [rs, cs, [np.zeros_like(p) for p in params]]


def _adafactor_scalars(iterations: int, learning_rate: float,
                       beta_2_decay: float) -> Tuple[float, float]:
    # rho_t and beta_2_t. `relative_step` caps the learning rate at 1 / sqrt(t), then Keras
    # takes the same minimum again unconditionally: the switch changes nothing.
    t = iterations + 1
    return min(learning_rate, 1 / math.sqrt(t)), 1 - t**beta_2_decay


def adafactor_numpy(params: Arrays, grads: Arrays, slots: Sequence[Arrays], iterations: int, *,
                    learning_rate: float, beta_2_decay: float, epsilon_1: float,
                    epsilon_2: float, clip_threshold: float, relative_step: bool) -> None:
    """Adafactor as a NumPy user writes it (keras/src/optimizers/adafactor.py order).

    Args:
        params: parameters, updated in place.
        grads: gradients, one per parameter.
        slots: `adafactor_state(params)`, updated in place.
        iterations: steps done before this one.
        learning_rate, beta_2_decay, epsilon_1, epsilon_2, clip_threshold: Keras's Adafactor
            hyperparameters.
        relative_step: no numerical effect (see `_adafactor_scalars`).
    """
    del relative_step
    rho_t, beta_2_t = _adafactor_scalars(iterations, learning_rate, beta_2_decay)
    for p, g, r, c, v in zip(params, grads, *slots):
        alpha_t = max(epsilon_2, math.sqrt(np.mean(p * p))) * rho_t
        regulated_grad_square = g * g + epsilon_1
        if p.ndim >= 2:
            r[...] = beta_2_t * r + (1 - beta_2_t) * regulated_grad_square.mean(axis=-1)
            c[...] = beta_2_t * c + (1 - beta_2_t) * regulated_grad_square.mean(axis=-2)
            v[...] = (r / r.mean(axis=-1, keepdims=True))[..., :, None] * c[..., None, :]
        else:
            v[...] = beta_2_t * v + (1 - beta_2_t) * regulated_grad_square
        u = g / np.sqrt(v)
        u_hat = u / max(1.0, math.sqrt(np.mean(u * u)) / clip_threshold)
        p -= alpha_t * u_hat


def adafactor_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Arrays],
                        scratch: Sequence[Arrays], iterations: int, *, learning_rate: float,
                        beta_2_decay: float, epsilon_1: float, epsilon_2: float,
                        clip_threshold: float, relative_step: bool) -> None:
    """Adafactor in in-place ufuncs over preallocated scratch (no temporaries; the sums of
    squares are BLAS dot products).

    Args:
        params, grads, slots, iterations, learning_rate, beta_2_decay, epsilon_1, epsilon_2,
        clip_threshold, relative_step: as in `adafactor_numpy`.
        scratch: per parameter, `[s, t]`: two arrays of the parameter's shape to overwrite;
            their leading elements also hold the row and column means.
    """
    del relative_step
    rho_t, beta_2_t = _adafactor_scalars(iterations, learning_rate, beta_2_decay)
    for p, g, r, c, v, (s, t) in zip(params, grads, *slots, scratch):
        flat_p, flat_s = p.reshape(-1), s.reshape(-1)
        alpha_t = max(epsilon_2, math.sqrt(float(np.dot(flat_p, flat_p)) / p.size)) * rho_t
        if p.ndim >= 2:
            # v holds the regulated squared gradient until it is rebuilt from r and c.
            np.multiply(g, g, out=v)
            v += epsilon_1
            row = flat_s[:r.size].reshape(r.shape)
            np.mean(v, axis=-1, out=row)
            row *= 1 - beta_2_t
            r *= beta_2_t
            r += row
            column = flat_s[:c.size].reshape(c.shape)
            np.mean(v, axis=-2, out=column)
            column *= 1 - beta_2_t
            c *= beta_2_t
            c += column
            r_mean = flat_s[:r.size // r.shape[-1]].reshape(r.shape[:-1] + (1,))
            np.mean(r, axis=-1, keepdims=True, out=r_mean)
            ratio = t.reshape(-1)[:r.size].reshape(r.shape)
            np.divide(r, r_mean, out=ratio)
            np.multiply(ratio[..., :, None], c[..., None, :], out=v)
        else:
            np.multiply(g, g, out=s)
            s += epsilon_1
            s *= 1 - beta_2_t
            v *= beta_2_t
            v += s
        np.sqrt(v, out=s)
        np.divide(g, s, out=s)
        rms_u = math.sqrt(float(np.dot(flat_s, flat_s)) / p.size)
        s *= alpha_t / max(1.0, rms_u / clip_threshold)
        p -= s


def muon_state(params: Arrays, names: Sequence[str], *, exclude_embeddings: bool,
               exclude_layers: Optional[Sequence[str]], **hyperparameters: Any) -> List[Any]:
    """Muon's NumPy state, routed as Keras routes at build: `[momentums, velocities]`, one
    entry per parameter; the velocity is None for a parameter on the Muon path (rank 2, its
    name neither an embedding's, when `exclude_embeddings`, nor matched by `exclude_layers`).

    Args:
        params: the parameters.
        names: their names, as the optimizer was built with them.
        exclude_embeddings, exclude_layers: Keras's Muon routing arguments.
        **hyperparameters: the optimizer's others (unused).
    """
    del hyperparameters

    def adamw(p: np.ndarray, name: str) -> bool:
        return (p.ndim != 2 or (exclude_embeddings and "embedding" in name.lower())
                or any(re.search(keyword, name) for keyword in exclude_layers or ()))

    return [[np.zeros_like(p) for p in params],
            [np.zeros_like(p) if adamw(p, name) else None for p, name in zip(params, names)]]


def _newton_schulz_numpy(x: np.ndarray, steps: int, a: float, b: float, c: float) -> np.ndarray:
    # keras.optimizers.Muon.zeropower_via_newtonschulz5, for one matrix.
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    x = x / (np.linalg.norm(x) + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if transposed else x


def muon_numpy(params: Arrays, grads: Arrays, slots: Sequence[Any], iterations: int, *,
               learning_rate: float, adam_beta_1: float, adam_beta_2: float,
               adam_weight_decay: Optional[float], epsilon: float,
               weight_decay: Optional[float], exclude_layers: Optional[Sequence[str]],
               exclude_embeddings: bool, muon_a: float, muon_b: float, muon_c: float,
               adam_lr_ratio: float, momentum: float, ns_steps: int, nesterov: bool,
               rms_rate: Optional[float]) -> None:
    """Muon as a NumPy user writes it (keras/src/optimizers/muon.py order): momentum, Newton-
    Schulz with NumPy's matrix products, and Adam (`adam_numpy`) on the AdamW path.

    Args:
        params: parameters, updated in place.
        grads: gradients, one per parameter.
        slots: `muon_state(params, names)`, updated in place.
        iterations: steps done before this one.
        learning_rate, adam_beta_1, adam_beta_2, adam_weight_decay, epsilon, weight_decay,
        muon_a, muon_b, muon_c, adam_lr_ratio, momentum, ns_steps, nesterov, rms_rate: Keras's
            Muon hyperparameters. Weight decay (`w - w * wd * learning_rate`, before the
            update) takes `adam_weight_decay` on the AdamW path, `weight_decay` on the other.
        exclude_layers, exclude_embeddings: unused here: the routing is in `slots`.
    """
    del exclude_layers, exclude_embeddings
    momentums, velocities = slots
    for p, g, m, v in zip(params, grads, momentums, velocities):
        if v is not None:
            if adam_weight_decay is not None:
                p -= p * adam_weight_decay * learning_rate
            adam_numpy([p], [g], [[m], [v]], iterations,
                       learning_rate=learning_rate * adam_lr_ratio, beta_1=adam_beta_1,
                       beta_2=adam_beta_2, epsilon=epsilon)
            continue
        if weight_decay is not None:
            p -= p * weight_decay * learning_rate
        m += g + m * (momentum - 1)
        x = g + momentum * m if nesterov else m
        update = learning_rate * _newton_schulz_numpy(x, ns_steps, muon_a, muon_b, muon_c)
        if rms_rate is not None:
            update *= math.sqrt(max(p.shape)) * rms_rate
        p -= update


def _newton_schulz_numpy_out(x: np.ndarray, steps: int, a: float, b: float, c: float,
                             other: np.ndarray, gram_buffer: np.ndarray,
                             poly_buffer: np.ndarray) -> np.ndarray:
    # `_newton_schulz_numpy` with `out=` products into scratch; `x` is overwritten and the
    # result is `x` or `other` (both of x's shape). A tall x = X^T is not transposed: the
    # iteration on X runs on x itself, A = x^T x and x' = a x + x B (A and B are symmetric),
    # so every product writes a contiguous array.
    wide = x.shape[0] <= x.shape[1]
    size = min(x.shape)
    gram = gram_buffer.reshape(-1)[:size * size].reshape(size, size)
    poly = poly_buffer.reshape(-1)[:size * size].reshape(size, size)
    flat = x.reshape(-1)
    x /= math.sqrt(float(np.dot(flat, flat))) + 1e-7
    for _ in range(steps):
        if wide:
            np.matmul(x, x.T, out=gram)
        else:
            np.matmul(x.T, x, out=gram)
        np.matmul(gram, gram, out=poly)
        poly *= c
        gram *= b
        poly += gram
        if wide:
            np.matmul(poly, x, out=other)
        else:
            np.matmul(x, poly, out=other)
        x *= a
        other += x
        x, other = other, x
    return x


def muon_numpy_out(params: Arrays, grads: Arrays, slots: Sequence[Any],
                   scratch: Sequence[Arrays], iterations: int, *, learning_rate: float,
                   adam_beta_1: float, adam_beta_2: float, adam_weight_decay: Optional[float],
                   epsilon: float, weight_decay: Optional[float],
                   exclude_layers: Optional[Sequence[str]], exclude_embeddings: bool,
                   muon_a: float, muon_b: float, muon_c: float, adam_lr_ratio: float,
                   momentum: float, ns_steps: int, nesterov: bool,
                   rms_rate: Optional[float]) -> None:
    """Muon in in-place ufuncs and `out=` matrix products over preallocated scratch, and
    `adam_numpy_out` on the AdamW path.

    Args:
        params, grads, slots, iterations, learning_rate, adam_beta_1, adam_beta_2,
        adam_weight_decay, epsilon, weight_decay, exclude_layers, exclude_embeddings, muon_a,
        muon_b, muon_c, adam_lr_ratio, momentum, ns_steps, nesterov, rms_rate: as in
            `muon_numpy`.
        scratch: per parameter, `[s, t, gram, poly]`: four arrays of the parameter's shape to
            overwrite (the last two hold the min(rows, cols)-square matrices).
    """
    del exclude_layers, exclude_embeddings
    momentums, velocities = slots
    for p, g, m, v, (s, t, gram, poly) in zip(params, grads, momentums, velocities, scratch):
        decay = adam_weight_decay if v is not None else weight_decay
        if decay is not None:
            np.multiply(p, decay, out=s)
            s *= learning_rate
            p -= s
        if v is not None:
            adam_numpy_out([p], [g], [[m], [v]], [[s]], iterations,
                           learning_rate=learning_rate * adam_lr_ratio, beta_1=adam_beta_1,
                           beta_2=adam_beta_2, epsilon=epsilon)
            continue
        np.multiply(m, momentum - 1, out=s)
        s += g
        m += s
        if nesterov:
            np.multiply(m, momentum, out=s)
            s += g
        else:
            np.copyto(s, m)
        update = _newton_schulz_numpy_out(s, ns_steps, muon_a, muon_b, muon_c, t, gram, poly)
        update *= learning_rate
        if rms_rate is not None:
            update *= math.sqrt(max(p.shape)) * rms_rate
        p -= update


def _sgd_torch(torch: Any, tensors: list, implementation: Mapping[str, Any], *,
               learning_rate: float, momentum: float) -> Any:
    # torch keeps `buf = momentum * buf + g; p -= lr * buf`: the same streams as Keras's form.
    return torch.optim.SGD(tensors, lr=learning_rate, momentum=momentum, **implementation)


def _adam_torch(torch: Any, tensors: list, implementation: Mapping[str, Any], *,
                learning_rate: float, beta_1: float, beta_2: float, epsilon: float) -> Any:
    # torch adds eps to the bias-corrected sqrt(v) where Keras adds it to the raw one: the
    # numbers differ slightly, the work per element does not.
    return torch.optim.Adam(tensors, lr=learning_rate, betas=(beta_1, beta_2), eps=epsilon,
                            **implementation)


def _adagrad_torch(torch: Any, tensors: list, implementation: Mapping[str, Any], *,
                   learning_rate: float, initial_accumulator_value: float,
                   epsilon: float) -> Any:
    # torch adds eps to sqrt(accumulator) where Keras adds it inside the square root: the
    # numbers differ slightly, the work per element does not.
    return torch.optim.Adagrad(tensors, lr=learning_rate,
                               initial_accumulator_value=initial_accumulator_value, eps=epsilon,
                               **implementation)


# A slot initial value: a copy of the parameter (ScheduleFreeAdamW's z) rather than a constant.
PARAMETER_COPY = "parameter"


@dataclasses.dataclass(frozen=True)
class BenchOptimizer:
    """One optimizer as every peer runs it.

    Args:
        name: the registry key and `--optimizers` spelling, e.g. "adam".
        keras_name: the class name in `ferroptim.optimizers` (Keras's), e.g. "Adam".
        kwargs: constructor arguments (Keras names), given to every peer; list every
            hyperparameter the NumPy steps need, even at its Keras default.
        slot_inits: the initial value of each slot, in Keras's slot order: a float, or
            `PARAMETER_COPY` for a copy of the parameter; their count sets the roofline's
            streams and the bytes per element. Empty when `state_init` is given.
        numpy_step: `f(params, grads, slots, iterations, **kwargs)`, NumPy as a user writes it;
            `slots` is `make_numpy_state(params, names)`.
        numpy_out_step: `f(params, grads, slots, scratch, iterations, **kwargs)` with in-place
            ufuncs, or None when there is none.
        scratch_per_tensor: how many scratch arrays `numpy_out_step` needs per parameter.
        torch_optimizer: `f(torch, tensors, implementation, **kwargs)` building the
            torch.optim optimizer, `implementation` (`{"fused": True}` or `{}`) among its
            arguments; None when torch has no fused CPU kernel for it.
        scalar_inits: initial values of the optimizer-wide scalars the NumPy steps carry from
            step to step (Nadam's momentum-cache product); they follow the slots in the NumPy
            steps' `slots`, as 0-d arrays of the parameters' dtype. Per step, not per element:
            they add nothing to the bytes per element.
        state_init: `f(params, names, **kwargs)` building the NumPy steps' state, for an
            optimizer that is not element-wise, whose state is not one array of the
            parameter's shape per slot (Adafactor's row and column factors, Muon's routing by
            rank and name); None for the element-wise ones. An optimizer that has one has no
            roofline: its step is not one streaming pass over its slots.
        settle: seconds the harness sleeps before each timed block of a case. NumPy's matrix
            products run on OpenBLAS's threads, which keep spinning for about 0.1 s after a
            call and would take a core from the next peer's block (measured: Muon's ferroptim
            step 1.6x slower right after NumPy's than after a pause of 0.2 s); 0 for
            optimizers whose NumPy steps are ufuncs.
    """

    name: str
    keras_name: str
    kwargs: Mapping[str, Any]
    slot_inits: Tuple[Union[float, str], ...]
    numpy_step: Callable[..., None]
    numpy_out_step: Optional[Callable[..., None]] = None
    scratch_per_tensor: int = 1
    torch_optimizer: Optional[Callable[..., Any]] = None
    scalar_inits: Tuple[float, ...] = ()
    state_init: Optional[Callable[..., List[Any]]] = None
    settle: float = 0.0

    @property
    def element_wise(self) -> bool:
        """Whether a step is one streaming pass over the parameter, gradient and slots (then
        the roofline is its floor)."""
        return self.state_init is None

    def bytes_per_element(self, itemsize: int) -> Optional[int]:
        """Bytes a fused step moves per parameter element: reads the parameter, the gradient
        and every slot, writes the parameter and every slot; None for an optimizer that is
        not element-wise.

        Args:
            itemsize: bytes per element of the dtype.
        """
        if not self.element_wise:
            return None
        slots = len(self.slot_inits)
        return itemsize * ((2 + slots) + (1 + slots))

    def make_slots(self, params: Arrays) -> List[Arrays]:
        """Fresh slots for `params`: one list per slot kind, one array per parameter.

        Args:
            params: the parameters the slots belong to.
        """
        return [[p.copy() if value == PARAMETER_COPY else np.full_like(p, value) for p in params]
                for value in self.slot_inits]

    def make_numpy_state(self, params: Arrays,
                         names: Optional[Sequence[str]] = None) -> List[Any]:
        """What the NumPy steps carry between steps: `state_init(params, names, **kwargs)`
        when there is one, else `make_slots(params)` then one 0-d array per `scalar_inits`
        entry (in the first parameter's dtype, as Keras keeps them).

        Args:
            params: the parameters the state belongs to.
            names: their names, as the optimizer is built with them (default: Keras's
                `variable_0`, `variable_1`, ... of a list).
        """
        if self.state_init is not None:
            if names is None:
                names = [f"variable_{i}" for i in range(len(params))]
            return self.state_init(params, names, **self.kwargs)
        dtype = params[0].dtype if params else DTYPE
        scalars = [np.full((), value, dtype=dtype) for value in self.scalar_inits]
        return [*self.make_slots(params), *scalars]


OPTIMIZERS: Dict[str, BenchOptimizer] = {
    spec.name: spec
    for spec in [
        BenchOptimizer("sgd", "SGD", {"learning_rate": 0.01, "momentum": 0.9}, (0.0,),
                       sgd_numpy, sgd_numpy_out, 1, _sgd_torch),
        BenchOptimizer("adam", "Adam",
                       {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
                       (0.0, 0.0), adam_numpy, adam_numpy_out, 1, _adam_torch),
        BenchOptimizer("rmsprop", "RMSprop",
                       {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                        "centered": False},
                       (0.0,), rmsprop_numpy, rmsprop_numpy_out, 1),
        # Every RMSprop stream at once: velocity, momentum and average_gradient.
        BenchOptimizer("rmsprop_centered", "RMSprop",
                       {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.9, "epsilon": 1e-7,
                        "centered": True},
                       (0.0, 0.0, 0.0), rmsprop_numpy, rmsprop_numpy_out, 1),
        BenchOptimizer("adagrad", "Adagrad",
                       {"learning_rate": 0.001, "initial_accumulator_value": 0.1,
                        "epsilon": 1e-7},
                       (0.1,), adagrad_numpy, adagrad_numpy_out, 1, _adagrad_torch),
        BenchOptimizer("adadelta", "Adadelta",
                       {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7},
                       (0.0, 0.0), adadelta_numpy, adadelta_numpy_out, 2),
        BenchOptimizer("adamax", "Adamax",
                       {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
                       (0.0, 0.0), adamax_numpy, adamax_numpy_out, 1),
        BenchOptimizer("nadam", "Nadam",
                       {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
                       (0.0, 0.0), nadam_numpy, nadam_numpy_out, 2, scalar_inits=(1.0,)),
        BenchOptimizer("lion", "Lion",
                       {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.99},
                       (0.0,), lion_numpy, lion_numpy_out, 2),
        BenchOptimizer("ftrl", "Ftrl",
                       {"learning_rate": 0.001, "learning_rate_power": -0.5,
                        "initial_accumulator_value": 0.1, "l1_regularization_strength": 0.0,
                        "l2_regularization_strength": 0.0,
                        "l2_shrinkage_regularization_strength": 0.0, "beta": 0.0},
                       (0.1, 0.0), ftrl_numpy, ftrl_numpy_out, 2),
        # Lamb reads its tensors twice (a read-only pass for the trust ratio's norms, then the
        # update), yet its floor here is the one-pass roofline of its two slots: the extra
        # pass shows as a lower fraction of the roofline.
        BenchOptimizer("lamb", "Lamb",
                       {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
                       (0.0, 0.0), lamb_numpy, lamb_numpy_out, 1),
        BenchOptimizer("schedule_free_adamw", "ScheduleFreeAdamW",
                       {"learning_rate": 0.0025, "beta_1": 0.9, "beta_2": 0.999,
                        "epsilon": 1e-8, "warmup_steps": 0},
                       (PARAMETER_COPY, 0.0), schedule_free_adamw_numpy,
                       schedule_free_adamw_numpy_out, 2),
        # Not element-wise: no roofline, and default cases of 2-D matrices.
        BenchOptimizer("adafactor", "Adafactor",
                       {"learning_rate": 0.001, "beta_2_decay": -0.8, "epsilon_1": 1e-30,
                        "epsilon_2": 1e-3, "clip_threshold": 1.0, "relative_step": True},
                       (), adafactor_numpy, adafactor_numpy_out, 2,
                       state_init=adafactor_state),
        BenchOptimizer("muon", "Muon",
                       {"learning_rate": 0.001, "adam_beta_1": 0.9, "adam_beta_2": 0.999,
                        "adam_weight_decay": 0.004, "epsilon": 1e-7, "weight_decay": 0.004,
                        "exclude_layers": None, "exclude_embeddings": True, "muon_a": 3.4445,
                        "muon_b": -4.7750, "muon_c": 2.0315, "adam_lr_ratio": 1.0,
                        "momentum": 0.95, "ns_steps": 5, "nesterov": True, "rms_rate": 0.2},
                       (), muon_numpy, muon_numpy_out, 4, state_init=muon_state, settle=0.2),
    ]
}

# What `--optimizers` runs when not given: the full set at every default size would take
# far longer than the two most used optimizers (`--optimizers all` runs the rest).
DEFAULT_OPTIMIZERS = ("sgd", "adam")


# --------------------------------------------------------------------------------------------
# Cases: the shapes of one step's parameter list.


@dataclasses.dataclass(frozen=True)
class Case:
    """A parameter list to step: a name for the table and the shape of every tensor.

    Args:
        name: how `--sizes` spells it and the table shows it.
        shapes: one shape per tensor.
        names: the tensors' names, as the variables of a Keras model are named (Muon sends
            the embeddings to its AdamW path by name), or None for Keras's names of a list
            (`variable_0`, `variable_1`, ...).
    """

    name: str
    shapes: Tuple[Shape, ...]
    names: Optional[Tuple[str, ...]] = None

    @property
    def elements(self) -> int:
        """Total number of parameter elements."""
        return sum(math.prod(shape) for shape in self.shapes)


def _mlp_variables() -> List[Tuple[str, Shape]]:
    sizes = [784, 256, 128, 10]
    variables: List[Tuple[str, Shape]] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        layer = "dense" if i == 0 else f"dense_{i}"
        variables += [(f"{layer}/kernel", (fan_in, fan_out)), (f"{layer}/bias", (fan_out,))]
    return variables


def _gpt2_small_variables() -> List[Tuple[str, Shape]]:
    # GPT-2's tensors (wte, wpe, then per block ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc,
    # mlp.c_proj, and ln_f) under the names of Keras layers: Embedding, LayerNormalization
    # (gamma, beta) and Dense (kernel, bias).
    d, ff, vocab, context, layers = 768, 3072, 50257, 1024, 12
    variables: List[Tuple[str, Shape]] = [("token_embedding/embeddings", (vocab, d)),
                                          ("position_embedding/embeddings", (context, d))]
    for i in range(layers):
        block = f"transformer_layer_{i}"
        for layer, fan_in, fan_out in [("ln_1", None, d), ("attn/c_attn", d, 3 * d),
                                       ("attn/c_proj", d, d), ("ln_2", None, d),
                                       ("mlp/c_fc", d, ff), ("mlp/c_proj", ff, d)]:
            if fan_in is None:
                variables += [(f"{block}/{layer}/gamma", (fan_out,)),
                              (f"{block}/{layer}/beta", (fan_out,))]
            else:
                variables += [(f"{block}/{layer}/kernel", (fan_in, fan_out)),
                              (f"{block}/{layer}/bias", (fan_out,))]
    return variables + [("ln_f/gamma", (d,)), ("ln_f/beta", (d,))]


NAMED_CASES: Dict[str, Callable[[], List[Tuple[str, Shape]]]] = {
    "mlp": _mlp_variables, "gpt2": _gpt2_small_variables}

_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6}
_SIZE = re.compile(r"^(?:(\d+)x)?(\d+)([KM]?)$", re.IGNORECASE)
_MATRIX = re.compile(r"^(?:(\d+)x)?(\d+)\*(\d+)$", re.IGNORECASE)


def parse_case(text: str) -> Case:
    """A `--sizes` entry as a Case.

    Args:
        text: "mlp" (784-256-128-10, 6 tensors), "gpt2" (GPT-2 small, 148 tensors),
            "<n>" / "<n>K" / "<n>M" (one 1-D tensor; K = 10**3, M = 10**6 elements),
            "<rows>*<cols>" (one matrix), or either prefixed by "<count>x" (that many tensors
            of that size), e.g. "100x1K" or "4x768*768".
    """
    key = text.strip()
    if key.lower() in NAMED_CASES:
        names, shapes = zip(*NAMED_CASES[key.lower()]())
        return Case(key.lower(), tuple(shapes), tuple(names))
    matrix = _MATRIX.match(key)
    if matrix is not None and 0 not in {int(group or 1) for group in matrix.groups()}:
        count, rows, cols = (int(group or 1) for group in matrix.groups())
        return Case(key.lower(), ((rows, cols),) * count)
    match = _SIZE.match(key)
    if match is None or int(match.group(2)) == 0 or int(match.group(1) or 1) == 0:
        raise ValueError(f"Unknown size {text!r}: expected mlp, gpt2, <n>[K|M], <rows>*<cols> "
                         f"or <count>x one of the last two, e.g. 32M, 100x1K or 768*3072.")
    count = int(match.group(1) or 1)
    size = int(match.group(2)) * _SUFFIXES[match.group(3).upper()]
    name = key.upper().replace("X", "x") if match.group(3) else key
    return Case(name, ((size,),) * count)


# --------------------------------------------------------------------------------------------
# Settings.

DEFAULT_SIZES = "1K,100K,4M,32M,mlp,gpt2,100x1K"
QUICK_SIZES = "1K,100K,mlp,100x1K"
DEFAULT_SCALING_SIZES = "100K,1M"
QUICK_SCALING_SIZES = "100K"
# The same for the optimizers that are not element-wise (Adafactor, Muon), which are made for
# matrices: Muon steps a 1-D tensor with Adam. `--sizes gpt2` is Muon's realistic case, but
# Newton-Schulz on its 48 block matrices takes seconds per step and peer.
MATRIX_SIZES = "mlp,768*768,768*3072"
QUICK_MATRIX_SIZES = "mlp,128*512"
MATRIX_SCALING_SIZES = "768*768"
QUICK_MATRIX_SCALING_SIZES = "128*512"
# The marginal cost of one more small tensor is read off these two cases of the main table.
MARGINAL_PAIR = ("1K", "100x1K")


@dataclasses.dataclass
class Settings:
    """What one benchmark run measures and how long it times each peer.

    Args:
        optimizers: registry keys of `OPTIMIZERS`.
        sizes: cases of the element-wise optimizers.
        scaling_sizes: cases of the thread-scaling table (ferroptim and roofline only).
        threads: thread counts of the scaling table; the main table runs with the largest.
        min_block: seconds a timed block lasts at least (calls are looped to fill it).
        repeats: timed blocks per peer (fewer, but at least `min_repeats`, past `budget`).
        min_repeats: timed blocks every peer gets.
        budget: seconds of timed blocks after which a slow peer stops repeating.
        json_path: where to write the raw results, or None.
        seed: seed of the random parameters and gradients.
        matrix_sizes, matrix_scaling_sizes: `sizes` and `scaling_sizes` of the optimizers
            that are not element-wise, or None for the same as the others'.
    """

    optimizers: List[str]
    sizes: List[Case]
    scaling_sizes: List[Case]
    threads: List[int]
    min_block: float = 0.025
    repeats: int = 7
    min_repeats: int = 3
    budget: float = 3.0
    json_path: Optional[str] = None
    seed: int = 0
    matrix_sizes: Optional[List[Case]] = None
    matrix_scaling_sizes: Optional[List[Case]] = None

    @property
    def main_threads(self) -> int:
        """The thread count of the main table."""
        return max(self.threads)

    def cases(self, spec: BenchOptimizer) -> List[Case]:
        """The cases `spec` runs.

        Args:
            spec: the optimizer.
        """
        if spec.element_wise or self.matrix_sizes is None:
            return self.sizes
        return self.matrix_sizes

    def scaling_cases(self, spec: BenchOptimizer) -> List[Case]:
        """The thread-scaling cases `spec` runs.

        Args:
            spec: the optimizer.
        """
        if spec.element_wise or self.matrix_scaling_sizes is None:
            return self.scaling_sizes
        return self.matrix_scaling_sizes


DESCRIPTION = ("Time ferroptim's optimizer steps against NumPy, NumPy with out=, torch (when "
               "installed) and a native roofline, in one process, and print a Markdown table.")


def _split(text: str) -> List[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options to `parser`.

    Args:
        parser: the parser of `python -m ferroptim bench` or of `benches/bench.py`.
    """
    cores = os.cpu_count() or 1
    parser.add_argument("--quick", action="store_true",
                        help=f"small sizes ({QUICK_SIZES}) and short timing: a smoke test "
                             "that finishes in well under a minute")
    parser.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS), metavar="LIST",
                        help="comma-separated, from: " + ", ".join(OPTIMIZERS)
                             + "; or all (default: " + ",".join(DEFAULT_OPTIMIZERS) + ")")
    parser.add_argument("--sizes", metavar="LIST",
                        help=f"cases of every optimizer (default: {DEFAULT_SIZES}; for "
                             f"adafactor and muon, which are not element-wise: "
                             f"{MATRIX_SIZES}); <n>[K|M] is one tensor of n elements (K=1e3, "
                             "M=1e6), <rows>*<cols> one matrix, <count>x<n>[K|M] or "
                             "<count>x<rows>*<cols> that many tensors, mlp is 784-256-128-10, "
                             "gpt2 the 148 tensors of GPT-2 small")
    parser.add_argument("--scaling-sizes", metavar="LIST",
                        help=f"cases of the thread-scaling table (default: "
                             f"{DEFAULT_SCALING_SIZES}; adafactor and muon: "
                             f"{MATRIX_SCALING_SIZES}; empty to skip)")
    parser.add_argument("--threads", metavar="LIST", default=f"1,{cores}" if cores > 1 else "1",
                        help="thread counts compared in the scaling table; the main table "
                             "uses the largest (default: 1,<cores>)")
    parser.add_argument("--repeats", type=int, metavar="N",
                        help="timed blocks per peer (default: 7, quick: 3)")
    parser.add_argument("--min-block-ms", type=float, metavar="MS",
                        help="minimum duration of a timed block (default: 25, quick: 10)")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Validate parsed options into Settings (a ValueError names the bad option).

    Args:
        args: the namespace `add_arguments` options were parsed into.
    """
    optimizers = [name.lower() for name in _split(args.optimizers)]
    if optimizers == ["all"]:
        optimizers = list(OPTIMIZERS)
    unknown = [name for name in optimizers if name not in OPTIMIZERS]
    if unknown or not optimizers:
        raise ValueError(f"--optimizers: unknown {', '.join(unknown) or '(empty list)'}; "
                         f"known: {', '.join(OPTIMIZERS)}, or all")
    try:
        threads = [int(n) for n in _split(args.threads)]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        raise ValueError(f"--threads: expected positive integers, got {args.threads!r}")

    def cases(given: Optional[str], default: str, quick: str) -> List[Case]:
        text = given if given is not None else quick if args.quick else default
        return [parse_case(item) for item in _split(text)]

    settings = Settings(
        optimizers=optimizers,
        sizes=cases(args.sizes, DEFAULT_SIZES, QUICK_SIZES),
        scaling_sizes=cases(args.scaling_sizes, DEFAULT_SCALING_SIZES, QUICK_SCALING_SIZES),
        threads=threads,
        json_path=args.json,
    )
    # A list given applies to every optimizer; the defaults differ by kind.
    if args.sizes is None:
        settings.matrix_sizes = cases(None, MATRIX_SIZES, QUICK_MATRIX_SIZES)
    if args.scaling_sizes is None:
        settings.matrix_scaling_sizes = cases(None, MATRIX_SCALING_SIZES,
                                              QUICK_MATRIX_SCALING_SIZES)
    if args.quick:
        settings.min_block, settings.repeats, settings.budget = 0.010, 3, 0.3
    if args.repeats is not None:
        if args.repeats < 1:
            raise ValueError(f"--repeats: expected a positive integer, got {args.repeats}")
        settings.repeats = args.repeats
    settings.min_repeats = min(settings.min_repeats, settings.repeats)
    if args.min_block_ms is not None:
        if not args.min_block_ms > 0:
            raise ValueError(f"--min-block-ms: expected a positive number, got {args.min_block_ms}")
        settings.min_block = args.min_block_ms / 1000
    return settings


# --------------------------------------------------------------------------------------------
# Timing.


@dataclasses.dataclass
class Peer:
    """One contestant of a case: a step to time, and what to do before each of its blocks.

    Args:
        name: "ferroptim", "numpy", "numpy_out", "torch" or "roofline" (or a variant name).
        step: runs one optimizer step.
        setup: called before each timed block (e.g. to set the thread count), or None.
        label: what the notes call it (e.g. "torch fused"), when it differs from `name`.
    """

    name: str
    step: Callable[[], None]
    setup: Optional[Callable[[], None]] = None
    label: Optional[str] = None


@dataclasses.dataclass
class Timing:
    """The timed blocks of one peer.

    Args:
        calls_per_block: how many steps each block loops.
        per_call: seconds per step, one entry per block.
    """

    calls_per_block: int
    per_call: List[float]

    @property
    def best(self) -> float:
        """Seconds per step of the least disturbed block."""
        return min(self.per_call)

    @property
    def median(self) -> float:
        """Median seconds per step over the blocks."""
        return statistics.median(self.per_call)

    def to_json(self) -> Dict[str, Any]:
        """The timing as plain JSON values."""
        return {"best_s": self.best, "median_s": self.median,
                "calls_per_block": self.calls_per_block, "per_call_s": self.per_call}


def _block(step: Callable[[], None], calls: int) -> float:
    # As timeit does: a collection triggered by one peer's garbage must not land in another's
    # block.
    collecting = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            step()
        return time.perf_counter() - start
    finally:
        if collecting:
            gc.enable()


def _calls_per_block(peer: Peer, min_block: float) -> int:
    # Grows the loop until one block lasts min_block; the blocks run here also warm the peer
    # up (lazy slot creation, page faults of fresh buffers, thread pool start).
    calls = 1
    while True:
        elapsed = _block(peer.step, calls)
        if elapsed >= min_block:
            return calls
        calls = max(calls * 2, math.ceil(calls * 1.2 * min_block / max(elapsed, 1e-9)))


def time_peers(peers: Sequence[Peer], settings: Settings,
               settle: float = 0.0) -> Dict[str, Timing]:
    """Time every peer in alternating blocks.

    Args:
        peers: the contestants; their steps must be ready to run (state built lazily is fine).
        settings: block length, repeats and budget.
        settle: seconds to sleep before each peer's calibration and each timed block, so that
            the threads the previous block woke have gone idle (`BenchOptimizer.settle`).
    """
    calls: Dict[str, int] = {}
    for peer in peers:
        if peer.setup is not None:
            peer.setup()
        if settle:
            time.sleep(settle)
        peer.step()
        calls[peer.name] = _calls_per_block(peer, settings.min_block)
    samples: Dict[str, List[float]] = {peer.name: [] for peer in peers}
    spent = dict.fromkeys(samples, 0.0)
    for round_ in range(settings.repeats):
        for peer in peers:
            if round_ >= settings.min_repeats and spent[peer.name] > settings.budget:
                continue
            if peer.setup is not None:
                peer.setup()
            if settle:
                time.sleep(settle)
            elapsed = _block(peer.step, calls[peer.name])
            spent[peer.name] += elapsed
            samples[peer.name].append(elapsed / calls[peer.name])
    return {name: Timing(calls[name], per_call) for name, per_call in samples.items()}


# --------------------------------------------------------------------------------------------
# Peers.


class Unavailable(Exception):
    """A peer that cannot run here (e.g. torch is not installed); the message says why."""


def _set_threads(n: int) -> None:
    import ferroptim

    ferroptim.set_num_threads(n)


def _torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise Unavailable(f"torch is not installed ({error})") from None
    return torch


def ferroptim_peer(spec: BenchOptimizer, params: Arrays, grads: Arrays, name: str = "ferroptim",
                   threads: Optional[int] = None,
                   names: Optional[Sequence[str]] = None) -> Peer:
    """ferroptim through its public API: `opt.apply_gradients(zip(grads, params))`.

    Args:
        spec: the optimizer.
        params, grads: the case's arrays (params are updated in place).
        name: the peer's name in the results.
        threads: set before every block when given (for thread-scaling comparisons).
        names: the parameters' names, which the optimizer is built with when given.
    """
    import ferroptim

    optimizer = getattr(ferroptim.optimizers, spec.keras_name)(**spec.kwargs)
    if names is not None:
        optimizer.build(dict(zip(names, params)))

    def step() -> None:
        optimizer.apply_gradients(zip(grads, params))

    setup = None if threads is None else (lambda: _set_threads(threads))
    return Peer(name, step, setup)


def roofline_peer(spec: BenchOptimizer, params: Arrays, grads: Arrays, name: str = "roofline",
                  threads: Optional[int] = None) -> Peer:
    """The native streaming floor: the same streams as the optimizer's step.

    Args:
        spec: the optimizer whose slot count sets the streams (an element-wise one).
        params, grads: the case's arrays.
        name: the peer's name in the results.
        threads: set before every block when given.
    """
    from ferroptim import _native

    if not spec.element_wise:
        raise Unavailable(f"{spec.keras_name} is not element-wise: its step is not one pass "
                          "over memory, so it has no streaming floor")

    slots = spec.make_slots(params)

    def step() -> None:
        _native.roofline(params, grads, slots)

    setup = None if threads is None else (lambda: _set_threads(threads))
    return Peer(name, step, setup)


def numpy_peer(spec: BenchOptimizer, params: Arrays, grads: Arrays,
               names: Optional[Sequence[str]] = None) -> Peer:
    """NumPy as a user writes it (`spec.numpy_step`), with its own slots.

    Args:
        spec: the optimizer.
        params, grads: the case's arrays.
        names: the parameters' names, or None.
    """
    slots = spec.make_numpy_state(params, names)
    counter = itertools.count()

    def step() -> None:
        spec.numpy_step(params, grads, slots, next(counter), **spec.kwargs)

    return Peer("numpy", step)


def make_scratch(spec: BenchOptimizer, params: Arrays) -> List[Arrays]:
    """Scratch for `spec.numpy_out_step`: views of a few flat buffers sized to the largest
    parameter (a careful user reuses one buffer rather than holding one per tensor).

    Args:
        spec: the optimizer (its `scratch_per_tensor`).
        params: the parameters; every view has its parameter's shape.
    """
    largest = max((p.size for p in params), default=0)
    buffers = [np.empty(largest, dtype=DTYPE) for _ in range(spec.scratch_per_tensor)]
    return [[buffer[:p.size].reshape(p.shape) for buffer in buffers] for p in params]


def numpy_out_peer(spec: BenchOptimizer, params: Arrays, grads: Arrays,
                   names: Optional[Sequence[str]] = None) -> Peer:
    """NumPy with `out=` and preallocated scratch (`spec.numpy_out_step`).

    Args:
        spec: the optimizer.
        params, grads: the case's arrays.
        names: the parameters' names, or None.
    """
    if spec.numpy_out_step is None:
        raise Unavailable(f"no NumPy out= step for {spec.name}")
    out_step = spec.numpy_out_step
    slots = spec.make_numpy_state(params, names)
    scratch = make_scratch(spec, params)
    counter = itertools.count()

    def step() -> None:
        out_step(params, grads, slots, scratch, next(counter), **spec.kwargs)

    return Peer("numpy_out", step)


def torch_peer(spec: BenchOptimizer, params: Arrays, grads: Arrays, threads: int) -> Peer:
    """torch.optim on CPU, over the same memory as the other peers (`torch.from_numpy`).

    `fused=True` (a single multi-tensor CPU kernel, torch >= 2.4) when this torch accepts it,
    else torch's default implementation, labelled as such.

    Args:
        spec: the optimizer.
        params, grads: the case's arrays; the tensors share their memory.
        threads: torch's intra-op thread count for the run.
    """
    torch = _torch()
    if spec.torch_optimizer is None:
        raise Unavailable(f"torch has no fused CPU {spec.keras_name}")
    torch.set_num_threads(threads)
    tensors = []
    for p, g in zip(params, grads):
        tensor = torch.from_numpy(p)
        tensor.requires_grad_(True)
        tensor.grad = torch.from_numpy(g)
        tensors.append(tensor)
    try:
        optimizer = spec.torch_optimizer(torch, tensors, {"fused": True}, **spec.kwargs)
        label = "torch fused"
    except (RuntimeError, TypeError, ValueError):
        # An older torch: no CPU fused kernel, or no `fused` argument for this optimizer.
        optimizer = spec.torch_optimizer(torch, tensors, {}, **spec.kwargs)
        label = "torch (not fused)"
    label += f" {torch.__version__}"

    def step() -> None:
        optimizer.step()

    return Peer("torch", step, lambda: torch.set_num_threads(threads), label)


# --------------------------------------------------------------------------------------------
# Running.

MAIN_PEERS = ("ferroptim", "roofline", "numpy", "numpy_out", "torch")
PEER_TITLES = {"ferroptim": "ferroptim", "roofline": "roofline", "numpy": "NumPy",
               "numpy_out": "NumPy out=", "torch": "torch"}


@dataclasses.dataclass
class CaseResult:
    """The timings of one (optimizer, case).

    Args:
        optimizer: registry key.
        case: the case.
        threads: ferroptim's (and torch's) thread count.
        bytes_per_element: bytes a fused step moves per element; None when the optimizer is
            not element-wise.
        timings: peer name -> Timing, for the peers that ran.
        unavailable: peer name -> why it did not run.
        labels: peer name -> descriptive label, where it has one.
    """

    optimizer: str
    case: Case
    threads: int
    bytes_per_element: Optional[int]
    timings: Dict[str, Timing]
    unavailable: Dict[str, str]
    labels: Dict[str, str]

    def best(self, peer: str) -> Optional[float]:
        """Best seconds per step of `peer`, or None when it did not run.

        Args:
            peer: the peer's name.
        """
        timing = self.timings.get(peer)
        return None if timing is None else timing.best

    def to_json(self) -> Dict[str, Any]:
        """The result as plain JSON values."""
        return {
            "optimizer": self.optimizer, "case": self.case.name, "elements": self.case.elements,
            "tensors": len(self.case.shapes), "threads": self.threads,
            "bytes_per_element": self.bytes_per_element,
            "peers": {name: timing.to_json() for name, timing in self.timings.items()},
            "unavailable": self.unavailable, "labels": self.labels,
        }


def make_arrays(case: Case, seed: int) -> Tuple[Arrays, Arrays]:
    """Random float32 parameters (standard normal) and gradients (scale 1e-2) for `case`.

    Args:
        case: the shapes.
        seed: the random seed.
    """
    rng = np.random.default_rng(seed)
    params, grads = [], []
    for shape in case.shapes:
        params.append(rng.standard_normal(shape, dtype=DTYPE))
        grad = rng.standard_normal(shape, dtype=DTYPE)
        grad *= 0.01
        grads.append(grad)
    return params, grads


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_case(spec: BenchOptimizer, case: Case, settings: Settings) -> CaseResult:
    """Time every peer of the main table on one case; their arrays are freed on return.

    Args:
        spec: the optimizer.
        case: the parameter shapes.
        settings: thread count and timing settings.
    """
    threads = settings.main_threads
    _set_threads(threads)
    params, grads = make_arrays(case, settings.seed)
    names = case.names
    builders: Dict[str, Callable[[], Peer]] = {
        "ferroptim": lambda: ferroptim_peer(spec, params, grads, names=names),
        "roofline": lambda: roofline_peer(spec, params, grads),
        "numpy": lambda: numpy_peer(spec, params, grads, names),
        "numpy_out": lambda: numpy_out_peer(spec, params, grads, names),
        "torch": lambda: torch_peer(spec, params, grads, threads),
    }
    peers, unavailable = [], {}
    for name in MAIN_PEERS:
        try:
            peers.append(builders[name]())
        except Unavailable as reason:
            unavailable[name] = str(reason)
    timings = time_peers(peers, settings, spec.settle)
    labels = {peer.name: peer.label for peer in peers if peer.label}
    result = CaseResult(spec.name, case, threads, spec.bytes_per_element(DTYPE().itemsize),
                        timings, unavailable, labels)
    del peers, builders, params, grads
    gc.collect()
    return result


@dataclasses.dataclass
class ScalingResult:
    """ferroptim and roofline at each thread count on one case.

    Args:
        optimizer: registry key.
        case: the case.
        timings: thread count -> {"ferroptim": Timing, "roofline": Timing}, without the
            roofline for an optimizer that is not element-wise.
    """

    optimizer: str
    case: Case
    timings: Dict[int, Dict[str, Timing]]

    def to_json(self) -> Dict[str, Any]:
        """The result as plain JSON values."""
        return {"optimizer": self.optimizer, "case": self.case.name,
                "elements": self.case.elements,
                "threads": {str(n): {peer: timing.to_json() for peer, timing in peers.items()}
                            for n, peers in self.timings.items()}}


def run_scaling(spec: BenchOptimizer, case: Case, settings: Settings) -> ScalingResult:
    """ferroptim and the roofline at every thread count, the counts alternating by block.

    Args:
        spec: the optimizer.
        case: the parameter shapes.
        settings: thread counts and timing settings.
    """
    params, grads = make_arrays(case, settings.seed)
    peers = []
    for n in settings.threads:
        peers.append(ferroptim_peer(spec, params, grads, f"ferroptim@{n}", threads=n,
                                    names=case.names))
        if spec.element_wise:
            peers.append(roofline_peer(spec, params, grads, f"roofline@{n}", threads=n))
    timings = time_peers(peers, settings)
    _set_threads(settings.main_threads)
    result = ScalingResult(spec.name, case, {
        n: {peer: timings[f"{peer}@{n}"] for peer in ("ferroptim", "roofline")
            if f"{peer}@{n}" in timings}
        for n in settings.threads})
    del peers, params, grads
    gc.collect()
    return result


def environment() -> Dict[str, Any]:
    """What the numbers depend on: versions, SIMD level, threads, CPU."""
    import ferroptim
    from ferroptim import _native

    try:
        torch_version: Optional[str] = _torch().__version__
        torch_note = f"torch {torch_version}"
    except Unavailable as reason:
        torch_version, torch_note = None, str(reason)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "ferroptim": ferroptim.__version__, "simd_level": _native.simd_level(),
        "default_threads": ferroptim.get_num_threads(), "cores": os.cpu_count(), "cpu": cpu,
        "numpy": np.__version__, "torch": torch_version, "torch_note": torch_note,
        "python": platform.python_version(), "platform": platform.platform(),
        # Other work on the machine skews the absolute times (and thread scaling most).
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


@dataclasses.dataclass
class Report:
    """Everything one run measured.

    Args:
        settings: what was asked.
        env: `environment()`.
        cases: main table results, in order.
        scaling: thread-scaling results, in order.
    """

    settings: Settings
    env: Dict[str, Any]
    cases: List[CaseResult]
    scaling: List[ScalingResult]

    def find(self, optimizer: str, case: str) -> Optional[CaseResult]:
        """The main-table result of `optimizer` on the case `case` spells, or None.

        Args:
            optimizer: registry key.
            case: a `--sizes` entry; cases match by shapes, so "1K" finds "1000".
        """
        shapes = parse_case(case).shapes
        for result in self.cases:
            if result.optimizer == optimizer and result.case.shapes == shapes:
                return result
        return None

    def markdown(self) -> str:
        """The report as Markdown: environment, main table, marginal cost, scaling, targets."""
        return render_markdown(self)

    def to_json(self) -> Dict[str, Any]:
        """The raw results as plain JSON values."""
        settings = dataclasses.asdict(self.settings)
        for key in ["sizes", "scaling_sizes", "matrix_sizes", "matrix_scaling_sizes"]:
            cases = getattr(self.settings, key)
            settings[key] = None if cases is None else [case.name for case in cases]
        return {"environment": self.env, "settings": settings,
                "cases": [result.to_json() for result in self.cases],
                "scaling": [result.to_json() for result in self.scaling]}


def _settle_allocator() -> None:
    # glibc serves blocks above a threshold with fresh mmap pages (a page fault per 4 KiB on
    # first touch) and raises that threshold, up to 32 MiB, each time such a block is freed.
    # A training process has long since freed large activations, so its threshold sits at the
    # top; a fresh process would instead charge NumPy's temporaries for page faults depending
    # on which cases ran before (7x at 100K). Freeing one large block reaches the steady state.
    block = np.empty(31 * 2**20, dtype=np.uint8)
    del block


def run(settings: Settings) -> Report:
    """Run the whole benchmark (progress goes to stderr).

    Args:
        settings: what to measure.
    """
    _settle_allocator()
    env = environment()
    original_threads = env["default_threads"]
    cases, scaling = [], []
    try:
        for name in settings.optimizers:
            spec = OPTIMIZERS[name]
            for case in settings.cases(spec):
                _log(f"[{name} {case.name}] {case.elements:,} elements, "
                     f"{len(case.shapes)} tensors ...")
                result = run_case(spec, case, settings)
                _log("    " + ", ".join(f"{peer} {_fmt_us(result.best(peer))} us"
                                        for peer in result.timings))
                cases.append(result)
            for case in settings.scaling_cases(spec):
                _log(f"[{name} {case.name}] thread scaling over {settings.threads} ...")
                scaling.append(run_scaling(spec, case, settings))
    finally:
        _set_threads(original_threads)
    return Report(settings, env, cases, scaling)


# --------------------------------------------------------------------------------------------
# Markdown.

NA = "n/a"

MAIN_COLUMNS = (
    "optimizer", "case", "elements", "ferroptim us", "Gelem/s", "GB/s", "roofline us",
    "roofline GB/s", "of roofline", "NumPy us", "vs NumPy", "NumPy out= us", "vs NumPy out=",
    "torch us", "vs torch",
)
MATRIX_COLUMNS = (
    "optimizer", "case", "elements", "tensors", "ferroptim ms", "Melem/s", "NumPy ms",
    "vs NumPy", "NumPy out= ms", "vs NumPy out=", "torch ms", "vs torch",
)
MARGINAL_COLUMNS = ("optimizer", "peer", "1 x 1K us", "100 x 1K us", "us per extra tensor")
SCALING_COLUMNS = ("optimizer", "case", "threads", "ferroptim us", "speedup", "roofline us",
                   "roofline speedup")
TARGET_COLUMNS = ("target", "measured", "met")


def _fmt_load(load: Optional[Sequence[float]]) -> str:
    if load is None:
        return "load average unknown"
    return "load average " + " ".join(f"{value:.2f}" for value in load) + " at start"


def _fmt_us(seconds: Optional[float]) -> str:
    if seconds is None:
        return NA
    us = seconds * 1e6
    if us < 10:
        return f"{us:.2f}"
    if us < 100:
        return f"{us:.1f}"
    return f"{us:,.0f}"


def _fmt_ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return NA
    ms = seconds * 1e3
    if ms < 1:
        return f"{ms:.3f}"
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def _fmt_rate(value: Optional[float]) -> str:
    if value is None:
        return NA
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _fmt_ratio(value: Optional[float]) -> str:
    return NA if value is None else f"{value:.2f}"


def _fmt_speedup(value: Optional[float]) -> str:
    if value is None:
        return NA
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], left: int) -> str:
    # The first `left` columns are names, left-aligned; the rest are numbers.
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join(":---" if i < left else "---:" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main_rows(report: Report) -> List[List[str]]:
    """The main table's cells, one row per (element-wise optimizer, case), columns as
    `MAIN_COLUMNS`.

    Args:
        report: the run.
    """
    rows = []
    for result in report.cases:
        if result.bytes_per_element is None:
            continue
        fo, roof = result.best("ferroptim"), result.best("roofline")
        elements, bpe = result.case.elements, result.bytes_per_element
        rows.append([
            result.optimizer, result.case.name, f"{elements:,}", _fmt_us(fo),
            _fmt_rate(_ratio(elements / 1e9, fo)), _fmt_rate(_ratio(elements * bpe / 1e9, fo)),
            _fmt_us(roof), _fmt_rate(_ratio(elements * bpe / 1e9, roof)),
            _fmt_ratio(_ratio(roof, fo)),
            _fmt_us(result.best("numpy")), _fmt_speedup(_ratio(result.best("numpy"), fo)),
            _fmt_us(result.best("numpy_out")),
            _fmt_speedup(_ratio(result.best("numpy_out"), fo)),
            _fmt_us(result.best("torch")), _fmt_speedup(_ratio(result.best("torch"), fo)),
        ])
    return rows


def matrix_rows(report: Report) -> List[List[str]]:
    """The cells of the table of the optimizers that are not element-wise (no roofline, no
    bytes per element), one row per (optimizer, case), columns as `MATRIX_COLUMNS`.

    Args:
        report: the run.
    """
    rows = []
    for result in report.cases:
        if result.bytes_per_element is not None:
            continue
        fo = result.best("ferroptim")
        rows.append([result.optimizer, result.case.name, f"{result.case.elements:,}",
                     str(len(result.case.shapes)), _fmt_ms(fo),
                     _fmt_rate(_ratio(result.case.elements / 1e6, fo))])
        for peer in ("numpy", "numpy_out", "torch"):
            rows[-1] += [_fmt_ms(result.best(peer)), _fmt_speedup(_ratio(result.best(peer), fo))]
    return rows


def marginal(report: Report) -> List[Tuple[str, str, float, float, float]]:
    """Marginal cost of one more small tensor: (optimizer, peer, t(1 x 1K), t(100 x 1K),
    (t(100 x 1K) - t(1 x 1K)) / 99), in seconds, for every peer measured on both cases.

    Args:
        report: the run; empty when it lacks either case of `MARGINAL_PAIR`.
    """
    rows = []
    for name in report.settings.optimizers:
        small, large = (report.find(name, case) for case in MARGINAL_PAIR)
        if small is None or large is None:
            continue
        extra = len(large.case.shapes) - len(small.case.shapes)
        for peer in MAIN_PEERS:
            t1, t100 = small.best(peer), large.best(peer)
            if t1 is not None and t100 is not None:
                rows.append((name, peer, t1, t100, (t100 - t1) / extra))
    return rows


def scaling_rows(report: Report) -> List[List[str]]:
    """The scaling table's cells, columns as `SCALING_COLUMNS`; speedups are against the
    first thread count given.

    Args:
        report: the run.
    """
    rows = []
    for result in report.scaling:
        base = result.timings[report.settings.threads[0]]
        for n, peers in result.timings.items():
            row = [result.optimizer, result.case.name, str(n)]
            # No roofline for an optimizer that is not element-wise: n/a.
            for peer in ("ferroptim", "roofline"):
                best = peers[peer].best if peer in peers else None
                first = base[peer].best if peer in base else None
                row += [_fmt_us(best), _fmt_speedup(_ratio(first, best))]
            rows.append(row)
    return rows


def targets(report: Report) -> List[Tuple[str, str, Optional[bool]]]:
    """DESIGN.md's performance targets that this run measured: (target, measured, met).

    Args:
        report: the run.
    """
    rows: List[Tuple[str, str, Optional[bool]]] = []

    def ratio_target(case: str, text: str, peer: str, bound: float, roofline: bool = False,
                     optimizer: str = "adam"):
        result = report.find(optimizer, case)
        if result is None:
            return
        fo, other = result.best("ferroptim"), result.best(peer)
        value = _ratio(other, fo)
        if value is None:
            rows.append((text, f"{peer} not measured", None))
        else:
            shown = _fmt_ratio(value) if roofline else _fmt_speedup(value)
            rows.append((text, shown, value >= bound))

    def time_target(case: str, text: str, bound_us: float):
        result = report.find("adam", case)
        if result is not None:
            us = result.best("ferroptim") * 1e6
            rows.append((text, f"{_fmt_us(us / 1e6)} us", us <= bound_us))

    ratio_target("32M", "Adam 32M: >= 0.9 of the roofline", "roofline", 0.9, roofline=True)
    ratio_target("32M", "Adam 32M: >= 1.0x torch fused", "torch", 1.0)
    ratio_target("32M", "Adam 32M: >= 10x NumPy", "numpy", 10.0)
    ratio_target("100K", "Adam 100K: >= 3x torch fused", "torch", 3.0)
    time_target("1K", "Adam 1K, one tensor: <= 3 us per call", 3.0)
    time_target("mlp", "Adam MLP 784-256-128-10: <= 40 us per step", 40.0)
    ratio_target("gpt2", "Adam GPT-2 small: no slower than torch fused", "torch", 1.0)
    # Every other optimizer's kernel is held to the floor of its own streams (Adam, above, to
    # a stricter bound).
    for name in report.settings.optimizers:
        if name != "adam" and OPTIMIZERS[name].element_wise:
            ratio_target("32M", f"{name} 32M: >= 0.85 of the roofline", "roofline", 0.85,
                         roofline=True, optimizer=name)
    for name, peer, _, _, extra in marginal(report):
        if name == "adam" and peer == "ferroptim":
            rows.append(("Adam: one more 1K tensor in a call <= 1 us",
                         f"{_fmt_us(extra)} us", extra <= 1e-6))
    threads = report.settings.threads
    if 1 in threads and max(threads) >= 2:
        for result in report.scaling:
            if result.optimizer == "adam":
                speedup = result.timings[1]["ferroptim"].best / \
                    result.timings[max(threads)]["ferroptim"].best
                rows.append((f"Adam {result.case.name}: {max(threads)} threads >= 1.8x one",
                             _fmt_speedup(speedup), speedup >= 1.8))
    return rows


def render_markdown(report: Report) -> str:
    """The Markdown report of a run.

    Args:
        report: the run.
    """
    env, settings = report.env, report.settings
    out = [
        "## ferroptim benchmark",
        "",
        f"ferroptim {env['ferroptim']}, SIMD level {env['simd_level']}, "
        f"{settings.main_threads} thread(s) on {env['cores']} core(s) ({env['cpu']}); "
        f"NumPy {env['numpy']}; {env['torch_note']}; Python {env['python']}; "
        f"{_fmt_load(env['load_average'])}. float32. "
        f"Best of {settings.repeats} timed blocks of >= {settings.min_block * 1e3:g} ms per peer, "
        f"peers alternating, all in one process.",
    ]
    rows = main_rows(report)
    if rows:
        out += ["", _table(MAIN_COLUMNS, rows, left=2)]
    rows = matrix_rows(report)
    if rows:
        out += ["", "### Optimizers that are not element-wise", "",
                "Adafactor reduces the rows and columns of each matrix and needs the RMS of "
                "its update before applying it; Muon multiplies matrices (Newton-Schulz) for "
                "its 2-D parameters and runs Adam on the others and on embeddings. Neither step "
                "is one pass over memory: no roofline. Milliseconds per step. NumPy's matrix "
                "products run on its BLAS with the BLAS's own thread count.",
                "", _table(MATRIX_COLUMNS, rows, left=2)]
    notes = sorted({f"{peer}: {reason}" for r in report.cases
                    for peer, reason in r.unavailable.items()}
                   | {f"{peer} ({r.optimizer}): {label}" for r in report.cases
                      for peer, label in r.labels.items()})
    if notes:
        out += [""] + [f"- {note}" for note in notes]
    rows = marginal(report)
    if rows:
        out += ["", "### Marginal cost of one more 1K tensor in a call", "",
                _table(MARGINAL_COLUMNS,
                       [[name, PEER_TITLES[peer], _fmt_us(t1), _fmt_us(t100), _fmt_us(extra)]
                        for name, peer, t1, t100, extra in rows], left=2)]
    if report.scaling:
        out += ["", "### Thread scaling", "",
                _table(SCALING_COLUMNS, scaling_rows(report), left=2)]
    goals = targets(report)
    if goals:
        out += ["", "### Targets (DESIGN.md section 4)", "",
                _table(TARGET_COLUMNS,
                       [[text, value, NA if met is None else "yes" if met else "**no**"]
                        for text, value, met in goals], left=1)]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Command line.


def execute(settings: Settings, stdout: TextIO = sys.stdout) -> Report:
    """Run the benchmark, print its Markdown, write the JSON if asked.

    Args:
        settings: what to measure (`settings_from_args`).
        stdout: where the Markdown goes.
    """
    report = run(settings)
    stdout.write(report.markdown())
    stdout.flush()
    if settings.json_path:
        with open(settings.json_path, "w", encoding="utf-8") as file:
            json.dump(report.to_json(), file, indent=1)
        _log(f"raw results written to {settings.json_path}")
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`benches/bench.py`: the same options as `python -m ferroptim bench`.

    Args:
        argv: the arguments, without the program name (default: sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    execute(settings)
    return 0
