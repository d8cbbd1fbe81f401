"""The cross-cutting parts of a step, for update rules that do not run in one fused kernel.

Adafactor's factored second moment and Muon's Newton-Schulz orthogonalization reduce over whole
tensors, so neither is an element-wise kernel. Their classes mix `Unfused` in: the base class
then hands `_update_step` the call's cross-cutting parts as a typed `StepParts` record instead
of one native StepOptions (`Unfused._rule_options`), and the parts of the step around the rule
run here, in Keras's order:

1. unscale, accumulate, clip: by the kernels themselves (`_native.transform_gradients` writes
   the gradients a fused rule would receive into scratch arrays), so the norms, the NaN rules
   and the accumulator reset are the same arithmetic as every fused optimizer's. An
   accumulation-only call stops there.
2. decoupled weight decay, `w - w * wd * lr` in the variable's dtype (NumPy, `decay`);
3. the rule (the class);
4. EMA: `_native.ema`.

Calls without loss scaling, accumulation or clipping skip step 1 and read the gradients as
given, unless one is row-sparse (`IndexedSlices`): step 1 then writes its dense equivalent into
the scratch array, which is allocated once per variable, not per step.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ferroptim import _native
from ferroptim._indexed_slices import IndexedSlices
from ferroptim.optimizers._plan import StepParts
from ferroptim.optimizers._step import check_no_aliasing

__all__ = ["Unfused", "StepParts", "decay", "has_sparse", "sum_of_squares"]

# Elements per chunk of `sum_of_squares`: the chunk's squares stay in cache.
_CHUNK = 1 << 15


class Unfused:
    """Mixin (before `Optimizer` in the bases) for an optimizer whose rule runs, at least in
    part, outside the fused kernels: the plumbing of steps 1 to 4 (see the module docstring).

    Scratch memory and per-call caches are created on first use and left out of pickles.
    """

    # NumPy writes between native calls: an interrupted step cannot be resumed from the
    # count of completed native calls (see `Optimizer._transact`).
    _step_resumable = False
    # Attributes rebuilt on demand (`_transient`), never pickled.
    _TRANSIENT: Tuple[str, ...] = ("_unfused_calls", "_unfused_gradients")

    def __getstate__(self) -> Dict[str, Any]:
        state: Dict[str, Any] = super().__getstate__()  # type: ignore[assignment]
        for key in self._TRANSIENT:
            state.pop(key, None)
        return state

    def _rule_options(self, parts: StepParts) -> StepParts:
        """`_update_step` receives the cross-cutting parts as a `StepParts` record and applies
        them itself (see the module docstring)."""
        return parts

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
            found: List[int] = entry[1]
            return found
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
            check_no_aliasing([(names[i], g) for i, g in zip(indices, checked)], list(also_written))
        return checked

    def _transformed_gradients(
        self,
        indices: Sequence[int],
        grads: Sequence[np.ndarray],
        options: Optional[_native.StepOptions],
    ) -> List[np.ndarray]:
        """Step 1: the transformed gradients, in per-variable scratch arrays written by
        `_native.transform_gradients` with `options`.

        Args:
            indices: the built indices of the tensors.
            grads: their (checked) gradients.
            options: the gradient transforms (`StepParts.gradient_options`). In an
                accumulation-only call the scratch arrays are not written (their content is
                then meaningless).
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


def has_sparse(grads: Sequence[Any]) -> bool:
    """Whether any gradient is row-sparse (an `IndexedSlices`), which the rules written in
    NumPy read through `Unfused._transformed_gradients`."""
    return any(isinstance(g, IndexedSlices) for g in grads)


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
