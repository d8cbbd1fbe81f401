"""SGD, as `keras.optimizers.SGD` (keras/src/optimizers/sgd.py)."""

from __future__ import annotations

from typing import Any, Optional

from ferroptim import _native
from ferroptim.optimizers.optimizer import NativeRule, Optimizer, SlotGroup

__all__ = ["SGD"]


class SGD(Optimizer, name=None):
    """Gradient descent, with optional (Nesterov) momentum.

    Update rule for a variable `w` with gradient `g` (after loss-scale unscaling, accumulation,
    clipping and weight decay, see `Optimizer`):

        momentum == 0:   w = w - g * learning_rate
        otherwise:       m = m * momentum - g * learning_rate
                         w = w + m                                    (nesterov=False)
                         w = w + (m * momentum - g * learning_rate)   (nesterov=True, new m)

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> w = np.array([1.0, 2.0], dtype=np.float32)
        >>> opt = fo.optimizers.SGD(learning_rate=0.5)
        >>> _ = opt.apply_gradients([(np.array([1.0, 4.0], dtype=np.float32), w)])
        >>> w
        array([0.5, 0. ], dtype=float32)

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.01.
        momentum: a Python float in [0, 1] (an int is rejected, as in Keras). 0 is plain
            gradient descent and creates no `momentum` slot. Defaults to 0.0.
        nesterov: whether to use Nesterov momentum. Defaults to False.
        {{base_optimizer_keyword_args}}
        lazy: with a row-sparse gradient (`ferroptim.IndexedSlices`), update only its rows: their
            slots and values take the rule (and the weight decay), every other row is left as
            it is. A different algorithm from Keras's (TensorFlow Addons' `LazyAdam`, PyTorch's
            `SparseAdam`); it cannot be combined with `gradient_accumulation_steps`. Dense
            gradients are unaffected. Defaults to False.
        {{base_optimizer_kwargs}}
    """

    _elementwise = True
    _rule = NativeRule(_native.sgd)
    _slot_groups = (SlotGroup("momentum", when=lambda opt: opt.momentum != 0),)

    def __init__(
        self,
        learning_rate: Any = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
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
        if not isinstance(momentum, float) or momentum < 0 or momentum > 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self._set_hyperparameters(momentum=momentum, nesterov=nesterov)

    # The constructor's own arguments, kept by `_set_hyperparameters`.
    momentum: float
    nesterov: bool
