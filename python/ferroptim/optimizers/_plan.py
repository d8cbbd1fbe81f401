"""The step plan: what a step passes to the kernels, derived once from the built optimizer.

Python decides everything that is per call or per tensor (the one clipping rule that applies,
the weight-decay mask, the lists of slots, accumulators and averages aligned by tensor) and the
kernels do every per-element operation. All of those lists are built once, when the optimizer
is first used after `build` (`build_plan`), so the common step costs one identity check, one
learning-rate read and one native call. A hyperparameter the plan depends on is a
`PlanAttribute`: assigning it drops the plan, and the next step builds a new one.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ferroptim import _native

__all__ = ["NO_PLAN", "VARYING", "Group", "PlanAttribute", "StepParts", "StepPlan", "build_plan"]

# `StepPlan.fast_options` when the options of a full step change from one call to the next.
VARYING: Any = object()


class PlanAttribute:
    """A hyperparameter that the plan depends on: assigning it drops the plan.

    Keras reads these attributes at every step, so a user may change them between steps; the
    plan caches what they imply, hence the invalidation.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: Any, objtype: Optional[type] = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__[self.slot]

    def __set__(self, obj: Any, value: Any) -> None:
        # Between steps: a step that another thread is running reads one consistent set of
        # hyperparameters and keeps its plan.
        obj._run_exclusive(self._assign, obj, value)

    def _assign(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = value
        obj._invalidate_plan()


class StepParts:
    """The cross-cutting parts of one native call of a step, in Keras's order: unscale by the
    loss scale, accumulate, clip (`clip`: the one rule that applies, as `(keyword, value)`),
    decoupled weight decay, then, after the rule, the EMA; and whether a row-sparse gradient
    updates its rows only (`lazy`).

    A fused rule receives them as one `_native.StepOptions` (`native()`); a rule that runs in
    part outside the kernels (`_unfused.Unfused`) receives this record and applies them itself.
    Lists (accumulators, averages, the weight-decay mask) are aligned with the call's tensors.
    """

    __slots__ = (
        "loss_scale",
        "accumulators",
        "accumulation_steps",
        "accumulate_only",
        "clip",
        "weight_decay",
        "weight_decay_mask",
        "averages",
        "ema_momentum",
        "ema_overwrite",
        "lazy",
    )

    def __init__(
        self,
        loss_scale: Optional[float] = None,
        accumulators: Optional[List[np.ndarray]] = None,
        accumulation_steps: int = 0,
        accumulate_only: bool = False,
        clip: Optional[Tuple[str, float]] = None,
        weight_decay: Optional[float] = None,
        weight_decay_mask: Optional[List[bool]] = None,
        averages: Optional[List[np.ndarray]] = None,
        ema_momentum: float = 0.0,
        ema_overwrite: bool = False,
        lazy: bool = False,
    ):
        self.loss_scale = loss_scale
        self.accumulators = accumulators
        self.accumulation_steps = accumulation_steps
        self.accumulate_only = accumulate_only
        self.clip = clip
        self.weight_decay = weight_decay
        self.weight_decay_mask = weight_decay_mask
        self.averages = averages
        self.ema_momentum = ema_momentum
        self.ema_overwrite = ema_overwrite
        self.lazy = lazy

    def native(self) -> Optional[_native.StepOptions]:
        """All of the parts as one StepOptions, or None when no part is on."""
        kwargs = self.gradient_kwargs()
        if self.weight_decay is not None:
            kwargs["weight_decay"] = self.weight_decay
            if self.weight_decay_mask is not None:
                kwargs["weight_decay_mask"] = self.weight_decay_mask
        kwargs.update(self.ema_kwargs())
        if self.lazy:
            kwargs["lazy"] = True
        return _native.StepOptions(**kwargs) if kwargs else None

    @property
    def transforms_gradients(self) -> bool:
        """Whether the gradients are transformed before the rule (unscale, accumulate or
        clip)."""
        return self.loss_scale is not None or self.accumulators is not None or self.clip is not None

    def decays(self, position: int) -> bool:
        """Whether the base weight decay applies to the call's tensor at `position`."""
        if self.weight_decay is None:
            return False
        return self.weight_decay_mask is None or self.weight_decay_mask[position]

    def gradient_kwargs(
        self, positions: Optional[Sequence[int]] = None, clip: Any = ...
    ) -> Dict[str, Any]:
        """The StepOptions keyword arguments of the gradient transforms (unscale, accumulate,
        clip) for the call's tensors at `positions`.

        Args:
            positions: a subset of the call, in order (None: the whole call).
            clip: (keyword, value) replacing the call's clipping rule, None for no clipping;
                by default the call's rule.
        """
        kwargs: Dict[str, Any] = {}
        if self.loss_scale is not None:
            kwargs["loss_scale"] = self.loss_scale
        if self.accumulators is not None:
            kwargs["accumulators"] = (
                self.accumulators
                if positions is None
                else [self.accumulators[k] for k in positions]
            )
            kwargs["accumulation_steps"] = self.accumulation_steps
            kwargs["accumulate_only"] = self.accumulate_only
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
        """The StepOptions keyword arguments of the EMA for the call's tensors at
        `positions`."""
        if self.averages is None:
            return {}
        averages = self.averages if positions is None else [self.averages[k] for k in positions]
        return {
            "averages": averages,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite": self.ema_overwrite,
        }

    def apply_ema(
        self, params: Sequence[np.ndarray], positions: Optional[Sequence[int]] = None
    ) -> None:
        """The EMA stage for `params` (the call's tensors at `positions`; None: all)."""
        kwargs = self.ema_kwargs(positions)
        if kwargs:
            _native.ema(params, kwargs["averages"], kwargs["ema_momentum"], kwargs["ema_overwrite"])


class Group:
    """The tensors of one native call: one dtype, lists aligned by tensor.

    Args:
        indices: positions of the tensors in the built variable list.
        params, names, slots, accumulators, averages: the aligned lists (slots by slot name).
        weight_decay: the decay passed to the kernel, None when no tensor of the group decays.
        weight_decay_mask: per-tensor flags, None when every tensor decays.
    """

    __slots__ = (
        "indices",
        "params",
        "names",
        "slots",
        "accumulators",
        "averages",
        "weight_decay",
        "weight_decay_mask",
        "options",
    )

    def __init__(
        self,
        indices: List[int],
        params: List[np.ndarray],
        names: List[str],
        slots: Dict[str, List[np.ndarray]],
        accumulators: Optional[List[np.ndarray]],
        averages: Optional[List[np.ndarray]],
        weight_decay: Optional[float],
        weight_decay_mask: Optional[List[bool]],
    ):
        self.indices = indices
        self.params = params
        self.names = names
        self.slots = slots
        self.accumulators = accumulators
        self.averages = averages
        self.weight_decay = weight_decay
        self.weight_decay_mask = weight_decay_mask
        # What `_update_step` receives for a full-group call, keyed by (accumulate_only,
        # ema_momentum, ema_overwrite).
        self.options: Dict[Tuple[bool, float, bool], Any] = {}


class StepPlan:
    """Everything a step derives from the built optimizer, held in one object so that one
    assignment drops all of it.

    Attributes:
        groups: one `Group` per dtype, in order of first appearance.
        keys: the built variable names, for the common step with dicts.
        fast_params, fast_slots, fast_names, fast_options: the common step's arguments when
            there is one group (else None); `fast_options` is `VARYING` when the options change
            from step to step (EMA, accumulation, per-step state).
        writable: every array a step over all variables writes, when there are several groups.
    """

    __slots__ = (
        "groups",
        "keys",
        "fast_params",
        "fast_slots",
        "fast_names",
        "fast_options",
        "writable",
    )

    def __init__(self, groups: List[Group], keys: Tuple[str, ...]):
        self.groups = groups
        self.keys = keys
        self.fast_params: Optional[List[np.ndarray]] = None
        self.fast_slots: Dict[str, List[np.ndarray]] = {}
        self.fast_names: List[str] = []
        self.fast_options: Any = VARYING
        self.writable: Optional[List[np.ndarray]] = None


# The plan of an optimizer that has none yet (unbuilt, or dropped): no group, no common step.
# An object rather than None, so the hot path reads `fast_params` without a test first.
NO_PLAN = StepPlan([], ())


def build_plan(optimizer: Any) -> StepPlan:
    """The plan of a built optimizer: its per-dtype groups with every list a step passes."""
    variables = optimizer._trainable_variables
    by_dtype: Dict[np.dtype, List[int]] = {}
    for i, v in enumerate(variables):
        by_dtype.setdefault(v.dtype, []).append(i)
    single = len(by_dtype) == 1

    def pick(lst: List[Any], indices: List[int]) -> List[Any]:
        return lst if single else [lst[i] for i in indices]

    groups = []
    for indices in by_dtype.values():
        weight_decay = None
        mask: Optional[List[bool]] = None
        if optimizer.weight_decay is not None:
            mask = [optimizer._use_weight_decay(i) for i in indices]
            if any(mask):
                weight_decay = float(optimizer.weight_decay)
            if all(mask) or not any(mask):
                mask = None
        groups.append(
            Group(
                indices,
                pick(variables, indices),
                pick(optimizer._trainable_variable_names, indices),
                {k: pick(v, indices) for k, v in optimizer._slot_kinds.items()},
                pick(optimizer._accumulated_gradients, indices)
                if optimizer._accumulation_steps
                else None,
                pick(optimizer._model_variables_moving_average, indices)
                if optimizer.use_ema
                else None,
                weight_decay,
                mask,
            )
        )
    plan = StepPlan(groups, tuple(optimizer._trainable_variable_names))
    if single:
        group = groups[0]
        plan.fast_slots = group.slots
        plan.fast_names = group.names
        if not (
            optimizer.use_ema
            or optimizer._accumulation_steps
            or optimizer._has_step_state
            or optimizer._reduce_sum_squares is not None
        ):
            factor = optimizer.loss_scale_factor
            scale = None if factor is None else float(factor)
            parts = step_parts(optimizer, group, None, False, 0.0, False, None, scale)
            plan.fast_options = optimizer._rule_options(parts)
        plan.fast_params = group.params
    else:
        plan.writable = written_arrays(optimizer, range(len(variables)))
    return plan


def written_arrays(optimizer: Any, indices: Any) -> List[np.ndarray]:
    """Every array a step over these built variables writes: parameters, slots, accumulators,
    moving averages."""
    out: List[np.ndarray] = []
    slot_kinds = optimizer._slot_kinds.values()
    for i in indices:
        out.append(optimizer._trainable_variables[i])
        for slots in slot_kinds:
            out.append(slots[i])
        if optimizer._accumulation_steps:
            out.append(optimizer._accumulated_gradients[i])
        if optimizer.use_ema:
            out.append(optimizer._model_variables_moving_average[i])
    return out


def clip_option(optimizer: Any) -> Optional[Tuple[str, float]]:
    """Keras's clipping precedence (`_clip_gradients`): the one rule that applies, as
    (StepOptions keyword, value), or None."""
    if optimizer.clipnorm and optimizer.clipnorm > 0:
        return "clipnorm", float(optimizer.clipnorm)
    if optimizer.global_clipnorm and optimizer.global_clipnorm > 0:
        return "global_clipnorm", float(optimizer.global_clipnorm)
    if optimizer.clipvalue and optimizer.clipvalue > 0:
        return "clipvalue", float(optimizer.clipvalue)
    return None


def step_parts(
    optimizer: Any,
    group: Group,
    members: Optional[List[int]],
    accumulate_only: bool,
    ema_momentum: float,
    ema_overwrite: bool,
    clip_scale: Optional[float],
    loss_scale: Optional[float],
) -> StepParts:
    """The cross-cutting parts of one call.

    Args:
        members: the built indices of a partial call, None for the whole group.
        accumulate_only, ema_momentum, ema_overwrite: this step's values.
        clip_scale: the global-norm scale of a step of several calls, which replaces the
            clipping rule (see `Optimizer._global_clip_scale`).
        loss_scale: this step's loss scale (see `Optimizer._loss_scale`), or None.
    """
    parts = StepParts(loss_scale=loss_scale, lazy=optimizer._lazy)
    if optimizer._accumulation_steps:
        parts.accumulators = (
            group.accumulators
            if members is None
            else [optimizer._accumulated_gradients[i] for i in members]
        )
        parts.accumulation_steps = optimizer._accumulation_steps
        parts.accumulate_only = accumulate_only
    parts.clip = ("clip_scale", clip_scale) if clip_scale is not None else clip_option(optimizer)
    if members is None:
        parts.weight_decay = group.weight_decay
        parts.weight_decay_mask = group.weight_decay_mask
    elif optimizer.weight_decay is not None:
        mask = [optimizer._use_weight_decay(i) for i in members]
        if any(mask):
            parts.weight_decay = float(optimizer.weight_decay)
            if not all(mask):
                parts.weight_decay_mask = mask
    if optimizer.use_ema:
        parts.averages = (
            group.averages
            if members is None
            else [optimizer._model_variables_moving_average[i] for i in members]
        )
        parts.ema_momentum = ema_momentum
        parts.ema_overwrite = ema_overwrite
    return parts
