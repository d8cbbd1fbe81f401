"""ScheduleFreeAdamW, as `keras.optimizers.ScheduleFreeAdamW`
(keras/src/optimizers/schedule_free_adamw.py)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ferroptim import _native
from ferroptim.optimizers.optimizer import (
    NativeRule,
    Optimizer,
    ParamsArg,
    SlotGroup,
)

__all__ = ["ScheduleFreeAdamW"]


class ScheduleFreeAdamW(Optimizer, name="schedule_free_adamw"):
    """Schedule-Free AdamW (Defazio et al., 2024, "The Road Less Scheduled",
    https://arxiv.org/abs/2405.15682): no learning-rate schedule is needed, because the
    iterate that is evaluated is an average of the iterates that take the gradient steps.

    Three sequences: `z` takes the gradient steps (the `momentum` slot, initialised at `build`
    to a copy of the variable); `x` is the running average of the `z`s, the point to evaluate;
    `y`, an interpolation of the two, is where gradients are computed and is what the variable
    holds during training. `x` is not stored: it is recovered from `y` and `z`. With
    `t = iterations + 1`:

        lr = learning_rate * min(t / warmup_steps, 1)     (only if warmup_steps > 0)
        v = v + (g * g - v) * (1 - beta_2)
        z_new = z - lr * g / (sqrt(v / (1 - beta_2**t)) + epsilon)
        x = (y - (1 - beta_1) * z) / beta_1               (with the old z)
        x = (1 - 1/t) * x + (1/t) * z_new
        y = (1 - beta_1) * z_new + beta_1 * x

    Every scalar is in the variable's dtype, as in Keras. Weight decay is the base class's
    decoupled decay, applied to `y` before the update. As in Keras there is no learning-rate
    weighted averaging (the paper's `weight_lr_power`).

    Evaluate at `x`: call `swap_to_eval()` (alias `eval()`) before evaluating, which replaces
    every variable's `y` by `x`, and `swap_to_train()` (alias `train()`) before training again,
    which puts `y` back. (Keras's ScheduleFreeAdamW has no such methods.) The optimizer does not
    record which mode it is in: call them alternately (two `swap_to_eval()` in a row move the
    variables away from both points).

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> w = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
        >>> opt = fo.optimizers.ScheduleFreeAdamW(learning_rate=0.5)
        >>> _ = opt.apply_gradients([(np.array([1.0, 6.0, 7.0, 2.0], dtype=np.float32), w)])
        >>> w
        array([0.5, 1.5, 2.5, 3.5], dtype=float32)
        >>> opt.swap_to_eval()    # x, the average of the z's: after one step, z itself
        >>> np.round(w, 4)
        array([0.5, 1.5, 2.5, 3.5], dtype=float32)
        >>> opt.swap_to_train()

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.0025.
        beta_1: the interpolation weight between `x` and `z` in `y` (the role of momentum).
            Defaults to 0.9.
        beta_2: decay rate of the second-moment estimate. Defaults to 0.999.
        epsilon: added to the bias-corrected `sqrt(v)`. Defaults to 1e-8.
        warmup_steps: an int; the learning rate grows linearly over the first `warmup_steps`
            steps (`t / warmup_steps` of its value at step t). 0 (or less) means no warmup.
            Defaults to 0.
        {{base_optimizer_keyword_args}}
        {{base_optimizer_kwargs}}
    """

    # A warmup of 0 steps or fewer is none (the kernel takes a count).
    _elementwise = True
    _rule = NativeRule(
        _native.schedule_free_adamw, warmup_steps=lambda opt: max(int(opt.warmup_steps), 0)
    )
    _slot_groups = (SlotGroup("momentum", "velocity"),)

    def __init__(
        self,
        learning_rate: Any = 0.0025,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        warmup_steps: int = 0,
        weight_decay: Optional[float] = None,
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: Optional[int] = None,
        loss_scale_factor: Optional[float] = None,
        gradient_accumulation_steps: Optional[int] = None,
        name: Optional[str] = "schedule_free_adamw",
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
        # The kernel takes an integer step count (Keras would also take a float).
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)):
            raise ValueError(
                f"Argument `warmup_steps` must be an integer. Received: warmup_steps={warmup_steps}"
            )
        self._set_hyperparameters(
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, warmup_steps=warmup_steps
        )

    # The constructor's own arguments, kept by `_set_hyperparameters`.
    beta_1: float
    beta_2: float
    epsilon: float
    warmup_steps: int

    def build(self, var_list: ParamsArg) -> None:
        """Create the `momentum` and `velocity` slots (interleaved), then start each `momentum`
        (z) at a copy of its variable.

        Args:
            var_list: the variables (list, tuple or dict name -> array).
        """
        if self.built:
            return
        super().build(var_list)
        for momentum, variable in zip(self._slot_kinds["momentum"], self._trainable_variables):
            np.copyto(momentum, variable)

    def swap_to_train(self) -> None:
        """Put the variables back at the training point: `y = (1 - beta_1) * z + beta_1 * x`,
        where each variable holds `x` (after `swap_to_eval`). A no-op before `build`."""
        if not self.built:
            return
        for variable, z in zip(self._trainable_variables, self._slot_kinds["momentum"]):
            T = variable.dtype.type
            beta_1 = T(self.beta_1)
            with np.errstate(all="ignore"):
                variable[...] = (T(1) - beta_1) * z + beta_1 * variable

    def swap_to_eval(self) -> None:
        """Move the variables to the evaluation point, the average `x = (y - (1 - beta_1) * z)
        / beta_1`, where each variable holds `y` (training). A no-op before `build`."""
        if not self.built:
            return
        for variable, z in zip(self._trainable_variables, self._slot_kinds["momentum"]):
            T = variable.dtype.type
            beta_1 = T(self.beta_1)
            with np.errstate(all="ignore"):
                variable[...] = (variable - (T(1) - beta_1) * z) / beta_1

    def train(self) -> None:
        """Alias of `swap_to_train()`."""
        self.swap_to_train()

    def eval(self) -> None:
        """Alias of `swap_to_eval()`."""
        self.swap_to_eval()
