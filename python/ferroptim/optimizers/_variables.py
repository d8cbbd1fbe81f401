"""The variable table of an optimizer, the values it stores outside its slots, and the rules
that check them.

The iteration count and a float learning rate live in Python numbers, not arrays; the variable
table marks their entries with `ITERATION` and `LEARNING_RATE`. One rule for every learning
rate (a finite real number once rounded to float32) and one for every hyperparameter (None or a
finite number), whichever way the value arrives: constructor, setter, schedule, checkpoint.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "ITERATION",
    "LEARNING_RATE",
    "MAX_ACCUMULATION_STEPS",
    "MAX_ITERATIONS",
    "ParamsArg",
    "VariableTable",
    "check_hyperparameter",
    "checked_variable_value",
    "float32_learning_rate",
    "is_finite",
    "is_number",
    "refuse_last_iteration",
    "step_value",
]

# The variables an optimizer is built on: a list or tuple of arrays, or a dict name -> array.
ParamsArg = Union[Sequence[np.ndarray], Mapping[str, np.ndarray]]


class _Marker:
    """A singleton that pickles by reference, so identity checks survive pickling."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __reduce__(self) -> str:
        return self.name


# Marks, in the variable table, the two entries whose values live in Python numbers.
ITERATION = _Marker("ITERATION")
LEARNING_RATE = _Marker("LEARNING_RATE")


# The largest `gradient_accumulation_steps` the kernels take (a 32-bit unsigned count).
MAX_ACCUMULATION_STEPS = 2**32 - 1
# The iteration counter is a 64-bit signed integer in the kernels and in `variables`.
MAX_ITERATIONS = 2**63 - 1


def is_number(value: Any) -> bool:
    """A real number (a Python or NumPy int or float, not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_hyperparameter(name: str, value: Any) -> None:
    """Raise a ValueError unless `value` is None or a finite number.

    Keras lets NaN and inf through its range checks (every comparison with NaN is False); the
    kernels would reject them at the first step, so they are refused at construction instead.

    Args:
        name: the argument's name, for the message.
        value: the argument's value.
    """
    if value is not None and (not is_number(value) or not is_finite(value)):
        raise ValueError(f"Argument `{name}` must be a finite number. Received: {name}={value}")


def refuse_last_iteration() -> None:
    """Refuse a step: the iteration count could not record it."""
    raise ValueError(
        f"The iteration count is at its limit ({MAX_ITERATIONS}, the kernels' and the "
        "checkpoint's range): a further step could not be recorded and is refused. Reset "
        "`iterations` through `set_weights` or `load_own_variables` to continue."
    )


def float32_learning_rate(value: Any) -> float:
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


def step_value(value: Any, source: Any) -> float:
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
    if not is_number(value):
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


def is_finite(value: Any) -> bool:
    """`math.isfinite`, False for an int beyond float's range (where it would raise)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def checked_variable_value(name: str, target: Any, value: Any) -> Any:
    """`value` converted for one entry of the variable table, or a TypeError / ValueError.

    The iteration count must be an integer in [0, 2**63 - 1] (the kernels' range), the
    learning rate a finite number, a slot's value real numbers (cast to the slot's dtype).
    """
    array = np.asarray(value)
    if target is ITERATION:
        item = array.item() if array.dtype.kind in "iufO" else None
        if isinstance(item, float) and math.isfinite(item) and item.is_integer():
            item = int(item)
        if not isinstance(item, int) or isinstance(item, bool):
            raise TypeError(
                f"Optimizer variable {name} (the iteration count) must be an integer. "
                f"Received: {value!r}"
            )
        if not 0 <= item <= MAX_ITERATIONS:
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
    if target is LEARNING_RATE:
        with np.errstate(over="ignore"):
            learning_rate = float(np.float32(array))
        if not math.isfinite(learning_rate):
            raise ValueError(
                f"Optimizer variable {name} must be a finite number. Received: {value!r}"
            )
        return learning_rate
    with np.errstate(over="ignore"):
        return array.astype(target.dtype, copy=False)


class VariableTable:
    """The variable table, a base class of `Optimizer`: every entry of `variables` in Keras's
    creation order as `(name, array or marker)`, and the checked, all-or-nothing assignment of
    new values to it (`_checked_variables`, then `_commit_variables`), which `set_weights`,
    `load_own_variables` and `ferroptim.optimizers.checkpoint` use. Also the weight-decay
    exclusions, which are looked up by a built variable's index."""

    # Set by `Optimizer` (declared here for the reader and the type checker).
    _variables: List[Tuple[str, Any]]
    _trainable_variables: List[np.ndarray]
    _trainable_variable_names: List[str]
    _trainable_variables_indices: Dict[int, int]
    _iterations: int
    _learning_rate: Any
    _exclude_from_weight_decay_vars: List[Any]
    _exclude_from_weight_decay_pattern: Optional["re.Pattern[str]"]
    _exclude_from_weight_decay_cache: Dict[int, bool]
    _refresh_lr_cache: Callable[[], None]
    _invalidate_plan: Callable[[], None]
    add_variable_from_reference: Callable[..., np.ndarray]

    @staticmethod
    def _names_and_variables(var_list: ParamsArg) -> Tuple[List[str], List[Any]]:
        if isinstance(var_list, Mapping):
            names = [str(k) for k in var_list.keys()]
            return names, list(var_list.values())
        variables = list(var_list)
        return [f"variable_{i}" for i in range(len(variables))], variables

    def _new_variable(
        self,
        shape: Any,
        dtype: np.dtype,
        initializer: Any,
        name: Optional[str],
        order: Literal["C", "F"],
    ) -> np.ndarray:
        if isinstance(initializer, str):
            if initializer not in ("zeros", "ones"):
                raise ValueError(
                    f"Unknown initializer '{initializer}': use 'zeros', 'ones', a number or a "
                    "callable."
                )
            make = np.zeros if initializer == "zeros" else np.ones
            array = make(shape, dtype=dtype, order=order)
        elif is_number(initializer):
            array = np.full(shape, initializer, dtype=dtype, order=order)
        else:
            array = np.array(initializer(shape, dtype), dtype=dtype, order=order)
        self._variables.append((name or "var", array))
        return array

    def _add_slots(
        self, variables: List[np.ndarray], names: List[str], initializers: List[Any]
    ) -> Tuple[List[np.ndarray], ...]:
        lists: Tuple[List[np.ndarray], ...] = tuple([] for _ in names)
        for variable in variables:
            for i, (slot_name, init) in enumerate(zip(names, initializers)):
                lists[i].append(self.add_variable_from_reference(variable, slot_name, init))
        return lists

    def _variable_value(self, value: Any) -> np.ndarray:
        if value is ITERATION:
            return np.array(self._iterations, dtype=np.int64)
        if value is LEARNING_RATE:
            return np.array(self._learning_rate, dtype=np.float32)
        array: np.ndarray = value
        return array

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
            scalar = target is ITERATION or target is LEARNING_RATE
            expected = () if scalar else target.shape
            if np.shape(value) != expected:
                raise ValueError(
                    f"Optimizer variable {name} has shape {expected} not compatible with "
                    f"provided weight shape {np.shape(value)}."
                )
            converted.append(checked_variable_value(name, target, value))
        return [(self, target, value) for ((_, target), _), value in zip(pairs, converted)]

    @staticmethod
    def _commit_variables(checked: List[Tuple[Any, Any, Any]]) -> None:
        """Assign what `_checked_variables` returned (cannot fail)."""
        for owner, target, value in checked:
            if target is ITERATION:
                owner._iterations = value
            elif target is LEARNING_RATE:
                owner._learning_rate = value
                owner._refresh_lr_cache()
            else:
                np.copyto(target, value)

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
