"""LossScaleOptimizer, as `keras.optimizers.LossScaleOptimizer`
(keras/src/optimizers/loss_scale_optimizer.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ferroptim import _native
from ferroptim._indexed_slices import IndexedSlices
from ferroptim.optimizers._composite import Composite, config_with_inner
from ferroptim.optimizers._step import name_variables, settle
from ferroptim.optimizers.optimizer import Optimizer, ParamsArg

__all__ = ["LossScaleOptimizer"]

# The base arguments that configs of older Keras versions carry: accepted at these values only.
_BASE_DEFAULTS = {
    "weight_decay": None,
    "clipnorm": None,
    "global_clipnorm": None,
    "clipvalue": None,
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}


class LossScaleOptimizer(Composite, Optimizer):
    """Dynamic loss scaling around another optimizer, for gradients computed in low precision.

    The loss is multiplied by a scale (`scale_loss`) before the gradients are computed, so small
    gradients do not underflow in float16; `apply` divides the gradients by the same scale
    before the inner optimizer uses them. The scale adapts:

    - gradients with an inf or a NaN anywhere: the step is skipped (no variable, slot or
      iteration count of the inner optimizer changes), the scale is halved and the count of
      good steps restarts from 0;
    - finite gradients: `inner_optimizer.apply(grads / scale)`, then the count of good steps
      grows by one; when it reaches `dynamic_growth_steps` the scale doubles and the count
      restarts.

    The scale is a float32 variable, as in Keras. The finiteness check is one native read-only
    pass over the gradients, and the division by the scale is fused into the inner optimizer's
    update (its `loss_scale_factor` machinery), so a step reads the gradients twice in all.

    `learning_rate` and `iterations` read (and `learning_rate` writes) the inner optimizer's;
    `variables` lists this optimizer's own `iteration` (never advanced, as in Keras),
    `learning_rate` (unused), `step_counter` (int64) and `dynamic_scale` (float32), then the
    inner optimizer's variables.

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> opt = fo.optimizers.LossScaleOptimizer(fo.optimizers.SGD(learning_rate=0.5),
        ...                                        initial_scale=8.0)
        >>> w = np.array([1.0, 2.0], dtype=np.float32)
        >>> opt.scale_loss(1.0)
        8.0
        >>> opt.apply([np.array([8.0, 16.0], dtype=np.float32)], [w])    # scaled gradients [1, 2]
        >>> w
        array([0.5, 1. ], dtype=float32)
        >>> opt.apply([np.array([np.inf, 1.0], dtype=np.float32)], [w])  # skipped; scale halved
        >>> w, float(opt.dynamic_scale)
        (array([0.5, 1. ], dtype=float32), 4.0)

    Args:
        inner_optimizer: the `Optimizer` to wrap. Its `loss_scale_factor` is set to None, so the
            gradients are not unscaled twice.
        initial_scale: a float > 0, the scale before the first step. A high value is
            recommended: a scale that is too high comes down in a few steps, one that is too
            low rises only every `dynamic_growth_steps` steps. Defaults to 2**15.
        dynamic_growth_steps: an int >= 1: the scale doubles after that many consecutive steps
            with finite gradients. Defaults to 2000.
        name: str or None (an automatic name, `loss_scale_optimizer`, ...).
        **kwargs: only for configs of older Keras versions: the base arguments
            (`weight_decay`, `clipnorm`, ...) at their default values, and `dynamic=True`.
            Any other value is a ValueError: set the argument on the inner optimizer.
    """

    # Turns this process's verdict on the gradients' finiteness into the step's (a
    # distributed optimizer's verdict over all ranks: one decision for every rank).
    _reduce_finite: Optional[Callable[[bool], bool]] = None

    def __init__(
        self,
        inner_optimizer: Optimizer,
        initial_scale: float = 2.0**15,
        dynamic_growth_steps: int = 2000,
        name: Optional[str] = None,
        **kwargs: Any,
    ):
        if not kwargs.pop("dynamic", True):
            raise ValueError(
                "LossScaleOptimizer no longer supports `dynamic=False`. "
                "Instead, simply set `loss_scale_factor` directly on the "
                "`inner_optimizer`."
            )
        for argument, default in _BASE_DEFAULTS.items():
            if argument not in kwargs:
                continue
            value = kwargs.pop(argument)
            if (default is None and value is not None) or value != default:
                raise ValueError(
                    f"LossScaleOptimizer does not support `{argument}`. "
                    f"Instead, set `{argument}` on the `inner_optimizer`."
                )
        if kwargs:
            raise ValueError(
                f"LossScaleOptimizer does not support arguments: `{'`, `'.join(kwargs.keys())}`."
            )
        # Keras checks neither argument; these would fail later or never let the scale move.
        if not isinstance(inner_optimizer, Optimizer):
            raise TypeError(
                "Argument `inner_optimizer` must be an `Optimizer` instance. "
                f"Received: inner_optimizer={inner_optimizer!r}"
            )
        if (
            isinstance(initial_scale, bool)
            or not isinstance(initial_scale, (int, float, np.integer, np.floating))
            or not math.isfinite(initial_scale)
            or not initial_scale > 0
        ):
            raise ValueError(
                "Argument `initial_scale` must be a finite number > 0. "
                f"Received: initial_scale={initial_scale}"
            )
        if (
            isinstance(dynamic_growth_steps, bool)
            or not isinstance(dynamic_growth_steps, (int, np.integer))
            or dynamic_growth_steps < 1
        ):
            raise ValueError(
                "Argument `dynamic_growth_steps` must be an integer >= 1. "
                f"Received: dynamic_growth_steps={dynamic_growth_steps}"
            )
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self.initial_scale = initial_scale
        self.dynamic_growth_steps = dynamic_growth_steps
        self.inner_optimizer.loss_scale_factor = None

    def _sub_optimizers(self) -> List[Optimizer]:
        return [self.inner_optimizer]

    def build(self, var_list: ParamsArg) -> None:
        """Build the inner optimizer on `var_list`, then create `step_counter` (0) and
        `dynamic_scale` (`initial_scale`, float32).

        Args:
            var_list: the variables (list, tuple or dict name -> array).
        """
        if self.built:
            return
        self.inner_optimizer.build(var_list)
        super().build(var_list)
        self.step_counter = self.add_variable(
            (), initializer="zeros", dtype=np.int64, name="step_counter"
        )
        self.dynamic_scale = self.add_variable(
            (), initializer=float(self.initial_scale), dtype=np.float32, name="dynamic_scale"
        )

    def apply(self, grads: Any, trainable_variables: Optional[ParamsArg] = None) -> None:
        """One step: with finite gradients, the inner optimizer's step on `grads / scale`;
        otherwise no update and the scale is halved (see the class docstring).

        Args:
            grads: as in `Optimizer.apply` (a list aligned with `trainable_variables`, or a
                dict keyed by variable name; None for a variable without gradient).
            trainable_variables: as in `Optimizer.apply`; the first call builds the optimizer.
        """
        # One step at a time, as `Optimizer.apply`: the scale, the counter and the inner
        # optimizer's borrowed loss scale belong to one step.
        self._run_exclusive(self._apply, grads, trainable_variables)

    def _apply(self, grads: Any, trainable_variables: Optional[ParamsArg]) -> None:
        values: Sequence[Any]
        if isinstance(grads, Mapping):
            values = list(grads.values())
        else:
            grads = values = grads if isinstance(grads, (list, tuple)) else list(grads)
        if len(values) == 0:
            return
        self._build_on(trainable_variables)
        # Everything the inner step would refuse is refused first: a malformed gradient that
        # also holds a NaN must raise, not halve the scale.
        prepared = self._prepare_step(grads, trainable_variables, warn=False)
        if prepared is None:
            return
        calls, _ = prepared
        if len(calls) == 1:
            self._validate_calls(calls)
        try:
            finite = _native.all_finite(
                [g.values if isinstance(g, IndexedSlices) else g for g in values if g is not None]
            )
        except (TypeError, ValueError) as error:
            name_variables(error, self._gradient_names(grads, trainable_variables))
            raise
        if self._reduce_finite is not None:
            finite = self._reduce_finite(finite)
        counter, scale = int(self.step_counter), self.dynamic_scale[()]
        if not finite:
            halved = scale / np.float32(2.0)
            settle(lambda: self._set_scale(0, halved))
            return
        if counter == self.dynamic_growth_steps - 1:
            with np.errstate(over="ignore"):
                after = (0, scale * np.float32(2.0))
        else:
            after = (counter + 1, scale)
        inner = self.inner_optimizer
        before = inner._iterations
        try:
            if inner.loss_scale_factor is None:
                # The inner step divides by the scale first, in the same pass as the update;
                # Keras divides by the scale before the inner step: the same numbers.
                inner._apply_scaled(grads, trainable_variables, float(scale))
            else:
                # A factor set on the inner optimizer after it was wrapped: Keras divides by
                # the dynamic scale, then the inner step divides by its own factor.
                inner.apply(_divide(grads, scale), trainable_variables)
            self._set_scale(*after)
        except BaseException:
            if inner._iterations != before:
                # The inner step is done (an interrupt arrived as it returned): so is ours.
                settle(lambda: self._set_scale(*after))
            raise

    def _set_scale(self, counter: int, scale: Any) -> None:
        self.step_counter[()] = counter
        self.dynamic_scale[()] = scale

    def _gradient_names(self, grads: Any, trainable_variables: Optional[ParamsArg]) -> List[str]:
        """The names of the variables of the non-None gradients, in order (for messages)."""
        if isinstance(grads, Mapping):
            return [str(k) for k, g in grads.items() if g is not None]
        if trainable_variables is None:
            names = list(self._trainable_variable_names)
        elif isinstance(trainable_variables, Mapping):
            names = [str(k) for k in trainable_variables]
        else:
            built = self._trainable_variables_indices
            names = [
                self._trainable_variable_names[built[id(v)]] if id(v) in built else f"#{k}"
                for k, v in enumerate(trainable_variables)
            ]
        return [name for name, g in zip(names, grads) if g is not None]

    def apply_gradients(self, grads_and_vars: Any) -> int:
        """Apply gradients to variables (see `apply`).

        Args:
            grads_and_vars: an iterable of (gradient, variable) pairs.

        Returns:
            The inner optimizer's raw iteration count after the call (Keras returns this
            optimizer's own `iterations` variable, which never advances).
        """
        super().apply_gradients(grads_and_vars)
        return self.inner_optimizer._iterations

    @property
    def learning_rate(self) -> Any:
        """The inner optimizer's `learning_rate` (read and set)."""
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate: Any) -> None:
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self) -> int:
        """The inner optimizer's `iterations`: steps skipped for non-finite gradients do not
        count."""
        return self.inner_optimizer.iterations

    def scale_loss(self, loss: Any) -> Any:
        """Multiply a loss by the current scale (`initial_scale` before `build`).

        Args:
            loss: the loss value.
        """
        scale = float(self.dynamic_scale) if self.built else self.initial_scale
        return loss * scale

    def finalize_variable_values(self, var_list: ParamsArg) -> None:
        """The inner optimizer's `finalize_variable_values` (EMA averages into the variables).

        Args:
            var_list: the variables, in the order the optimizer was built with.
        """
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self) -> Dict[str, Any]:
        """`{name, inner_optimizer (serialized), initial_scale, dynamic_growth_steps}`."""
        from ferroptim.optimizers import serialize

        return {
            "name": self.name,
            "inner_optimizer": serialize(self.inner_optimizer),
            "initial_scale": self.initial_scale,
            "dynamic_growth_steps": self.dynamic_growth_steps,
        }

    @classmethod
    def from_config(
        cls, config: Dict[str, Any], custom_objects: Optional[Mapping[str, Any]] = None
    ) -> "LossScaleOptimizer":
        """Create a LossScaleOptimizer from `get_config()`'s output.

        Args:
            config: the configuration dict (not modified), whose `inner_optimizer` is a
                serialized optimizer or an `Optimizer` instance.
            custom_objects: extra classes by name, to deserialize the inner optimizer.
        """
        config = config_with_inner("LossScaleOptimizer", config, "inner_optimizer", custom_objects)
        return cls(config.pop("inner_optimizer"), **config)


def _divide(grads: Any, scale: Any) -> Any:
    """`g / scale` for every gradient (None stays None), as a list or a dict like `grads`."""

    def divide(g: Any) -> Any:
        if isinstance(g, IndexedSlices):
            return IndexedSlices(g.values / scale, g.indices, g.dense_shape)
        return None if g is None else np.asarray(g) / scale

    if isinstance(grads, Mapping):
        return {key: divide(g) for key, g in grads.items()}
    return [divide(g) for g in grads]
