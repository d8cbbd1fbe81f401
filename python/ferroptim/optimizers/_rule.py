"""How an optimizer class declares its update rule: the native function that applies it, and the
slots Keras's `build` creates for it.

A class states both as class attributes,

    _rule = NativeRule(_native.adam)
    _slot_groups = (SlotGroup("momentum", "velocity"), SlotGroup("velocity_hat", when=...))

and the base class does the rest: `build` creates the slots, `_update_step` makes the native
call. The native function's own declaration (`_native.rule_signatures()`, made by the `rules!`
macro beside the kernels) says which slot lists it takes, by Keras slot name, and which scalars
follow the learning rate; each scalar is read from the optimizer's attribute of the same name, so
a class that names its hyperparameters as Keras does has nothing more to write.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ferroptim import _native
from ferroptim.optimizers._arguments import check_keras_signature, expand_base_arguments_doc
from ferroptim.optimizers._variables import check_hyperparameter

__all__ = ["NativeRule", "RuleDeclaration", "SlotGroup"]

# Every rule function's arguments in order, as the native module declares them.
_SIGNATURES: Dict[str, List[Dict[str, Any]]] = _native.rule_signatures()
_SLOT_KINDS = ("slots", "optional_slots")
_NOT_SCALARS = ("params", "grads", "options", "names", *_SLOT_KINDS)


class NativeRule:
    """A native update function bound to an optimizer class through its declaration.

    Args:
        function: one of `_native`'s rule functions (`_native.adam`, ...).
        **readers: for a scalar that is not an attribute of the same name, a function of the
            optimizer that gives its value (Nadam's `u_product`, the step state it keeps).

    Attributes:
        function: the native function.
        slots: the Keras slot names of its slot lists, in argument order (an optional list the
            optimizer did not create is passed as None).
        scalars: the names of its scalars after the learning rate, in argument order: the
            optimizer attributes they are read from.
        update_step: the class's `_update_step`, calling `function` with exactly those
            arguments.
    """

    __slots__ = ("function", "slots", "scalars", "update_step")

    def __init__(self, function: Callable[..., None], **readers: Callable[[Any], Any]):
        signature = _SIGNATURES[function.__name__]
        self.function = function
        slots = [p for p in signature if p["kind"] in _SLOT_KINDS]
        self.slots: Tuple[str, ...] = tuple(p["slot"] for p in slots)
        scalars = [p["name"] for p in signature if p["kind"] not in _NOT_SCALARS]
        if scalars[:1] != ["learning_rate"]:
            raise TypeError(f"`{function.__name__}` takes no learning rate first")
        self.scalars: Tuple[str, ...] = tuple(scalars[1:])
        unknown = set(readers) - set(self.scalars)
        if unknown:
            raise TypeError(f"`{function.__name__}` has no scalar {sorted(unknown)}")
        # The call is written out once, as a hand-written `_update_step` would make it, and
        # compiled (as `dataclasses` compiles `__init__`): it is the hot path of a step, where
        # unpacking argument lists built per call costs a third of a 1K-element step.
        env: Dict[str, Any] = {"_function": function}
        args = ["params", "grads"]
        args += [
            f"slots[{p['slot']!r}]" if p["kind"] == "slots" else f"slots.get({p['slot']!r})"
            for p in slots
        ]
        args.append("learning_rate")
        for i, name in enumerate(self.scalars):
            if name in readers:
                env[f"_read_{i}"] = readers[name]
                args.append(f"_read_{i}(self)")
            else:
                args.append(f"self.{name}")
        args.append("options")
        exec(
            "def _update_step(self, params, grads, slots, learning_rate, options):\n"
            f"    _function({', '.join(args)})\n",
            env,
        )
        self.update_step: Callable[..., None] = env["_update_step"]


class SlotGroup:
    """Slots that Keras's `build` creates together: one per built variable for each name,
    interleaved variable by variable (`add_optimizer_variables` with a list of names).

    Args:
        *names: the slot names.
        when: a function of the optimizer; the group exists only where it returns True
            (`lambda opt: opt.amsgrad`). None: always.
        initializer: a function of the optimizer returning what `add_optimizer_variables` takes
            as `initializer` (`lambda opt: opt.initial_accumulator_value`). None: zeros.
    """

    __slots__ = ("names", "when", "initializer")

    def __init__(
        self,
        *names: str,
        when: Optional[Callable[[Any], bool]] = None,
        initializer: Optional[Callable[[Any], Any]] = None,
    ):
        self.names = list(names)
        self.when = when
        self.initializer = initializer

    def add(self, optimizer: Any, var_list: Any) -> None:
        """Create the group's slots on a built optimizer, if the group exists for it."""
        if self.when is not None and not self.when(optimizer):
            return
        initializer = "zeros" if self.initializer is None else self.initializer(optimizer)
        optimizer.add_optimizer_variables(var_list, self.names, initializer=initializer)


# `name` not given in a class statement: the class keeps the `__init__` it declares.
_UNNAMED: Any = object()


class RuleDeclaration:
    """What an optimizer class declares, and what the base class derives from it.

    A subclass states Keras's default `name` in its class statement (`class Adam(Optimizer,
    name="adam")`; `name=None`: an automatic name); its `__init__` declares Keras's whole
    signature, checked when the class is defined (`check_keras_signature`); its docstring's
    `Args:` may hold the placeholders `{{base_optimizer_keyword_args}}` and
    `{{base_optimizer_kwargs}}` for `Optimizer`'s entries (`expand_base_arguments_doc`). It
    declares its rule (`_rule`) and slots (`_slot_groups`) as class attributes, and keeps its
    own arguments with `_set_hyperparameters`.
    """

    # The update rule and the slots `build` creates for it; a subclass declares both, or
    # overrides `_update_step` and `build`.
    _rule: Optional[NativeRule] = None
    _slot_groups: Tuple[SlotGroup, ...] = ()
    # The subclass's own constructor arguments, in Keras's config order.
    _hyperparameter_names: Tuple[str, ...] = ()

    def __init_subclass__(cls, name: Optional[str] = _UNNAMED, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if name is not _UNNAMED:
            check_keras_signature(cls.__dict__["__init__"], name)
        expand_base_arguments_doc(cls)
        # A declared rule is the class's `_update_step`, unless the class writes its own.
        rule = cls.__dict__.get("_rule")
        if rule is not None and "_update_step" not in cls.__dict__:
            cls._update_step = rule.update_step  # type: ignore[method-assign]

    def _set_hyperparameters(self, **values: Any) -> None:
        """Keep a subclass's own constructor arguments as attributes of the same names, after
        `super().__init__`: each must be a finite number or a flag (a bool), and `get_config`
        reports them after the base keys, in this order."""
        for name, value in values.items():
            if value is None:
                raise ValueError(
                    f"Argument `{name}` must be a finite number. Received: {name}=None"
                )
            if not isinstance(value, (bool, np.bool_)):
                check_hyperparameter(name, value)
        for name, value in values.items():
            setattr(self, name, value)
        self._hyperparameter_names += tuple(values)

    def _update_step(
        self,
        params: List[np.ndarray],
        grads: Sequence[Any],
        slots: Dict[str, List[np.ndarray]],
        learning_rate: float,
        options: Any,
    ) -> None:
        """Apply the optimizer's rule to one dtype group with one native call. A class that
        declares `_rule` has `_rule.update_step` here: the native function given its slot lists
        by Keras slot name and its scalars by attribute name.

        The multi-tensor analogue of Keras's `update_step(gradient, variable, learning_rate)`.

        Args:
            params: the parameters of one dtype, updated in place.
            grads: their gradients, aligned with `params`.
            slots: the optimizer's slots by slot name (as created by `add_optimizer_variables`),
                each list aligned with `params`.
            learning_rate: this step's learning rate (a Python float).
            options: the cross-cutting parts of the step, in the form `_rule_options` gives
                them: one `_native.StepOptions` (or None when no part is on) for a fused rule.
        """
        raise NotImplementedError(f"{type(self).__name__} declares no `_rule`")
