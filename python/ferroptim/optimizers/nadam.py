"""Nadam, as `keras.optimizers.Nadam` (keras/src/optimizers/nadam.py)."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from ferroptim import _native
from ferroptim.optimizers._scalar_math import power
from ferroptim.optimizers.optimizer import (
    NativeRule,
    Optimizer,
    ParamsArg,
    SlotGroup,
    check_hyperparameter,
)

__all__ = ["Nadam"]


class Nadam(Optimizer, name="nadam"):
    """Nadam (Dozat, 2016, "Incorporating Nesterov Momentum into Adam",
    http://cs229.stanford.edu/proj2015/054_report.pdf): Adam with Nesterov momentum and
    Dozat's momentum schedule.

    Update rule for a variable `w` with gradient `g`, with `t = iterations + 1`. Once per step,
    before any variable is updated, the product of the momentum cache advances:

        u_t = beta_1 * (1 - 0.5 * 0.96**t);   u_next = beta_1 * (1 - 0.5 * 0.96**(t + 1))
        u_product = u_product * u_t               (starts at 1.0: the product of u_1 .. u_t)

    then, for every variable:

        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        m_hat = u_next * m / (1 - u_product * u_next) + (1 - u_t) * g / (1 - u_product)
        v_hat = v / (1 - beta_2**t)
        w = w - learning_rate * m_hat / (sqrt(v_hat) + epsilon)

    `epsilon` is added to the bias-corrected `sqrt(v_hat)` (unlike Adam's "epsilon hat"). The
    product is one more optimizer variable, after all the slots in `variables`, kept in the dtype
    of the first variable the optimizer was built with. It advances only on steps that update,
    not on calls that only accumulate gradients.

    Keras 2's `schedule_decay` (0.004 in Keras 2) is accepted: when given, every `0.96**t` above
    becomes `0.96**(t * schedule_decay)`. Keras 3 and tf.keras 2.11+ use `0.96**t`, the same as
    `schedule_decay=1.0`.

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> w = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
        >>> opt = fo.optimizers.Nadam(learning_rate=0.5)
        >>> _ = opt.apply_gradients([(np.array([1.0, 6.0, 7.0, 2.0], dtype=np.float32), w)])
        >>> np.round(w, 4)
        array([0.4686, 1.4686, 2.4686, 3.4686], dtype=float32)

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.001.
        beta_1: decay rate of the first-moment estimate, and the scale of the momentum cache.
            Defaults to 0.9.
        beta_2: decay rate of the second-moment estimate. Defaults to 0.999.
        epsilon: added to `sqrt(v_hat)`. Defaults to 1e-7; None (Keras 2) also means 1e-7.
        {{base_optimizer_keyword_args}}
        lazy: with a row-sparse gradient (`ferroptim.IndexedSlices`), update only its rows: their
            slots and values take the rule (and the weight decay), every other row is left as
            it is. A different algorithm from Keras's (TensorFlow Addons' `LazyAdam`, PyTorch's
            `SparseAdam`); it cannot be combined with `gradient_accumulation_steps`. Dense
            gradients are unaffected. Defaults to False.
        **kwargs: Keras 2's `schedule_decay` (a float: the exponent scale of the momentum
            cache; reported by `get_config` only when given), and the base class's Keras 2
            spellings `lr` and `decay` (see `Optimizer`).
    """

    # The momentum-cache product advances once per update step (see `Optimizer._step`).
    _has_step_state = True

    # The momentum-cache product of this step (see `_begin_update_step`); Keras 3 has no
    # `schedule_decay`, which is then 1.
    _elementwise = True
    _rule = NativeRule(
        _native.nadam,
        u_product=lambda opt: float(opt._u_product_next),
        schedule_decay=lambda opt: 1.0 if opt.schedule_decay is None else opt.schedule_decay,
    )
    _slot_groups = (SlotGroup("momentum", "velocity"),)

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
        name: Optional[str] = "nadam",
        lazy: bool = False,
        **kwargs: Any,
    ):
        schedule_decay = kwargs.pop("schedule_decay", None)
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
        # Keras 2's argument, reported by `get_config` only when given.
        check_hyperparameter("schedule_decay", schedule_decay)
        self.schedule_decay = schedule_decay

    # The constructor's own arguments, kept by `_set_hyperparameters`.
    beta_1: float
    beta_2: float
    epsilon: float

    def build(self, var_list: ParamsArg) -> None:
        """Create the `momentum` and `velocity` slots (interleaved), then the scalar
        momentum-cache product (1.0, in the dtype of the first variable; float32 for an empty
        list).

        Args:
            var_list: the variables (list, tuple or dict name -> array).
        """
        if self.built:
            return
        super().build(var_list)
        # Keras leaves this variable unnamed (it gets a session-dependent automatic name,
        # "variable", "variable_1", ...); it is named here after Keras's attribute.
        variables = self._trainable_variables
        dtype = variables[0].dtype if variables else np.float32
        self._u_product = self.add_variable((), initializer="ones", dtype=dtype, name="u_product")
        # The value the kernels get; a call that only accumulates gradients does not read it.
        self._u_product_next = self._u_product[()]

    def _begin_update_step(self, iterations: int) -> None:
        # Keras's `_backend_update_step`: (u_product * beta_1) * (1 - 0.5 * 0.96**t), every
        # operation in the dtype of u_product; the power correctly rounded, so the state is the
        # same on every CPU (NumPy's float32 `power` is not).
        T = self._u_product.dtype.type
        exponent = T(iterations + 1)
        if self.schedule_decay is not None:
            exponent = exponent * T(self.schedule_decay)
        with np.errstate(all="ignore"):
            cache = T(1.0) - T(0.5) * power(T(0.96), exponent)
            self._u_product_next = self._u_product[()] * T(self.beta_1) * cache

    def _end_update_step(self) -> None:
        self._u_product[()] = self._u_product_next

    def get_config(self) -> Dict[str, Any]:
        """The config: the base keys, then `beta_1`, `beta_2`, `epsilon`, and
        `schedule_decay` when it was given."""
        config = super().get_config()
        if self.schedule_decay is not None:
            config["schedule_decay"] = self.schedule_decay
        return config
