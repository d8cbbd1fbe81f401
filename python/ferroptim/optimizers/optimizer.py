"""The base optimizer: every cross-cutting Keras feature, in Keras's order, over NumPy arrays.

This mirrors `keras/src/optimizers/base_optimizer.py` and `optimizer.py` (merged into one class).
A subclass holds only its hyperparameters, its slots and one hook, `_update_step`, that hands one
dtype group of tensors to its native kernel.

How a step is cut between Python and Rust: Python decides everything that is per call or per
tensor (the learning rate, whether this call only accumulates, the EMA momentum and overwrite, the
one clipping rule that applies, the weight-decay mask) and the kernel does every per-element
operation of the step (unscale, accumulate, clip, decay, update, EMA) in one fused pass. All of
the per-tensor lists a step needs are built once, when the optimizer is first used after `build`
(the "plan"), so the common step costs one identity check, one learning-rate read and one native
call.

Two Keras features are left out because a NumPy array cannot carry the attribute they hang on:
`overwrite_with_gradient` (a flag on the variable) and `constraint` (a callable on the variable).
"""

from __future__ import annotations

import collections
import functools
import inspect
import math
import os
import re
import signal
import sys
import threading
import warnings
import weakref
from collections.abc import Mapping
from itertools import repeat
from operator import is_, is_not
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ferroptim import _native
from ferroptim.optimizers import schedules as _schedules
from ferroptim.optimizers.schedules import LearningRateSchedule

__all__ = ["Optimizer", "check_hyperparameter"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_NONES = repeat(None)
_SEQUENCES = (list, tuple)


class _Marker:
    """A singleton that pickles by reference, so identity checks survive pickling."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __reduce__(self) -> str:
        return self.name


# Marks, in the variable table, the two entries whose values live in Python numbers.
_ITERATION = _Marker("_ITERATION")
_LEARNING_RATE = _Marker("_LEARNING_RATE")
# `_fast_options` when the StepOptions of a full step change from one call to the next.
_VARYING = object()
_completed_calls = _native.completed_calls
_FLOAT_SCALARS = frozenset((float, np.float32, np.float64))

# The largest `gradient_accumulation_steps` the kernels take (a 32-bit unsigned count).
_MAX_ACCUMULATION_STEPS = 2**32 - 1
# The iteration counter is a 64-bit signed integer in the kernels and in `variables`.
_MAX_ITERATIONS = 2**63 - 1

# Per-process counters behind automatic names ("adam", "adam_1", ...), as Keras's `uniquify`.
_NAME_UIDS: Dict[str, int] = collections.defaultdict(int)

# Every live optimizer, so a forked child can free the step guards it inherited (see
# `Optimizer._init_step_guard`).
_LIVE_OPTIMIZERS: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _reset_step_guards_after_fork() -> None:
    # The child has only the thread that forked: a step another thread of the parent was
    # running will never end here, and its guard would block every step of the child forever.
    for optimizer in list(_LIVE_OPTIMIZERS):
        optimizer._init_step_guard()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_step_guards_after_fork)


def _to_snake_case(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _auto_name(class_name: str) -> str:
    prefix = _to_snake_case(class_name)
    uid = _NAME_UIDS[prefix]
    _NAME_UIDS[prefix] += 1
    return prefix if uid == 0 else f"{prefix}_{uid}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_hyperparameter(name: str, value: Any) -> None:
    """Raise a ValueError unless `value` is None or a finite number.

    Keras lets NaN and inf through its range checks (every comparison with NaN is False); the
    kernels would reject them at the first step, so they are refused at construction instead.

    Args:
        name: the argument's name, for the message.
        value: the argument's value.
    """
    if value is not None and (not _is_number(value) or not _is_finite(value)):
        raise ValueError(f"Argument `{name}` must be a finite number. Received: {name}={value}")


class _SnapshotGuard:
    """Keeps an optimizer's step guard taken from `__getstate__` until pickle or copy has read
    the whole state, so a snapshot holds whole steps while another thread steps.

    It is the state's last entry: pickle and deepcopy reduce it after every array, and that
    releases the guard; it unpickles as None. If the state is dropped unread (a shallow copy,
    a failed pickle), releasing happens when it is freed.
    """

    __slots__ = ("release",)

    def __init__(self, release: Any):
        self.release = release

    def _release(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()

    def __reduce__(self) -> Tuple[Any, Tuple[()]]:
        self._release()
        return (type(None), ())

    def __deepcopy__(self, memo: Dict[int, Any]) -> None:
        self._release()

    def __del__(self) -> None:
        self._release()


def _refuse_last_iteration() -> None:
    raise ValueError(
        f"The iteration count is at its limit ({_MAX_ITERATIONS}, the kernels' and the "
        "checkpoint's range): a further step could not be recorded and is refused. Reset "
        "`iterations` through `set_weights` or `load_own_variables` to continue."
    )


def _float32_learning_rate(value: Any) -> float:
    """A float learning rate as stored: rounded to float32 (Keras keeps it in a float32
    variable), refused unless that is finite. One rule for the constructor, the setter and
    loaded checkpoints."""
    with np.errstate(over="ignore"):
        rounded = float(np.float32(value))
    if not math.isfinite(rounded):
        raise ValueError(
            "Argument `learning_rate` must be a finite number within float32's range. "
            f"Received: learning_rate={value}"
        )
    return rounded


def _step_value(value: Any, source: Any) -> float:
    """The learning rate a schedule or callable returned, as a finite Python float.

    Keras lets a NaN or infinite rate through (the weights become NaN); here it is refused with a
    ValueError before anything changes, as a float rate is, for every optimizer alike.
    """
    kind = type(value)
    if kind is float or kind is np.float32 or kind is np.float64:
        number = float(value)
        if number - number == 0.0:  # finite: inf - inf and NaN - NaN are NaN
            return number
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if not _is_number(value):
        raise TypeError(
            "A learning-rate schedule or callable must return a real number. "
            f"Received: {value!r} from {source!r}"
        )
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(
            "The learning rate must be a finite number. "
            f"Received: learning_rate={value} from {source!r}"
        )
    return number


def _is_finite(value: Any) -> bool:
    # An int beyond float's range is refused too (math.isfinite would raise OverflowError).
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _checked_variable_value(name: str, target: Any, value: Any) -> Any:
    """`value` converted for one entry of the variable table, or a TypeError / ValueError.

    The iteration count must be an integer in [0, 2**63 - 1] (the kernels' range), the
    learning rate a finite number, a slot's value real numbers (cast to the slot's dtype).
    """
    array = np.asarray(value)
    if target is _ITERATION:
        item = array.item() if array.dtype.kind in "iufO" else None
        if isinstance(item, float) and math.isfinite(item) and item.is_integer():
            item = int(item)
        if not isinstance(item, int) or isinstance(item, bool):
            raise TypeError(
                f"Optimizer variable {name} (the iteration count) must be an integer. "
                f"Received: {value!r}"
            )
        if not 0 <= item <= _MAX_ITERATIONS:
            raise ValueError(
                f"Optimizer variable {name} (the iteration count) must be in [0, 2**63 - 1]. "
                f"Received: {item}"
            )
        return item
    if array.dtype.kind not in "iuf":
        raise TypeError(
            f"Optimizer variable {name} takes real numbers; received an array of dtype "
            f"{array.dtype}."
        )
    if target is _LEARNING_RATE:
        with np.errstate(over="ignore"):
            learning_rate = float(np.float32(array))
        if not math.isfinite(learning_rate):
            raise ValueError(
                f"Optimizer variable {name} must be a finite number. Received: {value!r}"
            )
        return learning_rate
    with np.errstate(over="ignore"):
        return array.astype(target.dtype, copy=False)


class _PlanAttribute:
    """A hyperparameter that the precomputed plan depends on: assigning it drops the plan.

    Keras reads these attributes at every step, so a user may change them between steps; the
    plan caches what they imply, hence the invalidation.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: Any, objtype: Optional[type] = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__[self.slot]

    def __set__(self, obj: Any, value: Any) -> None:
        # Between steps: a step that another thread is running reads one consistent set of
        # hyperparameters and keeps its plan.
        obj._run_exclusive(self._assign, obj, value)

    def _assign(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = value
        obj._invalidate_plan()


class _Group:
    """The tensors of one native call: one dtype, lists aligned by tensor.

    Args:
        indices: positions of the tensors in the built variable list.
        params, names, slots, accumulators, averages: the aligned lists (slots by slot name).
        weight_decay: the decay passed to the kernel, None when no tensor of the group decays.
        weight_decay_mask: per-tensor flags, None when every tensor decays.
    """

    __slots__ = (
        "indices",
        "params",
        "names",
        "slots",
        "accumulators",
        "averages",
        "weight_decay",
        "weight_decay_mask",
        "options",
    )

    def __init__(
        self,
        indices: List[int],
        params: List[np.ndarray],
        names: List[str],
        slots: Dict[str, List[np.ndarray]],
        accumulators: Optional[List[np.ndarray]],
        averages: Optional[List[np.ndarray]],
        weight_decay: Optional[float],
        weight_decay_mask: Optional[List[bool]],
    ):
        self.indices = indices
        self.params = params
        self.names = names
        self.slots = slots
        self.accumulators = accumulators
        self.averages = averages
        self.weight_decay = weight_decay
        self.weight_decay_mask = weight_decay_mask
        # StepOptions of a full-group call, keyed by (accumulate_only, ema_momentum, overwrite).
        self.options: Dict[Tuple[bool, float, bool], Optional[_native.StepOptions]] = {}


ParamsArg = Union[Sequence[np.ndarray], Mapping[str, np.ndarray]]
# One native call of a step: its group, the built indices it covers (None: the whole group, in
# order) and their gradients.
_Call = Tuple[_Group, Optional[List[int]], Sequence[Any]]

_AT_INDEX = re.compile(r"at index (\d+)")


def _ema(
    params: List[np.ndarray],
    averages: List[np.ndarray],
    momentum: float,
    overwrite: bool,
    names: List[str],
) -> None:
    _native.ema(params, averages, momentum, overwrite, names=names)


def _run_calls(calls: List[Tuple[Any, ...]]) -> None:
    """Run a step's native calls `(function, args, names)` in order; a refusal names the
    variables of the call that refused."""
    for function, args, names in calls:
        try:
            function(*args)
        except (TypeError, ValueError) as error:
            _name_variables(error, names)
            raise


def _settle(commit: Any) -> None:
    """Run an idempotent `commit` to its end even if interrupts land while it runs (each
    interrupt restarts it; the caller re-raises the one it is handling)."""
    for _ in range(1000):
        try:
            commit()
            return
        except (TypeError, ValueError):
            raise
        except BaseException:
            continue
    commit()


class _sigint_deferred:
    """Hold back SIGINT (Ctrl-C) for the duration of the block, then deliver it.

    Python raises `KeyboardInterrupt` wherever the main thread happens to be; in a step made of
    several native calls and NumPy writes that would leave it half applied. Inside the block
    SIGINT is only recorded; on exit the previous handler is restored and, if a SIGINT came,
    called (the default one raises `KeyboardInterrupt`), after the step is complete. Only the
    main thread receives Python signals, so elsewhere this does nothing.
    """

    __slots__ = ("installed", "previous", "received")

    def __enter__(self) -> None:
        self.installed = False
        self.received: List[Any] = []
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._record)
            self.installed = True

    def _record(self, signum: int, frame: Any) -> None:
        self.received.append((signum, frame))

    def __exit__(self, *exc_info: Any) -> None:
        if not self.installed:
            return
        previous = self.previous
        # None: a handler installed outside Python, which the default stands in for.
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
        if self.received:
            if callable(previous):
                previous(*self.received[0])
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


def _name_variables(error: Exception, names: List[str]) -> None:
    """Rewrite a native error's "at index i" (a position in the call) into the variable's name.

    The kernels can name variables themselves (`names=`), but that keyword argument costs more
    than the rest of a small step's Python path; a failed call changes nothing, so the names
    are put in afterwards, on the error path only.
    """
    if error.args and isinstance(error.args[0], str):

        def name(match: "re.Match[str]") -> str:
            i = int(match.group(1))
            return f"'{names[i]}'" if i < len(names) else match.group(0)

        error.args = (_AT_INDEX.sub(name, error.args[0]),) + error.args[1:]


def _check_no_aliasing(grads: List[Tuple[str, np.ndarray]], writable: List[np.ndarray]) -> None:
    """Raise a ValueError if a gradient shares memory with an array the step writes, or two
    written arrays overlap: the native sorted sweep over address ranges that every update
    function runs on its own arrays, here across the several calls of one step."""
    if len(grads) + len(writable) < 2:
        return
    _native.check_disjoint([g for _, g in grads], writable, [name for name, _ in grads])


class Optimizer:
    """Base class of every ferroptim optimizer (Keras's `BaseOptimizer` and `Optimizer`).

    Parameters are NumPy arrays (float32 or float64, any layout) updated in place. An optimizer is
    built on a list (or tuple) of arrays, or on a dict name -> array; it then only accepts those
    very arrays (compared by identity, as Keras compares variables). Variables of a list are named
    `variable_0`, `variable_1`, ...; variables of a dict take their keys as names. Names drive
    `exclude_from_weight_decay(var_names=...)` and the names of the slots (`<name>_momentum`, with
    "/" replaced by "_", as Keras names slots after the variable's path).

    Args:
        learning_rate: a Python float (stored rounded to float32, as Keras stores it in a float32
            variable), a `ferroptim.optimizers.schedules.LearningRateSchedule` (called with the raw
            iteration count), or a callable taking no argument.
        weight_decay: float or None. If set, decoupled weight decay `w -= w * weight_decay * lr`
            is applied before the update of every variable not excluded with
            `exclude_from_weight_decay`.
        clipnorm: float or None. Clip each gradient so that its L2 norm is at most this value.
        clipvalue: float or None. Clip each gradient element to [-clipvalue, clipvalue].
        global_clipnorm: float or None. Clip all gradients together so that their global L2 norm
            is at most this value. At most one of `clipnorm`, `clipvalue` and `global_clipnorm`
            may be set; a value <= 0 disables clipping (Keras's precedence: clipnorm, then
            global_clipnorm, then clipvalue).
        use_ema: bool. Keep an exponential moving average of the variables.
        ema_momentum: float in [0, 1]. `average = ema_momentum * average + (1 - ema_momentum) *
            variable` (the first update takes the variable as is).
        ema_overwrite_frequency: int >= 1 or None. Every that many iterations the variables are
            overwritten with their average. With None, call `finalize_variable_values`.
        loss_scale_factor: float or None. Gradients are divided by it first; `scale_loss`
            multiplies a loss by it.
        gradient_accumulation_steps: int >= 2 or None. Variables are updated every that many
            calls, with the mean of the gradients since the last update. `iterations` counts
            updates; learning-rate schedules see the raw number of calls.
        name: str or None. None gives an automatic name from the class name (`adam`, `adam_1`,
            ...).
        **kwargs: Keras 2 spellings: `lr` (an alias of `learning_rate`; giving both is a
            ValueError, where Keras 2 let `lr` win silently) and `decay` (a float >= 0: the
            learning rate of every step, weight decay included, is divided by
            `1 + decay * iterations`, as tf.keras's legacy optimizers did). Anything else is a
            ValueError.

    Subclassing: override `build` (call `super().build(var_list)` first, then create slots with
    `add_optimizer_variables`), `_update_step` (one native call for one dtype group) and
    `get_config`. State advanced once per update step outside the slots (Nadam's `u_product`)
    goes through `_has_step_state`, `_begin_update_step` and `_end_update_step`.
    """

    # True in a subclass with state that advances once per update step outside its slots
    # (Nadam's `u_product`): see `_begin_update_step`. Its steps all take `_step`, the path that
    # knows whether a call updates or only accumulates.
    _has_step_state = False
    # A learning rate a wrapper read ahead for this step (see `_learning_rate_ahead`).
    _pinned_learning_rate: Optional[float] = None
    # False in a subclass whose rule runs (in part) outside the fused kernels: its
    # `_update_step` then receives, instead of a StepOptions, the dict of StepOptions keyword
    # arguments (None when empty), and applies those parts itself.
    _fused_options = True

    weight_decay = _PlanAttribute()
    clipnorm = _PlanAttribute()
    clipvalue = _PlanAttribute()
    global_clipnorm = _PlanAttribute()
    ema_momentum = _PlanAttribute()
    ema_overwrite_frequency = _PlanAttribute()
    loss_scale_factor = _PlanAttribute()

    def __init__(
        self,
        learning_rate: Any,
        weight_decay: Optional[float] = None,
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: Optional[int] = None,
        loss_scale_factor: Optional[float] = None,
        gradient_accumulation_steps: Optional[int] = None,
        name: Optional[str] = None,
        **kwargs: Any,
    ):
        self._plan: Optional[List[_Group]] = None
        self._fast_params: Optional[List[np.ndarray]] = None
        # Every array a step writes, when the plan has several dtype groups.
        self._multi_writable: Optional[List[np.ndarray]] = None
        self._init_step_guard()

        if "lr" in kwargs:
            lr = kwargs.pop("lr")
            if learning_rate is not self._default_learning_rate():
                raise ValueError(
                    "Both `learning_rate` and its Keras 2 alias `lr` were given; pass only "
                    f"`learning_rate`. Received: learning_rate={learning_rate}, lr={lr}"
                )
            learning_rate = lr
        decay = kwargs.pop("decay", None)
        if decay is not None and (
            not _is_number(decay) or not math.isfinite(decay) or decay < 0
        ):
            raise ValueError(
                f"Argument `decay` must be a float >= 0. Received: decay={decay}"
            )
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        self._decay = float(decay) if decay else 0.0
        self._decay_given = decay is not None and decay != 0

        if name is None:
            name = _auto_name(self.__class__.__name__)
        self.name = name
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.global_clipnorm = global_clipnorm
        self.clipvalue = clipvalue
        self.use_ema = use_ema
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps

        if gradient_accumulation_steps:
            # The kernels take an integer step count, hence the isinstance check Keras lacks.
            if (
                not isinstance(gradient_accumulation_steps, (int, np.integer))
                or not gradient_accumulation_steps >= 2
            ):
                raise ValueError(
                    "`gradient_accumulation_steps` must be an integer >= 2. "
                    "Received: gradient_accumulation_steps="
                    f"{gradient_accumulation_steps}"
                )
            if gradient_accumulation_steps > _MAX_ACCUMULATION_STEPS:
                raise ValueError(
                    "`gradient_accumulation_steps` must be at most 2**32 - 1 (the kernels "
                    "count in 32 bits). Received: gradient_accumulation_steps="
                    f"{gradient_accumulation_steps}"
                )
        self._accumulation_steps = int(gradient_accumulation_steps or 0)

        if use_ema:
            if ema_momentum > 1 or ema_momentum < 0:
                raise ValueError(
                    "`ema_momentum` must be in the range [0, 1]. "
                    f"Received: ema_momentum={ema_momentum}"
                )
            if ema_overwrite_frequency and (
                not isinstance(ema_overwrite_frequency, int) or ema_overwrite_frequency < 1
            ):
                raise ValueError(
                    "`ema_overwrite_frequency` must be an integer >= 1 or "
                    "None. Received: ema_overwrite_frequency="
                    f"{ema_overwrite_frequency}"
                )
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency

        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can "
                f"be set. Received: clipnorm={clipnorm}, "
                f"clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        self.built = False

        # The variable table, in Keras's creation order: (name, array or marker).
        self._variables: List[Tuple[str, Any]] = [("iteration", _ITERATION)]
        self._trainable_variables: List[np.ndarray] = []
        self._trainable_variable_names: List[str] = []
        self._trainable_variables_indices: Dict[int, int] = {}
        self._slot_kinds: Dict[str, List[np.ndarray]] = {}
        self._model_variables_moving_average: List[np.ndarray] = []
        self._accumulated_gradients: List[np.ndarray] = []
        self._exclude_from_weight_decay_vars: List[Any] = []
        self._exclude_from_weight_decay_pattern: Optional[re.Pattern] = None
        self._exclude_from_weight_decay_cache: Dict[int, bool] = {}
        # The raw call counter, a Python int (see `iterations`).
        self._iterations = 0

        if isinstance(learning_rate, LearningRateSchedule) or callable(learning_rate):
            self._learning_rate = learning_rate
        else:
            if not isinstance(learning_rate, float):
                raise ValueError(
                    "Argument `learning_rate` should be float, or an instance "
                    "of LearningRateSchedule, or a callable "
                    "(that takes in the current iteration value "
                    "and returns the corresponding learning rate value). "
                    f"Received instead: learning_rate={learning_rate}"
                )
            check_hyperparameter("learning_rate", learning_rate)
            self._learning_rate = _float32_learning_rate(learning_rate)
            self._variables.append(("learning_rate", _LEARNING_RATE))
        for argument, value in (
            ("weight_decay", weight_decay),
            ("clipnorm", clipnorm),
            ("clipvalue", clipvalue),
            ("global_clipnorm", global_clipnorm),
            ("loss_scale_factor", loss_scale_factor),
        ):
            check_hyperparameter(argument, value)
        if use_ema:
            check_hyperparameter("ema_momentum", ema_momentum)
        self._refresh_lr_cache()

    # --- construction helpers ------------------------------------------------------------

    @classmethod
    def _default_learning_rate(cls) -> Any:
        """The default object of `learning_rate` in the most derived signature that has one.

        `lr=` may only replace a `learning_rate` the caller did not give; the default is compared
        by identity, which a value the caller typed can never share.
        """
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            parameter = inspect.signature(init).parameters.get("learning_rate")
            if parameter is not None:
                return parameter.default
        return inspect.Parameter.empty

    def _refresh_lr_cache(self) -> None:
        lr = self._learning_rate
        self._lr_const = lr if isinstance(lr, float) and not self._decay else None

    def _invalidate_plan(self) -> None:
        self.__dict__["_plan"] = None
        self.__dict__["_fast_params"] = None
        self.__dict__["_multi_writable"] = None

    # --- one step at a time ----------------------------------------------------------------

    def _init_step_guard(self) -> None:
        """Create the guard that serializes steps (and state reads and writes) across threads.

        The kernels release the GIL, so two threads stepping one optimizer would otherwise run
        inside the same step. The guard is a token in a list: `list.pop` and `list.append` are
        atomic, so an uncontended step takes it and gives it back for a fraction of a
        `threading.Lock`'s cost. A thread that finds it taken queues up (`_wait_for_step`) and
        is handed the token in turn, first come first served, so a thread stepping in a tight
        loop cannot starve a thread that saves a checkpoint. The guard is per process and per
        object: it is not pickled, and a forked child gets a fresh one
        (`_reset_step_guards_after_fork`).
        """
        self._step_token = [True]
        # The number of queued threads (read without the lock on the release path) and their
        # wake-up locks, in arrival order, under `_step_queue_lock`.
        self._step_waiters = 0
        self._step_queue: Deque[Any] = collections.deque()
        self._step_queue_lock = threading.Lock()
        _LIVE_OPTIMIZERS.add(self)

    def _wait_for_step(self, token: List[bool]) -> None:
        """Take `token` once it is handed over (the contended path)."""
        if self._step_held_by_this_thread():
            raise RuntimeError(
                f"Optimizer '{self.name}' is already running a step on this thread (a "
                "learning-rate callable or a signal handler called into it); a step, `save` or "
                "a state load cannot start inside another step of the same optimizer."
            )
        with self._step_queue_lock:
            # Counted before looking at the token: a release that puts the token back after
            # this line sees the count and hands the token over; one before it left the token
            # in the list for the `pop` below.
            self._step_waiters += 1
            try:
                token.pop()
            except IndexError:
                wake = threading.Lock()
                wake.acquire()
                self._step_queue.append(wake)
            else:
                self._step_waiters -= 1
                return
        try:
            wake.acquire()  # released by `_hand_over_step`: the token is ours
        except BaseException:
            # Interrupted (KeyboardInterrupt): leave the queue, or pass on a token that was
            # handed over at the same moment.
            with self._step_queue_lock:
                if wake in self._step_queue:
                    self._step_queue.remove(wake)
                    self._step_waiters -= 1
                    raise
            self._release_step(token)
            raise

    def _release_step(self, token: List[bool]) -> None:
        # The token goes back first, then the count is read (see `_wait_for_step`).
        token.append(True)
        if self._step_waiters:
            self._hand_over_step(token)

    def _hand_over_step(self, token: List[bool]) -> None:
        # The token goes to the first queued thread rather than staying in the list, where the
        # thread that just released it, stepping in a loop, would take it again at once.
        with self._step_queue_lock:
            if not self._step_queue:
                return
            try:
                token.pop()
            except IndexError:
                return  # taken by another thread: its release hands it over
            self._step_waiters -= 1
            self._step_queue.popleft().release()

    def _step_held_by_this_thread(self) -> bool:
        # Only reached when the token is taken: a frame further down this thread's stack that
        # holds it for this optimizer means waiting would never end. Walking the stack here
        # costs nothing on the uncontended path. Frames 1 and 2 are `_wait_for_step` and the
        # call that is about to wait.
        frame = sys._getframe(3)
        while frame is not None:
            if frame.f_code in _STEP_HOLDERS and frame.f_locals.get("self") is self:
                return True
            frame = frame.f_back
        return False

    def _run_exclusive(self, function: Any, *args: Any) -> Any:
        """Call `function(*args)` holding the step guard: no step of this optimizer runs
        meanwhile (a consistent snapshot for `save`, an atomic restore for the loaders)."""
        token = self._step_token
        try:
            token.pop()
        except IndexError:
            self._wait_for_step(token)
        try:
            return function(*args)
        finally:
            self._release_step(token)

    # --- iterations and learning rate ----------------------------------------------------

    @property
    def iterations(self) -> int:
        """The number of updates applied: the raw call count, floor-divided by
        `gradient_accumulation_steps` when accumulating. A Python int."""
        k = self._accumulation_steps
        return self._iterations // k if k else self._iterations

    @property
    def learning_rate(self) -> Any:
        """The current learning rate, before any Keras 2 `decay`.

        A float learning rate reads as the float32-rounded Python float; a schedule is called
        with the raw iteration count; a callable is called with no argument.

        Setting a real number assigns it (rounded to float32); it is a TypeError when the
        optimizer was created with a schedule, or for anything but a number, a schedule or a
        callable (a string included). Setting a schedule or a callable replaces the rate and
        drops the `learning_rate` entry from `variables`.

        One rule for every learning rate: a finite real number once rounded to float32, refused
        with a ValueError or TypeError before anything changes, whether it is given to the
        constructor, set, loaded, or returned by a schedule or callable at a step. Keras lets a
        NaN or infinite rate through and the weights become NaN.
        """
        lr = self._learning_rate
        if isinstance(lr, float):
            return lr
        if isinstance(lr, LearningRateSchedule):
            return lr(self._iterations)
        return lr()

    @learning_rate.setter
    def learning_rate(self, learning_rate: Any) -> None:
        if isinstance(learning_rate, LearningRateSchedule) or callable(learning_rate):
            self._learning_rate = learning_rate
            self._variables = [v for v in self._variables if v[1] is not _LEARNING_RATE]
        else:
            if isinstance(self._learning_rate, LearningRateSchedule):
                raise TypeError(
                    "This optimizer was created with a `LearningRateSchedule`"
                    " object as its `learning_rate` constructor argument, "
                    "hence its learning rate is not settable. If you need the"
                    " learning rate to be settable, you should instantiate "
                    "the optimizer with a float `learning_rate` argument."
                )
            if not _is_number(learning_rate):
                raise TypeError(
                    "`learning_rate` must be a real number, a `LearningRateSchedule` or a "
                    f"callable. Received: learning_rate={learning_rate!r}"
                )
            value = _float32_learning_rate(learning_rate)
            if not isinstance(self._learning_rate, float):
                # Keras cannot assign a float over a callable; here the float variable returns.
                self._variables.insert(1, ("learning_rate", _LEARNING_RATE))
            self._learning_rate = value
        self._refresh_lr_cache()

    def _step_learning_rate(self, raw: int, iterations: int) -> float:
        """The learning rate of this step, Keras 2 `decay` included, as a Python float."""
        pinned = self._pinned_learning_rate
        if pinned is not None:
            return pinned
        lr = self._learning_rate
        if isinstance(lr, float):
            value = lr
        else:
            result = lr(raw) if isinstance(lr, LearningRateSchedule) else lr()
            # `_step_value`'s common case inline (a schedule returns a NumPy float scalar).
            if type(result) in _FLOAT_SCALARS:
                value = float(result)
                if value - value != 0.0:  # NaN or infinite
                    value = _step_value(result, lr)
            else:
                value = _step_value(result, lr)
        if self._decay:
            value = value / (1.0 + self._decay * iterations)
        return value

    def scale_loss(self, loss: Any) -> Any:
        """Scale the loss before computing gradients (multiplies by `loss_scale_factor`).

        Args:
            loss: the loss value.
        """
        if self.loss_scale_factor is not None:
            return loss * self.loss_scale_factor
        return loss

    # --- variables -----------------------------------------------------------------------

    def build(self, var_list: ParamsArg) -> None:
        """Create the optimizer's state for `var_list`; a no-op once built.

        Args:
            var_list: a list or tuple of NumPy arrays (named `variable_0`, ...), or a dict
                name -> array. Arrays must be float32 or float64 and writeable.
        """
        if self.built:
            return
        names, variables = self._names_and_variables(var_list)
        if len({id(v) for v in variables}) != len(variables):
            raise ValueError("The same array was given twice to `build`.")
        for name, variable in zip(names, variables):
            if not isinstance(variable, np.ndarray):
                raise TypeError(
                    f"Variable '{name}' must be a NumPy array (float32 or float64), updated in "
                    f"place. Received: {type(variable).__name__}"
                )
            if variable.dtype not in _FLOAT_DTYPES:
                raise TypeError(
                    f"Variable '{name}' has dtype {variable.dtype}; optimizers update float32 "
                    "or float64 arrays."
                )
            if not variable.flags.writeable:
                raise ValueError(f"Variable '{name}' is read-only; it must be writeable.")
        self._trainable_variables = variables
        self._trainable_variable_names = names
        self._trainable_variables_indices = {id(v): i for i, v in enumerate(variables)}
        if self.use_ema:
            (self._model_variables_moving_average,) = self._add_slots(
                variables, ["average"], ["zeros"]
            )
        if self._accumulation_steps:
            (self._accumulated_gradients,) = self._add_slots(
                variables, ["gradient_accumulator"], ["zeros"]
            )
        self.built = True
        self._invalidate_plan()

    @staticmethod
    def _names_and_variables(var_list: ParamsArg) -> Tuple[List[str], List[Any]]:
        if isinstance(var_list, Mapping):
            names = [str(k) for k in var_list.keys()]
            return names, list(var_list.values())
        variables = list(var_list)
        return [f"variable_{i}" for i in range(len(variables))], variables

    def add_variable(
        self,
        shape: Tuple[int, ...],
        initializer: Any = "zeros",
        dtype: Any = None,
        name: Optional[str] = None,
    ) -> np.ndarray:
        """Add a variable to the optimizer's state (appended to `variables`).

        Args:
            shape: the array's shape.
            initializer: "zeros", "ones", a number (a constant), or a callable
                `(shape, dtype) -> array`.
            dtype: NumPy dtype; None means float32 (Keras's floatx).
            name: the variable's name.
        """
        return self._new_variable(shape, np.dtype(dtype or np.float32), initializer, name, "C")

    def _new_variable(
        self, shape: Any, dtype: np.dtype, initializer: Any, name: Optional[str], order: str
    ) -> np.ndarray:
        if isinstance(initializer, str):
            if initializer not in ("zeros", "ones"):
                raise ValueError(
                    f"Unknown initializer '{initializer}': use 'zeros', 'ones', a number or a "
                    "callable."
                )
            make = np.zeros if initializer == "zeros" else np.ones
            array = make(shape, dtype=dtype, order=order)
        elif _is_number(initializer):
            array = np.full(shape, initializer, dtype=dtype, order=order)
        else:
            array = np.array(initializer(shape, dtype), dtype=dtype, order=order)
        self._variables.append((name or "var", array))
        return array

    def add_variable_from_reference(
        self, reference_variable: np.ndarray, name: Optional[str] = None, initializer: Any = "zeros"
    ) -> np.ndarray:
        """Add a variable with the shape and dtype of a built variable, named after it.

        A Fortran-ordered variable gets a Fortran-ordered slot, so both have the same memory
        layout and the kernels take their flat path.

        Args:
            reference_variable: one of the arrays the optimizer was built with.
            name: the slot name; the variable is named `<variable name>_<name>`.
            initializer: as in `add_variable`.
        """
        index = self._trainable_variables_indices[id(reference_variable)]
        base = self._trainable_variable_names[index].replace("/", "_").replace(":", "_")
        flags = reference_variable.flags
        order = "F" if flags.f_contiguous and not flags.c_contiguous else "C"
        return self._new_variable(
            reference_variable.shape,
            reference_variable.dtype,
            initializer,
            f"{base}_{name or 'var'}",
            order,
        )

    def add_optimizer_variables(
        self, trainable_variables: ParamsArg, name: Union[str, Sequence[str]], initializer: Any = "zeros"
    ) -> Any:
        """Add one slot per built variable for each name, interleaved variable by variable.

        The lists returned are what `_update_step` receives (split by dtype) as
        `slots[name]`.

        Args:
            trainable_variables: the built variables (list, tuple or dict).
            name: a slot name, or a list of names (then a tuple of lists is returned).
            initializer: as in `add_variable`, one for all names or one per name.
        """
        names = [name] if isinstance(name, str) else list(name)
        if isinstance(initializer, (list, tuple)):
            initializers = list(initializer)
        else:
            initializers = [initializer] * len(names)
        if len(initializers) != len(names):
            raise ValueError(
                f"The number of provided names must match the number of "
                f"provided initializers.  Received name='{name}', "
                f"initializer='{initializer}'"
            )
        lists = self._add_slots(
            self._names_and_variables(trainable_variables)[1], names, initializers
        )
        for slot_name, slots in zip(names, lists):
            self._slot_kinds[slot_name] = slots
        self._invalidate_plan()
        return lists[0] if isinstance(name, str) else lists

    def _add_slots(
        self, variables: List[np.ndarray], names: List[str], initializers: List[Any]
    ) -> Tuple[List[np.ndarray], ...]:
        lists: Tuple[List[np.ndarray], ...] = tuple([] for _ in names)
        for variable in variables:
            for i, (slot_name, init) in enumerate(zip(names, initializers)):
                lists[i].append(self.add_variable_from_reference(variable, slot_name, init))
        return lists

    @property
    def variables(self) -> List[np.ndarray]:
        """The optimizer's state in Keras's order: iteration, learning_rate (float rates only),
        EMA averages, gradient accumulators, then the optimizer's slots.

        Slots are the live arrays. `iteration` (int64) and `learning_rate` (float32) are 0-d
        snapshots of values kept as Python numbers; write them back with `set_weights` or
        `load_own_variables`.
        """
        return [self._variable_value(value) for _, value in self._variables]

    @property
    def variable_names(self) -> List[str]:
        """The names of `variables`, in the same order (Keras's `variable.name`)."""
        return [name for name, _ in self._variables]

    def _variable_value(self, value: Any) -> np.ndarray:
        if value is _ITERATION:
            return np.array(self._iterations, dtype=np.int64)
        if value is _LEARNING_RATE:
            return np.array(self._learning_rate, dtype=np.float32)
        return value

    def _assign_variables(self, values: Sequence[Any]) -> None:
        """Assign `values` to the first len(values) entries of the variable table, in place,
        after checking and converting every value (so a bad entry assigns nothing)."""
        self._commit_variables(self._checked_variables(values))

    def _checked_variables(self, values: Sequence[Any]) -> List[Tuple[Any, Any, Any]]:
        """(owner, target, converted value) for the first len(values) entries of the variable
        table; raises before anything is assigned."""
        pairs = list(zip(self._variables, values))
        converted = []
        for (name, target), value in pairs:
            scalar = target is _ITERATION or target is _LEARNING_RATE
            expected = () if scalar else target.shape
            if np.shape(value) != expected:
                raise ValueError(
                    f"Optimizer variable {name} has shape {expected} not compatible with "
                    f"provided weight shape {np.shape(value)}."
                )
            converted.append(_checked_variable_value(name, target, value))
        return [(self, target, value) for ((_, target), _), value in zip(pairs, converted)]

    @staticmethod
    def _commit_variables(checked: List[Tuple[Any, Any, Any]]) -> None:
        """Assign what `_checked_variables` returned (cannot fail)."""
        for owner, target, value in checked:
            if target is _ITERATION:
                owner._iterations = value
            elif target is _LEARNING_RATE:
                owner._learning_rate = value
                owner._refresh_lr_cache()
            else:
                np.copyto(target, value)

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set the optimizer's state from a list of arrays in the order of `variables`.

        Args:
            weights: one array-like per entry of `variables` (extra entries are ignored, as in
                Keras).
        """
        if not self.built:
            raise ValueError(
                "You are calling `set_weights()` on an optimizer that has not "
                "yet been built. Please call "
                "`optimizer.build(trainable_variables)` to create the "
                "optimizer weights before calling `set_weights()`."
            )
        self._run_exclusive(self._assign_variables, weights)

    def save_own_variables(self, store: Any) -> None:
        """Write the state into `store[str(i)]` (copies), in the order of `variables`.

        Args:
            store: a dict-like object.
        """
        # Copied in one go, so a step running in another thread cannot split the snapshot.
        values = self._run_exclusive(lambda: [np.array(v, copy=True) for v in self.variables])
        for i, value in enumerate(values):
            store[str(i)] = value

    def load_own_variables(self, store: Any) -> None:
        """Read the state from `store[str(i)]`, as written by `save_own_variables`.

        A store with another number of entries is skipped with a warning, as in Keras.

        Args:
            store: a dict-like object.
        """
        if not callable(getattr(store, "keys", None)):
            raise TypeError(
                f"`store` must be a dict-like object. Received: {type(store).__name__}"
            )
        # `variables`, not the own table: a wrapper's entries include its inner optimizers'.
        n = len(self.variables)
        if len(store.keys()) != n:
            msg = (
                f"Skipping variable loading for optimizer '{self.name}', "
                f"because it has {n} variables whereas "
                f"the saved optimizer has {len(store.keys())} variables. "
            )
            if n == 0:
                msg += "This is likely because the optimizer has not been called/built yet."
            warnings.warn(msg, stacklevel=2)
            return
        self._run_exclusive(self._assign_variables, [store[str(i)] for i in range(n)])

    # --- checkpoint files (ferroptim.optimizers.checkpoint) -------------------------------

    def save(self, filepath: Any, include_variables: bool = True) -> None:
        """Write the configuration and the whole state to a checkpoint file, atomically.

        The file (a documented ZIP/`.npz` format, no pickle; see
        `ferroptim.optimizers.checkpoint`) holds `get_config()`, every entry of `variables`
        (iterations, slots, EMA averages, gradient accumulators...), the weight-decay
        exclusions and, by default, the values of the variables the optimizer was built on.
        It is written to a temporary file that is flushed, fsynced and renamed over
        `filepath`, so a crash never leaves a truncated checkpoint. No step runs meanwhile.

        Args:
            filepath: a path (str or os.PathLike); an existing regular file is replaced,
                anything else there (a directory, a symbolic link, a FIFO, a device) is
                refused with an OSError and left as it is.
            include_variables: also save the built variables' values (the model's parameters).
        """
        from ferroptim.optimizers import checkpoint

        checkpoint.save(self, filepath, include_variables=include_variables)

    @classmethod
    def load(
        cls,
        filepath: Any,
        var_list: Optional[ParamsArg] = None,
        custom_objects: Optional[Dict[str, Any]] = None,
    ) -> "Optimizer":
        """Create an optimizer from a checkpoint written by `save`, built and restored.

        `Optimizer.load` accepts any optimizer class; `Adam.load` refuses a checkpoint of
        another class. The variables must have the saved names (a dict's keys, or
        `variable_<i>` for a list), shapes and dtypes; when the file holds their values they are
        overwritten in place. Anything that does not match is a ValueError and changes nothing.

        Args:
            filepath: the checkpoint's path.
            var_list: the variables to build on (list, tuple or dict), as given to `build`.
                None only for the checkpoint of an optimizer that was never built.
            custom_objects: classes by name for a custom optimizer class or schedule.

        Returns:
            The optimizer, ready to continue exactly where the saved one stopped.
        """
        from ferroptim.optimizers import checkpoint

        return checkpoint.load(filepath, var_list, custom_objects=custom_objects, cls=cls)

    def load_state(self, filepath: Any, var_list: Optional[ParamsArg] = None) -> None:
        """Restore the state saved by `save` into this optimizer, keeping its configuration.

        The file must come from an optimizer of the same class built on variables of the same
        names, shapes and dtypes (a learning rate that is a callable is kept; a checkpoint of
        such an optimizer can only be read this way). No step runs meanwhile.

        Args:
            filepath: the checkpoint's path.
            var_list: the variables to build on when the optimizer is not built yet.
        """
        from ferroptim.optimizers import checkpoint

        checkpoint.load_state(self, filepath, var_list)

    # --- weight decay and EMA ------------------------------------------------------------

    def exclude_from_weight_decay(
        self, var_list: Optional[Sequence[Any]] = None, var_names: Optional[Sequence[str]] = None
    ) -> None:
        """Exclude variables from weight decay. Each call replaces the previous settings.

        Args:
            var_list: arrays to exclude (compared by identity).
            var_names: strings joined into one regular expression; a variable whose name it
                matches (`re.search`) is excluded. `var_names=["bias"]` excludes every
                variable whose name contains "bias".
        """
        # Between steps, as a hyperparameter is assigned (see `_PlanAttribute`).
        self._run_exclusive(self._set_exclusions, var_list, var_names)

    def _set_exclusions(
        self, var_list: Optional[Sequence[Any]], var_names: Optional[Sequence[str]]
    ) -> None:
        self._exclude_from_weight_decay_vars = list(var_list) if var_list else []
        if var_names and len(var_names) > 0:
            self._exclude_from_weight_decay_pattern = re.compile("|".join(set(var_names)))
        else:
            self._exclude_from_weight_decay_pattern = None
        self._exclude_from_weight_decay_cache = {}
        self._invalidate_plan()

    def _use_weight_decay(self, index: int) -> bool:
        cache = self._exclude_from_weight_decay_cache
        if index in cache:
            return cache[index]
        variable = self._trainable_variables[index]
        use = not any(v is variable for v in self._exclude_from_weight_decay_vars)
        pattern = self._exclude_from_weight_decay_pattern
        if use and pattern is not None:
            use = re.search(pattern, self._trainable_variable_names[index]) is None
        cache[index] = use
        return use

    def finalize_variable_values(self, var_list: ParamsArg) -> None:
        """With `use_ema`, assign every variable its moving average (in place).

        Args:
            var_list: the variables, in the order the optimizer was built with (list or dict).
        """
        if not self.use_ema:
            return
        _, variables = self._names_and_variables(var_list)
        averages = self._model_variables_moving_average
        if len(variables) != len(averages):
            raise ValueError(
                f"The length of model variables ({len(variables)}) "
                "to override does not match the length of model variables "
                "stored in the optimizer "
                f"({len(averages)}). Please "
                "check if the optimizer was called on your model."
            )
        for variable, average in zip(variables, averages):
            np.copyto(variable, average)

    # --- the step ------------------------------------------------------------------------

    def apply_gradients(self, grads_and_vars: Any) -> int:
        """Apply gradients to variables.

        Args:
            grads_and_vars: an iterable of (gradient, variable) pairs, e.g.
                `zip(grads, params)`.

        Returns:
            The raw iteration count after the call (Keras returns its `iterations` variable,
            which is that counter).
        """
        pairs = grads_and_vars if type(grads_and_vars) is list else list(grads_and_vars)
        if pairs:
            grads, variables = zip(*pairs)
            self.apply(grads, variables)
        return self._iterations

    def apply(self, grads: Any, trainable_variables: Optional[ParamsArg] = None) -> None:
        """Update the variables in place with one step of the optimizer.

        Args:
            grads: one gradient per variable (array-like of any float dtype, cast natively to
                the variable's dtype; None for a variable without gradient), as a list/tuple
                aligned with `trainable_variables`, or a dict keyed by variable name.
            trainable_variables: the variables (list/tuple or dict) or None for the built ones.
                The first call builds the optimizer on them.
        """
        # One step at a time (see `_init_step_guard`); the uncontended path is two list
        # operations.
        token = self._step_token
        try:
            token.pop()
        except IndexError:
            self._wait_for_step(token)
        try:
            # The common step: one dtype, every built variable in build order. Everything else
            # goes through `_apply_general`.
            p = self._fast_params
            if type(grads) is dict and self._plan is not None:
                # The common step with dicts: every built name, in build order.
                keys = self._fast_keys
                if tuple(grads) == keys and (
                    trainable_variables is None
                    or (type(trainable_variables) is dict and tuple(trainable_variables) == keys)
                ):
                    grads = list(grads.values())
                    if trainable_variables is not None:
                        trainable_variables = list(trainable_variables.values())
            if (
                p is not None
                and type(grads) in _SEQUENCES
                and len(grads) == len(p)
                and (
                    trainable_variables is None
                    or (
                        type(trainable_variables) in _SEQUENCES
                        and len(trainable_variables) == len(p)
                        and all(map(is_, trainable_variables, p))
                    )
                )
            ):
                # A None gradient is not looked for here: the kernel refuses it before changing
                # anything, and the general path then drops it with Keras's warning.
                options = self._fast_options
                try:
                    if options is _VARYING:
                        self._step([(self._plan[0], None, grads)], [])
                        return
                    lr = self._lr_const
                    raw = self._iterations
                    if raw >= _MAX_ITERATIONS:
                        _refuse_last_iteration()
                    if lr is None:
                        lr = self._step_learning_rate(raw, self.iterations)
                    # One native call, then the count: a transaction (see `_transact`), spelled
                    # out here because this is the hot path.
                    start = _completed_calls()
                    try:
                        self._update_step(p, grads, self._fast_slots, lr, options)
                        self._iterations = raw + 1
                    except BaseException:
                        if _completed_calls() != start:
                            # The call wrote its step, then an interrupt was raised as it
                            # returned: the step is done, so is its count.
                            self._iterations = raw + 1
                        raise
                except (TypeError, ValueError) as error:
                    if all(map(is_not, grads, _NONES)):
                        _name_variables(error, self._fast_names)
                        raise
                else:
                    return
            self._apply_general(grads, trainable_variables)
        finally:
            # `_release_step`, inlined: this is the hot path.
            token.append(True)
            if self._step_waiters:
                self._hand_over_step(token)

    def _apply_general(self, grads: Any, trainable_variables: Optional[ParamsArg]) -> None:
        prepared = self._prepare_step(grads, trainable_variables)
        if prepared is not None:
            self._step(*prepared)

    def _prepare_step(
        self, grads: Any, trainable_variables: Optional[ParamsArg], warn: bool = True
    ) -> Optional[Tuple[List[_Call], List[int]]]:
        """The native calls of a step and the built variables it leaves out (`_step`'s
        arguments), or None when there is nothing to do. Raises what the step would raise about
        its arguments; builds the optimizer on a first call; writes nothing else. A step of one
        call is validated by that call; one of several calls is validated here.
        `warn`: Keras's warning about missing gradients (off for a check before the step).
        """
        writable = self._multi_writable
        built = self._trainable_variables
        if (
            writable is not None
            and type(grads) in _SEQUENCES
            and len(grads) == len(built)
            and (
                trainable_variables is None
                or (
                    type(trainable_variables) in _SEQUENCES
                    and len(trainable_variables) == len(built)
                    and all(map(is_, trainable_variables, built))
                )
            )
            and all(map(is_not, grads, _NONES))
        ):
            # Every built variable in build order, over several dtype groups: the groups and
            # the arrays the step writes are known from the plan.
            calls = [(group, None, [grads[i] for i in group.indices]) for group in self._plan]
            return self._validate_calls(calls, writable), []
        if isinstance(grads, Mapping):
            grads, variables = self._resolve_named(grads, trainable_variables)
        else:
            if not isinstance(grads, (list, tuple)):
                grads = list(grads)
            if len(grads) == 0:
                return None
            if trainable_variables is None:
                if not self.built:
                    raise ValueError(
                        "When passing `grads` without `variables`, the optimizer "
                        "must already be built on a list of variables. "
                        "Call `optimizer.build(trainable_variables)` first. "
                    )
                if len(grads) != len(self._trainable_variables):
                    raise ValueError(
                        "When passing `grads` as a list of gradient tensors, the "
                        "gradients must match `optimizer.variables` one-to-one. "
                        f"Received a list of {len(grads)} gradients, but the "
                        f"optimizer is tracking {len(self._trainable_variables)} "
                        "trainable variables."
                    )
                variables = self._trainable_variables
            else:
                if not self.built:
                    self.build(trainable_variables)
                variables = self._names_and_variables(trainable_variables)[1]
                if len(variables) != len(grads):
                    raise ValueError(
                        f"Received {len(grads)} gradients for {len(variables)} variables."
                    )
        if len(grads) == 0:
            return None
        indices = self._variable_indices(variables)
        if len(set(indices)) != len(indices):
            seen: set = set()
            twice = next(i for i in indices if i in seen or seen.add(i))
            raise ValueError(
                f"Variable '{self._trainable_variable_names[twice]}' was given twice in one "
                "call; each variable takes one gradient per step."
            )

        present = [k for k, g in enumerate(grads) if g is not None]
        if not present:
            raise ValueError("No gradients provided for any variable.")
        if len(present) != len(grads):
            missing_names = [
                self._trainable_variable_names[indices[k]]
                for k, g in enumerate(grads)
                if g is None
            ]
            if warn:
                warnings.warn(
                    "Gradients do not exist for variables "
                    f"{missing_names} when minimizing the loss."
                    " If using `model.compile()`, did you forget to provide a "
                    "`loss` argument?",
                    stacklevel=4,
                )
            grads = [grads[k] for k in present]
            indices = [indices[k] for k in present]

        plan = self._get_plan()
        if len(plan) == 1 and indices == plan[0].indices:
            return [(plan[0], None, grads)], []
        position = {index: k for k, index in enumerate(indices)}
        calls: List[_Call] = []
        for group in plan:
            members = [i for i in group.indices if i in position]
            if members:
                calls.append(
                    (
                        group,
                        None if members == group.indices else members,
                        [grads[position[i]] for i in members],
                    )
                )
        if len(calls) > 1:
            calls = self._validate_calls(calls)
        missing = [i for i in range(len(self._trainable_variables)) if i not in position]
        return calls, missing

    def _resolve_named(
        self, grads: Mapping[str, Any], trainable_variables: Optional[ParamsArg]
    ) -> Tuple[List[Any], List[np.ndarray]]:
        if trainable_variables is not None and not isinstance(trainable_variables, Mapping):
            raise TypeError(
                "Gradients given as a dict need `trainable_variables` given as a dict too "
                "(or None once the optimizer is built)."
            )
        if not self.built:
            if trainable_variables is None:
                raise ValueError(
                    "When passing `grads` without `variables`, the optimizer "
                    "must already be built on a list of variables. "
                    "Call `optimizer.build(trainable_variables)` first. "
                )
            self.build(trainable_variables)
        if trainable_variables is None:
            # Built variables are named by `str(key)`: a dict built on {0: w} takes {0: g}.
            lookup: Mapping[Any, Any] = dict(
                zip(self._trainable_variable_names, self._trainable_variables)
            )
            known = {key: str(key) for key in grads}
        else:
            lookup = trainable_variables
            known = {key: key for key in grads}
        values, variables = [], []
        for key, name in known.items():
            if name not in lookup:
                raise ValueError(
                    f"Unknown variable name: '{key}'. The gradients' keys must be names of the "
                    "variables the optimizer was built with."
                )
            variables.append(lookup[name])
            values.append(grads[key])
        # A variable without a key is a variable without gradient, as a None value is: left out
        # of the step with Keras's warning (its EMA is still updated).
        given = set(known.values())
        for name, variable in lookup.items():
            if name not in given:
                variables.append(variable)
                values.append(None)
        return values, variables

    def _variable_indices(self, variables: Sequence[Any]) -> List[int]:
        table = self._trainable_variables_indices
        indices = []
        for v in variables:
            index = table.get(id(v))
            if index is None or self._trainable_variables[index] is not v:
                raise ValueError(
                    f"Unknown variable: {v}. This optimizer can only "
                    "be called for the variables it was originally built with. "
                    "When working with a new set of variables, you should "
                    "recreate a new optimizer instance."
                )
            indices.append(index)
        return indices

    def _validate_calls(
        self, calls: List[_Call], writable: Optional[List[np.ndarray]] = None
    ) -> List[_Call]:
        """Check, before the first of several native calls runs, what each would check.

        One native call validates all of its arrays before writing any, but a step that spans
        several dtype groups makes several calls; without this, a bad gradient in the last group
        would fail after the first groups were updated. Gradients that are not arrays are
        converted here once. `writable`: every array the step writes, when the caller knows
        it (a step over every variable); else it is gathered here.
        """
        names = self._trainable_variable_names
        out: List[_Call] = []
        gather = writable is None
        if writable is None:
            writable = []
        checked: List[Tuple[str, np.ndarray]] = []
        for group, members, grads in calls:
            chosen = group.indices if members is None else members
            converted = []
            for i, g in zip(chosen, grads):
                param = self._trainable_variables[i]
                if not isinstance(g, np.ndarray):
                    try:
                        g = np.asarray(g)
                    except Exception as error:
                        raise TypeError(
                            f"gradient '{names[i]}' cannot be converted to an array: {error}"
                        ) from error
                if g.dtype.kind not in "fiu":
                    raise TypeError(
                        f"gradient '{names[i]}' has dtype {g.dtype}, which cannot be cast safely "
                        f"to {param.dtype}"
                    )
                if g.shape != param.shape:
                    raise ValueError(
                        f"gradient '{names[i]}' has shape {g.shape} but the parameter has shape "
                        f"{param.shape}"
                    )
                if not param.flags.writeable:
                    raise ValueError(
                        f"parameter '{names[i]}' is read-only; parameters and optimizer state "
                        "are updated in place"
                    )
                converted.append(g)
                checked.append((names[i], g))
                if gather:
                    writable.extend(self._written_arrays((i,)))
            out.append((group, members, converted))
        _check_no_aliasing(checked, writable)
        return out

    def _clip_option(self) -> Tuple[Optional[str], Optional[float]]:
        """Keras's clipping precedence (`_clip_gradients`): the one rule that applies."""
        if self.clipnorm and self.clipnorm > 0:
            return "clipnorm", float(self.clipnorm)
        if self.global_clipnorm and self.global_clipnorm > 0:
            return "global_clipnorm", float(self.global_clipnorm)
        if self.clipvalue and self.clipvalue > 0:
            return "clipvalue", float(self.clipvalue)
        return None, None

    def _get_plan(self) -> List[_Group]:
        """The per-dtype groups of the built variables, with every list a step passes."""
        plan = self._plan
        if plan is not None:
            return plan
        variables = self._trainable_variables
        by_dtype: Dict[np.dtype, List[int]] = {}
        for i, v in enumerate(variables):
            by_dtype.setdefault(v.dtype, []).append(i)
        single = len(by_dtype) == 1

        def pick(lst: List[Any], indices: List[int]) -> List[Any]:
            return lst if single else [lst[i] for i in indices]

        plan = []
        for indices in by_dtype.values():
            weight_decay = None
            mask: Optional[List[bool]] = None
            if self.weight_decay is not None:
                mask = [self._use_weight_decay(i) for i in indices]
                if any(mask):
                    weight_decay = float(self.weight_decay)
                if all(mask) or not any(mask):
                    mask = None
            plan.append(
                _Group(
                    indices,
                    pick(variables, indices),
                    pick(self._trainable_variable_names, indices),
                    {k: pick(v, indices) for k, v in self._slot_kinds.items()},
                    pick(self._accumulated_gradients, indices) if self._accumulation_steps else None,
                    pick(self._model_variables_moving_average, indices) if self.use_ema else None,
                    weight_decay,
                    mask,
                )
            )
        self._plan = plan
        self._fast_keys = tuple(self._trainable_variable_names)
        if single:
            group = plan[0]
            self._fast_slots = group.slots
            self._fast_names = group.names
            if self.use_ema or self._accumulation_steps or self._has_step_state:
                self._fast_options = _VARYING
            else:
                self._fast_options = self._options(group, None, False, 0.0, False, None)
            self._fast_params = group.params
        else:
            self._multi_writable = self._written_arrays(range(len(variables)))
        return plan

    def _written_arrays(self, indices: Any) -> List[np.ndarray]:
        """Every array a step over these variables writes: parameters, slots, accumulators,
        moving averages."""
        out: List[np.ndarray] = []
        for i in indices:
            out.append(self._trainable_variables[i])
            for slots in self._slot_kinds.values():
                out.append(slots[i])
            if self._accumulation_steps:
                out.append(self._accumulated_gradients[i])
            if self.use_ema:
                out.append(self._model_variables_moving_average[i])
        return out

    def _options(
        self,
        group: _Group,
        members: Optional[List[int]],
        accumulate_only: bool,
        ema_momentum: float,
        ema_overwrite: bool,
        clip_scale: Optional[float],
    ) -> Optional[_native.StepOptions]:
        """The StepOptions of one call (None when no cross-cutting feature is on).

        Args:
            members: the built indices of a partial call, None for the whole group.
            accumulate_only, ema_momentum, ema_overwrite: this step's values.
            clip_scale: the global-norm scale of a step of several calls, which replaces the
                clipping rule (see `_global_clip_scale`).
        """
        kwargs: Dict[str, Any] = {}
        if self.loss_scale_factor is not None:
            kwargs["loss_scale"] = float(self.loss_scale_factor)
        if self._accumulation_steps:
            kwargs["accumulators"] = (
                group.accumulators
                if members is None
                else [self._accumulated_gradients[i] for i in members]
            )
            kwargs["accumulation_steps"] = self._accumulation_steps
            kwargs["accumulate_only"] = accumulate_only
        clip, value = self._clip_option()
        if clip_scale is not None:
            clip, value = "clip_scale", clip_scale
        if clip is not None:
            kwargs[clip] = value
        if members is None:
            if group.weight_decay is not None:
                kwargs["weight_decay"] = group.weight_decay
                if group.weight_decay_mask is not None:
                    kwargs["weight_decay_mask"] = group.weight_decay_mask
        elif self.weight_decay is not None:
            mask = [self._use_weight_decay(i) for i in members]
            if any(mask):
                kwargs["weight_decay"] = float(self.weight_decay)
                if not all(mask):
                    kwargs["weight_decay_mask"] = mask
        if self.use_ema:
            kwargs["averages"] = (
                group.averages
                if members is None
                else [self._model_variables_moving_average[i] for i in members]
            )
            kwargs["ema_momentum"] = ema_momentum
            kwargs["ema_overwrite"] = ema_overwrite
        if not kwargs:
            return None
        return _native.StepOptions(**kwargs) if self._fused_options else kwargs

    def _step(self, calls: List[_Call], missing: List[int]) -> None:
        """One step, in Keras's order, over `calls` (one native call each); `missing` are the
        built variables without a gradient in this step."""
        raw = self._iterations
        if raw >= _MAX_ITERATIONS:
            _refuse_last_iteration()
        k = self._accumulation_steps
        iterations = raw // k if k else raw
        accumulate_only = bool(k) and (raw + 1) % k != 0
        # Keras reads the learning rate only in the update branch of accumulation.
        lr = 0.0 if accumulate_only else self._step_learning_rate(raw, iterations)
        ema_momentum = 0.0
        ema_overwrite = False
        if self.use_ema:
            ema_momentum = float(self.ema_momentum) if iterations != 0 else 0.0
            frequency = self.ema_overwrite_frequency
            ema_overwrite = bool(frequency) and (iterations + 1) % frequency == 0

        clip_scale: Optional[float] = None
        clip, c = self._clip_option()
        if clip == "global_clipnorm" and len(calls) > 1 and not accumulate_only:
            clip_scale = self._global_clip_scale(calls, c)

        step_state = self._has_step_state and not accumulate_only
        if step_state:
            # Computes this step's scalar state; `_end_update_step` stores it.
            self._begin_update_step(iterations)
        # Every native call of the step, prepared first; then they run as one transaction.
        calls_to_make: List[Tuple[Any, ...]] = []
        key = (accumulate_only, ema_momentum, ema_overwrite)
        for group, members, grads in calls:
            if members is None and clip_scale is None:
                options = group.options.get(key, _VARYING)
                if options is _VARYING:
                    options = group.options[key] = self._options(group, None, *key, None)
                params, slots, names = group.params, group.slots, group.names
            else:
                options = self._options(group, members, *key, clip_scale)
                chosen = group.indices if members is None else members
                params = [self._trainable_variables[i] for i in chosen]
                names = [self._trainable_variable_names[i] for i in chosen]
                slots = {name: [lst[i] for i in chosen] for name, lst in self._slot_kinds.items()}
            calls_to_make.append((self._update_step, (params, grads, slots, lr, options), names))

        resets: List[np.ndarray] = []
        if missing:
            if self.use_ema:
                by_dtype: Dict[np.dtype, List[int]] = {}
                for i in missing:
                    by_dtype.setdefault(self._trainable_variables[i].dtype, []).append(i)
                for indices in by_dtype.values():
                    names = [self._trainable_variable_names[i] for i in indices]
                    args = (
                        [self._trainable_variables[i] for i in indices],
                        [self._model_variables_moving_average[i] for i in indices],
                        ema_momentum,
                        ema_overwrite,
                        names,
                    )
                    calls_to_make.append((_ema, args, names))
            if k and not accumulate_only:
                # Keras resets every accumulator on an update step, not only this call's.
                resets = [self._accumulated_gradients[i] for i in missing]

        self._transact(calls_to_make, resets, step_state, raw)

    def _commit_step(self, resets: List[np.ndarray], step_state: bool, raw: int) -> None:
        """The Python side of a step, after its native calls. Idempotent: it may run again
        after an interrupt."""
        for accumulator in resets:
            accumulator.fill(0)
        if step_state:
            self._end_update_step()
        self._iterations = raw + 1

    def _transact(
        self, calls: List[Tuple[Any, ...]], resets: List[np.ndarray], step_state: bool, raw: int
    ) -> None:
        """Run a step's native calls `(function, args, names)` in order, then its commit
        (`_commit_step`), as one transaction: a failure before the first call completes leaves
        everything as it was; once a call has written, the step is completed whatever arrives
        meanwhile.

        The calls are validated before the first one writes (each native call checks all of
        its arrays before writing any; a step of several calls was checked by
        `_validate_calls`), so what can arrive after a write is an asynchronous exception: a
        `KeyboardInterrupt` (Ctrl-C) raised when a native call returns, or between two calls.
        The thread's count of completed native calls (`_native.completed_calls`) tells how far
        the step got; the rest runs, the commit runs, and then the exception is raised.
        """
        if not self._fused_options:
            # A rule that is not one native call per `_update_step` (Muon, Adafactor: NumPy
            # writes between native calls) cannot be resumed from the count of native calls;
            # its step holds Ctrl-C back instead, which its cost (milliseconds) affords.
            with _sigint_deferred():
                _run_calls(calls)
                self._commit_step(resets, step_state, raw)
            return
        start = _completed_calls()
        try:
            _run_calls(calls)
            # `_commit_step`, inlined: this runs every step.
            for accumulator in resets:
                accumulator.fill(0)
            if step_state:
                self._end_update_step()
            self._iterations = raw + 1
        except BaseException as error:
            if _completed_calls() == start:
                raise  # nothing written
            if isinstance(error, (TypeError, ValueError)):
                raise  # a call refused after an earlier one wrote: cannot be completed

            def finish() -> None:
                for function, args, _ in calls[_completed_calls() - start :]:
                    function(*args)
                self._commit_step(resets, step_state, raw)

            _settle(finish)
            raise

    def _learning_rate_ahead(self) -> Optional[float]:
        """The learning rate the next step will use, read once and checked (finite) so that
        a wrapper can refuse the step before any optimizer it holds has written; None when the
        next step reads no learning rate (accumulation only). `_step_learning_rate` returns it
        while `_pinned_learning_rate` holds it."""
        raw = self._iterations
        k = self._accumulation_steps
        if k and (raw + 1) % k != 0:
            return None
        lr = self._step_learning_rate(raw, raw // k if k else raw)
        if not math.isfinite(lr):
            raise ValueError(
                f"The learning rate of optimizer '{self.name}' must be a finite number. "
                f"Received: learning_rate={lr}"
            )
        return lr

    def _global_clip_scale(self, calls: List[_Call], clipnorm: float) -> float:
        """Keras's `clip_by_global_norm` scale for a step made of several native calls.

        A kernel sees the norm of its own call only, so the scale is computed here once, in
        float64, for the whole step, and every call multiplies its gradients by it
        (`StepOptions(clip_scale=...)`). Handing each call a share of the clip value instead
        underflows in float32 for a small share and turns weights into NaN (0 * inf). The
        squared norms are summed natively in float64, of the gradients as the kernel sees them
        (cast to the variable's dtype, unscaled and averaged in that dtype), with no copy.
        """
        kwargs: Dict[str, Any] = {}
        if self.loss_scale_factor is not None:
            kwargs["loss_scale"] = float(self.loss_scale_factor)
        total = 0.0
        for group, members, grads in calls:
            chosen = group.indices if members is None else members
            if self._accumulation_steps:
                kwargs["accumulators"] = [self._accumulated_gradients[i] for i in chosen]
                kwargs["accumulation_steps"] = self._accumulation_steps
            total += _native.gradient_sum_squares(
                [self._trainable_variables[i] for i in chosen],
                grads,
                _native.StepOptions(**kwargs) if kwargs else None,
                [self._trainable_variable_names[i] for i in chosen],
            )
        norm = math.sqrt(total)
        if not math.isfinite(norm):
            # Keras's scale is NaN then (`scale + (N - N)`): every gradient becomes NaN.
            return math.nan
        # `c * min(1 / N, 1 / c)`; at N = 0 the gradients are zero and any scale keeps them so.
        return clipnorm * min(1.0 / norm, 1.0 / clipnorm) if norm > 0 else 1.0

    def _update_step(
        self,
        params: List[np.ndarray],
        grads: Sequence[Any],
        slots: Dict[str, List[np.ndarray]],
        learning_rate: float,
        options: Optional[_native.StepOptions],
    ) -> None:
        """Apply the optimizer's rule to one dtype group with one native call.

        The multi-tensor analogue of Keras's `update_step(gradient, variable, learning_rate)`.

        Args:
            params: the parameters of one dtype, updated in place.
            grads: their gradients, aligned with `params`.
            slots: the optimizer's slots by slot name (as created by `add_optimizer_variables`),
                each list aligned with `params`.
            learning_rate: this step's learning rate (a Python float).
            options: the cross-cutting parts of the step (a `StepOptions`; the dict of its
                keyword arguments when `_fused_options` is False), or None.
        """
        raise NotImplementedError

    def _begin_update_step(self, iterations: int) -> None:
        """Prepare the per-step state of an update step (subclasses with `_has_step_state`).

        Called once per update step, never on an accumulation-only call, before the first
        native call of the step (Keras's `_backend_update_step` before `update_step`). The
        new state is computed here but kept aside until `_end_update_step`, so that a step
        that raises leaves the optimizer as it was.

        Args:
            iterations: `iterations` before this step (t = iterations + 1).
        """

    def _end_update_step(self) -> None:
        """Make the state prepared by `_begin_update_step` current, after the last native call
        of the step succeeded."""

    # --- config --------------------------------------------------------------------------

    def get_config(self) -> Dict[str, Any]:
        """The optimizer's configuration (Keras's keys and order; `decay` only when set)."""
        lr = self._learning_rate
        if isinstance(lr, float):
            learning_rate: Any = lr
        elif isinstance(lr, LearningRateSchedule):
            learning_rate = _schedules.serialize(lr)
        else:
            # Keras serializes a callable by reference; here the callable itself is kept.
            learning_rate = lr
        config = {
            "name": self.name,
            "learning_rate": learning_rate,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }
        if self._decay_given:
            config["decay"] = self._decay
        return config

    @classmethod
    def from_config(cls, config: Dict[str, Any], custom_objects: Optional[Dict[str, Any]] = None):
        """Create an optimizer from `get_config()`'s output.

        Args:
            config: the configuration dict (not modified).
            custom_objects: extra schedule classes by name, for a serialized schedule.
        """
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = _schedules.deserialize(
                config["learning_rate"], custom_objects=custom_objects
            )
        return cls(**config)

    # --- pickling ------------------------------------------------------------------------

    def __getstate__(self) -> Dict[str, Any]:
        # A snapshot holds whole steps: the step guard is taken here and released once the
        # arrays have been read (see `_SnapshotGuard`), not when this returns.
        token = self._step_token
        try:
            token.pop()
        except IndexError:
            self._wait_for_step(token)
        try:
            state = self._snapshot_state()
        except BaseException:
            self._release_step(token)
            raise
        state["_snapshot_guard"] = _SnapshotGuard(functools.partial(self._release_step, token))
        return state

    def _snapshot_state(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        # Derived from object identities or holding native objects: rebuilt after loading.
        for key in (
            "_plan",
            "_fast_params",
            "_fast_slots",
            "_fast_names",
            "_fast_keys",
            "_fast_options",
            "_multi_writable",
        ):
            state.pop(key, None)
        # The step guard belongs to this process and this object (a pickle taken while
        # another thread steps must not carry a taken token).
        for key in ("_step_token", "_step_waiters", "_step_queue", "_step_queue_lock"):
            state.pop(key, None)
        state["_trainable_variables_indices"] = None
        state["_exclude_from_weight_decay_cache"] = {}
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        state.pop("_snapshot_guard", None)
        self.__dict__.update(state)
        self._trainable_variables_indices = {
            id(v): i for i, v in enumerate(self._trainable_variables)
        }
        self._plan = None
        self._fast_params = None
        self._multi_writable = None
        self._init_step_guard()

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} name={self.name!r} built={self.built}>"


# The frames that hold an optimizer's step guard (see `Optimizer._step_held_by_this_thread`).
_STEP_HOLDERS = frozenset((Optimizer.apply.__code__, Optimizer._run_exclusive.__code__))
