"""Learning-rate schedules, mirroring ``keras.optimizers.schedules``.

Keras (``keras/src/optimizers/schedules/learning_rate_schedule.py``) evaluates every schedule as
tensor operations in the dtype of ``initial_learning_rate``: float32 for a Python number, the
array's own dtype for a NumPy float. Each hyperparameter is cast to that dtype and the step is cast
to it too, so a float32 schedule is float32 arithmetic from end to end, in Keras's operation order.
These classes do the same with NumPy scalars of that dtype: a float32 schedule returns the
``np.float32`` Keras would return, and a float64 schedule returns an ``np.float64``.

Powers, logs and cosines are correctly rounded to the dtype (``optimizers._scalar_math``): NumPy's
float32 ufuncs and the C library's ``pow`` give different last bits on different CPUs and
libraries, and a schedule must give the same number everywhere. One detail follows Keras's JAX
backend, where the reference values come from, to the last bit: the lines evaluated inside
``ops.cond`` (the two phases of ``CosineDecay`` with warmup, the period search of
``CosineDecayRestarts``) round ``a * b + c`` once, because XLA compiles a ``cond`` and contracts
those into fused multiply-adds. Keras's other backends round twice there, one float32 ulp away.

A schedule is called once per optimizer step, so the per-call work is kept to a handful of NumPy
scalar operations: the casts of the hyperparameters are computed on the first call and kept until
an attribute of the schedule is assigned again, and a Python float is rounded to the dtype as
``one * value`` (``one`` a NumPy scalar 1 of the dtype; NumPy casts a Python float to the dtype of
the NumPy scalar it meets), several times cheaper than constructing ``dtype(value)``.
"""

import bisect
import math
from collections.abc import Mapping
from typing import Any, Dict, Optional, Sequence, Tuple, Type, TypeVar

import numpy as np

from ferroptim.optimizers._scalar_math import functions_for
from ferroptim.optimizers.schedules._scalars import (
    cast_step,
    ceil,
    compute_dtype,
    floor,
    fused_multiply_add,
    plain,
    promoted_type,
    scalar_type,
)

__all__ = [
    "CosineDecay",
    "CosineDecayRestarts",
    "ExponentialDecay",
    "InverseTimeDecay",
    "LearningRateSchedule",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "deserialize",
    "serialize",
]

_MODULE = "keras.optimizers.schedules"
# The class `from_config` is called on.
_Schedule = TypeVar("_Schedule", bound="LearningRateSchedule")


class LearningRateSchedule:
    """The learning-rate schedule base class (``keras.optimizers.schedules.LearningRateSchedule``).

    A schedule is a callable ``schedule(step) -> learning rate``; an optimizer given one as its
    ``learning_rate`` calls it with its ``iterations`` counter before each update. A subclass
    implements ``__call__(self, step)`` and, to be serializable, ``get_config(self)``;
    ``from_config`` then rebuilds it as ``cls(**config)``.

    For example:

        class MyLRSchedule(LearningRateSchedule):
            def __init__(self, initial_learning_rate):
                self.initial_learning_rate = initial_learning_rate

            def __call__(self, step: Any) -> Any:
                return self.initial_learning_rate / (step + 1)

            def get_config(self):
                return {"initial_learning_rate": self.initial_learning_rate}
    """

    # Hyperparameters cast to the compute dtype, built by `_prepare()` on first use; None (this
    # class attribute) until then.
    _cache = None

    def __setattr__(self, name: str, value: Any) -> None:
        # Keras reads the attributes on every call, so assigning one must change the next result.
        object.__setattr__(self, name, value)
        if name != "_cache":
            self.__dict__.pop("_cache", None)

    def _constants(self) -> Any:
        cache = self._cache
        if cache is None:
            cache = self._prepare()
            self._cache = cache
        return cache

    def _prepare(self) -> Any:
        raise NotImplementedError

    def __call__(self, step: Any) -> Any:
        """The learning rate at ``step``.

        Args:
            step: The optimizer step (its ``iterations`` before the update): a Python int, a
                NumPy integer or float scalar, or a 0-d array.

        Returns:
            The learning rate, a NumPy scalar.
        """
        raise NotImplementedError(
            f"Learning rate schedule '{self.__class__.__name__}' "
            "must override `__call__(self, step)`."
        )

    def get_config(self) -> Dict[str, Any]:
        """The constructor arguments of this schedule, as a dict."""
        raise NotImplementedError(
            f"Learning rate schedule '{self.__class__.__name__}' "
            "must override `get_config()` in order to be serializable."
        )

    def __repr__(self) -> str:
        """The constructor call with the non-default arguments, for a schedule whose
        `get_config` returns its constructor's arguments (every built-in one)."""
        try:
            config = self.get_config()
        except NotImplementedError:
            return object.__repr__(self)
        from ferroptim.optimizers._arguments import constructor_repr

        return constructor_repr(self, config)

    @classmethod
    def from_config(cls: Type[_Schedule], config: Dict[str, Any]) -> _Schedule:
        """Instantiates a schedule from its config.

        Args:
            config: Output of ``get_config()``.

        Returns:
            A ``LearningRateSchedule`` instance.
        """
        return cls(**config)


def _check_positive(name: str, value: Any) -> None:
    if value <= 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value}")


def _decay_progress(step: Any, dtype: Any, decay_steps: Any, staircase: Any) -> Any:
    # `step / decay_steps` in the dtype, floored with `staircase`: ExponentialDecay's exponent
    # and InverseTimeDecay's quotient, in Keras's operations.
    p = cast_step(step, dtype) / decay_steps
    if staircase:
        p = floor(p)
    return p


class _BuiltinSchedule(LearningRateSchedule):
    # The schedules of this module keep their constructor arguments as attributes, as Keras's
    # do, and `get_config` returns them. `_arguments` names them in Keras's config order,
    # `_attribute_of` maps the few kept under another name, `_positive` names the argument
    # that must be > 0 (a decay length), if any.
    _arguments: Tuple[str, ...] = ()
    _attribute_of: Dict[str, str] = {}
    _positive: Optional[str] = None

    def _store_arguments(self, arguments: Dict[str, Any]) -> None:
        # `arguments`: the constructor's `locals()`.
        for argument in self._arguments:
            setattr(self, self._attribute_of.get(argument, argument), arguments[argument])
        if self._positive is not None:
            _check_positive(self._positive, arguments[self._positive])

    def get_config(self) -> Dict[str, Any]:
        """The constructor arguments of this schedule, as a dict."""
        return {
            argument: getattr(self, self._attribute_of.get(argument, argument))
            for argument in self._arguments
        }


class _RateDecay(_BuiltinSchedule):
    # ExponentialDecay's and InverseTimeDecay's arguments, the same for both.
    _arguments = ("initial_learning_rate", "decay_steps", "decay_rate", "staircase", "name")
    # The constructor's arguments, kept by `_store_arguments`.
    initial_learning_rate: Any
    decay_steps: int
    decay_rate: float
    staircase: bool
    name: str
    _positive = "decay_steps"


class ExponentialDecay(_RateDecay):
    """Exponential decay: ``initial_learning_rate * decay_rate ** (step / decay_steps)``.

    With ``staircase=True`` the exponent is floored, so the rate drops by ``decay_rate`` once
    every ``decay_steps`` steps. The result has the dtype of ``initial_learning_rate`` (float32
    for a Python float).

    For example:

        schedule = ExponentialDecay(0.1, decay_steps=100000, decay_rate=0.96, staircase=True)
        optimizer = ferroptim.optimizers.SGD(learning_rate=schedule)

    Args:
        initial_learning_rate: A float. The initial learning rate.
        decay_steps: A positive number. The exponent is ``step / decay_steps``.
        decay_rate: A float. The decay rate.
        staircase: A bool. If True, decay at discrete intervals. Defaults to False.
        name: A str. The schedule's name. Defaults to ``"ExponentialDecay"``.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
        name: str = "ExponentialDecay",
    ) -> None:
        self._store_arguments(locals())

    def _prepare(self) -> Any:
        dtype = compute_dtype(self.initial_learning_rate)
        power = functions_for(dtype)[0]
        return (
            dtype,
            power,
            dtype(self.initial_learning_rate),
            dtype(self.decay_steps),
            # The dtype's value as a Python float: the native power takes it without a
            # conversion per call.
            float(dtype(self.decay_rate)),
            bool(self.staircase),
        )

    def __call__(self, step: Any) -> Any:
        """The learning rate at ``step``. See ``LearningRateSchedule.__call__``."""
        dtype, power, initial, decay_steps, decay_rate, staircase = self._constants()
        p = _decay_progress(step, dtype, decay_steps, staircase)
        # The power is a value of the dtype, so a Python float of it meets `initial` exactly.
        return initial * power(decay_rate, p)


class PiecewiseConstantDecay(_BuiltinSchedule):
    """A piecewise constant schedule.

    The rate is ``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i - 1] < step <= boundaries[i]``, and ``values[-1]`` once
    ``step > boundaries[-1]``: each interval includes its upper boundary. The boundaries are cast
    to the step's type (an integer step truncates float boundaries). The result has the dtype of
    the values (float32 for Python floats, int32 for Python ints).

    For example, 1.0 for the first 100001 steps, 0.5 for the next 10000, 0.1 after:

        schedule = PiecewiseConstantDecay([100000, 110000], [1.0, 0.5, 0.1])

    Args:
        boundaries: A list of numbers, strictly increasing.
        values: A list of numbers, one more than ``boundaries``: the value of each interval.
        name: A str. The schedule's name. Defaults to ``"PiecewiseConstant"``.

    Raises:
        ValueError: if ``len(boundaries) != len(values) - 1``.
    """

    _arguments = ("boundaries", "values", "name")
    # The constructor's arguments, kept by `_store_arguments`.
    boundaries: Sequence[Any]
    values: Sequence[Any]
    name: str

    def __init__(
        self, boundaries: Sequence[Any], values: Sequence[Any], name: str = "PiecewiseConstant"
    ) -> None:
        super().__init__()
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of "
                f"values. Received: boundaries={boundaries} of length "
                f"{len(boundaries)}, and values={values} "
                f"of length {len(values)}."
            )
        self._store_arguments(locals())

    def _prepare(self) -> Any:
        types = [scalar_type(v) for v in self.values]
        result_type = types[0] if len(set(types)) == 1 else promoted_type(types)
        values = [result_type(v) for v in self.values]
        boundaries = list(self.boundaries)
        is_sorted = all(a <= b for a, b in zip(boundaries, boundaries[1:]))
        # The boundaries cast to each step type met so far, keyed by that type.
        return values, result_type, boundaries, is_sorted, {}

    def _bounds_for(self, kind: Any, boundaries: Any, by_kind: Dict[Any, Any]) -> Any:
        bounds = by_kind.get(kind)
        if bounds is None:
            if kind is int:
                # Keras casts the boundaries to the step's integer dtype, which truncates.
                bounds = [int(b) for b in boundaries]
            else:
                # Values of `kind` held exactly as Python floats, so comparisons are unchanged.
                bounds = [float(kind(b)) for b in boundaries]
            by_kind[kind] = bounds
        return bounds

    def __call__(self, step: Any) -> Any:
        """The learning rate at ``step``. See ``LearningRateSchedule.__call__``."""
        values, result_type, boundaries, is_sorted, by_kind = self._constants()
        if isinstance(step, np.ndarray):
            step = step[()]
        kind: Any
        key: float
        if isinstance(step, (int, np.integer)):
            kind, key = int, int(step)
        else:
            # A Python float is float32 to Keras; a NumPy float keeps its own dtype.
            kind = type(step) if isinstance(step, np.floating) else np.float32
            key = float(kind(step))
        bounds = self._bounds_for(kind, boundaries, by_kind)
        if not bounds:
            return values[0]
        if is_sorted:
            return values[bisect.bisect_left(bounds, key)]
        # Keras sums value * (step in interval) over all intervals; for unsorted boundaries
        # several or none of them match, and the sum is what Keras returns.
        total = result_type(0)
        if key <= bounds[0]:
            total = total + values[0]
        if key > bounds[-1]:
            total = total + values[-1]
        for low, high, value in zip(bounds[:-1], bounds[1:], values[1:-1]):
            if low < key <= high:
                total = total + value
        return total


class PolynomialDecay(_BuiltinSchedule):
    """Polynomial decay from ``initial_learning_rate`` to ``end_learning_rate``.

    Without ``cycle``:

        step = min(step, decay_steps)
        lr = (initial_learning_rate - end_learning_rate) * (1 - step / decay_steps) ** power
             + end_learning_rate

    With ``cycle=True``, ``decay_steps`` is replaced by its first multiple not below ``step``
    (``decay_steps * ceil(step / decay_steps)``, and ``decay_steps`` itself at step 0), so the
    decay restarts after each period. The result has the dtype of ``initial_learning_rate``.

    For example, a decay from 0.1 to 0.01 over 10000 steps along a square root:

        schedule = PolynomialDecay(0.1, 10000, 0.01, power=0.5)

    Args:
        initial_learning_rate: A float. The initial learning rate.
        decay_steps: A positive number. The length of the decay.
        end_learning_rate: A float. The final learning rate. Defaults to ``0.0001``.
        power: A float. The power of the polynomial. Defaults to ``1.0``.
        cycle: A bool. Whether to restart the decay beyond ``decay_steps``.
        name: A str. The schedule's name. Defaults to ``"PolynomialDecay"``.
    """

    _arguments = (
        "initial_learning_rate",
        "decay_steps",
        "end_learning_rate",
        "power",
        "cycle",
        "name",
    )
    _positive = "decay_steps"
    # The constructor's arguments, kept by `_store_arguments`.
    initial_learning_rate: Any
    decay_steps: int
    end_learning_rate: float
    power: float
    cycle: bool
    name: str

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        end_learning_rate: float = 0.0001,
        power: float = 1.0,
        cycle: bool = False,
        name: str = "PolynomialDecay",
    ) -> None:
        super().__init__()
        self._store_arguments(locals())

    def _prepare(self) -> Any:
        dtype = compute_dtype(self.initial_learning_rate)
        end = dtype(self.end_learning_rate)
        return (
            dtype,
            functions_for(dtype)[0],
            dtype(self.initial_learning_rate) - end,
            end,
            float(dtype(self.power)),  # for the native power, as ExponentialDecay's rate
            dtype(self.decay_steps),
            bool(self.cycle),
        )

    def __call__(self, step: Any) -> Any:
        """The learning rate at ``step``. See ``LearningRateSchedule.__call__``."""
        dtype, pow_, span, end, power, decay_steps, cycle = self._constants()
        step = cast_step(step, dtype)
        if cycle:
            if step != 0:
                decay_steps = decay_steps * ceil(step / decay_steps)
        elif step > decay_steps:
            step = decay_steps
        p = step / decay_steps
        return span * pow_(1 - p, power) + end


class InverseTimeDecay(_RateDecay):
    """Inverse time decay: ``initial_learning_rate / (1 + decay_rate * step / decay_steps)``.

    With ``staircase=True``, ``step / decay_steps`` is floored. ``InverseTimeDecay(lr, 1, decay)``
    is the Keras 2 ``decay`` argument's rule ``lr / (1 + decay * iterations)``. The result has the
    dtype of ``initial_learning_rate``.

    For example:

        schedule = InverseTimeDecay(0.1, decay_steps=1.0, decay_rate=0.5)

    Args:
        initial_learning_rate: A float. The initial learning rate.
        decay_steps: A positive number. How often to apply decay.
        decay_rate: A float. The decay rate.
        staircase: A bool. Whether to decay at discrete intervals. Defaults to False.
        name: A str. The schedule's name. Defaults to ``"InverseTimeDecay"``.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
        name: str = "InverseTimeDecay",
    ) -> None:
        self._store_arguments(locals())

    def _prepare(self) -> Any:
        dtype = compute_dtype(self.initial_learning_rate)
        return (
            dtype,
            dtype(self.initial_learning_rate),
            dtype(self.decay_steps),
            dtype(self.decay_rate),
            bool(self.staircase),
        )

    def __call__(self, step: Any) -> Any:
        """The learning rate at ``step``. See ``LearningRateSchedule.__call__``."""
        dtype, initial, decay_steps, decay_rate, staircase = self._constants()
        p = _decay_progress(step, dtype, decay_steps, staircase)
        return initial / (1 + decay_rate * p)


class CosineDecay(_BuiltinSchedule):
    """Cosine decay with an optional linear warmup (Loshchilov & Hutter, "SGDR", ICLR 2017).

    Without warmup (``warmup_target=None``):

        step = min(step, decay_steps)
        lr = initial_learning_rate
             * ((1 - alpha) * 0.5 * (1 + cos(pi * step / decay_steps)) + alpha)

    With warmup, the rate first rises linearly from ``initial_learning_rate`` to
    ``warmup_target`` over ``warmup_steps`` steps (Goyal et al., 2017), then follows the cosine
    decay above from ``warmup_target`` to ``warmup_target * alpha`` over ``decay_steps`` steps:

        step = min(step, warmup_steps + decay_steps)
        if step < warmup_steps:
            lr = (warmup_target - initial_learning_rate) * step / warmup_steps
                 + initial_learning_rate
        else:
            lr = warmup_target * ((1 - alpha) * 0.5
                                  * (1 + cos(pi * (step - warmup_steps) / decay_steps)) + alpha)

    As in Keras, ``1 - alpha`` is computed in double precision before it meets the schedule's
    dtype (``CosineDecayRestarts`` computes it in that dtype). The result has the dtype of
    ``initial_learning_rate``.

    For example:

        schedule = CosineDecay(0.0, 1000, warmup_target=0.1, warmup_steps=1000)

    Args:
        initial_learning_rate: A float. The initial learning rate.
        decay_steps: A positive number. The number of steps to decay over.
        alpha: A float. The final rate as a fraction of the rate the decay starts from.
            Defaults to ``0.0``.
        name: A str. The schedule's name. Defaults to ``"CosineDecay"``.
        warmup_target: A float or None. The rate the warmup reaches; None skips the warmup.
        warmup_steps: A number. The length of the warmup. Defaults to ``0``.
    """

    _arguments = (
        "initial_learning_rate",
        "decay_steps",
        "alpha",
        "name",
        "warmup_target",
        "warmup_steps",
    )
    _positive = "decay_steps"
    # The constructor's arguments, kept by `_store_arguments`.
    initial_learning_rate: Any
    decay_steps: int
    alpha: float
    name: str
    warmup_target: Optional[float]
    warmup_steps: int

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        alpha: float = 0.0,
        name: str = "CosineDecay",
        warmup_target: Optional[float] = None,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        self._store_arguments(locals())

    def _prepare(self) -> Any:
        dtype = compute_dtype(self.initial_learning_rate)
        initial = dtype(self.initial_learning_rate)
        decay_steps = dtype(self.decay_steps)
        warmup = None
        if self.warmup_target is not None:
            target = dtype(self.warmup_target)
            warmup_steps = dtype(self.warmup_steps)
            warmup = (target, warmup_steps, target - initial, decay_steps + warmup_steps)
        return (
            dtype,
            dtype(1),
            functions_for(dtype)[2],
            initial,
            decay_steps,
            dtype(math.pi),
            dtype(1 - self.alpha),
            dtype(self.alpha),
            warmup,
        )

    def __call__(self, step: Any) -> Any:
        """The learning rate at ``step``. See ``LearningRateSchedule.__call__``."""
        dtype, one, cos, initial, decay_steps, pi, one_minus_alpha, alpha, warmup = (
            self._constants()
        )
        step = cast_step(step, dtype)
        if warmup is None:
            if step > decay_steps:
                step = decay_steps
        else:
            target, warmup_steps, delta, total_steps = warmup
            if step > total_steps:
                step = total_steps
            if step < warmup_steps:
                return fused_multiply_add(delta, step / warmup_steps, initial, one)
            cosine_decayed = 0.5 * (1.0 + one * cos(pi * ((step - warmup_steps) / decay_steps)))
            return target * fused_multiply_add(one_minus_alpha, cosine_decayed, alpha, one)
        cosine_decayed = 0.5 * (1.0 + one * cos(pi * (step / decay_steps)))
        return initial * (one_minus_alpha * cosine_decayed + alpha)


class CosineDecayRestarts(_BuiltinSchedule):
    """Cosine decay with warm restarts (Loshchilov & Hutter, "SGDR", ICLR 2017).

    The multiplier decays along a half cosine from 1 to ``alpha`` over ``first_decay_steps``
    steps, then restarts; period ``i`` lasts ``first_decay_steps * t_mul**i`` steps and its
    cosine part is scaled by ``m_mul**i``:

        lr = initial_learning_rate
             * ((1 - alpha) * 0.5 * m_mul**i * (1 + cos(pi * fraction_of_period_i)) + alpha)

    ``alpha`` itself is not scaled by ``m_mul**i``. As in Keras, the period index is found in
    closed form, ``floor(log(1 - f * (1 - t_mul)) / log(t_mul))`` with
    ``f = step / first_decay_steps``, in the schedule's dtype. The result has the dtype of
    ``initial_learning_rate``.

    For example:

        schedule = CosineDecayRestarts(0.1, first_decay_steps=1000)

    Args:
        initial_learning_rate: A float. The initial learning rate.
        first_decay_steps: A positive number. The length of the first period.
        t_mul: A float. Each period is ``t_mul`` times longer than the one before.
            Defaults to ``2.0``.
        m_mul: A float. Each period starts ``m_mul`` times lower than the one before.
            Defaults to ``1.0``.
        alpha: A float. The final rate as a fraction of ``initial_learning_rate``.
            Defaults to ``0.0``.
        name: A str. The schedule's name. Defaults to ``"SGDRDecay"``.
    """

    _arguments = ("initial_learning_rate", "first_decay_steps", "t_mul", "m_mul", "alpha", "name")
    # Keras keeps the two multipliers private.
    _attribute_of = {"t_mul": "_t_mul", "m_mul": "_m_mul"}
    # The constructor's arguments, kept by `_store_arguments`.
    initial_learning_rate: Any
    first_decay_steps: int
    _t_mul: float
    _m_mul: float
    alpha: float
    name: str
    _positive = "first_decay_steps"

    def __init__(
        self,
        initial_learning_rate: float,
        first_decay_steps: int,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        alpha: float = 0.0,
        name: str = "SGDRDecay",
    ) -> None:
        super().__init__()
        self._store_arguments(locals())

    def _prepare(self) -> Any:
        dtype = compute_dtype(self.initial_learning_rate)
        power, log, cos = functions_for(dtype)
        alpha = dtype(self.alpha)
        t_mul = dtype(self._t_mul)
        one = dtype(1)
        return (
            dtype,
            one,
            power,
            log,
            cos,
            dtype(self.initial_learning_rate),
            dtype(self.first_decay_steps),
            dtype(math.pi),
            1 - alpha,
            alpha,
            t_mul,
            dtype(self._m_mul),
            t_mul != 1.0,
            1.0 - t_mul,
            one * log(t_mul),
        )

    def __call__(self, step: Any) -> Any:
        """The learning rate at ``step``. See ``LearningRateSchedule.__call__``."""
        (
            dtype,
            one,
            power,
            log,
            cos,
            initial,
            first_decay_steps,
            pi,
            one_minus_alpha,
            alpha,
            t_mul,
            m_mul,
            geometric,
            one_minus_t_mul,
            log_t_mul,
        ) = self._constants()
        fraction = cast_step(step, dtype) / first_decay_steps
        if geometric:
            restart = floor(
                one * log(fused_multiply_add(-fraction, one_minus_t_mul, 1.0, one)) / log_t_mul
            )
            t_mul_power = one * power(t_mul, restart)
            done = (1.0 - t_mul_power) / one_minus_t_mul
            fraction = (fraction - done) / t_mul_power
        else:
            restart = floor(fraction)
            fraction = fraction - restart
        cosine_decayed = 0.5 * (one * power(m_mul, restart)) * (1.0 + one * cos(pi * fraction))
        return initial * (one_minus_alpha * cosine_decayed + alpha)


_BUILTIN = {
    cls.__name__: cls
    for cls in (
        CosineDecay,
        CosineDecayRestarts,
        ExponentialDecay,
        InverseTimeDecay,
        PiecewiseConstantDecay,
        PolynomialDecay,
    )
}


def serialize(learning_rate_schedule: Any) -> Any:
    """Serializes a schedule into a JSON-compatible dict, in Keras's format.

    A built-in schedule gives
    ``{"module": "keras.optimizers.schedules", "class_name": ..., "config": ...,
    "registered_name": None}``, readable by Keras itself; a user subclass gives its own module and
    ``registered_name`` set to its class name, to be found again through ``custom_objects``.

    Args:
        learning_rate_schedule: The ``LearningRateSchedule`` to serialize.

    Returns:
        A dict, or None for None.
    """
    if learning_rate_schedule is None:
        return None
    cls = type(learning_rate_schedule)
    if not hasattr(learning_rate_schedule, "get_config"):
        raise TypeError(
            f"Cannot serialize object {learning_rate_schedule} of type {cls}. "
            "To be serializable, a class must implement the `get_config()` method."
        )
    config = learning_rate_schedule.get_config()
    if not isinstance(config, dict):
        raise TypeError(
            f"The `get_config()` method of {learning_rate_schedule} should return "
            f"a dict. It returned: {config}"
        )
    if _BUILTIN.get(cls.__name__) is cls:
        module, registered_name = _MODULE, None
    else:
        module, registered_name = cls.__module__, cls.__name__
    return {
        "module": module,
        "class_name": cls.__name__,
        "config": plain(config),
        "registered_name": registered_name,
    }


def deserialize(config: Any, custom_objects: Optional[Mapping[str, Any]] = None) -> Any:
    """Instantiates a schedule from its serialized form.

    The class is looked up first in ``custom_objects`` (by ``class_name``, then by
    ``registered_name``), then among the six built-in schedules by their exact, case-sensitive
    class name, as Keras does. A string is taken as a class name with an empty config.

    Args:
        config: A dict ``{"class_name": str, "config": dict, ...}``, as ``serialize`` returns.
        custom_objects: A dict mapping class names to user-defined schedule classes.

    Returns:
        A ``LearningRateSchedule`` instance, or None for None.

    Raises:
        ValueError: if the class is unknown or the dict has no ``class_name``.
        TypeError: if ``config`` is neither a dict nor a string.
    """
    if config is None:
        return None
    if isinstance(config, str):
        config = {"class_name": config, "config": {}}
    if not isinstance(config, dict):
        raise TypeError(f"Could not parse config: {config}")
    if "class_name" not in config:
        raise ValueError(f"Unknown `config` as a `dict`, config={config}")
    class_name = config["class_name"]
    custom_objects = custom_objects or {}
    cls = custom_objects.get(class_name)
    registered = config.get("registered_name")
    if cls is None and isinstance(registered, str):
        cls = custom_objects.get(registered)
    if cls is None:
        cls = _BUILTIN.get(class_name)
    if cls is None:
        raise ValueError(
            f"Unknown decay: '{class_name}'. Please ensure you are using a built-in "
            "schedule's exact class name, or pass the class in `custom_objects`."
        )
    return cls.from_config(config.get("config") or {})
