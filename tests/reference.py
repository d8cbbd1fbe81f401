"""An independent NumPy reference of Keras 3's optimizer step, for the tests.

It re-derives, from the Keras 3 formulas (`keras/src/optimizers/base_optimizer.py`, `sgd.py`,
`adam.py`, `adamw.py`), what one `apply` call does, in Keras's order of operations:

    loss-scale unscale -> gradient accumulation -> clipnorm | global_clipnorm | clipvalue
    -> decoupled weight decay -> update_step (list order) -> EMA (+ overwrite) -> iterations += 1

and nothing of ferroptim is imported here, so the tests compare two independent derivations.

Working dtype. Every tensor is processed in its own dtype, as Keras does (`ops.cast(x, var.dtype)`):
give it float32 arrays and it is a float32 emulation of Keras, give it float64 arrays and it is a
float64 reference. The scalars follow Keras's rules:

1. A plain Python expression (`1 - beta_1`, `1.0 / clip_norm`) is computed in double and rounded
   once to the working dtype when it meets a tensor.
2. A scalar that Keras computes from tensors (`beta_1 ** t`, `1 - beta_1_power`, the bias-corrected
   step size, `1 - ema_momentum`) is computed in the working dtype.
3. A float learning rate is stored by Keras in a float32 variable: it is rounded to float32 first,
   then cast to the working dtype (so float64 parameters see `float64(float32(lr))`).
4. A schedule's or callable's value is cast to the working dtype as returned.

The one place where the reference does not follow Keras's exact arithmetic is a sum of squares
(clipnorm, global_clipnorm): it is accumulated in float64 and rounded once to the working dtype,
the most accurate value a float32 implementation can produce; any summation order agrees with it
to a few units in the last place.

Keras 2's `decay` (not in Keras 3) is modelled as tf.keras's OptimizerV2 did it:
`lr_t = lr / (1 + decay * iterations)`, applied to the learning rate every use of it sees
(weight decay included).
"""

from __future__ import annotations

import inspect
import re
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

LearningRate = Union[float, Callable[..., float]]


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
        beta_1_power = np.power(T(self.beta_1), local_step)
        beta_2_power = np.power(T(self.beta_2), local_step)
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


class ReferenceOptimizer:
    """Keras 3's base optimizer pipeline around one update rule, on NumPy arrays it owns.

    Args:
        rule: an `SGDRule` or `AdamRule`.
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
        rule: Union[SGDRule, AdamRule],
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
        """The optimizer's variables in Keras's order (§2.10 of the spec)."""
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
        if self.weight_decay is not None:
            for i in present:
                if self.uses_weight_decay(i):
                    w = self.params[i]
                    T = w.dtype.type
                    w[...] = w - w * T(self.weight_decay) * T(lr)
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


_DEFAULT_LR = {"SGD": 0.01, "Adam": 0.001, "AdamW": 0.001}
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


def make_reference(name: str, kwargs: Optional[dict] = None) -> ReferenceOptimizer:
    """A reference for `keras.optimizers.<name>(**kwargs)` (SGD, Adam or AdamW).

    Args:
        name: "SGD", "Adam" or "AdamW".
        kwargs: the Keras 3 constructor arguments (plus Keras 2's `lr` and `decay`).
    """
    kwargs = dict(kwargs or {})
    learning_rate = kwargs.pop("learning_rate", kwargs.pop("lr", _DEFAULT_LR[name]))
    base = {key: kwargs.pop(key) for key in _BASE_ARGS if key in kwargs}
    kwargs.pop("name", None)
    if name == "SGD":
        rule: Union[SGDRule, AdamRule] = SGDRule(**kwargs)
    elif name in ("Adam", "AdamW"):
        if name == "AdamW":
            base.setdefault("weight_decay", 0.004)
        rule = AdamRule(**kwargs)
    else:
        raise ValueError(f"no reference for {name}")
    return ReferenceOptimizer(rule, learning_rate, **base)


# --- Keras's golden values (KERAS_SPEC §2.3, §4.1, §4.2): Keras 3.15.1's float32 results -------
# Every decimal below is the shortest one that round-trips to the float32 Keras produced.

SINGLE_STEP_VAR = [1.0, 2.0, 3.0, 4.0]
SINGLE_STEP_GRAD = [1.0, 6.0, 7.0, 2.0]
SINGLE_STEP = {  # learning_rate=0.5, every other argument at its default
    "SGD": [0.5, -1.0, -0.5, 3.0],
    "Adam": [0.50000495, 1.5000036, 2.5000036, 3.500004],
    "AdamW": [0.49800497, 1.4960036, 2.4940035, 3.4920042],
}

# `test_correctness_with_golden`: x = ones(10); step 1 uses FIRST_GRADS, steps 2..6 use GRADS.
# GRADS is Keras's `ops.arange(0.1, 1.1, 0.1)` in float32: elements 6 and 8 are 0.70000005 and
# 0.90000004, not float32(0.7) and float32(0.9).
GOLDEN_FIRST_GRADS = [0.01] * 10
GOLDEN_GRADS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.70000005, 0.8, 0.90000004, 1.0]
GOLDEN_TRAJECTORIES = [  # (optimizer, kwargs, x after steps 1..6)
    (
        "SGD",
        {"nesterov": True},
        [
            [0.9999] * 10,
            [0.9989, 0.9979, 0.99689996, 0.9959, 0.9949, 0.9939, 0.99289995, 0.99189997, 0.9909,
             0.9899],
            [0.9979, 0.99590003, 0.99389994, 0.99189997, 0.9899, 0.9879, 0.9858999, 0.98389995,
             0.9819, 0.9799],
            [0.9969, 0.99390006, 0.9908999, 0.98789996, 0.9849, 0.98190004, 0.9788999, 0.97589993,
             0.9729, 0.9699],
            [0.99590003, 0.9919001, 0.9878999, 0.98389995, 0.9799, 0.97590005, 0.97189987,
             0.9678999, 0.96389997, 0.9599],
            [0.99490005, 0.9899001, 0.9848999, 0.97989994, 0.9749, 0.9699001, 0.96489984,
             0.9598999, 0.95489997, 0.94990003],
        ],
    ),
    (
        "Adam",
        {"amsgrad": True},
        [
            [0.9990003] * 10,
            [0.99819326, 0.99822366, 0.9982343, 0.9982397, 0.9982429, 0.9982451, 0.99824667,
             0.99824786, 0.9982488, 0.99824953],
            [0.99730045, 0.9973475, 0.99736387, 0.9973722, 0.9973772, 0.9973806, 0.99738306,
             0.99738485, 0.99738634, 0.9973874],
            [0.9963679, 0.9964259, 0.9964462, 0.9964565, 0.9964627, 0.9964669, 0.9964699,
             0.9964721, 0.99647397, 0.9964753],
            [0.9954125, 0.99547863, 0.9955017, 0.99551344, 0.99552053, 0.99552524, 0.9955287,
             0.99553126, 0.99553335, 0.99553484],
            [0.9944426, 0.9945148, 0.99454004, 0.9945529, 0.99456066, 0.99456584, 0.9945696,
             0.9945724, 0.99457467, 0.99457633],
        ],
    ),
    (
        "AdamW",
        {"learning_rate": 1.0, "weight_decay": 0.5, "epsilon": 2},
        [
            [0.4998419] * 10,
            [0.24864052, 0.24746968, 0.24630252, 0.24513902, 0.24397919, 0.24282297, 0.24167039,
             0.24052139, 0.23937598, 0.23823413],
            [0.122323826, 0.1198323, 0.11735107, 0.11488009, 0.11241929, 0.1099686, 0.10752797,
             0.10509732, 0.1026766, 0.10026575],
            [0.058611877, 0.054896567, 0.051199816, 0.04752149, 0.04386145, 0.040219545,
             0.036595657, 0.032989632, 0.029401341, 0.025830664],
            [0.026292793, 0.021497136, 0.01672915, 0.0119886, 0.007275245, 0.0025888383,
             -0.0020708423, -0.006704036, -0.011310973, -0.015891874],
            [0.009729076, 0.003986291, -0.0017192774, -0.0073879906, -0.013020208, -0.018616302,
             -0.024176601, -0.029701466, -0.035191238, -0.040646244],
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


# --- comparison ---------------------------------------------------------------------------------

# The emulation follows Keras's operation order, so an implementation that does too agrees to the
# bit; two ulps leave room for another libm's powf and for norms summed in another order.
FLOAT32_ULPS = 2
FLOAT64_RTOL = 1e-12


def assert_close(actual, expected, *, ulps: int = FLOAT32_ULPS, err_msg: str = "") -> None:
    """Assert an implementation's array equals the reference's to the precision of its dtype.

    float32: within `ulps` units of float32 precision, relative to each element and to the
    largest finite magnitude of the expected array (so elements that cancel to near zero are judged
    on the scale of the values that produced them). float64: relative 1e-12 on the same terms.
    NaN must match NaN and inf must match inf of the same sign. The dtypes must be equal.

    Args:
        actual: the implementation's array.
        expected: the reference's array (its dtype decides the precision).
        ulps: the float32 budget.
        err_msg: context for the failure message.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{err_msg}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape} != {expected.shape}"
    if expected.dtype == np.float32:
        rtol = ulps * float(np.finfo(np.float32).eps)
    elif expected.dtype == np.float64:
        rtol = FLOAT64_RTOL
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=err_msg)
        return
    finite = np.abs(expected[np.isfinite(expected)])
    scale = float(finite.max()) if finite.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=err_msg)
