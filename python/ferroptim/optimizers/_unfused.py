"""The cross-cutting parts of a step, for update rules that do not run in one fused kernel.

Adafactor's factored second moment and Muon's Newton-Schulz orthogonalization reduce over whole
tensors, so neither is an element-wise kernel. Their classes mix `Unfused` in: the base class
then hands `_update_step` the dict of StepOptions keyword arguments instead of a StepOptions
(see `Optimizer._fused_options`), and the parts of the step around the rule run here, in
Keras's order:

1. unscale, accumulate, clip: by the kernels themselves. A plain SGD step with learning rate -1
   on zeroed scratch arrays writes `0 - g * (-1)`, exactly the transformed gradient, so the
   norms, the NaN rules and the accumulator reset are the same arithmetic as every fused
   optimizer's. An accumulation-only call stops there.
2. decoupled weight decay, `w - w * wd * lr` in the variable's dtype (NumPy, `decay`);
3. the rule (the class);
4. EMA: `_native.ema`.

Calls without loss scaling, accumulation or clipping skip step 1 and read the gradients as
given.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ferroptim import _native
from ferroptim.optimizers.optimizer import _check_no_aliasing

__all__ = ["Unfused", "StepParts", "decay", "sum_of_squares"]

# The StepOptions keywords of the gradient transforms (step 1 above), besides the accumulators.
_GRADIENT_KEYS = ("loss_scale", "accumulation_steps", "accumulate_only")
_CLIP_KEYS = ("clipnorm", "global_clipnorm", "clipvalue", "clip_scale")
# Elements per chunk of `sum_of_squares`: the chunk's squares stay in cache.
_CHUNK = 1 << 15


class StepParts:
    """The StepOptions keyword arguments of one call (as `Optimizer._options` builds them),
    taken apart.

    Args:
        options: the dict, or None when no cross-cutting feature is on.
    """

    __slots__ = (
        "accumulate_only",
        "accumulators",
        "clip",
        "transforms",
        "weight_decay",
        "weight_decay_mask",
        "averages",
        "ema_momentum",
        "ema_overwrite",
    )

    def __init__(self, options: Optional[Dict[str, Any]]):
        options = options or {}
        self.accumulate_only = bool(options.get("accumulate_only", False))
        self.accumulators = options.get("accumulators")
        self.transforms = {k: options[k] for k in _GRADIENT_KEYS if k in options}
        # (keyword, value) of the one clipping rule of this call, or None.
        self.clip: Optional[Tuple[str, float]] = next(
            ((k, options[k]) for k in _CLIP_KEYS if k in options), None
        )
        self.weight_decay: Optional[float] = options.get("weight_decay")
        self.weight_decay_mask: Optional[List[bool]] = options.get("weight_decay_mask")
        self.averages: Optional[List[np.ndarray]] = options.get("averages")
        self.ema_momentum = float(options.get("ema_momentum", 0.0))
        self.ema_overwrite = bool(options.get("ema_overwrite", False))

    @property
    def transforms_gradients(self) -> bool:
        """Whether the gradients need step 1 (unscale, accumulate or clip)."""
        return bool(self.transforms) or self.clip is not None

    def decays(self, position: int) -> bool:
        """Whether the base weight decay applies to the call's tensor at `position`."""
        if self.weight_decay is None:
            return False
        return self.weight_decay_mask is None or self.weight_decay_mask[position]

    def gradient_kwargs(
        self,
        positions: Optional[Sequence[int]] = None,
        clip: Any = ...,
    ) -> Dict[str, Any]:
        """The StepOptions keyword arguments of step 1 for the call's tensors at `positions`.

        Args:
            positions: a subset of the call, in order (None: the whole call).
            clip: (keyword, value) replacing the call's clipping rule, None for no clipping;
                by default the call's rule.
        """
        kwargs: Dict[str, Any] = dict(self.transforms)
        if self.accumulators is not None:
            kwargs["accumulators"] = (
                self.accumulators
                if positions is None
                else [self.accumulators[k] for k in positions]
            )
        if clip is ...:
            clip = self.clip
        if clip is not None:
            kwargs[clip[0]] = clip[1]
        return kwargs

    def gradient_options(
        self, positions: Optional[Sequence[int]] = None, clip: Any = ...
    ) -> Optional[_native.StepOptions]:
        """`gradient_kwargs` as a StepOptions, or None when there is nothing to do."""
        kwargs = self.gradient_kwargs(positions, clip)
        return _native.StepOptions(**kwargs) if kwargs else None

    def ema_kwargs(self, positions: Optional[Sequence[int]] = None) -> Dict[str, Any]:
        """The StepOptions keyword arguments of step 4 for the call's tensors at `positions`."""
        if self.averages is None:
            return {}
        averages = (
            self.averages if positions is None else [self.averages[k] for k in positions]
        )
        return {
            "averages": averages,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite": self.ema_overwrite,
        }

    def apply_ema(
        self, params: Sequence[np.ndarray], positions: Optional[Sequence[int]] = None
    ) -> None:
        """Step 4 for `params` (the call's tensors at `positions`; None: all of them)."""
        kwargs = self.ema_kwargs(positions)
        if kwargs:
            _native.ema(
                params, kwargs["averages"], kwargs["ema_momentum"], kwargs["ema_overwrite"]
            )


class Unfused:
    """Mixin (before `Optimizer` in the bases) for an optimizer whose rule runs, at least in
    part, outside the fused kernels: the plumbing of steps 1 to 4 (see the module docstring).

    Scratch memory and per-call caches are created on first use and left out of pickles.
    """

    _fused_options = False
    # Attributes rebuilt on demand (`_transient`), never pickled.
    _TRANSIENT: Tuple[str, ...] = ("_unfused_calls", "_unfused_gradients")

    def __getstate__(self) -> Dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        for key in self._TRANSIENT:
            state.pop(key, None)
        return state

    def _transient(self, key: str) -> Dict[Any, Any]:
        """The dict held in attribute `key`, created empty if missing."""
        value = self.__dict__.get(key)
        if value is None:
            value = self.__dict__[key] = {}
        return value

    def _call_indices(self, params: List[np.ndarray]) -> List[int]:
        """The built indices of a call's parameters.

        A group's lists are the same objects from step to step, so the answer is kept per
        list (by identity: the entry holds the list, so its id is not reused meanwhile).
        """
        calls = self._transient("_unfused_calls")
        entry = calls.get(id(params))
        if entry is not None and entry[0] is params:
            return entry[1]
        table = self._trainable_variables_indices  # type: ignore[attr-defined]
        indices = [table[id(p)] for p in params]
        if len(calls) >= 8:
            # Partial calls build new lists every step: keep only the recent ones.
            calls.clear()
        calls[id(params)] = (params, indices)
        return indices

    def _checked_gradients(
        self,
        indices: List[int],
        grads: Sequence[Any],
        also_written: Sequence[np.ndarray] = (),
    ) -> List[np.ndarray]:
        """Every check a native call makes before it writes (dtype, shape, writable parameter,
        aliasing with anything the step writes), for the whole call, before any array changes.

        Args:
            indices: the built indices of the call's tensors.
            grads: their gradients.
            also_written: arrays the step writes that are not in the slot table.

        Returns:
            The gradients as arrays (not yet cast to the parameters' dtypes).
        """
        calls = self._validate_calls([(None, indices, grads)])  # type: ignore[attr-defined]
        checked = list(calls[0][2])
        if also_written:
            names = self._trainable_variable_names  # type: ignore[attr-defined]
            _check_no_aliasing(
                [(names[i], g) for i, g in zip(indices, checked)], list(also_written)
            )
        return checked

    def _transformed_gradients(
        self,
        indices: Sequence[int],
        grads: Sequence[np.ndarray],
        options: _native.StepOptions,
        accumulate_only: bool = False,
    ) -> List[np.ndarray]:
        """Step 1: the transformed gradients, in per-variable scratch arrays written by
        `_native.transform_gradients` with `options`.

        Args:
            indices: the built indices of the tensors.
            grads: their (checked) gradients.
            options: the gradient transforms (`StepParts.gradient_options`).
            accumulate_only: the call only adds to the accumulators: the scratch arrays are
                not written (their content is then meaningless).
        """
        store = self._transient("_unfused_gradients")
        variables = self._trainable_variables  # type: ignore[attr-defined]
        out = []
        for i in indices:
            buffer = store.get(i)
            if buffer is None:
                buffer = store[i] = np.zeros(variables[i].shape, variables[i].dtype)
            out.append(buffer)
        _native.transform_gradients(out, grads, options)
        return out


def decay(w: np.ndarray, weight_decay: float, learning_rate: float, scratch: np.ndarray) -> None:
    """Keras's decoupled weight decay, `w - w * wd * lr`, in place, in w's dtype.

    Args:
        w: the variable.
        weight_decay, learning_rate: Python floats, rounded to w's dtype.
        scratch: an array of w's shape and dtype, overwritten.
    """
    T = w.dtype.type
    np.multiply(w, T(weight_decay), out=scratch)
    np.multiply(scratch, T(learning_rate), out=scratch)
    np.subtract(w, scratch, out=w)


def sum_of_squares(x: np.ndarray, scratch: np.ndarray) -> float:
    """The sum of x's squared elements, accumulated in float64.

    Keras sums in the working dtype; float64 accumulation gives the correctly rounded value a
    float32 sum approaches (any order of a float32 sum agrees with it to rounding). The squares
    are formed a cache-sized chunk at a time.

    Args:
        x: any array.
        scratch: a contiguous 1-D array of x's dtype with at least x.size elements (only the
            first min(x.size, 32768) are used when x is contiguous), overwritten.
    """
    if x.flags.c_contiguous or x.flags.f_contiguous:
        flat = np.ravel(x, order="K")  # a view: the elements in memory order
        squared = False
    else:
        flat = scratch[: x.size]
        np.multiply(x, x, out=flat.reshape(x.shape))
        squared = True
    total = 0.0
    for start in range(0, flat.size, _CHUNK):
        part = flat[start : start + _CHUNK]
        if not squared:
            part = np.multiply(part, part, out=scratch[: part.size])
        total += float(np.add.reduce(part, dtype=np.float64))
    return total
