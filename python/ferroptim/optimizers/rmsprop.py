"""RMSprop, as `keras.optimizers.RMSprop` (keras/src/optimizers/rmsprop.py)."""

from __future__ import annotations

from typing import Any, Optional

from ferroptim import _native
from ferroptim.optimizers.optimizer import NativeRule, Optimizer, SlotGroup

__all__ = ["RMSprop"]


class RMSprop(Optimizer, name="rmsprop"):
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

    Examples:
        Keras's docstring example: loss `w**2 / 2`, so the gradient is `w`.


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
        {{base_optimizer_keyword_args}}
        lazy: with a row-sparse gradient (`ferroptim.IndexedSlices`), update only its rows: their
            slots and values take the rule (and the weight decay), every other row is left as
            it is. A different algorithm from Keras's (TensorFlow Addons' `LazyAdam`, PyTorch's
            `SparseAdam`); it cannot be combined with `gradient_accumulation_steps`. Dense
            gradients are unaffected. Defaults to False.
        {{base_optimizer_kwargs}}
    """

    _elementwise = True
    _rule = NativeRule(_native.rmsprop)
    # Three groups, not interleaved: `momentum` only with momentum, `average_gradient` only
    # when centered.
    _slot_groups = (
        SlotGroup("velocity"),
        SlotGroup("momentum", when=lambda opt: opt.momentum > 0),
        SlotGroup("average_gradient", when=lambda opt: opt.centered),
    )

    def __init__(
        self,
        learning_rate: Any = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: Optional[float] = 1e-7,
        centered: bool = False,
        weight_decay: Optional[float] = None,
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: Optional[int] = None,
        loss_scale_factor: Optional[float] = None,
        gradient_accumulation_steps: Optional[int] = None,
        name: Optional[str] = "rmsprop",
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
        self._set_hyperparameters(rho=rho, momentum=momentum, epsilon=epsilon, centered=centered)

    # The constructor's own arguments, kept by `_set_hyperparameters`.
    rho: float
    momentum: float
    epsilon: float
    centered: bool
