"""Adagrad, as `keras.optimizers.Adagrad` (keras/src/optimizers/adagrad.py)."""

from __future__ import annotations

from typing import Any, Optional

from ferroptim import _native
from ferroptim.optimizers.optimizer import NativeRule, Optimizer, SlotGroup

__all__ = ["Adagrad"]


class Adagrad(Optimizer, name="adagrad"):
    """Adagrad (Duchi et al., 2011, http://www.jmlr.org/papers/volume12/duchi11a/duchi11a.pdf):
    per-element learning rates that shrink with the sum of the squared gradients seen so far.

    Update rule for a variable `w` with gradient `g` (the accumulator starts at
    `initial_accumulator_value`):

        accumulator = accumulator + g * g
        w = w - learning_rate * g / sqrt(accumulator + epsilon)

    Where this differs from other formulations: `epsilon` is inside the square root (Keras 2,
    tf.keras's legacy Adagrad and PyTorch add it to `sqrt(accumulator)` instead), and the
    accumulator starts at 0.1 by default (Keras 2 and PyTorch start it at 0).

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> w = np.array([1.0, 2.0], dtype=np.float32)
        >>> opt = fo.optimizers.Adagrad(
        ...     learning_rate=0.5, initial_accumulator_value=0.0, epsilon=0.0
        ... )
        >>> _ = opt.apply_gradients([(np.array([3.0, -4.0], dtype=np.float32), w)])
        >>> w
        array([0.5, 2.5], dtype=float32)

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.001 (the paper's form is 1.0).
        initial_accumulator_value: the starting value of the `accumulator` slots. Defaults to
            0.1.
        epsilon: added to the accumulator inside the square root. Defaults to 1e-7; None
            (Keras 2) also means 1e-7.
        {{base_optimizer_keyword_args}}
        {{base_optimizer_kwargs}}
    """

    _elementwise = True
    _rule = NativeRule(_native.adagrad)
    _slot_groups = (
        SlotGroup("accumulator", initializer=lambda opt: opt.initial_accumulator_value),
    )

    def __init__(
        self,
        learning_rate: Any = 0.001,
        initial_accumulator_value: float = 0.1,
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
        name: Optional[str] = "adagrad",
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
        epsilon = 1e-7 if epsilon is None else epsilon
        self._set_hyperparameters(
            initial_accumulator_value=initial_accumulator_value, epsilon=epsilon
        )

    # The constructor's own arguments, kept by `_set_hyperparameters`.
    initial_accumulator_value: float
    epsilon: float
