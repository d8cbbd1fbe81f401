"""Adam, as `keras.optimizers.Adam` (keras/src/optimizers/adam.py)."""

from __future__ import annotations

from typing import Any, Optional

from ferroptim import _native
from ferroptim.optimizers.optimizer import NativeRule, Optimizer, SlotGroup

__all__ = ["Adam"]


class Adam(Optimizer, name="adam"):
    """Adam (Kingma and Ba, 2014, https://arxiv.org/abs/1412.6980), with optional AMSGrad
    (Reddi et al., 2018).

    Update rule for a variable `w` with gradient `g`, with `t = iterations + 1`:

        alpha = learning_rate * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        v_hat = max(v_hat, v)                          (amsgrad only; v_hat then replaces v)
        w = w - m * alpha / (sqrt(v) + epsilon)

    Where this differs from the textbook form: `epsilon` is the paper's "epsilon hat" (the
    formula just before its Section 2.1): it is added to the uncorrected `sqrt(v)`. In the
    bias-corrected form `w -= lr * m_hat / (sqrt(v_hat) + eps)` (PyTorch, optax) it corresponds to
    `eps = epsilon / sqrt(1 - beta_2**t)`, which changes with t; the two agree only when epsilon
    is negligible. AMSGrad takes the max of the uncorrected `v`.

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> w = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
        >>> g = np.array([1.0, 6.0, 7.0, 2.0], dtype=np.float32)
        >>> opt = fo.optimizers.Adam(learning_rate=0.5)
        >>> _ = opt.apply_gradients([(g, w)])
        >>> np.round(w, 4)
        array([0.5, 1.5, 2.5, 3.5], dtype=float32)

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.001.
        beta_1: decay rate of the first-moment estimate. Defaults to 0.9.
        beta_2: decay rate of the second-moment estimate. Defaults to 0.999.
        epsilon: the "epsilon hat" above. Defaults to 1e-7; None (Keras 2) also means 1e-7.
        amsgrad: whether to use AMSGrad (adds a `velocity_hat` slot). Defaults to False.
        {{base_optimizer_keyword_args}}
        lazy: with a row-sparse gradient (`ferroptim.IndexedSlices`), update only its rows: their
            slots and values take the rule (and the weight decay), every other row is left as
            it is. A different algorithm from Keras's (TensorFlow Addons' `LazyAdam`, PyTorch's
            `SparseAdam`); it cannot be combined with `gradient_accumulation_steps`. Dense
            gradients are unaffected. Defaults to False.
        {{base_optimizer_kwargs}}
    """

    _elementwise = True
    _rule = NativeRule(_native.adam)
    _slot_groups = (
        SlotGroup("momentum", "velocity"),
        SlotGroup("velocity_hat", when=lambda opt: opt.amsgrad),
    )

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: Optional[float] = 1e-7,
        amsgrad: bool = False,
        weight_decay: Optional[float] = None,
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: Optional[int] = None,
        loss_scale_factor: Optional[float] = None,
        gradient_accumulation_steps: Optional[int] = None,
        name: Optional[str] = "adam",
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
        self._set_hyperparameters(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad)

    # The constructor's own arguments, kept by `_set_hyperparameters`.
    beta_1: float
    beta_2: float
    epsilon: float
    amsgrad: bool
