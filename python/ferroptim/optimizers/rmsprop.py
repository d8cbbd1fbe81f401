"""RMSprop, as `keras.optimizers.RMSprop` (keras/src/optimizers/rmsprop.py)."""

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

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012, lecture 6e of "Neural Networks for Machine Learning",
    http://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf), with optional
    plain (not Nesterov) momentum and the centered variant (Graves, 2013,
    https://arxiv.org/abs/1308.0850).

    Update rule for a variable `w` with gradient `g`:

        v = rho * v + (1 - rho) * g * g
        a = rho * a + (1 - rho) * g                    (centered only)
        d = v - a * a + epsilon                        (centered)
        d = v + epsilon                                (otherwise)
        increment = learning_rate * g / sqrt(d)
        mom = momentum * mom + increment;  w = w - mom (momentum > 0)
        w = w - increment                              (otherwise)

    Where this differs from other formulations: `epsilon` is inside the square root (Keras 2,
    tf.keras's legacy RMSprop without momentum and PyTorch add it to `sqrt(v)` instead), and
    there is no bias correction of `v`, so the first steps are large (`v` starts at 0). The
    momentum accumulates the already scaled increment, as TensorFlow's kernel does.

    Example (Keras's docstring example: loss `w**2 / 2`, so the gradient is `w`):

    >>> import numpy as np
    >>> import ferroptim as fo
    >>> w = np.array([10.0], dtype=np.float32)
    >>> opt = fo.optimizers.RMSprop(learning_rate=0.1)
    >>> _ = opt.apply_gradients([(w.copy(), w)])
    >>> w
    array([9.683772], dtype=float32)

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.001.
        rho: the discounting factor of the moving averages. Defaults to 0.9.
        momentum: the momentum coefficient; the `momentum` slots exist only when it is > 0.
            Defaults to 0.0.
        epsilon: added to the denominator inside the square root. Defaults to 1e-7; None
            (Keras 2) also means 1e-7.
        centered: if True, normalize by an estimate of the gradient's variance (adds the
            `average_gradient` slots). Defaults to False.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name, **kwargs:
            see `Optimizer` (Keras 2's `lr=` and `decay=` are accepted).
    """

    @keras_signature(name="rmsprop")
    def __init__(
        self,
        learning_rate: Any = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: Optional[float] = 1e-7,
        centered: bool = False,
        **base: Any,
    ):
        super().__init__(learning_rate, **base)
        epsilon = 1e-7 if epsilon is None else epsilon
        for argument, value in (("rho", rho), ("momentum", momentum), ("epsilon", epsilon)):
            check_hyperparameter(argument, value)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def build(self, var_list: ParamsArg) -> None:
        """Create the slots in three groups (not interleaved): `velocity` for every variable,
        then `momentum` (if momentum > 0), then `average_gradient` (if centered).

        Args:
            var_list: the variables (list, tuple or dict name -> array).
        """
        if self.built:
            return
        super().build(var_list)
        self._velocities = self.add_optimizer_variables(var_list, "velocity")
        self._momentums: List[np.ndarray] = []
        if self.momentum > 0:
            self._momentums = self.add_optimizer_variables(var_list, "momentum")
        self._average_gradients: List[np.ndarray] = []
        if self.centered:
            self._average_gradients = self.add_optimizer_variables(var_list, "average_gradient")

    def _update_step(
        self,
        params: List[np.ndarray],
        grads: Sequence[Any],
        slots: Dict[str, List[np.ndarray]],
        learning_rate: float,
        options: Optional[_native.StepOptions],
    ) -> None:
        _native.rmsprop(
            params,
            grads,
            slots["velocity"],
            slots.get("momentum"),
            slots.get("average_gradient"),
            learning_rate,
            self.rho,
            self.momentum,
            self.epsilon,
            options,
        )

    def get_config(self) -> Dict[str, Any]:
        """The config: the base keys, then `rho`, `momentum`, `epsilon`, `centered`."""
        config = super().get_config()
        config.update(
            {
                "rho": self.rho,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "centered": self.centered,
            }
        )
        return config
