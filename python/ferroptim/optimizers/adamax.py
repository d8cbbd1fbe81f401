"""Adamax, as `keras.optimizers.Adamax` (keras/src/optimizers/adamax.py)."""

from __future__ import annotations

from typing import Any, Optional

from ferroptim import _native
from ferroptim.optimizers.optimizer import NativeRule, Optimizer, SlotGroup

__all__ = ["Adamax"]


class Adamax(Optimizer, name="adamax"):
    """Adamax (Kingma and Ba, 2014, https://arxiv.org/abs/1412.6980, Section 7.1): Adam with
    the infinity norm in place of the second moment.

    Update rule for a variable `w` with gradient `g`, with `t = iterations + 1`:

        m = m + (g - m) * (1 - beta_1)
        u = max(beta_2 * u, |g|)
        w = w - learning_rate * m / ((1 - beta_1**t) * (u + epsilon))

    Where this differs from the paper: `epsilon` is added to `u` (the paper's Algorithm 2 has no
    epsilon; PyTorch adds it inside the max instead: `max(beta_2 * u, |g| + eps)`).

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> w = np.array([1.0, 2.0], dtype=np.float32)
        >>> opt = fo.optimizers.Adamax(learning_rate=0.5, epsilon=0.0)
        >>> _ = opt.apply_gradients([(np.array([3.0, -4.0], dtype=np.float32), w)])
        >>> np.round(w, 4)
        array([0.5, 2.5], dtype=float32)

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.001.
        beta_1: decay rate of the first-moment estimate. Defaults to 0.9.
        beta_2: decay rate of the infinity norm. Defaults to 0.999.
        epsilon: added to the norm `u` in the denominator. Defaults to 1e-7; None (Keras 2)
            also means 1e-7.
        {{base_optimizer_keyword_args}}
        lazy: with a row-sparse gradient (`ferroptim.IndexedSlices`), update only its rows: their
            slots and values take the rule (and the weight decay), every other row is left as
            it is. A different algorithm from Keras's (TensorFlow Addons' `LazyAdam`, PyTorch's
            `SparseAdam`); it cannot be combined with `gradient_accumulation_steps`. Dense
            gradients are unaffected. Defaults to False.
        {{base_optimizer_kwargs}}
    """

    _elementwise = True
    _rule = NativeRule(_native.adamax)
    _slot_groups = (SlotGroup("momentum", "norm"),)

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
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
        name: Optional[str] = "adamax",
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
        self._set_hyperparameters(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)

    # The constructor's own arguments, kept by `_set_hyperparameters`.
    beta_1: float
    beta_2: float
    epsilon: float
