"""The base optimizer: every cross-cutting Keras feature, in Keras's order, over NumPy arrays.

This mirrors `keras/src/optimizers/base_optimizer.py` and `optimizer.py` (merged into one class).
A subclass holds only its hyperparameters, its slots and one hook, `_update_step`, that hands one
dtype group of tensors to its native kernel.

This module is the Keras surface: arguments, the learning rate, `build` and the slots,
`variables`, `apply`, the config. The machinery behind it lives in package-private modules:

- `_step.py` (`StepEngine`): the general path of a step, from the gradients to the native
  calls, run as one transaction;
- `_plan.py`: the step plan, what a step passes to the kernels, derived once after `build`
  (`StepPlan`), and a call's cross-cutting parts (`StepParts`);
- `_step_guard.py`: one step at a time across threads (`StepGuard`);
- `_variables.py` (`VariableTable`): the variable table and the rules for the values it holds.

Two Keras features are left out because a NumPy array cannot carry the attribute they hang on:
`overwrite_with_gradient` (a flag on the variable) and `constraint` (a callable on the variable).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from itertools import repeat
from operator import is_, is_not
from typing import (
    Any,
    Dict,
    List,
    Literal,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)

import numpy as np

from ferroptim import _native
from ferroptim.optimizers import schedules as _schedules
from ferroptim.optimizers._arguments import (
    auto_name,
    check_base_arguments,
    constructor_repr,
    keras2_arguments,
)
from ferroptim.optimizers._messages import raise_pairs_error, refuse_key_pairs
from ferroptim.optimizers._plan import NO_PLAN, VARYING, PlanAttribute, StepPlan
from ferroptim.optimizers._rule import NativeRule, RuleDeclaration, SlotGroup
from ferroptim.optimizers._step import StepEngine, name_variables
from ferroptim.optimizers._step_guard import StepGuard, register_holder
from ferroptim.optimizers._variables import (
    ITERATION,
    LEARNING_RATE,
    MAX_ITERATIONS,
    ParamsArg,
    VariableTable,
    check_hyperparameter,
    float32_learning_rate,
    is_number,
    refuse_last_iteration,
)
from ferroptim.optimizers.schedules import LearningRateSchedule

__all__ = ["NativeRule", "Optimizer", "ParamsArg", "SlotGroup", "check_hyperparameter"]

# The class `load` is called on (`Adam.load(...)` is an `Adam`), without `typing_extensions.Self`.
_Loaded = TypeVar("_Loaded", bound="Optimizer")

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_NONES = repeat(None)
_SEQUENCES = (list, tuple)
_completed_calls = _native.completed_calls


class Optimizer(StepEngine, VariableTable, RuleDeclaration):
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
            `exclude_from_weight_decay`. Defaults to None.
        clipnorm: float or None. Clip each gradient so that its L2 norm is at most this value.
            Defaults to None.
        clipvalue: float or None. Clip each gradient element to [-clipvalue, clipvalue].
            Defaults to None.
        global_clipnorm: float or None. Clip all gradients together so that their global L2 norm
            is at most this value. At most one of `clipnorm`, `clipvalue` and `global_clipnorm`
            may be set; a value <= 0 disables clipping (Keras's precedence: clipnorm, then
            global_clipnorm, then clipvalue). Defaults to None.
        use_ema: bool. Keep an exponential moving average of the variables. Defaults to False.
        ema_momentum: float in [0, 1]. `average = ema_momentum * average + (1 - ema_momentum) *
            variable` (the first update takes the variable as is). Defaults to 0.99.
        ema_overwrite_frequency: int >= 1 or None. Every that many iterations the variables are
            overwritten with their average. With None, call `finalize_variable_values`. Defaults
            to None.
        loss_scale_factor: float or None. Gradients are divided by it first; `scale_loss`
            multiplies a loss by it. Defaults to None.
        gradient_accumulation_steps: int >= 2 or None. Variables are updated every that many
            calls, with the mean of the gradients since the last update. `iterations` counts
            updates; learning-rate schedules see the raw number of calls. Defaults to None.
        name: str or None. None gives an automatic name from the class name (`adam`, `adam_1`,
            ...). Defaults to Keras's default for the class, as the signature shows (`"adam"`
            for Adam, None for Muon).
        **kwargs: Keras 2 spellings: `lr` (an alias of `learning_rate`; giving both is a
            ValueError, where Keras 2 let `lr` win silently) and `decay` (a float >= 0: the
            learning rate of every step, weight decay included, is divided by
            `1 + decay * iterations`, as tf.keras's legacy optimizers did). Anything else is a
            ValueError.

    Subclassing (see `_rule.RuleDeclaration`): state Keras's default `name` in the class
    statement, `class Adam(Optimizer, name="adam")`; declare the update rule,
    `_rule = NativeRule(_native.<rule>)`, and the slots Keras's `build` creates for it,
    `_slot_groups = (SlotGroup(<names>), ...)`; in `__init__`, declare Keras's whole signature
    (`learning_rate`, the own arguments, this class's arguments, `name`, `**kwargs`; checked by
    `_arguments.check_keras_signature`), pass the base arguments on to `super().__init__`, then
    keep the own arguments with `_set_hyperparameters(...)`, named as the native rule names its
    scalars. The class docstring's `Args:` documents the own arguments and holds, where the
    base arguments go, the line `{{base_optimizer_keyword_args}}` (and, for `**kwargs`,
    `{{base_optimizer_kwargs}}`): the class statement replaces them with this docstring's
    entries. The base class then creates the slots, makes the native call (`_update_step`) and
    writes the config. A rule that needs more overrides `build` (call `super().build(var_list)`
    first, then `add_optimizer_variables`), `_update_step` or `get_config`. State advanced once
    per update step outside the slots (Nadam's `u_product`) goes through `_has_step_state`,
    `_begin_update_step` and `_end_update_step`.

    The protected API (what subclasses, wrappers and `checkpoint` may use; anything else with a
    leading underscore may change):

    - `_trainable_variables`, `_trainable_variable_names`: the built variables and their names,
      in build order (read only); `_names_and_variables(var_list)` names a `var_list` alike.
    - `_slot_kinds`: the slot lists by slot name, each aligned with `_trainable_variables`
      (read only).
    - `_iterations`: the raw call count (`iterations` divides it by the accumulation steps).
    - `_run_exclusive(function, *args)`: call it holding the step guard (no step meanwhile).
    - `_checked_variables(values)` then `_commit_variables(checked)`: an all-or-nothing
      assignment to the variable table (`set_weights` is the public form).
    - `_use_weight_decay(index)`: whether the built variable at `index` decays;
      `_set_exclusions(var_list, var_names)` sets the exclusions without the step guard.
    - `_invalidate_plan()`: drop the step plan after changing what it derives from.
    - `_prepare_step(grads, trainable_variables, warn)`: the native calls of a step, validated,
      without running them; `_validate_calls(calls)` validates calls made elsewhere.
    - `_learning_rate_ahead()` and `_pinned_learning_rate`: read the next step's learning rate
      early (and have the step use that value), so a wrapper can refuse a step before any of
      its optimizers writes.
    - `_rule_options(parts)`: the form in which `_update_step` receives a call's cross-cutting
      parts (`_unfused.Unfused` takes the `StepParts` record itself).
    - `_reduce_sum_squares`: None, or a function from this process's sum of squares of a
      step's gradients to the sum `global_clipnorm` clips by (a distributed optimizer's sum
      over ranks); assign it through `_run_exclusive` and call `_invalidate_plan()`.
    - `_elementwise`: True in a class whose rule updates each element from that element's
      gradient and state alone, with no norm over a tensor (`clipnorm` aside): a distributed
      optimizer may then split its variables anywhere.

    Hooks of a wrapper: `_apply_scaled(grads, trainable_variables, loss_scale)` steps with a
    loss scale lent for that step only (`LossScaleOptimizer`); `_step(calls, missing)` runs a
    prepared, validated step and is what a wrapper that dispatches to other optimizers
    overrides (`MultiOptimizer`).
    """

    # True in a subclass with state that advances once per update step outside its slots
    # (Nadam's `u_product`): see `_begin_update_step`. Its steps all take `_step`, the path that
    # knows whether a call updates or only accumulates.
    _has_step_state = False
    # A learning rate a wrapper read ahead for this step (see `_learning_rate_ahead`).
    _pinned_learning_rate: Optional[float] = None
    # The rule reads each element's own gradient and state only (see the protected API).
    _elementwise = False
    # False in a subclass whose step writes with NumPy between native calls (`Unfused`): its
    # step cannot be resumed from the count of completed native calls after an interrupt, so
    # it holds Ctrl-C back instead (see `_transact`).
    _step_resumable = True

    weight_decay = PlanAttribute()
    clipnorm = PlanAttribute()
    clipvalue = PlanAttribute()
    global_clipnorm = PlanAttribute()
    ema_momentum = PlanAttribute()
    ema_overwrite_frequency = PlanAttribute()
    loss_scale_factor = PlanAttribute()

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
        self._plan: StepPlan = NO_PLAN
        self._step_guard = StepGuard(self)

        learning_rate, decay = keras2_arguments(type(self), learning_rate, kwargs)
        self._decay = float(decay) if decay else 0.0
        self._decay_given = decay is not None and decay != 0

        if name is None:
            name = auto_name(self.__class__.__name__)
        self.name = name
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.global_clipnorm = global_clipnorm
        self.clipvalue = clipvalue
        self.use_ema = use_ema
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps

        check_base_arguments(
            gradient_accumulation_steps,
            use_ema,
            ema_momentum,
            ema_overwrite_frequency,
            clipnorm,
            clipvalue,
            global_clipnorm,
        )
        self._accumulation_steps = int(gradient_accumulation_steps or 0)

        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency

        self.built = False

        # The variable table, in Keras's creation order: (name, array or marker).
        self._variables: List[Tuple[str, Any]] = [("iteration", ITERATION)]
        self._trainable_variables: List[np.ndarray] = []
        self._trainable_variable_names: List[str] = []
        self._trainable_variables_indices: Dict[int, int] = {}
        self._slot_kinds: Dict[str, List[np.ndarray]] = {}
        self._model_variables_moving_average: List[np.ndarray] = []
        self._accumulated_gradients: List[np.ndarray] = []
        self._exclude_from_weight_decay_vars: List[Any] = []
        self._exclude_from_weight_decay_pattern: Optional[re.Pattern[str]] = None
        self._exclude_from_weight_decay_cache: Dict[int, bool] = {}
        # The raw call counter, a Python int (see `iterations`).
        self._iterations = 0
        # Lazy updates of row-sparse gradients (see `_set_lazy`).
        self._lazy = False

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
            self._learning_rate = float32_learning_rate(learning_rate)
            self._variables.append(("learning_rate", LEARNING_RATE))
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

    def _refresh_lr_cache(self) -> None:
        lr = self._learning_rate
        self._lr_const = lr if isinstance(lr, float) and not self._decay else None

    def _invalidate_plan(self) -> None:
        self.__dict__["_plan"] = NO_PLAN

    def _set_lazy(self, lazy: Any) -> None:
        """Keep the `lazy` argument of an element-wise optimizer that offers it (after
        `super().__init__`): with a row-sparse gradient, only its rows take the rule. Reported
        by `get_config` when True."""
        if not isinstance(lazy, (bool, np.bool_)):
            raise TypeError(f"Argument `lazy` must be a bool. Received: lazy={lazy!r}")
        if lazy and self._accumulation_steps:
            raise ValueError(
                "Argument `lazy=True` cannot be combined with `gradient_accumulation_steps`: "
                "an accumulated gradient is not row-sparse. Received: "
                f"gradient_accumulation_steps={self._accumulation_steps}"
            )
        self._lazy = bool(lazy)

    @property
    def lazy(self) -> bool:
        """Whether a row-sparse gradient (`ferroptim.IndexedSlices`) updates only its rows
        (`lazy=True`, for the optimizers that take it) rather than giving Keras's numbers."""
        return self._lazy

    # --- one step at a time ----------------------------------------------------------------

    def _run_exclusive(self, function: Any, *args: Any) -> Any:
        """Call `function(*args)` holding the step guard: no step of this optimizer runs
        meanwhile (a consistent snapshot for `save`, an atomic restore for the loaders)."""
        return self._step_guard.run_exclusive(function, *args)

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
            self._variables = [v for v in self._variables if v[1] is not LEARNING_RATE]
        else:
            if isinstance(self._learning_rate, LearningRateSchedule):
                raise TypeError(
                    "This optimizer was created with a `LearningRateSchedule`"
                    " object as its `learning_rate` constructor argument, "
                    "hence its learning rate is not settable. If you need the"
                    " learning rate to be settable, you should instantiate "
                    "the optimizer with a float `learning_rate` argument."
                )
            if not is_number(learning_rate):
                raise TypeError(
                    "`learning_rate` must be a real number, a `LearningRateSchedule` or a "
                    f"callable. Received: learning_rate={learning_rate!r}"
                )
            value = float32_learning_rate(learning_rate)
            if not isinstance(self._learning_rate, float):
                # Keras cannot assign a float over a callable; here the float variable returns.
                self._variables.insert(1, ("learning_rate", LEARNING_RATE))
            self._learning_rate = value
        self._refresh_lr_cache()

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
        for group in self._slot_groups:
            group.add(self, var_list)

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
        order: Literal["C", "F"] = "F" if flags.f_contiguous and not flags.c_contiguous else "C"
        return self._new_variable(
            reference_variable.shape,
            reference_variable.dtype,
            initializer,
            f"{base}_{name or 'var'}",
            order,
        )

    def add_optimizer_variables(
        self,
        trainable_variables: ParamsArg,
        name: Union[str, Sequence[str]],
        initializer: Any = "zeros",
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
            raise TypeError(f"`store` must be a dict-like object. Received: {type(store).__name__}")
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
        cls: Type[_Loaded],
        filepath: Any,
        var_list: Optional[ParamsArg] = None,
        custom_objects: Optional[Dict[str, Any]] = None,
    ) -> _Loaded:
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

        loaded: _Loaded = checkpoint.load(
            filepath, var_list, custom_objects=custom_objects, cls=cls
        )
        return loaded

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
        # Between steps, as a hyperparameter is assigned (see `PlanAttribute`).
        self._run_exclusive(self._set_exclusions, var_list, var_names)

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

        Raises:
            TypeError: not an iterable of pairs (a single pair, a bare list of gradients), or
                pairs of strings (`zip` over two dicts: use `apply(grads, params)`).
            ValueError: a variable the optimizer was not built on, or pairs swapped. Swapped
                pairs are recognized once the optimizer is built (a "gradient" is one of its
                variables); the first call, which builds it, cannot tell the two orders apart
                and builds on the second item of each pair, so with fresh gradient arrays each
                step a swapped loop fails at its second step.
        """
        pairs = grads_and_vars if type(grads_and_vars) is list else list(grads_and_vars)
        if pairs:
            if type(grads_and_vars) is not zip:
                # A single pair, a bare list of gradients: `zip(*pairs)` would zip the arrays'
                # rows, and fail, or worse, not fail. (`zip` makes tuples: a zip of more than
                # two iterables fails to unpack below.) A loop: the cheapest check of a step.
                for pair in pairs:
                    if type(pair) is not tuple and type(pair) is not list:
                        raise_pairs_error(grads_and_vars, pairs)
            try:
                grads, variables = zip(*pairs)
            except ValueError:
                raise_pairs_error(grads_and_vars, pairs)
            try:
                self.apply(grads, variables)
            except (TypeError, ValueError):
                refuse_key_pairs(pairs)
                raise
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
        # One step at a time (see `_step_guard`); the uncontended path is two list operations.
        guard = self._step_guard
        token = guard.token
        try:
            token.pop()
        except IndexError:
            guard.wait()
        try:
            # The common step: one dtype, every built variable in build order. Everything else
            # goes through `_apply_general`.
            plan = self._plan
            p = plan.fast_params
            # The keys of a dict made a list below: its messages name variables by key.
            labels = None
            if type(grads) is dict and plan is not NO_PLAN:
                # The common step with dicts: every built name, in build order.
                keys = plan.keys
                if tuple(grads) == keys and (
                    trainable_variables is None
                    or (type(trainable_variables) is dict and tuple(trainable_variables) == keys)
                ):
                    grads = list(grads.values())
                    labels = keys
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
                options = plan.fast_options
                try:
                    if options is VARYING:
                        self._step([(plan.groups[0], None, grads)], [])
                        return
                    lr = self._lr_const
                    raw = self._iterations
                    if raw >= MAX_ITERATIONS:
                        refuse_last_iteration()
                    if lr is None:
                        lr = self._step_learning_rate(raw, self.iterations)
                    # One native call, then the count: a transaction (see `_transact`), spelled
                    # out here because this is the hot path.
                    start = _completed_calls()
                    try:
                        self._update_step(p, grads, plan.fast_slots, lr, options)
                        self._iterations = raw + 1
                    except BaseException:
                        if _completed_calls() != start:
                            # The call wrote its step, then an interrupt was raised as it
                            # returned: the step is done, so is its count.
                            self._iterations = raw + 1
                        raise
                except (TypeError, ValueError) as error:
                    if all(map(is_not, grads, _NONES)):
                        name_variables(error, plan.fast_names)
                        raise
                else:
                    return
            self._apply_general(grads, trainable_variables, labels)
        finally:
            # `StepGuard.release`, inlined: this is the hot path.
            token.append(True)
            if guard.waiters:
                guard.hand_over()

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
        """The optimizer's configuration (Keras's keys and order: the base keys, `decay` only
        when set, then the subclass's own arguments)."""
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
        config.update((name, getattr(self, name)) for name in self._hyperparameter_names)
        if self._lazy:
            config["lazy"] = True
        return config

    @classmethod
    def from_config(
        cls, config: Dict[str, Any], custom_objects: Optional[Mapping[str, Any]] = None
    ) -> Any:
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

    def __repr__(self) -> str:
        """The constructor call with the non-default arguments: `Adam(learning_rate=0.01,
        beta_1=0.8)`."""
        config = self.get_config()
        lr = self._learning_rate
        if "learning_rate" not in config:  # a wrapper's: its optimizers hold the rates
            pass
        elif isinstance(lr, float):
            # Kept rounded to float32 (as Keras's variable): shown as the shortest decimal
            # that rounds to it, the number the user typed.
            config["learning_rate"] = float(str(np.float32(lr)))
        else:
            config["learning_rate"] = lr
        return constructor_repr(self, config)


# `apply` holds its optimizer's guard in its local `guard` (see `StepGuard.held_here`).
register_holder(Optimizer.apply)
