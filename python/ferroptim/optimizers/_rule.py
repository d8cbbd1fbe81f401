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

from operator import attrgetter
from typing import Any, Callable, Dict, List, Optional, Tuple

from ferroptim import _native

__all__ = ["NativeRule", "SlotGroup"]

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
    """

    __slots__ = ("function", "slots", "scalars", "read")

    def __init__(self, function: Callable[..., None], **readers: Callable[[Any], Any]):
        signature = _SIGNATURES[function.__name__]
        self.function = function
        self.slots: Tuple[str, ...] = tuple(
            p["slot"] for p in signature if p["kind"] in _SLOT_KINDS
        )
        scalars = [p["name"] for p in signature if p["kind"] not in _NOT_SCALARS]
        if scalars[:1] != ["learning_rate"]:
            raise TypeError(f"`{function.__name__}` takes no learning rate first")
        self.scalars: Tuple[str, ...] = tuple(scalars[1:])
        unknown = set(readers) - set(self.scalars)
        if unknown:
            raise TypeError(f"`{function.__name__}` has no scalar {sorted(unknown)}")
        # `read(optimizer)`: the scalars' values, a tuple (`attrgetter` of one name returns the
        # value itself, of several a tuple).
        self.read: Callable[[Any], Tuple[Any, ...]]
        if readers:
            getters = [readers.get(name) or attrgetter(name) for name in self.scalars]
            self.read = lambda obj: tuple(get(obj) for get in getters)
        elif len(self.scalars) == 1:
            (only,) = self.scalars
            self.read = lambda obj: (getattr(obj, only),)
        else:
            self.read = attrgetter(*self.scalars)


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
