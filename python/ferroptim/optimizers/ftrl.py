"""FTRL, as `keras.optimizers.Ftrl` (keras/src/optimizers/ftrl.py)."""

from __future__ import annotations

from typing import Any, Optional

from ferroptim import _native
from ferroptim.optimizers.optimizer import NativeRule, Optimizer, SlotGroup

__all__ = ["Ftrl"]


class Ftrl(Optimizer, name="ftrl"):
    """FTRL-Proximal, "Follow The Regularized Leader" (McMahan et al., 2013, "Ad Click
    Prediction: a View from the Trenches", https://research.google.com/pubs/archive/41159.pdf),
    with TensorFlow's online L2 and shrinkage-type L2 regularization. Suited to shallow models
    with large, sparse feature spaces; L1 makes many weights exactly zero.

    Update rule for a variable `w` with gradient `g`, with `p = learning_rate_power`, `n` the
    `accumulator` (starting at `initial_accumulator_value`) and `z` the `linear` slot:

        l2 = l2_regularization_strength + beta / (2 * learning_rate)
        g_s = g + 2 * l2_shrinkage_regularization_strength * w
        n_new = n + g * g
        z = z + g_s - (n_new**(-p) - n**(-p)) / learning_rate * w
        w = (clip(z, -l1, l1) - z) / (n_new**(-p) / learning_rate + 2 * l2)
        n = n_new

    with `l1 = l1_regularization_strength`. The variable is replaced, not incremented: where
    `|z| <= l1` it becomes exactly 0. There is no epsilon. Where this differs from the paper:
    the paper's `lambda_2` is `2 * l2_regularization_strength` here (TensorFlow's convention),
    its per-coordinate rate is `n**(-p) / learning_rate` with `p = -0.5` giving the paper's
    `sqrt(n)`, and the accumulator starts at 0.1 instead of 0. The shrinkage term, a
    magnitude penalty on `w`, is not in the paper; it enters the linear term only, not `n`.

    Examples:
        With l1 = 1, the first step leaves every weight whose `|g| <= 1` at 0.


        >>> import numpy as np
        >>> import ferroptim as fo
        >>> w = np.zeros(3, dtype=np.float32)
        >>> opt = fo.optimizers.Ftrl(learning_rate=1.0, learning_rate_power=0.0,
        ...                          l1_regularization_strength=1.0)
        >>> _ = opt.apply_gradients([(np.array([0.5, 3.0, -4.0], dtype=np.float32), w)])
        >>> w
        array([ 0., -2.,  3.], dtype=float32)

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.001.
        learning_rate_power: `p` above, <= 0; how fast the per-coordinate rate decreases with
            the accumulated squared gradients (0: a fixed rate). Defaults to -0.5.
        initial_accumulator_value: the starting value of the `accumulator` slots, >= 0.
            Defaults to 0.1.
        l1_regularization_strength: >= 0. Defaults to 0.0.
        l2_regularization_strength: >= 0, the stabilizing L2 of the paper (halved, see above).
            Defaults to 0.0.
        l2_shrinkage_regularization_strength: >= 0, an L2 penalty on the magnitude of `w`,
            added to the gradient. Defaults to 0.0.
        beta: the paper's `beta`, added to the L2 strength as `beta / (2 * learning_rate)`.
            Defaults to 0.0.
        {{base_optimizer_keyword_args}}
        lazy: with a row-sparse gradient (`ferroptim.IndexedSlices`), update only its rows: their
            slots and values take the rule (and the weight decay), every other row is left as
            it is. A different algorithm from Keras's (TensorFlow Addons' `LazyAdam`, PyTorch's
            `SparseAdam`); it cannot be combined with `gradient_accumulation_steps`. Dense
            gradients are unaffected. Defaults to False.
        {{base_optimizer_kwargs}}
    """

    _elementwise = True
    _rule = NativeRule(_native.ftrl)
    _slot_groups = (
        SlotGroup(
            "accumulator",
            "linear",
            initializer=lambda opt: [opt.initial_accumulator_value, "zeros"],
        ),
    )

    def __init__(
        self,
        learning_rate: Any = 0.001,
        learning_rate_power: float = -0.5,
        initial_accumulator_value: float = 0.1,
        l1_regularization_strength: float = 0.0,
        l2_regularization_strength: float = 0.0,
        l2_shrinkage_regularization_strength: float = 0.0,
        beta: float = 0.0,
        weight_decay: Optional[float] = None,
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: Optional[int] = None,
        loss_scale_factor: Optional[float] = None,
        gradient_accumulation_steps: Optional[int] = None,
        name: Optional[str] = "ftrl",
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
        self._set_hyperparameters(
            learning_rate_power=learning_rate_power,
            initial_accumulator_value=initial_accumulator_value,
            l1_regularization_strength=l1_regularization_strength,
            l2_regularization_strength=l2_regularization_strength,
            l2_shrinkage_regularization_strength=l2_shrinkage_regularization_strength,
            beta=beta,
        )
        if initial_accumulator_value < 0.0:
            raise ValueError(
                "`initial_accumulator_value` needs to be positive or zero. "
                f"Received: initial_accumulator_value={initial_accumulator_value}."
            )
        if learning_rate_power > 0.0:
            raise ValueError(
                "`learning_rate_power` needs to be negative or zero. Received: "
                f"learning_rate_power={learning_rate_power}."
            )
        for argument in (
            "l1_regularization_strength",
            "l2_regularization_strength",
            "l2_shrinkage_regularization_strength",
        ):
            value = getattr(self, argument)
            if value < 0.0:
                raise ValueError(
                    f"`{argument}` needs to be positive or zero. Received: {argument}={value}."
                )

    # The constructor's own arguments, kept by `_set_hyperparameters`.
    learning_rate_power: float
    initial_accumulator_value: float
    l1_regularization_strength: float
    l2_regularization_strength: float
    l2_shrinkage_regularization_strength: float
    beta: float
