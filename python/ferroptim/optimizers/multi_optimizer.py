"""MultiOptimizer and OptimizerMap, as `keras.optimizers.MultiOptimizer` and
`keras.optimizers.OptimizerMap` (keras/src/optimizers/multi_optimizer.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from ferroptim.optimizers._composite import Composite, config_with_inner
from ferroptim.optimizers._step import settle
from ferroptim.optimizers.optimizer import Optimizer, ParamsArg, check_hyperparameter

__all__ = ["MultiOptimizer", "OptimizerMap"]


def _check_sub_optimizer(what: str, optimizer: Any) -> None:
    """Raise a ValueError unless `optimizer` can serve a share of a MultiOptimizer."""
    from ferroptim.optimizers.loss_scale_optimizer import LossScaleOptimizer

    if isinstance(optimizer, LossScaleOptimizer):
        raise ValueError(
            f"{what} is a LossScaleOptimizer, which cannot serve only some of the variables: "
            "wrap the whole MultiOptimizer in a LossScaleOptimizer instead. "
            f"Received: {optimizer}"
        )
    if isinstance(optimizer, MultiOptimizer):
        raise ValueError(
            f"{what} is a MultiOptimizer; MultiOptimizers cannot be nested: put the keys of the "
            f"inner one in a single OptimizerMap. Received: {optimizer}"
        )
    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"{what} must be an Optimizer instance. Received: {optimizer}")


class OptimizerMap(MutableMapping[str, Optimizer]):
    """A mapping from variable names to optimizers, with a default for unmatched names.

    A look-up `optimizer_map[name]` returns the optimizer of the key equal to `name` if there is
    one; otherwise every key is tried as a regular expression that must match the whole name
    (`re.fullmatch`): the optimizer of the one key that matches is returned, the default
    optimizer if none does, and a ValueError is raised if several do. So `"encoder/.*"` covers
    every variable under `encoder/`, while `"encoder"` covers only the variable named exactly
    `encoder`. A key that is not a valid regular expression only matches exactly.

    Keys are variable names as the `MultiOptimizer` sees them: the keys of a dict of parameters,
    or `variable_0`, `variable_1`, ... for a list (Keras matches `variable.path`; a NumPy array
    carries no name). Calling the map on a name is the look-up.

    Examples:
        >>> import ferroptim as fo
        >>> opt_map = fo.optimizers.OptimizerMap(fo.optimizers.RMSprop())
        >>> opt_map["encoder/dense/kernel"] = fo.optimizers.Adam()
        >>> opt_map["encoder/.*"] = fo.optimizers.SGD(name="sgd")
        >>> opt_map["encoder/dense/kernel"].name, opt_map["encoder/attention/query"].name
        ('adam', 'sgd')
        >>> opt_map("decoder/dense/kernel").name
        'rmsprop'

    Args:
        default_optimizer: the `Optimizer` of the variables no key matches.
        optimizer_map: a dict (or an iterable of pairs) key -> `Optimizer` to start with, added
            in order as by `optimizer_map[key] = optimizer`. Defaults to None (empty).

    Raises:
        TypeError: `default_optimizer` is not an `Optimizer`.
        ValueError: a key is not a string or is given twice; a value is not an `Optimizer`;
            a value or the default is a `LossScaleOptimizer` or a `MultiOptimizer`.
    """

    def __init__(self, default_optimizer: Optimizer, optimizer_map: Any = None):
        if not isinstance(default_optimizer, Optimizer):
            raise TypeError(
                "default_optimizer must be a Keras Optimizer instance. "
                f"Received: {default_optimizer}"
            )
        _check_sub_optimizer("`default_optimizer`", default_optimizer)
        self._default_optimizer = default_optimizer
        self._optimizer_map: Dict[str, Optimizer] = {}
        if optimizer_map is not None:
            items = optimizer_map.items() if isinstance(optimizer_map, Mapping) else optimizer_map
            for key, optimizer in items:
                self[key] = optimizer

    @property
    def default_optimizer(self) -> Optimizer:
        """The optimizer of the variables no key matches."""
        return self._default_optimizer

    def __getitem__(self, key: str) -> Optimizer:
        if key in self._optimizer_map:
            return self._optimizer_map[key]
        matching = [pattern for pattern in self._optimizer_map if _fullmatch(pattern, key)]
        if len(matching) > 1:
            raise ValueError(
                f"Multiple optimizers assigned to variable {key}: it matches the keys "
                f"{matching}. Make each variable name match at most one key."
            )
        if matching:
            return self._optimizer_map[matching[0]]
        return self._default_optimizer

    def __setitem__(self, key: str, optimizer: Optimizer) -> None:
        if not isinstance(key, str):
            raise ValueError(f"key must be a string. Received: {key}")
        if key in self._optimizer_map:
            raise ValueError(
                f"{key} already exist in the OptimizerMap with value "
                f"{self._optimizer_map[key]}. Please make sure to not use duplicated keys."
            )
        _check_sub_optimizer(f"The value of key '{key}'", optimizer)
        self._optimizer_map[key] = optimizer

    def __delitem__(self, key: str) -> None:
        del self._optimizer_map[key]

    def __contains__(self, key: object) -> bool:
        # Exact keys only: a look-up never fails (it falls back to the default optimizer).
        return key in self._optimizer_map

    def __len__(self) -> int:
        return len(self._optimizer_map)

    def __iter__(self) -> Iterator[str]:
        return iter(self._optimizer_map)

    def __call__(self, name: str) -> Optimizer:
        """The optimizer of the variable named `name` (the look-up `self[name]`).

        Args:
            name: the variable's name.
        """
        return self[name]

    def __repr__(self) -> str:
        return (
            f"OptimizerMap({self._default_optimizer!r}, {dict(self._optimizer_map)!r})"
            if self._optimizer_map
            else f"OptimizerMap({self._default_optimizer!r})"
        )

    def get_config(self) -> Dict[str, Any]:
        """`{default_optimizer, optimizer_map}`, every optimizer serialized.

        An optimizer given for several keys is serialized once per key, so a map rebuilt from
        the config has one optimizer per key (as in Keras).
        """
        from ferroptim.optimizers import serialize

        return {
            "default_optimizer": serialize(self._default_optimizer),
            "optimizer_map": {k: serialize(v) for k, v in self._optimizer_map.items()},
        }

    @classmethod
    def from_config(
        cls, config: Dict[str, Any], custom_objects: Optional[Dict[str, Any]] = None
    ) -> "OptimizerMap":
        """Create an OptimizerMap from `get_config()`'s output.

        Args:
            config: the configuration dict (not modified).
            custom_objects: extra classes by name, for the optimizers.
        """
        from ferroptim.optimizers import deserialize

        if "default_optimizer" not in config:
            raise ValueError(
                f"An OptimizerMap config needs a `default_optimizer`. Received: {config}"
            )

        def load(value: Any) -> Any:
            return (
                deserialize(value, custom_objects=custom_objects)
                if isinstance(value, dict)
                else value
            )

        return cls(
            load(config["default_optimizer"]),
            {k: load(v) for k, v in (config.get("optimizer_map") or {}).items()},
        )


def _fullmatch(pattern: str, name: str) -> bool:
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


OptimizerMapArg = Union[OptimizerMap, Callable[[str], Optimizer]]


class MultiOptimizer(Composite, Optimizer):
    """Different optimizers for different variables.

    At `build`, every variable is given to the optimizer that `optimizer_map` returns for its
    name, and each of these sub-optimizers is built on its share (a dict name -> array, so the
    sub-optimizers name their slots after the same names). `apply` then hands each
    sub-optimizer the gradients of its share: one native call per sub-optimizer and dtype.

    Variable names are the keys of a dict of parameters, or `variable_0`, `variable_1`, ... (the
    positions) for a list. Keras identifies variables by `variable.path`; a NumPy array carries
    no name, so the map is called with the name.

    `iterations` counts this optimizer's `apply` calls. There is no learning rate of the
    MultiOptimizer itself: reading or setting `learning_rate` is an AttributeError (each
    sub-optimizer has its own). `loss_scale_factor` belongs to the MultiOptimizer
    (`scale_loss` uses it) and is given to every sub-optimizer, so each divides its gradients
    by it. `variables` lists this optimizer's `iteration` and (unused) `learning_rate`, then the
    variables of each sub-optimizer: the map's values in insertion order, then its default,
    then (for a callable map) the other optimizers in the order the map first returned them at
    `build`.

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> params = {"kernel": np.ones(2, dtype=np.float32), "bias": np.ones(2, dtype=np.float32)}
        >>> opt_map = fo.optimizers.OptimizerMap(fo.optimizers.SGD(learning_rate=0.5),
        ...                                      {"bias": fo.optimizers.SGD(learning_rate=0.25)})
        >>> opt = fo.optimizers.MultiOptimizer(opt_map)
        >>> grads = {"kernel": np.ones(2, dtype=np.float32), "bias": np.ones(2, dtype=np.float32)}
        >>> opt.apply(grads, params)
        >>> params["kernel"], params["bias"]
        (array([0.5, 0.5], dtype=float32), array([0.75, 0.75], dtype=float32))

    Args:
        optimizer_map: an `OptimizerMap`, or any callable taking a variable name (str) and
            returning the `Optimizer` of that variable (not a `LossScaleOptimizer` nor a
            `MultiOptimizer`).
        loss_scale_factor: float or None: gradients are divided by it first (by each
            sub-optimizer); `scale_loss` multiplies a loss by it.
        name: str or None (an automatic name, `multi_optimizer`, ...).
    """

    def __init__(
        self,
        optimizer_map: OptimizerMapArg,
        loss_scale_factor: Optional[float] = None,
        name: Optional[str] = None,
    ):
        if isinstance(optimizer_map, Optimizer) or not callable(optimizer_map):
            raise ValueError(
                "Argument `optimizer_map` must be an `OptimizerMap` or a callable that takes a "
                f"variable name and returns an `Optimizer`. Received: {optimizer_map}"
            )
        # Checked before the base class assigns it: assigning passes it to the sub-optimizers.
        check_hyperparameter("loss_scale_factor", loss_scale_factor)
        self.optimizer_map = optimizer_map
        self._built_sub_optimizers: Optional[List[Optimizer]] = None
        super().__init__(learning_rate=0.0, loss_scale_factor=loss_scale_factor, name=name)

    # --- sub-optimizers ----------------------------------------------------------------------

    def _sub_optimizers(self) -> List[Optimizer]:
        if self._built_sub_optimizers is not None:
            return self._built_sub_optimizers
        optimizer_map = self.optimizer_map
        if not isinstance(optimizer_map, OptimizerMap):
            return []
        return _unique(list(optimizer_map.values()) + [optimizer_map.default_optimizer])

    @property
    def loss_scale_factor(self) -> Optional[float]:
        """The loss scale: `scale_loss` multiplies by it and every sub-optimizer divides its
        gradients by it (assigning it assigns theirs)."""
        return self.__dict__.get("_loss_scale_factor")

    @loss_scale_factor.setter
    def loss_scale_factor(self, value: Optional[float]) -> None:
        self.__dict__["_loss_scale_factor"] = value
        for sub in self._sub_optimizers():
            sub.loss_scale_factor = value

    @property
    def learning_rate(self) -> Any:
        """Not defined for a MultiOptimizer: an AttributeError (see the sub-optimizers)."""
        raise AttributeError(_NO_LEARNING_RATE)

    @learning_rate.setter
    def learning_rate(self, learning_rate: Any) -> None:
        raise AttributeError(_NO_LEARNING_RATE)

    # --- build and step ----------------------------------------------------------------------

    def build(self, var_list: ParamsArg) -> None:
        """Give every variable to its sub-optimizer and build each on its share.

        Args:
            var_list: the variables (list, tuple or dict name -> array).
        """
        if self.built:
            return
        names, variables = self._names_and_variables(var_list)
        subs = self._sub_optimizers()
        positions = {id(sub): j for j, sub in enumerate(subs)}
        owner = []
        for name in names:
            sub = self.optimizer_map(name)
            _check_sub_optimizer(f"The optimizer of variable '{name}'", sub)
            if id(sub) not in positions:
                positions[id(sub)] = len(subs)
                subs.append(sub)
            owner.append(positions[id(sub)])
        super().build(var_list)
        self._built_sub_optimizers = subs
        # Built indices of each sub-optimizer's share, in build order.
        self._shares: List[List[int]] = [[] for _ in subs]
        for i, j in enumerate(owner):
            self._shares[j].append(i)
        self._owner = owner
        for sub in subs:
            sub.loss_scale_factor = self.loss_scale_factor
        for sub, share in zip(subs, self._shares):
            if share:
                sub.build({names[i]: variables[i] for i in share})

    def apply(self, grads: Any, trainable_variables: Optional[ParamsArg] = None) -> None:
        """Update the variables in place: each sub-optimizer applies one step to its share.

        Args:
            grads: as in `Optimizer.apply` (a list aligned with `trainable_variables`, or a
                dict keyed by variable name; None for a variable without gradient, which is
                left out with a warning).
            trainable_variables: as in `Optimizer.apply`; the first call builds the optimizer.
        """
        # No single-call fast path: every step dispatches (see `_step`). One step at a time, as
        # `Optimizer.apply`.
        self._run_exclusive(self._apply_general, grads, trainable_variables)

    def _step(self, calls: List[Any], missing: List[int]) -> None:
        # `calls` cover the gradients of this step by dtype (each variable at most once), and
        # the sub-optimizers handle the variables left out themselves.
        grads_at: Dict[int, Any] = {}
        for group, members, grads in calls:
            grads_at.update(zip(group.indices if members is None else members, grads))
        dispatch = []
        for sub, share in zip(self._built_sub_optimizers or [], self._shares):
            present = [i for i in share if i in grads_at]
            if present:
                dispatch.append((sub, present))
        if len(dispatch) > 1:
            # Several sub-optimizers: everything they would each refuse is checked before the
            # first of them changes anything.
            if len(calls) == 1:
                calls = self._validate_calls(calls)
                for group, members, grads in calls:
                    grads_at.update(zip(group.indices if members is None else members, grads))
            for sub, present in dispatch:
                sub._variable_indices([self._trainable_variables[i] for i in present])
        # Every sub-step's learning rate, read once and checked before any sub-optimizer
        # writes: a schedule or callable that raises or returns NaN refuses the whole step.
        rates = [sub._learning_rate_ahead() for sub, _ in dispatch]
        before = [sub._iterations for sub, _ in dispatch]
        raw = self._iterations
        loss_scale = self._pinned_loss_scale

        def run_remaining() -> None:
            # A sub-step is done when its own count moved (each is a transaction itself).
            for (sub, present), lr, count in zip(dispatch, rates, before):
                if sub._iterations != count:
                    continue
                sub._pinned_learning_rate = lr
                sub_grads = [grads_at[i] for i in present]
                sub_variables = [self._trainable_variables[i] for i in present]
                try:
                    if loss_scale is None:
                        sub.apply(sub_grads, sub_variables)
                    else:
                        # The scale a wrapper lent this step (see `_apply_scaled`) goes on.
                        sub._apply_scaled(sub_grads, sub_variables, loss_scale)
                finally:
                    sub._pinned_learning_rate = None
            self._iterations = raw + 1

        try:
            run_remaining()
        except BaseException as error:
            if isinstance(error, (TypeError, ValueError)) or all(
                sub._iterations == count for (sub, _), count in zip(dispatch, before)
            ):
                raise
            # Interrupted after a sub-step wrote: the others follow, then the exception.
            settle(run_remaining)
            raise

    def finalize_variable_values(self, var_list: ParamsArg) -> None:
        """Each sub-optimizer's `finalize_variable_values` on its share.

        Args:
            var_list: the variables, in the order the optimizer was built with (list or dict).
        """
        _, variables = self._names_and_variables(var_list)
        indices = self._variable_indices(variables)
        for sub, share in zip(self._built_sub_optimizers or [], self._shares):
            members = set(share)
            mine = [variables[k] for k, i in enumerate(indices) if i in members]
            if mine:
                sub.finalize_variable_values(mine)

    # --- config ------------------------------------------------------------------------------

    def get_config(self) -> Dict[str, Any]:
        """`{optimizer_map, loss_scale_factor, name}`: an `OptimizerMap` is serialized; a
        callable map is kept as is (Keras serializes it by reference)."""
        from ferroptim.optimizers import serialize

        optimizer_map: Any = self.optimizer_map
        if isinstance(optimizer_map, OptimizerMap):
            optimizer_map = serialize(optimizer_map)
        return {
            "optimizer_map": optimizer_map,
            "loss_scale_factor": self.loss_scale_factor,
            "name": self.name,
        }

    @classmethod
    def from_config(
        cls, config: Dict[str, Any], custom_objects: Optional[Mapping[str, Any]] = None
    ) -> "MultiOptimizer":
        """Create a MultiOptimizer from `get_config()`'s output.

        Args:
            config: the configuration dict (not modified), whose `optimizer_map` is a
                serialized `OptimizerMap` or a callable.
            custom_objects: extra classes by name, to deserialize the map and its optimizers.
        """
        return cls(**config_with_inner("MultiOptimizer", config, "optimizer_map", custom_objects))


_NO_LEARNING_RATE = (
    "A MultiOptimizer has no learning rate of its own: each of its sub-optimizers (the values "
    "of its `optimizer_map`) has one; read or set `learning_rate` on them."
)


def _unique(optimizers: List[Optimizer]) -> List[Optimizer]:
    """The optimizers in order, each instance once (compared by identity)."""
    seen = set()
    out = []
    for optimizer in optimizers:
        if id(optimizer) not in seen:
            seen.add(id(optimizer))
            out.append(optimizer)
    return out
