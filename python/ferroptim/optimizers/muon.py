"""Muon, as `keras.optimizers.Muon` (keras/src/optimizers/muon.py, the version of Keras 3.13
and later)."""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Sequence, cast

import numpy as np

from ferroptim import _native
from ferroptim.optimizers._unfused import StepParts, Unfused, decay, has_sparse
from ferroptim.optimizers.optimizer import (
    Optimizer,
    ParamsArg,
    check_hyperparameter,
)

__all__ = ["Muon"]


class Muon(Unfused, Optimizer, name=None):
    """Muon (Jordan et al., 2024, https://github.com/KellerJordan/Muon; Liu et al., 2025,
    https://arxiv.org/abs/2502.16982): momentum SGD whose update is orthogonalized by a
    Newton-Schulz iteration, for the 2-D weight matrices of a model; every other variable is
    trained by AdamW.

    Routing (decided once, at build): a variable takes the AdamW path when its rank is not 2,
    when `exclude_embeddings` is set and "embedding" is in its name (lower-cased), or when
    `re.search(keyword, name)` matches for a keyword of `exclude_layers`; otherwise the Muon
    path. Names are the keys of a dict of parameters (`variable_0`, `variable_1`, ... for a
    list), which play the part of Keras's variable paths.

    Muon path, for `w` with gradient `g` (every operation in w's dtype):

        m = m + (g + m * (momentum - 1))                 (that is, momentum * m + g)
        G = g + momentum * m if nesterov else m
        O = NS(G)                                        (Newton-Schulz, `ns_steps` iterations)
        u = learning_rate * O
        u = u * sqrt(max(rows, cols)) * rms_rate        (unless rms_rate is None)
        w = w - u

    with NS(X): transpose X when it has more rows than columns; X = X / (||X||_F + 1e-7); then
    `ns_steps` times `A = X X^T; B = muon_b * A + muon_c * A A; X = muon_a * X + B X`; transpose
    back. AdamW path: Adam (no amsgrad) with learning rate `learning_rate * adam_lr_ratio`,
    `adam_beta_1`, `adam_beta_2` and `epsilon`.

    Weight decay, `w = w - w * wd * learning_rate` before the update, takes `adam_weight_decay`
    on the AdamW path and `weight_decay` on the Muon path (None: none on that path), always with
    the base learning rate (not multiplied by `adam_lr_ratio`); `exclude_from_weight_decay`
    applies to both. The other base arguments (clipping, EMA, loss scale, accumulation) apply to
    both paths alike; `global_clipnorm` uses the norm of every gradient of the step.

    Slots, variable by variable: `<name>_momentum` for every variable, followed, for an AdamW-path
    variable only, by `<name>_velocity`.

    The AdamW path runs in the fused Adam kernel (weight decay, loss scaling, accumulation,
    clipping and EMA included). The Muon path runs its element-wise steps in NumPy and NS in the
    native matrix kernel (`_native.newton_schulz`, multithreaded); its loss scaling,
    accumulation, clipping and EMA run in the native kernels too (see
    `ferroptim.optimizers._unfused`). NS's matrix products round differently from Keras's, so
    float32 results agree with Keras to a few units of float32 rounding, not to the bit.

    Examples:
        >>> import numpy as np
        >>> import ferroptim as fo
        >>> params = {"dense/kernel": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32),
        ...           "dense/bias": np.array([1.0, 2.0], np.float32)}
        >>> grads = {"dense/kernel": np.array([[1.0, 6.0], [7.0, 2.0]], np.float32),
        ...          "dense/bias": np.array([1.0, 6.0], np.float32)}
        >>> opt = fo.optimizers.Muon(learning_rate=0.5, weight_decay=None, adam_weight_decay=None)
        >>> opt.apply(grads, params)
        >>> np.round(params["dense/kernel"], 3)              # Muon path
        array([[0.989, 1.887],
               [2.873, 3.97 ]], dtype=float32)
        >>> np.round(params["dense/bias"], 3)                # AdamW path (1-D)
        array([0.5, 1.5], dtype=float32)

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or a callable taking no argument.
            Defaults to 0.001.
        adam_beta_1: Adam's first-moment decay rate on the AdamW path. Defaults to 0.9.
        adam_beta_2: Adam's second-moment decay rate on the AdamW path. Defaults to 0.999.
        adam_weight_decay: the decoupled weight decay of the AdamW path, or None. Defaults to
            0.004.
        epsilon: Adam's "epsilon hat" on the AdamW path. Defaults to 1e-7.
        weight_decay: the decoupled weight decay of the Muon path, or None. Defaults to 0.004.
        {{base_optimizer_keyword_args}}
        exclude_layers: a list of regular expressions; a variable whose name one of them
            matches (`re.search`) takes the AdamW path. Defaults to None (no keyword).
        exclude_embeddings: whether variables with "embedding" in their name take the AdamW
            path. Defaults to True.
        muon_a: the coefficient `a` of the quintic Newton-Schulz iteration. Defaults to
            3.4445.
        muon_b: the coefficient `b` of the quintic Newton-Schulz iteration. Defaults to
            -4.7750.
        muon_c: the coefficient `c` of the quintic Newton-Schulz iteration. Defaults to
            2.0315.
        adam_lr_ratio: the AdamW path's learning rate is `learning_rate * adam_lr_ratio`.
            Defaults to 1.
        momentum: the momentum of the Muon path. Defaults to 0.95.
        ns_steps: the number of Newton-Schulz iterations (an int >= 0). Defaults to 5.
        nesterov: whether the Muon path uses Nesterov momentum. Defaults to True.
        rms_rate: the Muon update is scaled by `sqrt(max(rows, cols)) * rms_rate` (Moonlight's
            scaling, matching AdamW's update RMS), or not scaled when None. Defaults to 0.2.
        {{base_optimizer_kwargs}}
    """

    _TRANSIENT = Unfused._TRANSIENT + ("_muon_work",)

    def __init__(
        self,
        learning_rate: Any = 0.001,
        adam_beta_1: float = 0.9,
        adam_beta_2: float = 0.999,
        adam_weight_decay: Optional[float] = 0.004,
        epsilon: float = 1e-7,
        weight_decay: Optional[float] = 0.004,
        clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: Optional[int] = None,
        loss_scale_factor: Optional[float] = None,
        gradient_accumulation_steps: Optional[int] = None,
        name: Optional[str] = None,
        exclude_layers: Optional[List[str]] = None,
        exclude_embeddings: bool = True,
        muon_a: float = 3.4445,
        muon_b: float = -4.7750,
        muon_c: float = 2.0315,
        adam_lr_ratio: float = 1,
        momentum: float = 0.95,
        ns_steps: int = 5,
        nesterov: bool = True,
        rms_rate: Optional[float] = 0.2,
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
            ("adam_beta_1", adam_beta_1),
            ("adam_beta_2", adam_beta_2),
            ("adam_weight_decay", adam_weight_decay),
            ("epsilon", epsilon),
            ("muon_a", muon_a),
            ("muon_b", muon_b),
            ("muon_c", muon_c),
            ("adam_lr_ratio", adam_lr_ratio),
            ("momentum", momentum),
            ("rms_rate", rms_rate),
        ):
            check_hyperparameter(argument, value)
        # The kernel takes a count; Keras would fail at the first step on anything else.
        if (
            not isinstance(ns_steps, (int, np.integer))
            or isinstance(ns_steps, bool)
            or not 0 <= ns_steps < 2**31
        ):
            raise ValueError(
                f"Argument `ns_steps` must be an integer >= 0. Received: ns_steps={ns_steps}"
            )
        self.adam_beta_1 = adam_beta_1
        self.adam_beta_2 = adam_beta_2
        self.adam_weight_decay = adam_weight_decay
        self.epsilon = epsilon
        self.exclude_layers = exclude_layers or []
        self.exclude_embeddings = exclude_embeddings
        self.muon_a = muon_a
        self.muon_b = muon_b
        self.muon_c = muon_c
        self.adam_lr_ratio = adam_lr_ratio
        self.momentum = momentum
        self.ns_steps = int(ns_steps)
        self.nesterov = nesterov
        self.rms_rate = rms_rate

    def _should_use_adamw(self, name: str, variable: np.ndarray) -> bool:
        """Keras's routing rule (see the class docstring)."""
        if variable.ndim != 2:
            return True
        if self.exclude_embeddings and "embedding" in name.lower():
            return True
        return any(re.search(keyword, name) for keyword in self.exclude_layers)

    def build(self, var_list: ParamsArg) -> None:
        """Route every variable, then create `momentum` for each and `velocity` right after it
        for the AdamW-path ones.

        Args:
            var_list: the variables (list, tuple or dict name -> array).
        """
        if self.built:
            return
        super().build(var_list)
        self._uses_adamw: List[bool] = []
        momentums: List[np.ndarray] = []
        # By built index; None on the Muon path (so not a slot list of the base class).
        self._velocities: List[Optional[np.ndarray]] = []
        for name, var in zip(self._trainable_variable_names, self._trainable_variables):
            adamw = self._should_use_adamw(name, var)
            self._uses_adamw.append(adamw)
            momentums.append(self.add_variable_from_reference(var, "momentum"))
            self._velocities.append(
                self.add_variable_from_reference(var, "velocity") if adamw else None
            )
        self._slot_kinds["momentum"] = momentums
        self._invalidate_plan()

    def _update_step(
        self,
        params: List[np.ndarray],
        grads: Sequence[Any],
        slots: Dict[str, List[np.ndarray]],
        learning_rate: float,
        parts: StepParts,
    ) -> None:
        indices = self._call_indices(params)
        velocities = [self._velocities[i] for i in indices]
        checked = self._checked_gradients(indices, grads, [v for v in velocities if v is not None])
        adam = [k for k, v in enumerate(velocities) if v is not None]
        muon = [k for k, v in enumerate(velocities) if v is None]
        adam_clip = muon_clip = parts.clip
        if parts.clip is not None and parts.clip[0] == "global_clipnorm" and adam and muon:
            # One norm over both paths, computed once in float64; both paths scale by it.
            scale = self._global_clip_scale(
                [
                    (None, [indices[k] for k in positions], [checked[k] for k in positions])
                    for positions in (adam, muon)
                ],
                parts.clip[1],
            )
            adam_clip = muon_clip = ("clip_scale", scale)
        if adam:
            self._adamw_step(
                params, checked, slots, velocities, indices, adam, learning_rate, parts, adam_clip
            )
        if muon:
            self._muon_step(params, checked, slots, indices, muon, learning_rate, parts, muon_clip)

    def _adamw_step(
        self,
        params: List[np.ndarray],
        grads: List[np.ndarray],
        slots: Dict[str, List[np.ndarray]],
        velocities: List[Optional[np.ndarray]],
        indices: List[int],
        positions: List[int],
        learning_rate: float,
        parts: StepParts,
        clip: Any,
    ) -> None:
        """The AdamW path, for the call's tensors at `positions`: one fused Adam call."""
        kwargs = parts.gradient_kwargs(positions, clip)
        if self.adam_weight_decay is not None:
            mask = [self._use_weight_decay(indices[k]) for k in positions]
            if any(mask):
                kwargs["weight_decay"] = float(self.adam_weight_decay)
                # Decay with the base rate; the update uses the scaled one.
                kwargs["weight_decay_learning_rate"] = learning_rate
                if not all(mask):
                    kwargs["weight_decay_mask"] = mask
        kwargs.update(parts.ema_kwargs(positions))
        # Keras multiplies its float32 learning rate by the ratio in float32.
        adam_lr = float(np.float32(learning_rate) * np.float32(self.adam_lr_ratio))
        momentums = slots["momentum"]
        _native.adam(
            [params[k] for k in positions],
            [grads[k] for k in positions],
            [momentums[k] for k in positions],
            [cast(np.ndarray, velocities[k]) for k in positions],
            None,
            adam_lr,
            self.adam_beta_1,
            self.adam_beta_2,
            self.epsilon,
            self.iterations,
            _native.StepOptions(**kwargs) if kwargs else None,
        )

    def _muon_step(
        self,
        params: List[np.ndarray],
        grads: List[np.ndarray],
        slots: Dict[str, List[np.ndarray]],
        indices: List[int],
        positions: List[int],
        learning_rate: float,
        parts: StepParts,
        clip: Any,
    ) -> None:
        """The Muon path, for the call's tensors at `positions`."""
        ws = [params[k] for k in positions]
        built = [indices[k] for k in positions]
        gs: Sequence[Any] = [grads[k] for k in positions]
        gradient_options = parts.gradient_options(positions, clip)
        if gradient_options is not None or has_sparse(gs):
            gs = self._transformed_gradients(built, gs, gradient_options)
        if not parts.accumulate_only:
            momentums = slots["momentum"]
            with np.errstate(all="ignore"):
                for w, g, m, i in zip(ws, gs, (momentums[k] for k in positions), built):
                    buffer = self._work(w.dtype)[: w.size].reshape(w.shape)
                    if self.weight_decay is not None and self._use_weight_decay(i):
                        decay(w, self.weight_decay, learning_rate, buffer)
                    self._muon_update(w, np.asarray(g, w.dtype), m, buffer, learning_rate)
        parts.apply_ema(ws, positions)

    def _work(self, dtype: np.dtype) -> np.ndarray:
        """A flat scratch array of the largest Muon-path variable of `dtype`, shared by all of
        them (a step updates them one at a time)."""
        work = self._transient("_muon_work")
        flat = work.get(dtype)
        if flat is None:
            largest = max(
                v.size
                for v, adamw in zip(self._trainable_variables, self._uses_adamw)
                if v.dtype == dtype and not adamw
            )
            flat = work[dtype] = np.empty(largest, dtype)
        return flat

    def _muon_update(
        self,
        w: np.ndarray,
        g: np.ndarray,
        m: np.ndarray,
        scratch: np.ndarray,
        learning_rate: float,
    ) -> None:
        """Keras's Muon `update_step` for one variable, in place, in Keras's order of
        operations (`scratch`: an array of w's shape and dtype, overwritten)."""
        T = w.dtype.type
        np.multiply(m, T(self.momentum - 1), out=scratch)
        np.add(g, scratch, out=scratch)
        np.add(m, scratch, out=m)
        if self.nesterov:
            np.multiply(m, T(self.momentum), out=scratch)
            np.add(g, scratch, out=scratch)
            x = scratch
        else:
            x = m
        update = _native.newton_schulz(x, self.ns_steps, self.muon_a, self.muon_b, self.muon_c)
        np.multiply(update, T(learning_rate), out=update)
        if self.rms_rate is not None:
            np.multiply(update, T(math.sqrt(max(w.shape))), out=update)
            np.multiply(update, T(self.rms_rate), out=update)
        np.subtract(w, update, out=w)

    def zeropower_via_newtonschulz5(self, x: Any, steps: int) -> np.ndarray:
        """Keras's Newton-Schulz orthogonalization with this optimizer's `muon_a`, `muon_b`,
        `muon_c`, over the last two axes of `x` (leading axes are a batch).

        Args:
            x: an array-like of rank >= 2. A float32 or float64 array keeps its dtype; anything
                else (a nested list included) is computed in float32, Keras's default float
                type.
            steps: the number of iterations (an int >= 0).

        Returns:
            A new array of x's shape.
        """
        if not (isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)):
            x = np.asarray(x, dtype=np.float32)
        if x.ndim < 2:
            raise ValueError(
                f"`zeropower_via_newtonschulz5` needs an array of rank >= 2. Received shape "
                f"{x.shape}"
            )
        out = np.empty(x.shape, x.dtype)
        for index in np.ndindex(x.shape[:-2]):
            out[index] = _native.newton_schulz(
                np.ascontiguousarray(x[index]), steps, self.muon_a, self.muon_b, self.muon_c
            )
        return out

    def get_config(self) -> Dict[str, Any]:
        """The config: the base keys, then Keras's Muon keys (`adam_beta_1`, `adam_beta_2`,
        `epsilon`, `exclude_layers`, `muon_a`, `muon_b`, `muon_c`, `adam_lr_ratio`,
        `momentum`, `ns_steps`, `nesterov`, `exclude_embeddings`, `adam_weight_decay`,
        `rms_rate`)."""
        config = super().get_config()
        config.update(
            {
                "adam_beta_1": self.adam_beta_1,
                "adam_beta_2": self.adam_beta_2,
                "epsilon": self.epsilon,
                "exclude_layers": self.exclude_layers,
                "muon_a": self.muon_a,
                "muon_b": self.muon_b,
                "muon_c": self.muon_c,
                "adam_lr_ratio": self.adam_lr_ratio,
                "momentum": self.momentum,
                "ns_steps": self.ns_steps,
                "nesterov": self.nesterov,
                "exclude_embeddings": self.exclude_embeddings,
                "adam_weight_decay": self.adam_weight_decay,
                "rms_rate": self.rms_rate,
            }
        )
        return config
