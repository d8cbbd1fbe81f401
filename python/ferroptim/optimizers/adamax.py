"""Adamax, as `keras.optimizers.Adamax` (keras/src/optimizers/adamax.py)."""

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

__all__ = ["Adamax"]


class Adamax(Optimizer):
    """Adamax (Kingma and Ba, 2014, https://arxiv.org/abs/1412.6980, Section 7.1): Adam with
    the infinity norm in place of the second moment.

    Update rule for a variable `w` with gradient `g`, with `t = iterations + 1`:

        m = m + (g - m) * (1 - beta_1)
        u = max(beta_2 * u, |g|)
        w = w - learning_rate * m / ((1 - beta_1**t) * (u + epsilon))

    Where this differs from the paper: `epsilon` is added to `u` (the paper's Algorithm 2 has no
    epsilon; PyTorch adds it inside the max instead: `max(beta_2 * u, |g| + eps)`).

    Example:

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
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name, **kwargs:
            see `Optimizer` (Keras 2's `lr=` and `decay=` are accepted).
    """

    @keras_signature(name="adamax")
    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: Optional[float] = 1e-7,
        **base: Any,
    ):
        super().__init__(learning_rate, **base)
        epsilon = 1e-7 if epsilon is None else epsilon
        for argument, value in (("beta_1", beta_1), ("beta_2", beta_2), ("epsilon", epsilon)):
            check_hyperparameter(argument, value)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, var_list: ParamsArg) -> None:
        """Create the `momentum` and `norm` slots (interleaved).

        Args:
            var_list: the variables (list, tuple or dict name -> array).
        """
        if self.built:
            return
        super().build(var_list)
        self._m, self._u = self.add_optimizer_variables(var_list, ["momentum", "norm"])

    def _update_step(
        self,
        params: List[np.ndarray],
        grads: Sequence[Any],
        slots: Dict[str, List[np.ndarray]],
        learning_rate: float,
        options: Optional[_native.StepOptions],
    ) -> None:
        _native.adamax(
            params,
            grads,
            slots["momentum"],
            slots["norm"],
            learning_rate,
            self.beta_1,
            self.beta_2,
            self.epsilon,
            self.iterations,
            options,
        )

    def get_config(self) -> Dict[str, Any]:
        """The config: the base keys, then `beta_1`, `beta_2`, `epsilon`."""
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config
