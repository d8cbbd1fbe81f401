"""NumPy peers of the optimizers that are not element-wise (Adafactor, Muon): their state
builders (row and column factors; Muon's routing by rank and name) and their steps, as a NumPy
user writes them and with `out=` (see `numpy_steps` for the conventions).
"""

from __future__ import annotations

import math
import re
from operator import itemgetter
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ferroptim._bench.cases import Arrays
from ferroptim._bench.numpy_adam_steps import adam_numpy, adam_numpy_out
from ferroptim._bench.numpy_steps import Slots

# The hyperparameters each optimizer's steps read, in the order they unpack them.
_ADAFACTOR = itemgetter("learning_rate", "beta_2_decay", "epsilon_1", "epsilon_2", "clip_threshold")
_MUON = itemgetter("learning_rate", "momentum", "nesterov", "weight_decay", "rms_rate")
_NEWTON_SCHULZ = itemgetter("ns_steps", "muon_a", "muon_b", "muon_c")


def _muon_adam_hyper(hyper: Dict[str, Any]) -> Dict[str, Any]:
    # The Adam hyperparameters of Muon's AdamW path, once per step.
    return {
        "learning_rate": hyper["learning_rate"] * hyper["adam_lr_ratio"],
        "beta_1": hyper["adam_beta_1"],
        "beta_2": hyper["adam_beta_2"],
        "epsilon": hyper["epsilon"],
    }


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
    cs = [np.zeros(p.shape[:-2] + p.shape[-1:], p.dtype) if p.ndim >= 2 else None for p in params]
    return [rs, cs, [np.zeros_like(p) for p in params]]


def _adafactor_scalars(
    iterations: int, learning_rate: float, beta_2_decay: float
) -> Tuple[float, float]:
    # rho_t and beta_2_t. `relative_step` caps the learning rate at 1 / sqrt(t), then Keras
    # takes the same minimum again unconditionally: the switch changes nothing.
    t = iterations + 1
    return min(learning_rate, 1 / math.sqrt(t)), 1 - t**beta_2_decay


def adafactor_numpy(
    params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any
) -> None:
    """Adafactor as a NumPy user writes it (keras/src/optimizers/adafactor.py order);
    `relative_step` has no numerical effect (see `_adafactor_scalars`).

    Slots: `adafactor_state(params)`, updated in place.
    """
    learning_rate, beta_2_decay, epsilon_1, epsilon_2, clip_threshold = _ADAFACTOR(hyper)
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


def adafactor_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """Adafactor in in-place ufuncs over preallocated scratch (no temporaries; the sums of
    squares are BLAS dot products).

    Scratch: `[s, t]` per parameter; their leading elements also hold the row and column means.
    """
    learning_rate, beta_2_decay, epsilon_1, epsilon_2, clip_threshold = _ADAFACTOR(hyper)
    rho_t, beta_2_t = _adafactor_scalars(iterations, learning_rate, beta_2_decay)
    for p, g, r, c, v, (s, t) in zip(params, grads, *slots, scratch):
        flat_p, flat_s = p.reshape(-1), s.reshape(-1)
        alpha_t = max(epsilon_2, math.sqrt(float(np.dot(flat_p, flat_p)) / p.size)) * rho_t
        if p.ndim >= 2:
            # v holds the regulated squared gradient until it is rebuilt from r and c.
            np.multiply(g, g, out=v)
            v += epsilon_1
            row = flat_s[: r.size].reshape(r.shape)
            np.mean(v, axis=-1, out=row)
            row *= 1 - beta_2_t
            r *= beta_2_t
            r += row
            column = flat_s[: c.size].reshape(c.shape)
            np.mean(v, axis=-2, out=column)
            column *= 1 - beta_2_t
            c *= beta_2_t
            c += column
            r_mean = flat_s[: r.size // r.shape[-1]].reshape(r.shape[:-1] + (1,))
            np.mean(r, axis=-1, keepdims=True, out=r_mean)
            ratio = t.reshape(-1)[: r.size].reshape(r.shape)
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


def muon_state(
    params: Arrays,
    names: Sequence[str],
    *,
    exclude_embeddings: bool,
    exclude_layers: Optional[Sequence[str]],
    **hyperparameters: Any,
) -> List[Any]:
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
        return (
            p.ndim != 2
            or (exclude_embeddings and "embedding" in name.lower())
            or any(re.search(keyword, name) for keyword in exclude_layers or ())
        )

    return [
        [np.zeros_like(p) for p in params],
        [np.zeros_like(p) if adamw(p, name) else None for p, name in zip(params, names)],
    ]


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


def muon_numpy(params: Arrays, grads: Arrays, slots: Slots, iterations: int, **hyper: Any) -> None:
    """Muon as a NumPy user writes it (keras/src/optimizers/muon.py order): momentum, Newton-
    Schulz with NumPy's matrix products, and Adam (`adam_numpy`) on the AdamW path. Weight
    decay (`w - w * wd * learning_rate`, before the update) takes `adam_weight_decay` on the
    AdamW path, `weight_decay` on the other; `exclude_layers` and `exclude_embeddings` are not
    read: the routing is in `slots`.

    Slots: `muon_state(params, names)`, updated in place.
    """
    learning_rate, momentum, nesterov, weight_decay, rms_rate = _MUON(hyper)
    ns_steps, muon_a, muon_b, muon_c = _NEWTON_SCHULZ(hyper)
    adam_weight_decay, adam_hyper = hyper["adam_weight_decay"], _muon_adam_hyper(hyper)
    momentums, velocities = slots
    for p, g, m, v in zip(params, grads, momentums, velocities):
        if v is not None:
            if adam_weight_decay is not None:
                p -= p * adam_weight_decay * learning_rate
            adam_numpy(
                [p],
                [g],
                [[m], [v]],
                iterations,
                **adam_hyper,
            )
            continue
        if weight_decay is not None:
            p -= p * weight_decay * learning_rate
        m += g + m * (momentum - 1)
        x = g + momentum * m if nesterov else m
        update = learning_rate * _newton_schulz_numpy(x, ns_steps, muon_a, muon_b, muon_c)
        if rms_rate is not None:
            update *= math.sqrt(max(p.shape)) * rms_rate
        p -= update


def _newton_schulz_numpy_out(
    x: np.ndarray,
    steps: int,
    a: float,
    b: float,
    c: float,
    other: np.ndarray,
    gram_buffer: np.ndarray,
    poly_buffer: np.ndarray,
) -> np.ndarray:
    # `_newton_schulz_numpy` with `out=` products into scratch; `x` is overwritten and the
    # result is `x` or `other` (both of x's shape). A tall x = X^T is not transposed: the
    # iteration on X runs on x itself, A = x^T x and x' = a x + x B (A and B are symmetric),
    # so every product writes a contiguous array.
    wide = x.shape[0] <= x.shape[1]
    size = min(x.shape)
    gram = gram_buffer.reshape(-1)[: size * size].reshape(size, size)
    poly = poly_buffer.reshape(-1)[: size * size].reshape(size, size)
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


def muon_numpy_out(
    params: Arrays, grads: Arrays, slots: Slots, scratch: Slots, iterations: int, **hyper: Any
) -> None:
    """Muon in in-place ufuncs and `out=` matrix products over preallocated scratch, and
    `adam_numpy_out` on the AdamW path.

    Scratch: `[s, t, gram, poly]` per parameter (the last two hold the min(rows, cols)-square
    matrices).
    """
    learning_rate, momentum, nesterov, weight_decay, rms_rate = _MUON(hyper)
    ns_steps, muon_a, muon_b, muon_c = _NEWTON_SCHULZ(hyper)
    adam_weight_decay, adam_hyper = hyper["adam_weight_decay"], _muon_adam_hyper(hyper)
    momentums, velocities = slots
    for p, g, m, v, (s, t, gram, poly) in zip(params, grads, momentums, velocities, scratch):
        decay = adam_weight_decay if v is not None else weight_decay
        if decay is not None:
            np.multiply(p, decay, out=s)
            s *= learning_rate
            p -= s
        if v is not None:
            adam_numpy_out(
                [p],
                [g],
                [[m], [v]],
                [[s]],
                iterations,
                **adam_hyper,
            )
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
