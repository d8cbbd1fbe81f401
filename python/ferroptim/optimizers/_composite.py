"""State of an optimizer that holds other optimizers (LossScaleOptimizer, MultiOptimizer).

Keras lists such an optimizer's variables as its own, then each inner optimizer's; saving,
loading and `set_weights` follow the same order. The mixin below gives an `Optimizer` subclass
that view from one hook, `_sub_optimizers`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Composite", "config_with_inner"]


class Composite:
    """Mixin (before `Optimizer` in the bases): `variables`, `variable_names`, `set_weights`,
    `save_own_variables` and `load_own_variables` span the optimizer's own variables, then
    those of each optimizer returned by `_sub_optimizers()`, in that order."""

    def _sub_optimizers(self) -> List[Any]:
        """The inner optimizers, in the order their variables follow the own ones."""
        raise NotImplementedError

    @property
    def variables(self) -> List[np.ndarray]:
        """The own variables (iteration, learning_rate, ...), then every inner optimizer's."""
        out = list(super().variables)  # type: ignore[misc]
        for sub in self._sub_optimizers():
            out.extend(sub.variables)
        return out

    @property
    def variable_names(self) -> List[str]:
        """The names of `variables`, in the same order."""
        out = list(super().variable_names)  # type: ignore[misc]
        for sub in self._sub_optimizers():
            out.extend(sub.variable_names)
        return out

    def _checked_variables(self, values: Sequence[Any]) -> List[Any]:
        # Every value is checked and converted, for this optimizer and the inner ones (and
        # theirs), before `_assign_variables` assigns any: a bad value changes nothing.
        values = list(values)
        for name, target, value in zip(self.variable_names, self.variables, values):
            if np.shape(value) != np.shape(target):
                raise ValueError(
                    f"Optimizer variable {name} has shape {np.shape(target)} not compatible "
                    f"with provided weight shape {np.shape(value)}."
                )
        start = len(self._variables)  # type: ignore[attr-defined]
        checked: List[Tuple[Any, Any, Any]] = super()._checked_variables(  # type: ignore[misc]
            values[:start]
        )
        for sub in self._sub_optimizers():
            count = len(sub.variables)
            checked += sub._checked_variables(values[start : start + count])
            start += count
        return checked


def config_with_inner(
    owner: str, config: Dict[str, Any], key: str, custom_objects: Optional[Mapping[str, Any]]
) -> Dict[str, Any]:
    """A copy of `config` (the `get_config()` output of an `owner` instance) whose `key` entry,
    the inner optimizer or map, is deserialized when it is a serialized dict (an instance is
    kept as it is). Raises the ValueError of Keras's wording when `config` has no `key`.

    Args:
        owner: the class name, for the error message.
        config: the configuration dict (not modified).
        key: the entry holding what the optimizer wraps.
        custom_objects: extra classes by name, for that entry.
    """
    from ferroptim.optimizers import deserialize

    config = dict(config)
    if key not in config:
        raise ValueError(f"A {owner} config needs an `{key}`. Received: {config}")
    if isinstance(config[key], dict):
        config[key] = deserialize(config[key], custom_objects=custom_objects)
    return config
