"""Adafactor, as `keras.optimizers.Adafactor` (keras/src/optimizers/adafactor.py)."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ferroptim import _native
from ferroptim.optimizers._scalar_math import power
from ferroptim.optimizers._unfused import (
    _CHUNK,
    StepParts,
    Unfused,
    decay,
    has_sparse,
    sum_of_squares,
)
from ferroptim.optimizers.optimizer import (
    Optimizer,
    ParamsArg,
    check_hyperparameter,
)

__all__ = ["Adafactor"]


class Adafactor(Unfused, Optimizer, name="adafactor"):
    """Adafactor (Shazeer and Stern, 2018, https://arxiv.org/abs/1804.04235), as Keras 3 has it:
    a second-moment estimate that is factored into row and column statistics for variables of
    rank >= 2, no first moment.

    Update rule for a variable `w` with gradient `g`, `t = iterations + 1`, every operation in
    w's dtype; `RMS(x) = sqrt(mean(x**2))` over the whole tensor, `mean(x, a)` along axis a:

        rho_t = min(learning_rate, 1 / sqrt(t))
        alpha_t = max(epsilon_2, RMS(w)) * rho_t          (w after any weight decay)
        G = g**2 + epsilon_1
        beta_2_t = 1 - t**beta_2_decay                   (0 at t = 1: the first step takes G)
        rank >= 2 (the last two axes are factored, leading axes are a batch):
            r = beta_2_t * r + (1 - beta_2_t) * mean(G, -1)
            c = beta_2_t * c + (1 - beta_2_t) * mean(G, -2)
            v = (r / mean(r, -1))[..., :, None] * c[..., None, :]
        rank < 2:
            v = beta_2_t * v + (1 - beta_2_t) * G
        u = g / sqrt(v)
        w = w - alpha_t * (u / max(1, RMS(u) / clip_threshold))

    As in Keras, `relative_step` has no numerical effect: Keras caps the learning rate at
    `1 / sqrt(t)` when it is set, then takes the same minimum again unconditionally. Keras's
    Adafactor has no first moment, no `scale_parameter` switch (the scaling by RMS(w) is always
    on, floored by `epsilon_2`) and no warm-up initialization, unlike the paper's full algorithm
    and PyTorch's or Hugging Face's versions.

    Slots, variable by variable: `r` (shape `w.shape[:-1]`) and `c` (shape
    `w.shape[:-2] + w.shape[-1:]`), both named after the variable with no suffix, then
    `<name>_velocity` (w's shape, recomputed from r and c each step at rank >= 2). For a variable
    of rank < 2, `r` and `c` are scalar int32 zeros that are never used but are listed in
    `variables` (and saved) as Keras lists them.

    Numerics: every operation is in the variable's dtype, in Keras's order of operations; the
    sums behind each mean and RMS are accumulated in float64 and rounded once to that dtype
    (Keras sums in the dtype itself), so a float32 result agrees with Keras to float32 rounding
    rather than to the bit. The update of every C-contiguous variable of a dtype runs in one
    native call per step (`_native.adafactor`, whose results do not depend on the thread
    count); a strided variable (a view) is updated in place by the same operations in NumPy.
    Loss scaling, accumulation, clipping and the EMA run in the native kernels, weight decay in
    NumPy (see `ferroptim.optimizers._unfused`).

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> w = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
        >>> g = np.array([1.0, 6.0, 7.0, 2.0], dtype=np.float32)
        >>> opt = fo.optimizers.Adafactor(learning_rate=0.5)
        >>> _ = opt.apply_gradients([(g, w)])
        >>> np.round(w, 4)
        array([-0.3693,  0.6307,  1.6307,  2.6307], dtype=float32)

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.001.
        beta_2_decay: the exponent of the second-moment decay schedule. Defaults to -0.8.
        epsilon_1: added to the squared gradients. Defaults to 1e-30.
        epsilon_2: the floor of RMS(w) in the step size. Defaults to 1e-3.
        clip_threshold: the update is scaled down when its RMS exceeds this value (a part of
            Adafactor, independent of `clipnorm`, `clipvalue` and `global_clipnorm`). Defaults
            to 1.0.
        relative_step: kept for Keras compatibility; it changes nothing (see above). Defaults to
            True.
        {{base_optimizer_keyword_args}}
        {{base_optimizer_kwargs}}
    """

    _TRANSIENT = Unfused._TRANSIENT + ("_adafactor_work", "_adafactor_factored")

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_2_decay: float = -0.8,
        epsilon_1: float = 1e-30,
        epsilon_2: float = 0.001,
        clip_threshold: float = 1.0,
        relative_step: bool = True,
        weight_decay: Optional[float] = None,
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: Optional[int] = None,
        loss_scale_factor: Optional[float] = None,
        gradient_accumulation_steps: Optional[int] = None,
        name: Optional[str] = "adafactor",
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
        for argument, value in (
            ("beta_2_decay", beta_2_decay),
            ("epsilon_1", epsilon_1),
            ("epsilon_2", epsilon_2),
            ("clip_threshold", clip_threshold),
        ):
            check_hyperparameter(argument, value)
        self.beta_2_decay = beta_2_decay
        self.epsilon_1 = epsilon_1
        self.epsilon_2 = epsilon_2
        self.clip_threshold = clip_threshold
        self.relative_step = relative_step

    def build(self, var_list: ParamsArg) -> None:
        """Create the `r`, `c` and `velocity` slots, interleaved variable by variable.

        Args:
            var_list: the variables (list, tuple or dict name -> array).
        """
        if self.built:
            return
        super().build(var_list)
        rs: List[np.ndarray] = []
        cs: List[np.ndarray] = []
        vs: List[np.ndarray] = []
        for name, var in zip(self._trainable_variable_names, self._trainable_variables):
            # Keras names r and c after the variable, with no suffix.
            base = name.replace("/", "_").replace(":", "_")
            if var.ndim < 2:
                rs.append(self.add_variable((), "zeros", np.int32, base))
                cs.append(self.add_variable((), "zeros", np.int32, base))
            else:
                rs.append(self.add_variable(var.shape[:-1], "zeros", var.dtype, base))
                cs.append(
                    self.add_variable(var.shape[:-2] + var.shape[-1:], "zeros", var.dtype, base)
                )
            vs.append(self.add_variable_from_reference(var, "velocity"))
        self._slot_kinds.update({"r": rs, "c": cs, "velocity": vs})
        self._invalidate_plan()

    def _work(self, dtype: np.dtype) -> Tuple[np.ndarray, np.ndarray]:
        """A flat scratch array of the largest built variable of `dtype`, and a chunk-sized
        one, shared by every variable of that dtype (a step updates them one at a time)."""
        work = self._transient("_adafactor_work")
        entry = work.get(dtype)
        if entry is None:
            largest = max(v.size for v in self._trainable_variables if v.dtype == dtype)
            flat = np.empty(largest + _CHUNK, dtype)
            entry = work[dtype] = (flat[:largest], flat[largest:])
        return entry

    def _factored_scratch(self, index: int, r: np.ndarray, c: np.ndarray) -> Tuple[np.ndarray, ...]:
        """The small arrays of one factored variable's reductions: float64 sums of the rows,
        the columns and r, and their means in the variable's dtype."""
        factored = self._transient("_adafactor_factored")
        entry = factored.get(index)
        if entry is None:
            r_mean_shape = r.shape[:-1] + (1,)
            entry = factored[index] = (
                np.empty(r.shape, np.float64),
                np.empty(c.shape, np.float64),
                np.empty(r_mean_shape, np.float64),
                np.empty(r.shape, r.dtype),
                np.empty(c.shape, c.dtype),
                np.empty(r_mean_shape, r.dtype),
            )
        return entry

    def _update_step(
        self,
        params: List[np.ndarray],
        grads: Sequence[Any],
        slots: Dict[str, List[np.ndarray]],
        learning_rate: float,
        parts: StepParts,
    ) -> None:
        indices = self._call_indices(params)
        checked = self._checked_gradients(indices, grads)
        if parts.transforms_gradients or has_sparse(checked):
            checked = self._transformed_gradients(indices, checked, parts.gradient_options())
        if not parts.accumulate_only:
            t = self.iterations + 1
            # dtype -> the aligned lists (params, grads, r, c, velocities) of the native call.
            native: Dict[np.dtype, Tuple[List[Any], ...]] = {}
            strided = []
            for k, (w, g, r, c, v, i) in enumerate(
                zip(params, checked, slots["r"], slots["c"], slots["velocity"], indices)
            ):
                if parts.weight_decay is not None and parts.decays(k):
                    work = self._work(w.dtype)[0]
                    with np.errstate(all="ignore"):
                        decay(w, parts.weight_decay, learning_rate, work[: w.size].reshape(w.shape))
                if _native_layout(w, r, c, v):
                    lists = native.get(w.dtype)
                    if lists is None:
                        lists = native[w.dtype] = ([], [], [], [], [])
                    for lst, x in zip(lists, (w, g, r, c, v)):
                        lst.append(x)
                else:
                    strided.append((w, g, r, c, v, i))
            for dtype, (ws, gs, rs, cs, vs) in native.items():
                rho_t, beta_2_t, _, epsilon_1, epsilon_2, clip_threshold = self._step_scalars(
                    dtype.type, learning_rate, t
                )
                # Every argument is a value of the dtype, so the kernel's rounding is exact.
                _native.adafactor(
                    ws,
                    gs,
                    rs,
                    cs,
                    vs,
                    float(rho_t),
                    float(beta_2_t),
                    float(epsilon_1),
                    float(epsilon_2),
                    float(clip_threshold),
                )
            with np.errstate(all="ignore"):
                for w, g, r, c, v, i in strided:
                    work, chunk = self._work(w.dtype)
                    factored = self._factored_scratch(i, r, c) if w.ndim >= 2 else None
                    self._update_one(
                        w,
                        np.asarray(g, w.dtype),
                        r,
                        c,
                        v,
                        work,
                        chunk,
                        factored,
                        self._step_scalars(w.dtype.type, learning_rate, t),
                    )
        parts.apply_ema(params)

    def _step_scalars(self, T: type, learning_rate: float, t: int) -> Tuple[Any, ...]:
        """This step's scalars in dtype T: rho_t, beta_2_t, 1 - beta_2_t, epsilon_1, epsilon_2,
        clip_threshold.

        Keras's `min(lr, 1 / sqrt(t))` and `1 - t ** beta_2_decay` in T, with Python floats
        rounded to T after every operation: a float64 sqrt, division or subtraction of T's
        values rounded once to T is T's own operation (float64 has more than twice float32's
        precision), and Python floats cost far less per step than NumPy scalars.
        """
        local_step = float(T(t))
        cap = T(1.0 / float(T(math.sqrt(local_step))))
        lr = T(learning_rate)
        # `ops.minimum`: a NaN learning rate stays NaN.
        rho_t = lr if (lr < cap or lr != lr) else cap
        # t ** beta_2_decay, correctly rounded to T (never the C library's last bit).
        beta_2_t = T(1.0 - float(power(T(local_step), self.beta_2_decay)))
        return (
            rho_t,
            beta_2_t,
            T(1.0 - float(beta_2_t)),
            T(self.epsilon_1),
            T(self.epsilon_2),
            T(self.clip_threshold),
        )

    @staticmethod
    def _update_one(
        w: np.ndarray,
        g: np.ndarray,
        r: np.ndarray,
        c: np.ndarray,
        v: np.ndarray,
        work: np.ndarray,
        chunk: np.ndarray,
        factored: Optional[Tuple[np.ndarray, ...]],
        scalars: Tuple[Any, ...],
    ) -> None:
        """Keras's `update_step` for one variable, in place, in Keras's order of operations, in
        NumPy: the path of the variables `_native.adafactor` does not take (strided ones).

        `work` (flat, at least w.size elements) and `chunk` are scratch; `factored` holds the
        scratch of the row and column reductions (rank >= 2 only).
        """
        T = w.dtype.type
        rho_t, beta_2_t, one_minus_beta_2_t, epsilon_1, epsilon_2, clip_threshold = scalars
        n = w.size
        u = work[:n].reshape(w.shape)
        rms_w = np.sqrt(T(sum_of_squares(w, work)) / T(n))
        alpha_t = np.maximum(epsilon_2, rms_w) * rho_t
        if factored is not None:
            # v is recomputed from r and c below: until then it holds G.
            rows, cols = w.shape[-2], w.shape[-1]
            r_sum, c_sum, r_mean_sum, r_mean, c_mean, r_mean_mean = factored
            np.multiply(g, g, out=v)
            np.add(v, epsilon_1, out=v)
            np.add.reduce(v, axis=-1, dtype=np.float64, out=r_sum)
            np.copyto(r_mean, r_sum, casting="same_kind")
            np.divide(r_mean, T(cols), out=r_mean)
            np.multiply(r, beta_2_t, out=r)
            np.multiply(r_mean, one_minus_beta_2_t, out=r_mean)
            np.add(r, r_mean, out=r)
            np.add.reduce(v, axis=-2, dtype=np.float64, out=c_sum)
            np.copyto(c_mean, c_sum, casting="same_kind")
            np.divide(c_mean, T(rows), out=c_mean)
            np.multiply(c, beta_2_t, out=c)
            np.multiply(c_mean, one_minus_beta_2_t, out=c_mean)
            np.add(c, c_mean, out=c)
            np.add.reduce(r, axis=-1, dtype=np.float64, keepdims=True, out=r_mean_sum)
            np.copyto(r_mean_mean, r_mean_sum, casting="same_kind")
            np.divide(r_mean_mean, T(rows), out=r_mean_mean)
            np.divide(r, r_mean_mean, out=r_mean)
            np.multiply(r_mean[..., :, None], c[..., None, :], out=v)
        else:
            np.multiply(g, g, out=u)
            np.add(u, epsilon_1, out=u)
            np.multiply(v, beta_2_t, out=v)
            np.multiply(u, one_minus_beta_2_t, out=u)
            np.add(v, u, out=v)
        np.sqrt(v, out=u)
        np.divide(g, u, out=u)
        rms_u = np.sqrt(T(sum_of_squares(u, chunk)) / T(n))
        denominator = np.maximum(T(1), rms_u / clip_threshold)
        if denominator != 1:  # u / 1 is u, bit for bit (a NaN denominator divides)
            np.divide(u, denominator, out=u)
        if np.isfinite(alpha_t):
            # w - u_hat * alpha_t (Keras: w - alpha_t * u_hat, the same product), in one
            # native pass.
            _native.sgd([w], [u], None, float(alpha_t), 0.0, False, None)
        else:
            # A NaN or inf RMS(w), which the kernels refuse as a learning rate.
            np.multiply(u, alpha_t, out=u)
            np.subtract(w, u, out=w)

    def get_config(self) -> Dict[str, Any]:
        """The config: the base keys, then `beta_2_decay`, `epsilon_1`, `epsilon_2`,
        `clip_threshold`, `relative_step`."""
        config = super().get_config()
        config.update(
            {
                "beta_2_decay": self.beta_2_decay,
                "epsilon_1": self.epsilon_1,
                "epsilon_2": self.epsilon_2,
                "clip_threshold": self.clip_threshold,
                "relative_step": self.relative_step,
            }
        )
        return config


def _native_layout(w: np.ndarray, r: np.ndarray, c: np.ndarray, v: np.ndarray) -> bool:
    """Whether `_native.adafactor` can update this variable: it and its slots are C-contiguous
    and aligned (`r` and `c` only count at rank >= 2, where they are used)."""
    if not (w.flags.c_contiguous and w.flags.aligned and v.flags.c_contiguous):
        return False
    return w.ndim < 2 or (r.flags.c_contiguous and c.flags.c_contiguous)
