"""Lamb, as `keras.optimizers.Lamb` (keras/src/optimizers/lamb.py)."""

from __future__ import annotations

from typing import Any, Optional

from ferroptim import _native
from ferroptim.optimizers.optimizer import NativeRule, Optimizer, SlotGroup

__all__ = ["Lamb"]


class Lamb(Optimizer, name=None):
    """Lamb, "Layer-wise Adaptive Moments optimizer for Batch training" (You et al., 2020,
    https://arxiv.org/abs/1904.00962): Adam's bias-corrected direction, rescaled per tensor by
    the ratio of the tensor's norm to the direction's norm.

    Update rule for a variable `w` with gradient `g`, with `t = iterations + 1`:

        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        r = (m / (1 - beta_1**t)) / (sqrt(v / (1 - beta_2**t)) + epsilon)
        ratio = ||w|| / ||r||      if both norms are > 0, else 1
        w = w - ratio * learning_rate * r

    The norms are whole-tensor L2 norms, one ratio per variable; `w` is the value after the
    base class's decoupled weight decay. `epsilon` is added to the bias-corrected `sqrt` (unlike
    Adam's "epsilon hat"). As in Keras there is no weight-decay term inside `r` and no list of
    variables excluded from the layer adaptation, so this equals TF-Addons' LAMB only with
    `weight_decay=None`. The sums of squares behind the norms are accumulated in float64 (Keras
    sums in the variable's dtype), which changes a float32 result by a few ulps at most.

    Unlike Keras, `Lamb` is registered: `fo.optimizers.get("lamb")` and
    `deserialize(serialize(Lamb()))` return a `Lamb`.

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> w = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
        >>> g = np.array([1.0, 6.0, 7.0, 2.0], dtype=np.float32)
        >>> opt = fo.optimizers.Lamb(learning_rate=0.5)
        >>> _ = opt.apply_gradients([(g, w)])
        >>> np.round(w, 4)
        array([-0.3693,  0.6307,  1.6307,  2.6307], dtype=float32)

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.001.
        beta_1: decay rate of the first-moment estimate. Defaults to 0.9.
        beta_2: decay rate of the second-moment estimate. Defaults to 0.999.
        epsilon: added to the bias-corrected `sqrt(v)`. Defaults to 1e-7.
        {{base_optimizer_keyword_args}}
        {{base_optimizer_kwargs}}
    """

    _rule = NativeRule(_native.lamb)
    _slot_groups = (SlotGroup("momentum", "velocity"),)

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
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
        # Lamb never existed in Keras 2, so None is not Keras 2's alias of 1e-7 here: it is
        # refused, as every None hyperparameter is.
        self._set_hyperparameters(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)

    # The constructor's own arguments, kept by `_set_hyperparameters`.
    beta_1: float
    beta_2: float
    epsilon: float
