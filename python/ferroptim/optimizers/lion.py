"""Lion, as `keras.optimizers.Lion` (keras/src/optimizers/lion.py)."""

from __future__ import annotations

from typing import Any, Optional

from ferroptim import _native
from ferroptim.optimizers.optimizer import NativeRule, Optimizer, SlotGroup

__all__ = ["Lion"]


class Lion(Optimizer, name="lion"):
    """Lion, "EvoLved Sign Momentum" (Chen et al., 2023, https://arxiv.org/abs/2302.06675):
    every element moves by exactly the learning rate, in the direction of the sign of an
    interpolation between the momentum and the gradient.

    Update rule for a variable `w` with gradient `g`:

        w = w - learning_rate * sign(m * beta_1 + g * (1 - beta_1))
        m = m * beta_2 + g * (1 - beta_2)

    `sign(0)` is 0. `beta_1` and `beta_2` are rounded to the variable's dtype before `1 - beta`
    is taken, as Keras does. Weight decay is the base class's decoupled `weight_decay`, applied
    before the update (the paper's `lambda`, multiplied by the learning rate as in the paper).
    Since the update has the size of the learning rate, a suitable one is typically 3-10 times
    smaller than for AdamW, and the weight decay 3-10 times larger.

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> w = np.array([1.0, 2.0, 3.0], dtype=np.float32)
        >>> opt = fo.optimizers.Lion(learning_rate=0.5)
        >>> _ = opt.apply_gradients([(np.array([0.25, -6.0, 0.0], dtype=np.float32), w)])
        >>> w
        array([0.5, 2.5, 3. ], dtype=float32)

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.001.
        beta_1: the weight of the momentum in the interpolation whose sign is the update; in
            (0, 1] (0 would make it sign SGD). Defaults to 0.9.
        beta_2: decay rate of the momentum. Defaults to 0.99.
        {{base_optimizer_keyword_args}}
        lazy: with a row-sparse gradient (`ferroptim.IndexedSlices`), update only its rows: their
            slots and values take the rule (and the weight decay), every other row is left as
            it is. A different algorithm from Keras's (TensorFlow Addons' `LazyAdam`, PyTorch's
            `SparseAdam`); it cannot be combined with `gradient_accumulation_steps`. Dense
            gradients are unaffected. Defaults to False.
        {{base_optimizer_kwargs}}
    """

    _elementwise = True
    _rule = NativeRule(_native.lion)
    _slot_groups = (SlotGroup("momentum"),)

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        weight_decay: Optional[float] = None,
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: Optional[int] = None,
        loss_scale_factor: Optional[float] = None,
        gradient_accumulation_steps: Optional[int] = None,
        name: Optional[str] = "lion",
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
        self._set_hyperparameters(beta_1=beta_1, beta_2=beta_2)
        if beta_1 <= 0 or beta_1 > 1:
            raise ValueError(
                "Argument `beta_1` must be in the [0, 1] range. Otherwise, the "
                f"optimizer degenerates to SignSGD. Received: beta_1={beta_1}."
            )

    # The constructor's own arguments, kept by `_set_hyperparameters`.
    beta_1: float
    beta_2: float
