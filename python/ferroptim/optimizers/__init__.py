"""Keras 3 optimizers (`keras.optimizers`) over NumPy arrays, with fused native kernels.

`get`, `serialize` and `deserialize` work as Keras's; the table of built-in classes is
`_BUILTINS` (keys are lower-cased class names, so look-ups are case-insensitive).
"""

from collections.abc import Mapping as _Mapping
from typing import Any as _Any
from typing import Dict as _Dict
from typing import Optional as _Optional

from ferroptim.optimizers import schedules
from ferroptim.optimizers.adadelta import Adadelta
from ferroptim.optimizers.adafactor import Adafactor
from ferroptim.optimizers.adagrad import Adagrad
from ferroptim.optimizers.adam import Adam
from ferroptim.optimizers.adamax import Adamax
from ferroptim.optimizers.adamw import AdamW
from ferroptim.optimizers.ftrl import Ftrl
from ferroptim.optimizers.lamb import Lamb
from ferroptim.optimizers.lion import Lion
from ferroptim.optimizers.loss_scale_optimizer import LossScaleOptimizer
from ferroptim.optimizers.multi_optimizer import MultiOptimizer, OptimizerMap
from ferroptim.optimizers.muon import Muon
from ferroptim.optimizers.nadam import Nadam
from ferroptim.optimizers.optimizer import Optimizer
from ferroptim.optimizers.rmsprop import RMSprop
from ferroptim.optimizers.schedule_free_adamw import ScheduleFreeAdamW
from ferroptim.optimizers.sgd import SGD

__all__ = [
    "Optimizer",
    "SGD",
    "RMSprop",
    "Adam",
    "AdamW",
    "Adadelta",
    "Adagrad",
    "Adamax",
    "Nadam",
    "Lion",
    "Ftrl",
    "Lamb",
    "ScheduleFreeAdamW",
    "Adafactor",
    "Muon",
    "LossScaleOptimizer",
    "MultiOptimizer",
    "OptimizerMap",
    "schedules",
    "get",
    "serialize",
    "deserialize",
]

# Every class of `__all__` is registered (Keras's ALL_OBJECTS; unlike Keras, every class we
# ship, Lamb included): a new optimizer is registered by its import and its name above.
# OptimizerMap is not an optimizer: it is registered, as in Keras, so that a serialized
# MultiOptimizer can be deserialized.
_BUILTINS: _Dict[str, type] = {
    name.lower(): value
    for name, value in list(globals().items())
    if name in __all__ and isinstance(value, type)
}

# The modules of the classes above are reached through the classes (`Adam.__module__`, and
# `import ferroptim.optimizers.adam` still works): their names would only crowd `dir()` and
# tab completion next to the classes (`adam` beside `Adam`).
for _cls in _BUILTINS.values():
    globals().pop(_cls.__module__.rpartition(".")[2], None)
del _cls


def serialize(optimizer: _Any) -> _Dict[str, _Any]:
    """The optimizer's configuration as a Keras-style dict.

    Args:
        optimizer: an `Optimizer` instance (or an `OptimizerMap`).

    Returns:
        `{"module": "keras.optimizers", "class_name": ..., "config": optimizer.get_config(),
        "registered_name": None}`.
    """
    cls = type(optimizer)
    builtin = _BUILTINS.get(cls.__name__.lower()) is cls
    return {
        "module": "keras.optimizers" if builtin else cls.__module__,
        "class_name": cls.__name__,
        "config": optimizer.get_config(),
        "registered_name": None,
    }


def deserialize(
    config: _Dict[str, _Any], custom_objects: _Optional[_Mapping[str, _Any]] = None
) -> _Any:
    """An optimizer from a dict produced by `serialize`.

    Args:
        config: a dict with "class_name" and "config" (other keys are ignored). Built-in class
            names are matched case-insensitively.
        custom_objects: extra classes by name (optimizers, or schedules used in the config).

    Returns:
        A new, unbuilt optimizer.
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            f"Could not interpret serialized optimizer: {config}. Expected a dict with a "
            "'class_name' key."
        )
    class_name = config["class_name"]
    inner = config.get("config", {})
    cls = (custom_objects or {}).get(class_name)
    if cls is None and isinstance(class_name, str):
        cls = _BUILTINS.get(class_name.lower())
    if cls is None:
        raise ValueError(
            f"Could not locate class '{class_name}'. Make sure custom classes are passed in "
            f"`custom_objects`. Full object config: {config}"
        )
    return cls.from_config(inner, custom_objects=custom_objects)


def get(identifier: _Any) -> _Optional[Optimizer]:
    """Retrieve an optimizer.

    Args:
        identifier: None (returns None), the name of a built-in optimizer (case-insensitive,
            e.g. "adam" or "ADAM"; default arguments), a dict as produced by `serialize`, or an
            `Optimizer` instance (returned unchanged).

    Returns:
        An `Optimizer`, or None.
    """
    if identifier is None:
        return None
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        obj = deserialize(identifier)
    elif isinstance(identifier, str) and identifier.lower() in _BUILTINS:
        obj = deserialize({"class_name": identifier, "config": {}})
    else:
        obj = None
    if isinstance(obj, Optimizer):
        return obj
    raise ValueError(f"Could not interpret optimizer identifier: {identifier}")
