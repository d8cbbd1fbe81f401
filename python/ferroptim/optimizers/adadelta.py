"""Adadelta, as `keras.optimizers.Adadelta` (keras/src/optimizers/adadelta.py)."""

from __future__ import annotations

from typing import Any, Optional

from ferroptim import _native
from ferroptim.optimizers.optimizer import NativeRule, Optimizer, SlotGroup

__all__ = ["Adadelta"]


class Adadelta(Optimizer, name="adadelta"):
    """Adadelta (Zeiler, 2012, https://arxiv.org/abs/1212.5701): the step is scaled by the ratio
    of two running RMS values, of past updates and of past gradients.

    Update rule for a variable `w` with gradient `g`:

        accumulated_grad = rho * accumulated_grad + (1 - rho) * g * g
        delta = -sqrt(accumulated_delta_var + epsilon) * g / sqrt(accumulated_grad + epsilon)
        accumulated_delta_var = rho * accumulated_delta_var + (1 - rho) * delta * delta
        w = w + learning_rate * delta

    `epsilon` is inside both square roots, as in the paper; the numerator uses the accumulated
    updates of the previous steps. The paper has no learning rate (it is 1.0); Keras's default
    of 0.001 makes the steps 1000 times smaller than the paper's.

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> w = np.array([1.0, 2.0], dtype=np.float32)
        >>> opt = fo.optimizers.Adadelta(learning_rate=0.5, rho=0.8125, epsilon=0.25)
        >>> _ = opt.apply_gradients([(np.array([2.0, -2.0], dtype=np.float32), w)])
        >>> w
        array([0.5, 2.5], dtype=float32)

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.001.
        rho: the decay rate of both running averages. Defaults to 0.95.
        epsilon: added inside both square roots. Defaults to 1e-7; None (Keras 2) also means
            1e-7.
        {{base_optimizer_keyword_args}}
        lazy: with a row-sparse gradient (`ferroptim.IndexedSlices`), update only its rows: their
            slots and values take the rule (and the weight decay), every other row is left as
            it is. A different algorithm from Keras's (TensorFlow Addons' `LazyAdam`, PyTorch's
            `SparseAdam`); it cannot be combined with `gradient_accumulation_steps`. Dense
            gradients are unaffected. Defaults to False.
        {{base_optimizer_kwargs}}
    """

    _elementwise = True
    _rule = NativeRule(_native.adadelta)
    _slot_groups = (SlotGroup("accumulated_grad", "accumulated_delta_var"),)

    def __init__(
        self,
        learning_rate: Any = 0.001,
        rho: float = 0.95,
        epsilon: Optional[float] = 1e-7,
        weight_decay: Optional[float] = None,
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: Optional[int] = None,
        loss_scale_factor: Optional[float] = None,
        gradient_accumulation_steps: Optional[int] = None,
        name: Optional[str] = "adadelta",
        lazy: bool = False,
        **kwargs: Any,
    ):
        super().__init__(
            learning_rate,
            weight_decay,
            clipnorm,
            clipvalue,
            global_clipnorm,
            use_ema,
            ema_momentum,
            ema_overwrite_frequency,
            loss_scale_factor,
            gradient_accumulation_steps,
            name,
            **kwargs,
        )
        self._set_lazy(lazy)
        epsilon = 1e-7 if epsilon is None else epsilon
        self._set_hyperparameters(rho=rho, epsilon=epsilon)

    # The constructor's own arguments, kept by `_set_hyperparameters`.
    rho: float
    epsilon: float
