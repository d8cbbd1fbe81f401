"""AdamW, as `keras.optimizers.AdamW` (keras/src/optimizers/adamw.py)."""

from __future__ import annotations

from typing import Any, Optional

from ferroptim.optimizers.adam import Adam

__all__ = ["AdamW"]


class AdamW(Adam, name="adamw"):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019,
    https://arxiv.org/abs/1711.05101).

    Each step first decays every variable not excluded with `exclude_from_weight_decay`,

        w = w - w * weight_decay * learning_rate

    then applies the `Adam` update (see `Adam` for its rule and for its "epsilon hat"). This is
    exactly `Adam(weight_decay=...)`; only the default and the argument order differ. As in Keras
    and PyTorch, the decay is multiplied by the learning rate (the paper multiplies it by the
    schedule factor only).

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> params = {"kernel": np.ones(3, dtype=np.float32), "bias": np.ones(3, dtype=np.float32)}
        >>> opt = fo.optimizers.AdamW(learning_rate=0.1, weight_decay=0.5)
        >>> opt.exclude_from_weight_decay(var_names=["bias"])
        >>> grads = {"kernel": np.zeros(3, dtype=np.float32), "bias": np.zeros(3, dtype=np.float32)}
        >>> opt.apply(grads, params)
        >>> params["kernel"], params["bias"]
        (array([0.95, 0.95, 0.95], dtype=float32), array([1., 1., 1.], dtype=float32))

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.001.
        weight_decay: the decoupled decay rate; it must not be None. Defaults to 0.004.
        beta_1: decay rate of the first-moment estimate, as in `Adam`. Defaults to 0.9.
        beta_2: decay rate of the second-moment estimate, as in `Adam`. Defaults to 0.999.
        epsilon: Adam's "epsilon hat" (see `Adam`). Defaults to 1e-7; None (Keras 2) also
            means 1e-7.
        amsgrad: whether to use AMSGrad (adds a `velocity_hat` slot). Defaults to False.
        {{base_optimizer_keyword_args}}
        lazy: with a row-sparse gradient (`ferroptim.IndexedSlices`), update only its rows: their
            slots and values take the rule (and the weight decay), every other row is left as
            it is. A different algorithm from Keras's (TensorFlow Addons' `LazyAdam`, PyTorch's
            `SparseAdam`); it cannot be combined with `gradient_accumulation_steps`. Dense
            gradients are unaffected. Defaults to False.
        {{base_optimizer_kwargs}}
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        weight_decay: Optional[float] = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: Optional[float] = 1e-7,
        amsgrad: bool = False,
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: Optional[int] = None,
        loss_scale_factor: Optional[float] = None,
        gradient_accumulation_steps: Optional[int] = None,
        name: Optional[str] = "adamw",
        lazy: bool = False,
        **kwargs: Any,
    ):
        super().__init__(
            learning_rate,
            beta_1,
            beta_2,
            epsilon,
            amsgrad,
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
            lazy,
            **kwargs,
        )
        if self.weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
