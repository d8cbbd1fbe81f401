"""Adam, as `keras.optimizers.Adam` (keras/src/optimizers/adam.py)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ferroptim import _native
from ferroptim.optimizers.optimizer import (
    Optimizer,
    ParamsArg,
    check_hyperparameter,
    keras_signature,
)

__all__ = ["Adam"]


class Adam(Optimizer):
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

    Example:

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
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name, **kwargs:
            see `Optimizer` (Keras 2's `lr=` and `decay=` are accepted).
    """

    @keras_signature(name="adam")
    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: Optional[float] = 1e-7,
        amsgrad: bool = False,
        **base: Any,
    ):
        super().__init__(learning_rate, **base)
        epsilon = 1e-7 if epsilon is None else epsilon
        for argument, value in (("beta_1", beta_1), ("beta_2", beta_2), ("epsilon", epsilon)):
            check_hyperparameter(argument, value)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    def build(self, var_list: ParamsArg) -> None:
        """Create the `momentum` and `velocity` slots (interleaved), then `velocity_hat` if
        amsgrad.

        Args:
            var_list: the variables (list, tuple or dict name -> array).
        """
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )
        self._velocity_hats: List[np.ndarray] = []
        if self.amsgrad:
            self._velocity_hats = self.add_optimizer_variables(var_list, "velocity_hat")

    def _update_step(
        self,
        params: List[np.ndarray],
        grads: Sequence[Any],
        slots: Dict[str, List[np.ndarray]],
        learning_rate: float,
        options: Optional[_native.StepOptions],
    ) -> None:
        _native.adam(
            params,
            grads,
            slots["momentum"],
            slots["velocity"],
            slots.get("velocity_hat"),
            learning_rate,
            self.beta_1,
            self.beta_2,
            self.epsilon,
            self.iterations,
            options,
        )

    def get_config(self) -> Dict[str, Any]:
        """The config: the base keys, then `beta_1`, `beta_2`, `epsilon`, `amsgrad`."""
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "amsgrad": self.amsgrad,
            }
        )
        return config
