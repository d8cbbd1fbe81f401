"""An independent NumPy reference of Keras 3's optimizer step, for the tests.

It re-derives, from the Keras 3 formulas (`keras/src/optimizers/base_optimizer.py`, `sgd.py`,
`rmsprop.py`, `adam.py`, `adamw.py`, `adagrad.py`, `adadelta.py`, `adamax.py`, `nadam.py`,
`lion.py`, `ftrl.py`, `lamb.py`, `schedule_free_adamw.py`, `adafactor.py`, `muon.py` of Keras
3.13+), what one `apply` call does, in Keras's order of operations:

    loss-scale unscale -> gradient accumulation -> clipnorm | global_clipnorm | clipvalue
    -> decoupled weight decay -> update_step (list order) -> EMA (+ overwrite) -> iterations += 1

and nothing of ferroptim is imported here, so the tests compare two independent derivations.

Working dtype. Every tensor is processed in its own dtype, as Keras does (`ops.cast(x, var.dtype)`):
give it float32 arrays and it is a float32 emulation of Keras, give it float64 arrays and it is a
float64 reference. The scalars follow Keras's rules:

1. A plain Python expression (`1 - beta_1`, `1.0 / clip_norm`) is computed in double and rounded
   once to the working dtype when it meets a tensor. Where Keras casts a hyperparameter to the
   variable's dtype first (Lion's and Nadam's betas), `1 - beta` is computed in that dtype.
2. A scalar that Keras computes from tensors (`beta_1 ** t`, `1 - beta_1_power`, the bias-corrected
   step size, `1 - ema_momentum`) is computed in the working dtype. Its powers (and Ftrl's
   element-wise `n ** -p`) are correctly rounded to that dtype (`cr_pow`), the value ferroptim
   promises on every CPU, never NumPy's float32 `power`, whose last bit depends on the CPU.
3. A float learning rate is stored by Keras in a float32 variable: it is rounded to float32 first,
   then cast to the working dtype (so float64 parameters see `float64(float32(lr))`).
4. A schedule's or callable's value is cast to the working dtype as returned.

The one place where the reference does not follow Keras's exact arithmetic is a sum (of squares
for clipnorm, global_clipnorm, Lamb's norms, Adafactor's RMS and Muon's Frobenius norm; of
elements for Adafactor's row and column means): it is accumulated in float64 and rounded once to
the working dtype, the most accurate value a float32 implementation can produce; any summation
order agrees with it to a few units in the last place. Muon's matrix products are NumPy's, in the
working dtype.

Keras 2's `decay` (not in Keras 3) is modelled as tf.keras's OptimizerV2 did it:
`lr_t = lr / (1 + decay * iterations)`, applied to the learning rate every use of it sees
(weight decay included).
"""

from __future__ import annotations

import decimal
import functools
import inspect
import math
import re
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Union

import numpy as np

LearningRate = Union[float, Callable[..., float]]


# --- correctly rounded powers, logs and cosines ---------------------------------------------------
#
# ferroptim promises the same bits on every CPU, so each scalar a step derives (bias corrections,
# Nadam's momentum cache, Ftrl's accumulator powers) is the correctly rounded value in its dtype.
# The reference must not take those from NumPy's float32 ufuncs (SIMD approximations that differ
# between AVX2 and AVX-512) nor from the C library's pow (whose last bit differs between libraries):
# it computes them here, with the decimal module at 60+ significant digits, and rounds that value
# to the dtype in exact rational arithmetic.


def _nearest(q: Fraction, dtype: type) -> float:
    """The value of `dtype` (float32 or float64) nearest to the rational q, ties to even, with
    subnormals and overflow to inf; returned as a Python float, which holds it exactly."""
    info = np.finfo(dtype)
    if q == 0:
        return 0.0
    sign, a = (-1.0 if q < 0 else 1.0), abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()  # 2**(e-1) < a < 2**(e+1)
    if a < Fraction(2) ** e:
        e -= 1
    quantum = max(e, info.minexp) - info.nmant  # the spacing of dtype's values around a
    n = round(a / Fraction(2) ** quantum)  # Fraction rounds half to even
    if n.bit_length() + quantum > info.maxexp:
        return sign * math.inf
    return sign * math.ldexp(n, quantum)


def _context(digits: int) -> decimal.Context:
    # No trap and the widest exponent range: 0.9 ** 2**63 is a (tiny) number, not an error.
    return decimal.Context(prec=digits, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[])


def _bounds(value: decimal.Decimal, radius: decimal.Decimal, dtype: type) -> Tuple[float, float]:
    """The dtype values that `value - radius` and `value + radius` round to."""
    sign = -1.0 if value.is_signed() else 1.0
    if value.is_infinite() or value.adjusted() > 400:
        return sign * math.inf, sign * math.inf  # far beyond float64's range (1.8e308)
    if value.is_zero() or value.adjusted() < -400:
        return sign * 0.0, sign * 0.0  # far below float64's smallest subnormal (4.9e-324)
    center, error = Fraction(value), Fraction(radius)
    return _nearest(center - error, dtype), _nearest(center + error, dtype)


def _decide(approximate: Callable[[int], tuple], dtype: type, exact=None) -> float:
    """Ziv's strategy: evaluate `approximate(digits)` -> (value, error radius) at growing
    precision until the whole interval rounds to one dtype value. `exact(midpoint)`, when given,
    tells whether the true value IS the midpoint between two dtype values, which no precision
    decides; the midpoint then rounds half to even."""
    for digits in (60, 120, 240, 480):
        low, high = _bounds(*approximate(digits), dtype)
        if low == high:
            return low
        adjacent = np.nextafter(dtype(low), dtype(high)) == dtype(high)
        if exact is not None and adjacent and math.isfinite(high):
            midpoint = (Fraction(low) + Fraction(high)) / 2
            if exact(midpoint):
                return _nearest(midpoint, dtype)
    raise ArithmeticError("no correctly rounded result at 480 digits")


def _is_odd_integer(y: float) -> bool:
    return y == math.floor(y) and abs(y) < 2.0**64 and int(y) % 2 == 1


def _pow(x: float, y: float, dtype: type) -> float:
    """C99's pow on its special operands (Annex F), `_positive_pow` for the rest."""
    if y == 0 or x == 1:
        return 1.0
    if math.isnan(x) or math.isnan(y):
        return math.nan
    if math.isinf(y):
        if abs(x) == 1:
            return 1.0
        return math.inf if (abs(x) > 1) == (y > 0) else 0.0
    sign = 1.0
    if math.copysign(1.0, x) < 0:  # -0.0 included
        if x != 0 and not math.isinf(x) and y != math.floor(y):
            return math.nan  # a negative base and a non-integer exponent
        sign = -1.0 if _is_odd_integer(y) else 1.0
    if x == 0:
        return sign * (0.0 if y > 0 else math.inf)
    if math.isinf(x):
        return sign * (math.inf if y > 0 else 0.0)
    return sign * _positive_pow(abs(x), y, dtype)


# Cached: the same bias corrections recur step after step. (Never a zero argument: -0.0 would
# find 0.0's entry.)
@functools.lru_cache(maxsize=1 << 16)
def _positive_pow(x: float, y: float, dtype: type) -> float:
    """`x ** y` for finite x > 0 and finite y != 0, correctly rounded to dtype."""

    def approximate(digits):
        value = _context(digits).power(decimal.Decimal(x), decimal.Decimal(y))
        return value, abs(value).scaleb(3 - digits)  # decimal's power is within an ulp

    def exact(midpoint):
        # x ** (a / b) == m  <=>  x ** a == m ** b; only small a and b can give a midpoint.
        a, b = Fraction(y).numerator, Fraction(y).denominator
        return abs(a) <= 2048 and b <= 2048 and Fraction(x) ** a == midpoint**b

    return _decide(approximate, dtype, exact)


def cr_pow(x, y, dtype: type):
    """`x ** y` correctly rounded to `dtype` (np.float32 or np.float64), as C99's pow for the
    special cases (0, inf, nan, a negative base with an integer exponent); x and y are cast to
    dtype first, as a tensor operation does. Returns a NumPy scalar of dtype."""
    T = np.dtype(dtype).type
    return T(_pow(float(T(x)), float(T(y)), T))


@functools.lru_cache(maxsize=1 << 16)
def _log(x: float, dtype: type) -> float:
    if math.isnan(x) or x < 0:
        return math.nan
    if x == 0:
        return -math.inf
    if math.isinf(x):
        return math.inf

    def approximate(digits):
        value = _context(digits).ln(decimal.Decimal(x))  # decimal's ln is correctly rounded
        return value, abs(value).scaleb(1 - digits)

    return _decide(approximate, dtype)  # ln(x) is transcendental but at 1: never a midpoint


def cr_log(x, dtype: type):
    """The natural logarithm of x correctly rounded to `dtype` (log(0) = -inf, log(x < 0) = nan);
    x is cast to dtype first. Returns a NumPy scalar of dtype."""
    T = np.dtype(dtype).type
    return T(_log(float(T(x)), T))


@functools.lru_cache(maxsize=None)
def _pi(digits: int) -> decimal.Decimal:
    """pi to `digits` significant digits (the decimal module documentation's series)."""
    with decimal.localcontext(_context(digits + 2)):
        lasts, t, s, n, na, d, da = 0, decimal.Decimal(3), 3, 1, 0, 0, 24
        while s != lasts:
            lasts = s
            n, na = n + na, na + 8
            d, da = d + da, da + 32
            t = (t * n) / d
            s += t
    return _context(digits).plus(s)


@functools.lru_cache(maxsize=1 << 16)
def _cos(x: float, dtype: type) -> float:
    if not math.isfinite(x):
        return math.nan

    def approximate(digits):
        # Reduce by a multiple of 2 pi carried to x's magnitude plus `digits` digits, so that
        # the remainder r, |r| <= pi, is good to about 10**-digits; then cos's Taylor series.
        X = decimal.Decimal(x)
        precision = digits + max(0, X.adjusted()) + 5
        with decimal.localcontext(_context(precision)):
            two_pi = 2 * _pi(precision)
            r = X - two_pi * (X / two_pi).to_integral_value()
            term, total, k = decimal.Decimal(1), decimal.Decimal(1), 0
            while abs(term) > decimal.Decimal(10).scaleb(-precision - 5):
                k += 2
                term = -term * r * r / (k * (k - 1))
                total += term
        return total, decimal.Decimal(1).scaleb(3 - digits)  # an absolute error bound

    return _decide(approximate, dtype)  # cos(x) is transcendental but at 0: never a midpoint


def cr_cos(x, dtype: type):
    """cos(x) (radians) correctly rounded to `dtype` (cos(inf) = nan); x is cast to dtype
    first. Returns a NumPy scalar of dtype."""
    T = np.dtype(dtype).type
    return T(_cos(float(T(x)), T))


def _takes_step(fn: Callable) -> bool:
    """Whether a learning-rate callable is a schedule (called with the step) or a plain callable.

    Keras calls a `LearningRateSchedule` with the raw iteration count and any other callable with
    no argument; the reference tells them apart by their signature so it needs no schedule class.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD) and (
            parameter.default is parameter.empty
        ):
            return True
    return False


class SGDRule:
    """Keras 3 SGD's `update_step` (sgd.py).

    Args:
        momentum: the momentum coefficient; 0 means no `momentum` slot.
        nesterov: whether the Nesterov form is used.
    """

    def __init__(self, momentum: float = 0.0, nesterov: bool = False):
        self.momentum = momentum
        self.nesterov = nesterov
        self.momentums: List[np.ndarray] = []

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the slots; return them in Keras's `variables` order."""
        self.momentums = [np.zeros_like(p) for p in params] if self.momentum != 0 else []
        return list(self.momentums)

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place."""
        T = w.dtype.type
        lr_t = T(lr)
        if self.momentum != 0:
            m = self.momentums[index]
            momentum = T(self.momentum)
            m[...] = m * momentum - g * lr_t
            if self.nesterov:
                w[...] = w + (m * momentum - g * lr_t)
            else:
                w[...] = w + m
        else:
            w[...] = w - g * lr_t


class AdamRule:
    """Keras 3 Adam's `update_step` (adam.py); AdamW is this rule plus the base weight decay.

    Args:
        beta_1, beta_2: the moment decay rates.
        epsilon: Keras's "epsilon hat", added to the uncorrected `sqrt(v)`.
        amsgrad: whether `velocity_hat = max(velocity_hat, v)` replaces `v` in the denominator.
    """

    def __init__(
        self,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
    ):
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad
        self.momentums: List[np.ndarray] = []
        self.velocities: List[np.ndarray] = []
        self.velocity_hats: List[np.ndarray] = []

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the slots; return them in Keras's `variables` order: m, v interleaved, v_hat."""
        self.momentums = [np.zeros_like(p) for p in params]
        self.velocities = [np.zeros_like(p) for p in params]
        self.velocity_hats = [np.zeros_like(p) for p in params] if self.amsgrad else []
        order: List[np.ndarray] = []
        for m, v in zip(self.momentums, self.velocities):
            order += [m, v]
        return order + list(self.velocity_hats)

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place (`iterations`: the count before it)."""
        T = w.dtype.type
        lr_t = T(lr)
        local_step = T(iterations + 1)
        beta_1_power = cr_pow(T(self.beta_1), local_step, T)
        beta_2_power = cr_pow(T(self.beta_2), local_step, T)
        alpha = lr_t * np.sqrt(T(1) - beta_2_power) / (T(1) - beta_1_power)
        m = self.momentums[index]
        v = self.velocities[index]
        m[...] = m + (g - m) * T(1 - self.beta_1)
        v[...] = v + (np.square(g) - v) * T(1 - self.beta_2)
        if self.amsgrad:
            v_hat = self.velocity_hats[index]
            v_hat[...] = np.maximum(v_hat, v)
            v = v_hat
        w[...] = w - (m * alpha) / (np.sqrt(v) + T(self.epsilon))


def _interleave(*lists: List[np.ndarray]) -> List[np.ndarray]:
    """Slots created variable by variable (Keras's `add_optimizer_variables` with several names)."""
    return [slot for group in zip(*lists) for slot in group]


def _divide_by_scalar(x: np.ndarray, s, xla: bool) -> np.ndarray:
    """`x / s` for a tensor x and a scalar s (in x's dtype).

    XLA, behind Keras's JAX backend (where docs/keras.md's golden values come from), rewrites a
    division by a broadcast scalar into a multiplication by the scalar's reciprocal, which can
    round differently by one ulp. Keras's source (and its NumPy backend) divides; `xla=True`
    reproduces XLA's rounding instead, for the bit-exact comparisons with the golden values.
    """
    if xla:
        return x * (type(s)(1) / s)
    return x / s


def _power(x: np.ndarray, exponent: float) -> np.ndarray:
    """`x ** exponent` element-wise in x's dtype (the exponent cast to it), every element as
    `cr_pow` gives it.

    cr_pow takes about 0.1 ms, and Ftrl's tests raise thousands of accumulators to a power each
    step, so most elements are decided from NumPy's power in a wider type instead. That power is
    within a few ulps (of the wider type) of the truth on any CPU, SIMD kernel or C library
    alike, so where 16 such ulps either side round to one value of x's dtype, that value is the
    correctly rounded one. The rest go through cr_pow: about one element in 10**7 for float32
    (from float64), one in a hundred for float64 (from an x87 long double), and all of them
    where long double is no wider than float64.
    """
    T = x.dtype.type
    y = T(exponent)
    flat = x.ravel()
    out = np.empty(flat.shape, T)
    undecided = np.ones(flat.shape, bool)
    wide = np.float64 if T is np.float32 else np.longdouble
    if np.finfo(wide).nmant >= np.finfo(T).nmant + 8:
        with np.errstate(all="ignore"):
            approx = np.power(flat.astype(wide), wide(y))
            margin = np.abs(approx) * wide(2.0 ** (4 - np.finfo(wide).nmant))
            out[...] = (approx - margin).astype(T)
            undecided = (
                (out != (approx + margin).astype(T))
                | ~(flat > 0)
                | ~(np.abs(approx) >= np.finfo(wide).tiny)
                | ~np.isfinite(approx)
            )
    for i in np.flatnonzero(undecided):
        out[i] = cr_pow(flat[i], y, T)
    return out.reshape(x.shape)


class RMSpropRule:
    """Keras 3 RMSprop's `update_step` (rmsprop.py): epsilon inside the square root.

    Args:
        rho: the decay of the moving averages; `rho` and `1 - rho` are Python scalars rounded
            when they meet a tensor.
        momentum: the momentum coefficient; the `momentum` slots exist only when it is > 0.
        epsilon: added to the denominator inside the square root.
        centered: whether the `average_gradient` slots center the second moment.
    """

    def __init__(
        self,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
    ):
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered
        self.velocities: List[np.ndarray] = []
        self.momentums: List[np.ndarray] = []
        self.average_gradients: List[np.ndarray] = []

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the slots; return them in Keras's order: every velocity, every momentum, every
        average gradient (three groups, not interleaved)."""
        self.velocities = [np.zeros_like(p) for p in params]
        self.momentums = [np.zeros_like(p) for p in params] if self.momentum > 0 else []
        self.average_gradients = [np.zeros_like(p) for p in params] if self.centered else []
        return self.velocities + self.momentums + self.average_gradients

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place."""
        T = w.dtype.type
        lr_t = T(lr)
        rho = T(self.rho)
        one_minus_rho = T(1 - self.rho)
        v = self.velocities[index]
        v[...] = rho * v + one_minus_rho * np.square(g)
        if self.centered:
            a = self.average_gradients[index]
            a[...] = rho * a + one_minus_rho * g
            denominator = v - np.square(a) + T(self.epsilon)
        else:
            denominator = v + T(self.epsilon)
        increment = (lr_t * g) / np.sqrt(denominator)
        if self.momentum > 0:
            mom = self.momentums[index]
            mom[...] = T(self.momentum) * mom + increment
            w[...] = w - mom
        else:
            w[...] = w - increment


class AdagradRule:
    """Keras 3 Adagrad's `update_step` (adagrad.py): epsilon inside the square root.

    Args:
        initial_accumulator_value: the accumulators' starting value (rounded to the dtype).
        epsilon: added to the accumulator inside the square root.
    """

    def __init__(self, initial_accumulator_value: float = 0.1, epsilon: float = 1e-7):
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon
        self.accumulators: List[np.ndarray] = []

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the `accumulator` slots (Keras's Constant initializer)."""
        self.accumulators = [np.full_like(p, self.initial_accumulator_value) for p in params]
        return list(self.accumulators)

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place."""
        T = w.dtype.type
        acc = self.accumulators[index]
        acc[...] = acc + np.square(g)
        w[...] = w - (T(lr) * g) / np.sqrt(acc + T(self.epsilon))


class AdadeltaRule:
    """Keras 3 Adadelta's `update_step` (adadelta.py): epsilon inside both square roots; the
    update uses the accumulated deltas of the previous steps.

    Args:
        rho: the decay of both running averages (`rho`, `1 - rho`: Python scalars).
        epsilon: added inside both square roots.
    """

    def __init__(self, rho: float = 0.95, epsilon: float = 1e-7):
        self.rho = rho
        self.epsilon = epsilon
        self.accumulated_grads: List[np.ndarray] = []
        self.accumulated_delta_vars: List[np.ndarray] = []

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the slots, interleaved: accumulated_grad, accumulated_delta_var."""
        self.accumulated_grads = [np.zeros_like(p) for p in params]
        self.accumulated_delta_vars = [np.zeros_like(p) for p in params]
        return _interleave(self.accumulated_grads, self.accumulated_delta_vars)

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place."""
        T = w.dtype.type
        rho = T(self.rho)
        one_minus_rho = T(1 - self.rho)
        epsilon = T(self.epsilon)
        eg = self.accumulated_grads[index]
        edx = self.accumulated_delta_vars[index]
        eg[...] = rho * eg + one_minus_rho * np.square(g)
        delta = -((np.sqrt(edx + epsilon) * g) / np.sqrt(eg + epsilon))
        edx[...] = rho * edx + one_minus_rho * np.square(delta)
        w[...] = w + T(lr) * delta


class AdamaxRule:
    """Keras 3 Adamax's `update_step` (adamax.py).

    Args:
        beta_1: decay of the first moment (`1 - beta_1` is a Python scalar; `beta_1 ** t` is
            computed in the working dtype).
        beta_2: decay of the infinity norm.
        epsilon: added to the norm.
    """

    def __init__(self, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7):
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.momentums: List[np.ndarray] = []
        self.norms: List[np.ndarray] = []

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the slots, interleaved: momentum, norm."""
        self.momentums = [np.zeros_like(p) for p in params]
        self.norms = [np.zeros_like(p) for p in params]
        return _interleave(self.momentums, self.norms)

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place (`iterations`: the count before it)."""
        T = w.dtype.type
        local_step = T(iterations + 1)
        beta_1_power = cr_pow(T(self.beta_1), local_step, T)
        m = self.momentums[index]
        u = self.norms[index]
        m[...] = m + (g - m) * T(1 - self.beta_1)
        u[...] = np.maximum(T(self.beta_2) * u, np.abs(g))
        w[...] = w - (T(lr) * m) / ((T(1) - beta_1_power) * (u + T(self.epsilon)))


class NadamRule:
    """Keras 3 Nadam (nadam.py): `begin_step` is its `_backend_update_step` (the momentum-cache
    product, once per update step, in the dtype of the first variable), `update` its
    `update_step`. `beta_1`, `beta_2` and 0.96 are cast to the working dtype first, so `1 - beta`
    is computed in that dtype.

    Args:
        beta_1, beta_2: the moment decay rates (beta_1 also scales the momentum cache).
        epsilon: added to `sqrt(v_hat)`.
        schedule_decay: Keras 2's exponent scale of the momentum cache (`0.96 ** (t * s)`), or
            None for Keras 3's `0.96 ** t`.
    """

    # True: divide by a scalar as XLA does (see `_divide_by_scalar`).
    xla_scalar_division = False

    def __init__(
        self,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        schedule_decay: Optional[float] = None,
    ):
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.schedule_decay = schedule_decay
        self.momentums: List[np.ndarray] = []
        self.velocities: List[np.ndarray] = []
        self.u_product = np.ones((), np.float32)

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the slots; return them in Keras's order: momentum, velocity interleaved, then
        the scalar `u_product` (1.0 in the first variable's dtype, float32 without variables)."""
        self.momentums = [np.zeros_like(p) for p in params]
        self.velocities = [np.zeros_like(p) for p in params]
        self.u_product = np.ones((), params[0].dtype if len(params) else np.float32)
        return _interleave(self.momentums, self.velocities) + [self.u_product]

    def _cache(self, T: type, step: int):
        """The momentum cache's factor `1 - 0.5 * 0.96 ** step` in dtype T (the exponent is
        `step * schedule_decay` with Keras 2's `schedule_decay`)."""
        exponent = T(step)
        if self.schedule_decay is not None:
            exponent = exponent * T(self.schedule_decay)
        return T(1.0) - T(0.5) * cr_pow(T(0.96), exponent, T)

    def begin_step(self, iterations: int) -> None:
        """`u_product = u_product * beta_1 * (1 - 0.5 * 0.96 ** t)`, before any variable."""
        T = self.u_product.dtype.type
        self.u_product[()] = self.u_product[()] * T(self.beta_1) * self._cache(T, iterations + 1)

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place (`iterations`: the count before it)."""
        T = w.dtype.type
        beta_1 = T(self.beta_1)
        beta_2 = T(self.beta_2)
        u_t = beta_1 * self._cache(T, iterations + 1)
        u_t_1 = beta_1 * self._cache(T, iterations + 2)
        u_product_t = T(self.u_product[()])
        u_product_t_1 = u_product_t * u_t_1
        beta_2_power = cr_pow(beta_2, T(iterations + 1), T)
        m = self.momentums[index]
        v = self.velocities[index]
        m[...] = m + (g - m) * (T(1) - beta_1)
        v[...] = v + (np.square(g) - v) * (T(1) - beta_2)
        xla = self.xla_scalar_division
        m_hat = _divide_by_scalar(u_t_1 * m, T(1) - u_product_t_1, xla) + _divide_by_scalar(
            (T(1) - u_t) * g, T(1) - u_product_t, xla
        )
        v_hat = _divide_by_scalar(v, T(1) - beta_2_power, xla)
        w[...] = w - (m_hat * T(lr)) / (np.sqrt(v_hat) + T(self.epsilon))


class LionRule:
    """Keras 3 Lion's `update_step` (lion.py): the betas are cast to the working dtype first,
    so `1 - beta` is computed in that dtype; `sign(0) = 0`.

    Args:
        beta_1: the interpolation weight of the momentum in the sign.
        beta_2: the decay of the momentum.
    """

    def __init__(self, beta_1: float = 0.9, beta_2: float = 0.99):
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.momentums: List[np.ndarray] = []

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the `momentum` slots."""
        self.momentums = [np.zeros_like(p) for p in params]
        return list(self.momentums)

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place."""
        T = w.dtype.type
        beta_1 = T(self.beta_1)
        beta_2 = T(self.beta_2)
        m = self.momentums[index]
        w[...] = w - T(lr) * np.sign(m * beta_1 + g * (T(1.0) - beta_1))
        m[...] = m * beta_2 + g * (T(1.0) - beta_2)


class FtrlRule:
    """Keras 3 Ftrl's `update_step` (ftrl.py): the variable is replaced by the closed-form
    minimizer of the linear term plus L1 and L2.

    Args:
        learning_rate_power: p <= 0; the per-coordinate rate is `n ** (-p) / lr`.
        initial_accumulator_value: the accumulators' starting value.
        l1_regularization_strength, l2_regularization_strength,
        l2_shrinkage_regularization_strength, beta: as in Keras (`2 * l2_shrinkage` is a Python
            scalar; `l2 + beta / (2 * lr)` is computed in the working dtype, lr being a tensor).
    """

    # True: divide by the learning rate as XLA does (see `_divide_by_scalar`).
    xla_scalar_division = False

    def __init__(
        self,
        learning_rate_power: float = -0.5,
        initial_accumulator_value: float = 0.1,
        l1_regularization_strength: float = 0.0,
        l2_regularization_strength: float = 0.0,
        l2_shrinkage_regularization_strength: float = 0.0,
        beta: float = 0.0,
    ):
        self.learning_rate_power = learning_rate_power
        self.initial_accumulator_value = initial_accumulator_value
        self.l1 = l1_regularization_strength
        self.l2 = l2_regularization_strength
        self.l2_shrinkage = l2_shrinkage_regularization_strength
        self.beta = beta
        self.accumulators: List[np.ndarray] = []
        self.linears: List[np.ndarray] = []

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the slots, interleaved: accumulator (Constant initializer), linear (zeros)."""
        self.accumulators = [np.full_like(p, self.initial_accumulator_value) for p in params]
        self.linears = [np.zeros_like(p) for p in params]
        return _interleave(self.accumulators, self.linears)

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place."""
        T = w.dtype.type
        lr_t = T(lr)
        power = -self.learning_rate_power
        l2_reg = T(self.l2) + T(self.beta) / (T(2.0) * lr_t)
        accum = self.accumulators[index]
        linear = self.linears[index]
        grad_to_use = g + T(2 * self.l2_shrinkage) * w
        new_accum = accum + np.square(g)
        new_accum_power = _power(new_accum, power)
        xla = self.xla_scalar_division
        sigma = _divide_by_scalar(new_accum_power - _power(accum, power), lr_t, xla)
        linear[...] = linear + (grad_to_use - sigma * w)
        quadratic = _divide_by_scalar(new_accum_power, lr_t, xla) + T(2) * l2_reg
        linear_clipped = np.clip(linear, T(-self.l1), T(self.l1))
        w[...] = (linear_clipped - linear) / quadratic
        accum[...] = new_accum


class LambRule:
    """Keras 3 Lamb's `update_step` (lamb.py): Adam's moments, a bias-corrected direction with
    epsilon added after the square root, and a per-tensor trust ratio `||w|| / ||r||` (1 when
    either norm is 0), `w` being the value after the base weight decay.

    Args:
        beta_1, beta_2: the moment decay rates (`1 - beta` is a Python scalar; `beta ** t` is
            computed in the working dtype).
        epsilon: added to `sqrt(v_hat)`.
    """

    # True: divide by the bias corrections as XLA does (see `_divide_by_scalar`).
    xla_scalar_division = False

    def __init__(self, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7):
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.momentums: List[np.ndarray] = []
        self.velocities: List[np.ndarray] = []

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the slots, interleaved: momentum, velocity."""
        self.momentums = [np.zeros_like(p) for p in params]
        self.velocities = [np.zeros_like(p) for p in params]
        return _interleave(self.momentums, self.velocities)

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place (`iterations`: the count before it)."""
        T = w.dtype.type
        local_step = T(iterations + 1)
        beta_1_power = cr_pow(T(self.beta_1), local_step, T)
        beta_2_power = cr_pow(T(self.beta_2), local_step, T)
        m = self.momentums[index]
        v = self.velocities[index]
        m[...] = m + (g - m) * T(1 - self.beta_1)
        v[...] = v + (np.square(g) - v) * T(1 - self.beta_2)
        xla = self.xla_scalar_division
        m_t_hat = _divide_by_scalar(m, T(1.0) - beta_1_power, xla)
        v_sqrt = np.sqrt(_divide_by_scalar(v, T(1.0) - beta_2_power, xla)) + T(self.epsilon)
        update = m_t_hat / v_sqrt
        w_norm = np.sqrt(T(sum_of_squares(w)))
        g_norm = np.sqrt(T(sum_of_squares(update)))
        ratio = w_norm / g_norm if w_norm > 0 and g_norm > 0 else T(1.0)
        w[...] = w - (ratio * T(lr)) * update


class ScheduleFreeAdamWRule:
    """Keras 3 ScheduleFreeAdamW's `update_step` (schedule_free_adamw.py): the variable holds y,
    the `momentum` slot z (a copy of the variable at build), `velocity` the second moment; every
    scalar (the betas, 1 - beta, 1 / t, the warmup factor) is in the working dtype.

    Args:
        beta_1: the interpolation weight between x and z.
        beta_2: the decay of the second moment.
        epsilon: added to the bias-corrected square root.
        warmup_steps: the learning rate is scaled by min(t / warmup_steps, 1) when > 0.
    """

    # True: divide by a scalar as XLA does (see `_divide_by_scalar`).
    xla_scalar_division = False

    def __init__(
        self,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        warmup_steps: int = 0,
    ):
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.warmup_steps = warmup_steps
        self.momentums: List[np.ndarray] = []
        self.velocities: List[np.ndarray] = []

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the slots, interleaved: momentum (a copy of the variable), velocity (zeros)."""
        self.momentums = [np.array(p, copy=True) for p in params]
        self.velocities = [np.zeros_like(p) for p in params]
        return _interleave(self.momentums, self.velocities)

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place (`iterations`: the count before it)."""
        T = w.dtype.type
        lr_t = T(lr)
        local_step = T(iterations + 1)
        beta_1 = T(self.beta_1)
        beta_2 = T(self.beta_2)
        if self.warmup_steps > 0:
            lr_t = lr_t * np.minimum(local_step / T(self.warmup_steps), T(1.0))
        z = self.momentums[index]
        v = self.velocities[index]
        z_old = z.copy()
        bias_correction_2 = T(1) - cr_pow(beta_2, local_step, T)
        v[...] = v + (np.square(g) - v) * (T(1) - beta_2)
        xla = self.xla_scalar_division
        denom = np.sqrt(_divide_by_scalar(v, bias_correction_2, xla)) + T(self.epsilon)
        z[...] = z - (lr_t * g) / denom
        weight = T(1.0) / local_step
        x_old = _divide_by_scalar(w - (T(1) - beta_1) * z_old, beta_1, xla)
        x_new = (T(1) - weight) * x_old + weight * z
        w[...] = (T(1) - beta_1) * z + beta_1 * x_new


def _mean(x: np.ndarray, axis: Optional[int] = None, keepdims: bool = False) -> np.ndarray:
    """Keras's `ops.mean` in x's dtype: the sum (accumulated in float64, rounded once, as every
    sum of the reference) divided by the element count."""
    T = x.dtype.type
    total = np.sum(x, axis=axis, dtype=np.float64, keepdims=keepdims)
    count = x.size if axis is None else x.shape[axis]
    return np.asarray(total).astype(x.dtype) / T(count)


def _rms(x: np.ndarray):
    """`sqrt(mean(x**2))` over the whole tensor, in x's dtype."""
    T = x.dtype.type
    return np.sqrt(T(sum_of_squares(x)) / T(x.size))


class AdafactorRule:
    """Keras 3 Adafactor's `update_step` (adafactor.py): a second moment factored into row and
    column means over the last two axes for rank >= 2 (leading axes are a batch), a plain moving
    average for rank < 2; no first moment; every scalar in the working dtype.

    Args:
        beta_2_decay: `beta_2_t = 1 - t ** beta_2_decay`.
        epsilon_1: added to the squared gradient.
        epsilon_2: the floor of RMS(w) in the step size.
        clip_threshold: the update is divided by max(1, RMS(u) / clip_threshold).
        relative_step: Keras caps the learning rate at 1 / sqrt(t) with it, then takes that
            minimum again anyway: no effect, kept to show it.
    """

    # True: divide by a broadcast scalar as XLA does (see `_divide_by_scalar`).
    xla_scalar_division = False

    def __init__(
        self,
        beta_2_decay: float = -0.8,
        epsilon_1: float = 1e-30,
        epsilon_2: float = 1e-3,
        clip_threshold: float = 1.0,
        relative_step: bool = True,
    ):
        self.beta_2_decay = beta_2_decay
        self.epsilon_1 = epsilon_1
        self.epsilon_2 = epsilon_2
        self.clip_threshold = clip_threshold
        self.relative_step = relative_step
        self.rs: List[np.ndarray] = []
        self.cs: List[np.ndarray] = []
        self.velocities: List[np.ndarray] = []

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the slots, interleaved: r, c (int32 scalar zeros below rank 2), velocity."""
        self.rs, self.cs = [], []
        for p in params:
            if p.ndim < 2:
                self.rs.append(np.zeros((), np.int32))
                self.cs.append(np.zeros((), np.int32))
            else:
                self.rs.append(np.zeros(p.shape[:-1], p.dtype))
                self.cs.append(np.zeros(p.shape[:-2] + p.shape[-1:], p.dtype))
        self.velocities = [np.zeros_like(p) for p in params]
        return _interleave(self.rs, self.cs, self.velocities)

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place (`iterations`: the count before it)."""
        T = w.dtype.type
        xla = self.xla_scalar_division
        lr_t = T(lr)
        local_step = T(iterations + 1)
        if self.relative_step:
            lr_t = np.minimum(lr_t, T(1) / np.sqrt(local_step))
        rho_t = np.minimum(lr_t, T(1) / np.sqrt(local_step))
        alpha_t = np.maximum(T(self.epsilon_2), _rms(w)) * rho_t
        regulated_grad_square = np.square(g) + T(self.epsilon_1)
        beta_2_t = T(1) - cr_pow(local_step, T(self.beta_2_decay), T)
        r, c, v = self.rs[index], self.cs[index], self.velocities[index]
        if w.ndim >= 2:
            r[...] = beta_2_t * r + (T(1) - beta_2_t) * _mean(regulated_grad_square, axis=-1)
            c[...] = beta_2_t * c + (T(1) - beta_2_t) * _mean(regulated_grad_square, axis=-2)
            row_mean = _mean(r, axis=-1, keepdims=True)
            if r.ndim == 1:  # one matrix: its row mean is a broadcast scalar
                normalized = _divide_by_scalar(r, row_mean[0], xla)
            else:
                normalized = r / row_mean
            v[...] = np.expand_dims(normalized, -1) * np.expand_dims(c, -2)
        else:
            v[...] = beta_2_t * v + (T(1) - beta_2_t) * regulated_grad_square
        u_t = g / np.sqrt(v)
        u_t_hat = _divide_by_scalar(u_t, np.maximum(T(1), _rms(u_t) / T(self.clip_threshold)), xla)
        w[...] = w - alpha_t * u_t_hat


def newton_schulz(x: np.ndarray, steps: int, a: float, b: float, c: float) -> np.ndarray:
    """Keras Muon's `zeropower_via_newtonschulz5` on a 2-D array, in x's dtype with NumPy's
    matrix products (float64 products for a float64 reference)."""
    T = x.dtype.type
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    x = x / (np.sqrt(T(sum_of_squares(x))) + T(1e-7))
    for _ in range(steps):
        temp_a = x @ x.T
        temp_b = T(b) * temp_a + (T(c) * temp_a) @ temp_a
        x = T(a) * x + temp_b @ x
    return x.T if transposed else x


class MuonRule:
    """Keras 3.13+ Muon's `update_step` (muon.py): AdamW (no amsgrad, `lr * adam_lr_ratio`) for
    variables whose rank is not 2, whose name contains "embedding" (with `exclude_embeddings`)
    or matches a keyword of `exclude_layers`; otherwise momentum, Newton-Schulz
    orthogonalization and Moonlight's RMS scaling. Weight decay is per path (`weight_decay_of`).

    Args: Keras's Muon arguments except the base ones (see the class of the same name).
    """

    def __init__(
        self,
        adam_beta_1: float = 0.9,
        adam_beta_2: float = 0.999,
        adam_weight_decay: Optional[float] = 0.004,
        epsilon: float = 1e-7,
        exclude_layers: Optional[Sequence[str]] = None,
        exclude_embeddings: bool = True,
        muon_a: float = 3.4445,
        muon_b: float = -4.7750,
        muon_c: float = 2.0315,
        adam_lr_ratio: float = 1,
        momentum: float = 0.95,
        ns_steps: int = 5,
        nesterov: bool = True,
        rms_rate: Optional[float] = 0.2,
    ):
        self.adam = AdamRule(adam_beta_1, adam_beta_2, epsilon)
        self.adam_weight_decay = adam_weight_decay
        self.exclude_layers = list(exclude_layers or [])
        self.exclude_embeddings = exclude_embeddings
        self.muon_a, self.muon_b, self.muon_c = muon_a, muon_b, muon_c
        self.adam_lr_ratio = adam_lr_ratio
        self.momentum = momentum
        self.ns_steps = ns_steps
        self.nesterov = nesterov
        self.rms_rate = rms_rate
        # Set by ReferenceOptimizer.build before `build` (None for unnamed variables).
        self.names: List[Optional[str]] = []
        self.uses_adamw: List[bool] = []

    def _should_use_adamw(self, p: np.ndarray, name: str) -> bool:
        if p.ndim != 2:
            return True
        if self.exclude_embeddings and "embedding" in name.lower():
            return True
        return any(re.search(keyword, name) for keyword in self.exclude_layers)

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create `momentum` for every variable, `velocity` right after it on the AdamW path."""
        # A list's variables are named `variable_<i>` by ferroptim; exclude_layers sees that.
        names = [
            n if n is not None else f"variable_{i}"
            for i, n in enumerate(self.names or [None] * len(params))
        ]
        self.uses_adamw = [self._should_use_adamw(p, n) for p, n in zip(params, names)]
        self.adam.momentums = [np.zeros_like(p) for p in params]
        self.adam.velocities = [
            np.zeros_like(p) if a else None  # type: ignore[misc]
            for p, a in zip(params, self.uses_adamw)
        ]
        order: List[np.ndarray] = []
        for m, v in zip(self.adam.momentums, self.adam.velocities):
            order += [m] if v is None else [m, v]
        return order

    def weight_decay_of(self, index: int, weight_decay: Optional[float]) -> Optional[float]:
        """Muon's `_apply_weight_decay`: `adam_weight_decay` on the AdamW path, the base
        `weight_decay` on the Muon path (None: no decay); both with the base learning rate."""
        return self.adam_weight_decay if self.uses_adamw[index] else weight_decay

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """One `update_step` of tensor `index`, in place (`iterations`: the count before it)."""
        T = w.dtype.type
        if self.uses_adamw[index]:
            # Keras multiplies its float32 learning rate by the ratio in float32.
            adam_lr = float(np.float32(lr) * np.float32(self.adam_lr_ratio))
            self.adam.update(index, g, w, adam_lr, iterations)
            return
        m = self.adam.momentums[index]
        m[...] = m + (g + m * T(self.momentum - 1))
        x = g + T(self.momentum) * m if self.nesterov else m
        u = T(lr) * newton_schulz(x, self.ns_steps, self.muon_a, self.muon_b, self.muon_c)
        if self.rms_rate is not None:
            u = u * T(np.sqrt(max(w.shape))) * T(self.rms_rate)
        w[...] = w - u


class Rule(Protocol):
    """What `ReferenceOptimizer` asks of an update rule (the `*Rule` classes above)."""

    def build(self, params: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Create the rule's slots for `params`, in Keras's order."""
        ...

    def update(self, index: int, g: np.ndarray, w: np.ndarray, lr: float, iterations: int) -> None:
        """Keras's `update_step` for the variable at `index`, in place."""
        ...


class ReferenceOptimizer:
    """Keras 3's base optimizer pipeline around one update rule, on NumPy arrays it owns.

    Args:
        rule: one of the `*Rule` classes. A rule with a `begin_step(iterations)` method (Nadam)
            has it called once per update step, before the first variable is updated.
        learning_rate: a float (rounded to float32 as Keras stores it), a schedule (a callable
            taking the raw iteration count) or a callable taking no argument.
        weight_decay: decoupled decay `w - w * wd * lr`, or None.
        clipnorm, global_clipnorm, clipvalue: Keras's clipping; a value that is 0 or negative
            disables it, as Keras's precedence does.
        use_ema, ema_momentum, ema_overwrite_frequency: Keras's EMA of the variables.
        loss_scale_factor: gradients are divided by it first.
        gradient_accumulation_steps: k >= 2, or None.
        decay: Keras 2's inverse-time decay of the learning rate, or None.
    """

    def __init__(
        self,
        rule: Rule,
        learning_rate: LearningRate,
        *,
        weight_decay: Optional[float] = None,
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: Optional[int] = None,
        loss_scale_factor: Optional[float] = None,
        gradient_accumulation_steps: Optional[int] = None,
        decay: Optional[float] = None,
    ):
        self.rule = rule
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.decay = decay
        self.raw_iterations = 0
        self.params: List[np.ndarray] = []
        self.names: List[Optional[str]] = []
        self.averages: List[np.ndarray] = []
        self.accumulators: List[np.ndarray] = []
        self.slots: List[np.ndarray] = []
        self._exclude_indices: set = set()
        self._exclude_pattern: Optional[str] = None

    # --- state -----------------------------------------------------------------------------

    @property
    def iterations(self) -> int:
        """Keras's `iterations`: completed updates (raw calls // k under accumulation)."""
        if self.gradient_accumulation_steps:
            return self.raw_iterations // self.gradient_accumulation_steps
        return self.raw_iterations

    def build(self, params: Sequence[np.ndarray], names: Optional[Sequence[str]] = None) -> None:
        """Take ownership of `params` (the caller passes copies) and create every slot.

        Args:
            params: float32/float64 arrays, updated in place by `apply`.
            names: the variables' names (for `exclude_from_weight_decay(var_names=...)`).
        """
        self.params = list(params)
        self.names = list(names) if names is not None else [None] * len(self.params)
        self.averages = [np.zeros_like(p) for p in self.params] if self.use_ema else []
        self.accumulators = (
            [np.zeros_like(p) for p in self.params] if self.gradient_accumulation_steps else []
        )
        if hasattr(self.rule, "names"):
            self.rule.names = self.names  # Muon routes by name
        self.slots = self.rule.build(self.params)

    def exclude_from_weight_decay(
        self, indices: Sequence[int] = (), var_names: Optional[Sequence[str]] = None
    ) -> None:
        """Exclude variables by position (Keras's `var_list`) or by `re.search` on their names.

        Args:
            indices: positions in the build list.
            var_names: regex fragments joined with "|" as Keras does.
        """
        self._exclude_indices = set(indices)
        self._exclude_pattern = "|".join(set(var_names)) if var_names else None

    def uses_weight_decay(self, index: int) -> bool:
        """Whether tensor `index` is decayed (Keras's `_use_weight_decay`)."""
        if index in self._exclude_indices:
            return False
        name = self.names[index]
        if self._exclude_pattern is not None and name is not None:
            if re.search(self._exclude_pattern, name) is not None:
                return False
        return True

    @property
    def variables(self) -> List[np.ndarray]:
        """The optimizer's variables in Keras's order (docs/keras.md §2.10)."""
        out: List[np.ndarray] = [np.array(self.raw_iterations)]
        if not callable(self.learning_rate):
            out.append(np.array(np.float32(self.learning_rate)))
        return out + self.averages + self.accumulators + self.slots

    # --- learning rate ---------------------------------------------------------------------

    def current_learning_rate(self) -> float:
        """The value a read of `optimizer.learning_rate` gives before this call's increment."""
        lr = self.learning_rate
        if callable(lr):
            value = float(lr(self.raw_iterations)) if _takes_step(lr) else float(lr())
        else:
            value = float(np.float32(lr))
        if self.decay:
            value = value / (1.0 + self.decay * self.iterations)
        return value

    # --- the step --------------------------------------------------------------------------

    def apply(self, grads: Sequence[Optional[object]]) -> None:
        """One Keras `apply(grads)` over the built variables, in place.

        Args:
            grads: one gradient (array-like) or None per built variable.
        """
        if len(grads) == 0:
            return
        if len(grads) != len(self.params):
            raise ValueError("one gradient per built variable")
        present = [i for i, g in enumerate(grads) if g is not None]
        if not present:
            raise ValueError("No gradients provided for any variable.")
        # Gradients are cast to the variable's dtype up front; for float64 gradients of a
        # float32 variable Keras unscales before the cast, an at most one-ulp difference.
        gs: Dict[int, np.ndarray] = {
            i: np.array(grads[i], dtype=self.params[i].dtype, copy=True) for i in present
        }
        with np.errstate(all="ignore"):
            if self.loss_scale_factor is not None:
                for i in present:
                    gs[i] = gs[i] / gs[i].dtype.type(self.loss_scale_factor)
            iterations = self.iterations
            lr = self.current_learning_rate()
            k = self.gradient_accumulation_steps
            if k:
                if (self.raw_iterations + 1) % k == 0:
                    for i in present:
                        gs[i] = (gs[i] + self.accumulators[i]) / gs[i].dtype.type(k)
                    self._update(gs, present, lr, iterations)
                    for acc in self.accumulators:
                        acc[...] = 0
                else:
                    for i in present:
                        self.accumulators[i][...] = gs[i] + self.accumulators[i]
            else:
                self._update(gs, present, lr, iterations)
            if self.use_ema:
                self._ema(iterations)
        self.raw_iterations += 1

    def _update(self, gs: Dict[int, np.ndarray], present: List[int], lr: float, it: int) -> None:
        self._clip(gs, present)
        # A rule with `weight_decay_of(index, weight_decay)` (Muon) picks each tensor's rate.
        decay_of = getattr(self.rule, "weight_decay_of", None)
        for i in present:
            wd = self.weight_decay if decay_of is None else decay_of(i, self.weight_decay)
            if wd is not None and self.uses_weight_decay(i):
                w = self.params[i]
                T = w.dtype.type
                w[...] = w - w * T(wd) * T(lr)
        begin_step = getattr(self.rule, "begin_step", None)
        if begin_step is not None:
            begin_step(it)
        for i in present:
            self.rule.update(i, gs[i], self.params[i], lr, it)

    def _clip(self, gs: Dict[int, np.ndarray], present: List[int]) -> None:
        if self.clipnorm and self.clipnorm > 0:
            for i in present:
                gs[i] = clip_by_norm(gs[i], self.clipnorm)
        elif self.global_clipnorm and self.global_clipnorm > 0:
            clipped = clip_by_global_norm([gs[i] for i in present], self.global_clipnorm)
            for i, g in zip(present, clipped):
                gs[i] = g
        elif self.clipvalue and self.clipvalue > 0:
            for i in present:
                T = gs[i].dtype.type
                gs[i] = np.clip(gs[i], T(-self.clipvalue), T(self.clipvalue))

    def _ema(self, iterations: int) -> None:
        for w, average in zip(self.params, self.averages):
            T = w.dtype.type
            momentum = T(self.ema_momentum) if iterations != 0 else T(0)
            average[...] = momentum * average + (T(1) - momentum) * w
        frequency = self.ema_overwrite_frequency
        if frequency and (iterations + 1) % frequency == 0:
            for w, average in zip(self.params, self.averages):
                w[...] = average

    def finalize_variable_values(self) -> None:
        """Keras's `finalize_variable_values`: with EMA, every variable takes its average."""
        if self.use_ema:
            for w, average in zip(self.params, self.averages):
                w[...] = average


def sum_of_squares(g: np.ndarray) -> float:
    """Sum of squares accumulated in float64 (see the module docstring)."""
    return float(np.sum(np.square(np.asarray(g, dtype=np.float64))))


def clip_by_norm(g: np.ndarray, clipnorm: float) -> np.ndarray:
    """Keras's `_clip_by_norm`: `(g * c) / max(norm, c)`; a zero or NaN sum passes through as is."""
    T = g.dtype.type
    with np.errstate(all="ignore"):
        l2sum = T(sum_of_squares(g))
        l2norm = np.sqrt(l2sum) if l2sum > 0 else l2sum
        return (g * T(clipnorm)) / np.maximum(l2norm, T(clipnorm))


def clip_by_global_norm(gs: Sequence[np.ndarray], clipnorm: float) -> List[np.ndarray]:
    """Keras's `clip_by_global_norm`; the scale is computed in each gradient's dtype.

    A non-finite global norm makes the scale NaN (`scale + (N - N)`), hence every gradient NaN.
    """
    total = sum(sum_of_squares(g) for g in gs)
    out = []
    with np.errstate(all="ignore"):
        for g in gs:
            T = g.dtype.type
            norm = np.sqrt(T(total))
            scale = T(clipnorm) * np.minimum(T(1) / norm, T(1.0 / clipnorm))
            scale = scale + (norm - norm)
            out.append(g * scale)
    return out


def _record(name: str) -> Any:
    """The record of `name` in the table of optimizers under test: it names the optimizer's
    reference rule and Keras's default learning rate. Imported here, as that table imports
    this module."""
    from optimizers_under_test import OPTIMIZERS

    for case in OPTIMIZERS:
        if case.name == name and case.reference is not None:
            return case
    raise ValueError(f"no reference for {name}")


_BASE_ARGS = (
    "weight_decay",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "loss_scale_factor",
    "gradient_accumulation_steps",
    "decay",
)


def make_reference(
    name: str, kwargs: Optional[dict] = None, *, xla_scalar_division: bool = True
) -> ReferenceOptimizer:
    """A reference for `keras.optimizers.<name>(**kwargs)`.

    Args:
        name: a Keras optimizer class name ("SGD", "RMSprop", "Adam", "AdamW", "Adagrad",
            "Adadelta", "Adamax", "Nadam", "Lion", "Ftrl", "Lamb", "ScheduleFreeAdamW", "Adafactor"
            or "Muon").
        kwargs: the Keras 3 constructor arguments (plus Keras 2's `lr`, `decay`,
            `epsilon=None` and Nadam's `schedule_decay`).
        xla_scalar_division: divide a tensor by a scalar as XLA does (Keras's JAX backend,
            which produced Keras's golden values, and what ferroptim's kernels do), rather than
            as Keras's source writes it (see `_divide_by_scalar`).
    """
    record = _record(name)
    kwargs = dict(kwargs or {})
    learning_rate = kwargs.pop("learning_rate", kwargs.pop("lr", record.default_learning_rate))
    base = {key: kwargs.pop(key) for key in _BASE_ARGS if key in kwargs}
    kwargs.pop("name", None)
    if "epsilon" in kwargs and kwargs["epsilon"] is None:
        kwargs["epsilon"] = 1e-7  # Keras 2's K.epsilon()
    if name in ("AdamW", "Muon"):
        base.setdefault("weight_decay", 0.004)
    rule = record.reference(**kwargs)
    if xla_scalar_division:
        rule.xla_scalar_division = True
    return ReferenceOptimizer(rule, learning_rate, **base)


# --- Keras's golden values (docs/keras.md §2.3, §4.1, §4.2): Keras 3.15.1's float32 results -------
# Every decimal below is the shortest one that round-trips to the float32 Keras produced.

SINGLE_STEP_VAR = [1.0, 2.0, 3.0, 4.0]
SINGLE_STEP_GRAD = [1.0, 6.0, 7.0, 2.0]
SINGLE_STEP = {  # learning_rate=0.5, every other argument at its default
    "SGD": [0.5, -1.0, -0.5, 3.0],
    "Adam": [0.50000495, 1.5000036, 2.5000036, 3.500004],
    "AdamW": [0.49800497, 1.4960036, 2.4940035, 3.4920042],
    "RMSprop": [-0.58113813, 0.41886115, 1.4188613, 2.4188614],
    "Adadelta": [0.9992929, 1.9992929, 2.9992929, 3.9992929],
    "Adagrad": [0.5232687, 1.500693, 2.5005095, 3.5061352],
    "Adamax": [0.5000002, 1.5000001, 2.5, 3.5],
    "Nadam": [0.46860617, 1.468606, 2.468606, 3.468606],
    "Lion": [0.5, 1.5, 2.5, 3.5],
    "Ftrl": [0.22175731, 1.3954297, 2.3651214, 2.8814402],
    "Lamb": [-0.36930645, 0.63069344, 1.6306936, 2.6306934],
    "ScheduleFreeAdamW": [0.5, 1.5, 2.5, 3.5],
    "Adafactor": [-0.36930645, 0.63069355, 1.6306936, 2.6306934],
}

# `test_correctness_with_golden`: x = ones(10); step 1 uses FIRST_GRADS, steps 2..6 use GRADS.
# GRADS is Keras's `ops.arange(0.1, 1.1, 0.1)` in float32: elements 6 and 8 are 0.70000005 and
# 0.90000004, not float32(0.7) and float32(0.9).
GOLDEN_FIRST_GRADS = [0.01] * 10
GOLDEN_GRADS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.70000005, 0.8, 0.90000004, 1.0]
# Keras's Ftrl and Adafactor tests build them with `np.arange(0.1, 1.1, 0.1)`, cast from float64
# to float32.
GOLDEN_NP_ARANGE_GRADS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def golden_grads(name: str) -> List[float]:
    """The gradients of steps 2..6 of `name`'s golden trajectory, as that Keras test made them."""
    return GOLDEN_NP_ARANGE_GRADS if name in ("Ftrl", "Adafactor") else GOLDEN_GRADS


GOLDEN_TRAJECTORIES = [  # (optimizer, kwargs, x after steps 1..6)
    (
        "SGD",
        {"nesterov": True},
        [
            [0.9999] * 10,
            [
                0.9989,
                0.9979,
                0.99689996,
                0.9959,
                0.9949,
                0.9939,
                0.99289995,
                0.99189997,
                0.9909,
                0.9899,
            ],
            [
                0.9979,
                0.99590003,
                0.99389994,
                0.99189997,
                0.9899,
                0.9879,
                0.9858999,
                0.98389995,
                0.9819,
                0.9799,
            ],
            [
                0.9969,
                0.99390006,
                0.9908999,
                0.98789996,
                0.9849,
                0.98190004,
                0.9788999,
                0.97589993,
                0.9729,
                0.9699,
            ],
            [
                0.99590003,
                0.9919001,
                0.9878999,
                0.98389995,
                0.9799,
                0.97590005,
                0.97189987,
                0.9678999,
                0.96389997,
                0.9599,
            ],
            [
                0.99490005,
                0.9899001,
                0.9848999,
                0.97989994,
                0.9749,
                0.9699001,
                0.96489984,
                0.9598999,
                0.95489997,
                0.94990003,
            ],
        ],
    ),
    (
        "Adam",
        {"amsgrad": True},
        [
            [0.9990003] * 10,
            [
                0.99819326,
                0.99822366,
                0.9982343,
                0.9982397,
                0.9982429,
                0.9982451,
                0.99824667,
                0.99824786,
                0.9982488,
                0.99824953,
            ],
            [
                0.99730045,
                0.9973475,
                0.99736387,
                0.9973722,
                0.9973772,
                0.9973806,
                0.99738306,
                0.99738485,
                0.99738634,
                0.9973874,
            ],
            [
                0.9963679,
                0.9964259,
                0.9964462,
                0.9964565,
                0.9964627,
                0.9964669,
                0.9964699,
                0.9964721,
                0.99647397,
                0.9964753,
            ],
            [
                0.9954125,
                0.99547863,
                0.9955017,
                0.99551344,
                0.99552053,
                0.99552524,
                0.9955287,
                0.99553126,
                0.99553335,
                0.99553484,
            ],
            [
                0.9944426,
                0.9945148,
                0.99454004,
                0.9945529,
                0.99456066,
                0.99456584,
                0.9945696,
                0.9945724,
                0.99457467,
                0.99457633,
            ],
        ],
    ),
    (
        "AdamW",
        {"learning_rate": 1.0, "weight_decay": 0.5, "epsilon": 2},
        [
            [0.4998419] * 10,
            [
                0.24864052,
                0.24746968,
                0.24630252,
                0.24513902,
                0.24397919,
                0.24282297,
                0.24167039,
                0.24052139,
                0.23937598,
                0.23823413,
            ],
            [
                0.122323826,
                0.1198323,
                0.11735107,
                0.11488009,
                0.11241929,
                0.1099686,
                0.10752797,
                0.10509732,
                0.1026766,
                0.10026575,
            ],
            [
                0.058611877,
                0.054896567,
                0.051199816,
                0.04752149,
                0.04386145,
                0.040219545,
                0.036595657,
                0.032989632,
                0.029401341,
                0.025830664,
            ],
            [
                0.026292793,
                0.021497136,
                0.01672915,
                0.0119886,
                0.007275245,
                0.0025888383,
                -0.0020708423,
                -0.006704036,
                -0.011310973,
                -0.015891874,
            ],
            [
                0.009729076,
                0.003986291,
                -0.0017192774,
                -0.0073879906,
                -0.013020208,
                -0.018616302,
                -0.024176601,
                -0.029701466,
                -0.035191238,
                -0.040646244,
            ],
        ],
    ),
    (
        "RMSprop",
        {"centered": True},
        [
            [0.996685] * 10,
            [
                0.9933336,
                0.99333876,
                0.9933422,
                0.9933443,
                0.9933456,
                0.9933466,
                0.9933472,
                0.99334776,
                0.9933482,
                0.99334854,
            ],
            [
                0.99076504,
                0.99077845,
                0.9907853,
                0.99078923,
                0.9907917,
                0.9907934,
                0.99079466,
                0.9907956,
                0.9907964,
                0.990797,
            ],
            [
                0.98849636,
                0.98851824,
                0.9885284,
                0.988534,
                0.9885375,
                0.98853993,
                0.98854166,
                0.98854303,
                0.9885441,
                0.98854494,
            ],
            [
                0.98637277,
                0.98640317,
                0.9864164,
                0.9864237,
                0.98642814,
                0.98643124,
                0.9864335,
                0.98643523,
                0.98643655,
                0.9864376,
            ],
            [
                0.984321,
                0.9843599,
                0.98437625,
                0.98438513,
                0.98439056,
                0.9843943,
                0.98439705,
                0.98439914,
                0.98440075,
                0.984402,
            ],
        ],
    ),
    (
        "Adadelta",
        {"learning_rate": 1.0, "rho": 0.8, "epsilon": 1e-6},
        [
            [0.9978178] * 10,
            [
                0.99470663,
                0.99469674,
                0.9946949,
                0.99469423,
                0.99469393,
                0.99469376,
                0.9946937,
                0.99469364,
                0.9946936,
                0.9946935,
            ],
            [
                0.9915078,
                0.991488,
                0.9914843,
                0.991483,
                0.9914824,
                0.991482,
                0.9914819,
                0.9914818,
                0.99148166,
                0.99148154,
            ],
            [
                0.9882458,
                0.98821604,
                0.9882105,
                0.98820853,
                0.98820764,
                0.98820716,
                0.9882069,
                0.98820674,
                0.98820657,
                0.98820645,
            ],
            [
                0.98493236,
                0.9848928,
                0.9848854,
                0.9848828,
                0.9848816,
                0.984881,
                0.9848806,
                0.9848804,
                0.98488015,
                0.98488003,
            ],
            [
                0.9815744,
                0.98152506,
                0.9815159,
                0.9815126,
                0.9815111,
                0.98151034,
                0.9815099,
                0.9815096,
                0.9815093,
                0.98150915,
            ],
        ],
    ),
    (
        "Adagrad",
        {"learning_rate": 0.2, "initial_accumulator_value": 0.3, "epsilon": 1e-6},
        [
            [0.99634916] * 10,
            [
                0.96043396,
                0.9277599,
                0.9002847,
                0.87840855,
                0.86152154,
                0.8486507,
                0.8388469,
                0.8313306,
                0.8255085,
                0.82094437,
            ],
            [
                0.9250842,
                0.86287993,
                0.81369126,
                0.7768167,
                0.7497252,
                0.72983885,
                0.7151081,
                0.7040455,
                0.6956081,
                0.6890712,
            ],
            [
                0.890274,
                0.801166,
                0.73422635,
                0.68624043,
                0.6521399,
                0.6276918,
                0.6098806,
                0.59666294,
                0.58666915,
                0.5789765,
            ],
            [
                0.8559794,
                0.74219567,
                0.6603771,
                0.60373116,
                0.5644375,
                0.53672266,
                0.51675606,
                0.50205463,
                0.4910016,
                0.48252907,
            ],
            [
                0.82217807,
                0.6856328,
                0.59109974,
                0.52745765,
                0.4841182,
                0.4539168,
                0.43233442,
                0.41653228,
                0.4046992,
                0.39565545,
            ],
        ],
    ),
    (
        "Adamax",
        {"learning_rate": 0.2, "beta_1": 0.85, "beta_2": 0.95, "epsilon": 1e-6},
        [
            [0.80002] * 10,
            [
                0.6827238,
                0.68731785,
                0.68884915,
                0.68961483,
                0.6900742,
                0.6903805,
                0.69059926,
                0.69076335,
                0.69089097,
                0.6909931,
            ],
            [
                0.5332792,
                0.540681,
                0.5431483,
                0.5443819,
                0.5451221,
                0.54561555,
                0.54596806,
                0.5462324,
                0.546438,
                0.5466025,
            ],
            [
                0.3679703,
                0.37729847,
                0.38040793,
                0.3819626,
                0.3828954,
                0.3835173,
                0.38396156,
                0.3842947,
                0.38455376,
                0.38476107,
            ],
            [
                0.1933078,
                0.20404264,
                0.207621,
                0.20941012,
                0.2104836,
                0.21119925,
                0.21171053,
                0.21209386,
                0.212392,
                0.21263057,
            ],
            [
                0.0125437975,
                0.024346277,
                0.028280541,
                0.030247599,
                0.031427845,
                0.032214686,
                0.032776818,
                0.033198252,
                0.033526048,
                0.033788353,
            ],
        ],
    ),
    (
        "Nadam",
        {"learning_rate": 0.5, "beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5},
        [
            [0.4280913] * 10,
            [
                -0.1738019,
                -0.1730538,
                -0.1725809,
                -0.1723023,
                -0.17212188,
                -0.17199588,
                -0.17190307,
                -0.17183214,
                -0.17177612,
                -0.17173058,
            ],
            [
                -0.7115243,
                -0.71032995,
                -0.70962805,
                -0.7092199,
                -0.70895684,
                -0.70877385,
                -0.70863926,
                -0.7085365,
                -0.7084554,
                -0.7083896,
            ],
            [
                -1.2335385,
                -1.2321545,
                -1.2313483,
                -1.2308801,
                -1.2305787,
                -1.2303691,
                -1.2302148,
                -1.2300973,
                -1.2300043,
                -1.229929,
            ],
            [
                -1.7492008,
                -1.747757,
                -1.746907,
                -1.7464125,
                -1.7460938,
                -1.745872,
                -1.745709,
                -1.7455845,
                -1.7454861,
                -1.7454064,
            ],
            [
                -2.2611995,
                -2.2597556,
                -2.258891,
                -2.2583866,
                -2.258061,
                -2.2578342,
                -2.2576675,
                -2.25754,
                -2.2574394,
                -2.2573578,
            ],
        ],
    ),
    (
        "Lion",
        {},
        [
            [0.999] * 10,
            [0.998] * 10,
            [0.99700004] * 10,
            [0.99600005] * 10,
            [0.99500006] * 10,
            [0.9940001] * 10,
        ],
    ),
    (
        "Ftrl",
        {
            "learning_rate": 0.05,
            "learning_rate_power": -0.2,
            "initial_accumulator_value": 0.4,
            "l1_regularization_strength": 0.05,
            "l2_regularization_strength": 0.15,
            "l2_shrinkage_regularization_strength": 0.01,
            "beta": 0.3,
        },
        [
            [0.0] * 10,
            [
                -0.0034369554,
                -0.007698769,
                -0.01180838,
                -0.01572607,
                -0.019439194,
                -0.022953402,
                -0.026283896,
                -0.029449359,
                -0.03246852,
                -0.035358578,
            ],
            [
                -0.00776015,
                -0.01617754,
                -0.02417681,
                -0.03169513,
                -0.038741574,
                -0.045358732,
                -0.0515987,
                -0.05751175,
                -0.06314219,
                -0.068527535,
            ],
            [
                -0.012064837,
                -0.024550142,
                -0.03627305,
                -0.047177088,
                -0.05732272,
                -0.066807315,
                -0.07572811,
                -0.08416997,
                -0.09220327,
                -0.0998853,
            ],
            [
                -0.016351426,
                -0.03282482,
                -0.048133813,
                -0.062259782,
                -0.07533674,
                -0.08752644,
                -0.09897423,
                -0.10979977,
                -0.12009875,
                -0.12994727,
            ],
            [
                -0.020620309,
                -0.04100865,
                -0.059787273,
                -0.07700495,
                -0.09288492,
                -0.10765846,
                -0.12151974,
                -0.13462251,
                -0.14708684,
                -0.15900677,
            ],
        ],
    ),
    (
        "Lamb",
        {},
        [
            [0.999] * 10,
            [
                0.99794376,
                0.9979836,
                0.99799746,
                0.9980045,
                0.9980088,
                0.99801165,
                0.9980137,
                0.9980152,
                0.9980164,
                0.9980174,
            ],
            [
                0.99691826,
                0.99697715,
                0.9969977,
                0.9970081,
                0.99701446,
                0.9970187,
                0.9970217,
                0.997024,
                0.9970257,
                0.99702716,
            ],
            [
                0.9959039,
                0.99597484,
                0.9959996,
                0.9960121,
                0.9960198,
                0.99602485,
                0.9960285,
                0.9960312,
                0.9960334,
                0.99603504,
            ],
            [
                0.99489564,
                0.99497503,
                0.99500275,
                0.9950168,
                0.9950254,
                0.99503106,
                0.9950352,
                0.9950382,
                0.99504066,
                0.9950425,
            ],
            [
                0.99389136,
                0.9939772,
                0.9940071,
                0.9940223,
                0.9940316,
                0.99403775,
                0.99404216,
                0.9940455,
                0.9940481,
                0.9940501,
            ],
        ],
    ),
]

# `optimizer_test.test_ema`: SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.9,
# ema_overwrite_frequency=3), v0 = [[3, 4], [5, 6]], grad = ones every step.
EMA_V0 = [[3.0, 4.0], [5.0, 6.0]]
EMA_TABLE = [  # (var after step, average after step)
    ([[2.0, 3.0], [4.0, 5.0]], [[2.0, 3.0], [4.0, 5.0]]),
    ([[1.0, 2.0], [3.0, 4.0]], [[1.9, 2.8999999], [3.9, 4.9]]),
    ([[1.7099999, 2.71], [3.71, 4.71]], [[1.7099999, 2.71], [3.71, 4.71]]),
    ([[0.7099999, 1.71], [2.71, 3.71]], [[1.6099999, 2.61], [3.6100001, 4.61]]),
]

# `optimizer_test.test_gradient_accumulation`: SGD(learning_rate=1.0,
# gradient_accumulation_steps=3), grads all ones, w0 = [[1, 2], [3, 4]].
ACCUMULATION_W0 = [[1.0, 2.0], [3.0, 4.0]]
ACCUMULATION_TABLE = [  # (w after, accumulator after, raw iterations, iterations)
    ([[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]], 1, 0),
    ([[1.0, 2.0], [3.0, 4.0]], [[2.0, 2.0], [2.0, 2.0]], 2, 0),
    ([[0.0, 1.0], [2.0, 3.0]], [[0.0, 0.0], [0.0, 0.0]], 3, 1),
    ([[0.0, 1.0], [2.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]], 4, 1),
]

# `test_weight_decay`: 2 * (1 - 0.004)**3 in float32, after three one-step optimizers.
WEIGHT_DECAY_VAR1 = 1.9760959

# Adafactor's test_single_step on a matrix (learning_rate=0.5, other arguments at their default).
ADAFACTOR_SINGLE_STEP_2D_VAR = [[1.0, 2.0], [3.0, 4.0]]
ADAFACTOR_SINGLE_STEP_2D_GRAD = [[1.0, 6.0], [7.0, 2.0]]
ADAFACTOR_SINGLE_STEP_2D = [[0.7006545, -0.008070946], [1.2492113, 3.440731]]

# Adafactor's `test_correctness_with_golden` (the protocol of GOLDEN_TRAJECTORIES, np.arange
# gradients). Kept apart from GOLDEN_TRAJECTORIES: Keras sums the means in float32, the reference
# in float64, and over six steps the two drift apart by a few float32 ulps (see test_reference).
ADAFACTOR_GOLDEN_KWARGS = {
    "learning_rate": 0.5,
    "beta_2_decay": -0.65,
    "epsilon_1": 1e-15,
    "epsilon_2": 1e-4,
    "clip_threshold": 0.9,
    "relative_step": False,
}
ADAFACTOR_GOLDEN = [
    [0.55] * 10,
    [
        0.3030929,
        0.30256718,
        0.3024695,
        0.30243528,
        0.3024194,
        0.30241078,
        0.3024056,
        0.30240226,
        0.30239993,
        0.30239826,
    ],
    [
        0.16709827,
        0.16645683,
        0.16633765,
        0.16629595,
        0.16627657,
        0.16626607,
        0.16625975,
        0.16625568,
        0.16625285,
        0.1662508,
    ],
    [
        0.09226845,
        0.09159237,
        0.09146677,
        0.091422826,
        0.091402404,
        0.09139133,
        0.09138468,
        0.09138039,
        0.0913774,
        0.09137525,
    ],
    [
        0.055449717,
        0.05476304,
        0.054635473,
        0.054590844,
        0.054570097,
        0.05455886,
        0.0545521,
        0.054547742,
        0.054544706,
        0.05454252,
    ],
    [
        0.035364795,
        0.034674235,
        0.034545943,
        0.03450107,
        0.0344802,
        0.0344689,
        0.0344621,
        0.03445772,
        0.034454666,
        0.03445247,
    ],
]

# muon_test.py, with update_step called directly (no weight decay, iterations = 0), lr = 0.5:
# the AdamW path on SINGLE_STEP_VAR / SINGLE_STEP_GRAD, and the Muon path on a matrix.
MUON_ADAMW_SINGLE_STEP = [0.50000495, 1.5000036, 2.5000036, 3.500004]
MUON_SINGLE_STEP_VAR = [[1.0, 2.0], [3.0, 4.0]]
MUON_SINGLE_STEP_GRAD = [[1.0, 6.0], [7.0, 2.0]]
MUON_SINGLE_STEP = [[0.98877484, 1.8870527], [2.8734279, 3.9703503]]
# `Muon().zeropower_via_newtonschulz5(NS_INPUT, 5)` in float32.
NS_INPUT = [[0.2499, 0.9105], [0.2655, 0.8824]]
NS_OUTPUT = [[-0.44190204, 0.645592], [0.72815895, 0.29695582]]


# --- comparison ---------------------------------------------------------------------------------

# The emulation follows Keras's operation order, so an implementation that does too agrees to the
# bit; two ulps leave room for norms summed in another order.
FLOAT32_ULPS = 2
FLOAT64_RTOL = 1e-12


def assert_close(
    actual, expected, *, ulps: int = FLOAT32_ULPS, rtol64: float = FLOAT64_RTOL, err_msg: str = ""
) -> None:
    """Assert an implementation's array equals the reference's to the precision of its dtype.

    float32: within `ulps` units of float32 precision, relative to each element and to the
    largest finite magnitude of the expected array (so elements that cancel to near zero are judged
    on the scale of the values that produced them). float64: relative `rtol64` (1e-12) on the
    same terms. NaN must match NaN and inf must match inf of the same sign. The dtypes must be
    equal.

    Args:
        actual: the implementation's array.
        expected: the reference's array (its dtype decides the precision).
        ulps: the float32 budget.
        rtol64: the float64 budget.
        err_msg: context for the failure message.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{err_msg}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape} != {expected.shape}"
    if expected.dtype == np.float32:
        rtol = ulps * float(np.finfo(np.float32).eps)
    elif expected.dtype == np.float64:
        rtol = rtol64
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=err_msg)
        return
    finite = np.abs(expected[np.isfinite(expected)])
    scale = float(finite.max()) if finite.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=err_msg)
