"""How a step runs: from the gradients a user passes to the native calls, as one transaction.

`StepEngine` is a part of `Optimizer` (a base class of it) that holds the general path of a
step: resolving which built variables the gradients belong to, splitting them into one native
call per dtype group (`_prepare_step`), validating a step of several calls before the first one
writes (`_validate_calls`), Keras's per-step decisions (accumulate or update, EMA momentum and
overwrite, one global-norm scale across calls: `_step`), and running the calls so that a step
is all or nothing (`_transact`). The common step (one dtype, every variable in build order)
bypasses most of it in `Optimizer.apply`.
"""

from __future__ import annotations

import math
import re
import signal
import threading
from collections.abc import Mapping
from itertools import repeat
from operator import is_, is_not
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ferroptim import _native
from ferroptim._indexed_slices import IndexedSlices, check_sparse_gradient
from ferroptim.optimizers._messages import raise_unknown_variable, warn_missing_gradients
from ferroptim.optimizers._plan import (
    NO_PLAN,
    VARYING,
    StepParts,
    StepPlan,
    build_plan,
    clip_option,
    step_parts,
    written_arrays,
)
from ferroptim.optimizers._step_guard import SnapshotGuard, StepGuard
from ferroptim.optimizers._variables import (
    MAX_ITERATIONS,
    ParamsArg,
    refuse_last_iteration,
    step_value,
)
from ferroptim.optimizers.schedules import LearningRateSchedule

__all__ = ["StepEngine", "check_no_aliasing", "checked_gradient", "name_variables", "settle"]

_NONES = repeat(None)
_SEQUENCES = (list, tuple)
_completed_calls = _native.completed_calls
_FLOAT_SCALARS = frozenset((float, np.float32, np.float64))

# One native call of a step: its `Group`, the built indices it covers (None: the whole group,
# in order) and their gradients. The group may be None where the indices are given (a call
# checked or measured outside the plan: `Unfused`, Muon's two paths).
Call = Tuple[Any, Optional[List[int]], Sequence[Any]]

_AT_INDEX = re.compile(r"at index (\d+)")


def _ema(
    params: List[np.ndarray],
    averages: List[np.ndarray],
    momentum: float,
    overwrite: bool,
    names: List[str],
) -> None:
    _native.ema(params, averages, momentum, overwrite, names=names)


def _run_calls(calls: List[Tuple[Any, ...]]) -> None:
    """Run a step's native calls `(function, args, names)` in order; a refusal names the
    variables of the call that refused."""
    for function, args, names in calls:
        try:
            function(*args)
        except (TypeError, ValueError) as error:
            name_variables(error, names)
            raise


def settle(commit: Any) -> None:
    """Run an idempotent `commit` to its end even if interrupts land while it runs (each
    interrupt restarts it; the caller re-raises the one it is handling)."""
    for _ in range(1000):
        try:
            commit()
            return
        except (TypeError, ValueError):
            raise
        except BaseException:
            continue
    commit()


class _sigint_deferred:
    """Hold back SIGINT (Ctrl-C) for the duration of the block, then deliver it.

    Python raises `KeyboardInterrupt` wherever the main thread happens to be; in a step made of
    several native calls and NumPy writes that would leave it half applied. Inside the block
    SIGINT is only recorded; on exit the previous handler is restored and, if a SIGINT came,
    called (the default one raises `KeyboardInterrupt`), after the step is complete. Only the
    main thread receives Python signals, so elsewhere this does nothing.
    """

    __slots__ = ("installed", "previous", "received")

    def __enter__(self) -> None:
        self.installed = False
        self.received: List[Any] = []
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._record)
            self.installed = True

    def _record(self, signum: int, frame: Any) -> None:
        self.received.append((signum, frame))

    def __exit__(self, *exc_info: Any) -> None:
        if not self.installed:
            return
        previous = self.previous
        # None: a handler installed outside Python, which the default stands in for.
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
        if self.received:
            if callable(previous):
                previous(*self.received[0])
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


def name_variables(error: Exception, names: List[str]) -> None:
    """Rewrite a native error's "at index i" (a position in the call) into the variable's name.

    The kernels can name variables themselves (`names=`), but that keyword argument costs more
    than the rest of a small step's Python path; a failed call changes nothing, so the names
    are put in afterwards, on the error path only.
    """
    if error.args and isinstance(error.args[0], str):

        def name(match: "re.Match[str]") -> str:
            i = int(match.group(1))
            return f"'{names[i]}'" if i < len(names) else match.group(0)

        error.args = (_AT_INDEX.sub(name, error.args[0]),) + error.args[1:]


def checked_gradient(g: Any, param: np.ndarray, name: str) -> np.ndarray:
    """The dense gradient `g` of `param` as an array, or what a native call raises about it:
    a TypeError for what is not an array of real numbers, a ValueError for another shape."""
    if not isinstance(g, np.ndarray):
        try:
            g = np.asarray(g)
        except Exception as error:
            raise TypeError(
                f"gradient '{name}' cannot be converted to an array: {error}"
            ) from error
    if g.dtype.kind not in "fiu":
        raise TypeError(
            f"gradient '{name}' has dtype {g.dtype}, which cannot be cast safely to {param.dtype}"
        )
    if g.shape != param.shape:
        raise ValueError(
            f"gradient '{name}' has shape {g.shape} but the parameter has shape {param.shape}"
        )
    array: np.ndarray = g
    return array


def check_no_aliasing(grads: List[Tuple[str, Any]], writable: List[np.ndarray]) -> None:
    """Raise a ValueError if a gradient shares memory with an array the step writes, or two
    written arrays overlap: the native sorted sweep over address ranges that every update
    function runs on its own arrays, here across the several calls of one step."""
    if len(grads) + len(writable) < 2:
        return
    arrays: List[np.ndarray] = []
    names: List[str] = []
    for name, g in grads:
        # A row-sparse gradient is read through its two arrays.
        parts = [g.values, g.indices] if isinstance(g, IndexedSlices) else [g]
        arrays += parts
        names += [name] * len(parts)
    _native.check_disjoint(arrays, writable, names)


class StepEngine:
    """The general path of a step (see the module docstring); a base class of `Optimizer`,
    whose attributes it reads."""

    # Set by `Optimizer` (declared here for the reader and the type checker).
    _trainable_variables: List[np.ndarray]
    _trainable_variable_names: List[str]
    _trainable_variables_indices: Dict[int, int]
    _slot_kinds: Dict[str, List[np.ndarray]]
    _accumulated_gradients: List[np.ndarray]
    _model_variables_moving_average: List[np.ndarray]
    _accumulation_steps: int
    _iterations: int
    _plan: StepPlan
    _has_step_state: bool
    _step_resumable: bool
    _run_exclusive: Callable[..., Any]
    _step_guard: StepGuard
    _learning_rate: Any
    _decay: float
    _pinned_learning_rate: Optional[float]
    built: bool
    use_ema: bool
    name: Optional[str]
    ema_momentum: Any
    ema_overwrite_frequency: Any
    loss_scale_factor: Any
    _update_step: Callable[..., None]
    _begin_update_step: Callable[[int], None]
    _end_update_step: Callable[[], None]
    _names_and_variables: Callable[[ParamsArg], Tuple[List[str], List[Any]]]
    build: Callable[[ParamsArg], None]

    # A loss scale lent by a wrapper for the step running now (see `_apply_scaled`).
    _pinned_loss_scale: Optional[float] = None
    # Turns this process's sum of squares of a step's gradients into the one `global_clipnorm`
    # clips by (a distributed optimizer's sum over ranks); None: this process's own.
    _reduce_sum_squares: Optional[Callable[[float], float]] = None

    def _apply_scaled(
        self, grads: Any, trainable_variables: Optional[ParamsArg], loss_scale: float
    ) -> None:
        """`apply` with the gradients divided by `loss_scale` first, in the kernels' fused pass,
        as if it were this optimizer's `loss_scale_factor` for this one step: the hook of a
        wrapper that owns the loss scale (`LossScaleOptimizer`), for an optimizer whose own
        `loss_scale_factor` is None. Holds the step guard."""
        self._run_exclusive(self._apply_scaled_held, grads, trainable_variables, loss_scale)

    def _apply_scaled_held(
        self, grads: Any, trainable_variables: Optional[ParamsArg], loss_scale: float
    ) -> None:
        self._pinned_loss_scale = loss_scale
        try:
            self._apply_general(grads, trainable_variables)
        finally:
            self._pinned_loss_scale = None

    def _loss_scale(self) -> Optional[float]:
        """The loss scale of the step running now: a wrapper's (`_apply_scaled`), else the
        optimizer's `loss_scale_factor`."""
        pinned = self._pinned_loss_scale
        if pinned is not None:
            return pinned
        factor = self.loss_scale_factor
        return None if factor is None else float(factor)

    def _apply_general(
        self,
        grads: Any,
        trainable_variables: Optional[ParamsArg],
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        prepared = self._prepare_step(grads, trainable_variables, labels=labels)
        if prepared is not None:
            self._step(*prepared)

    def _prepare_step(
        self,
        grads: Any,
        trainable_variables: Optional[ParamsArg],
        warn: bool = True,
        labels: Optional[Sequence[str]] = None,
    ) -> Optional[Tuple[List[Call], List[int]]]:
        """The native calls of a step and the built variables it leaves out (`_step`'s
        arguments), or None when there is nothing to do. Raises what the step would raise about
        its arguments; builds the optimizer on a first call; writes nothing else. A step of one
        call is validated by that call; one of several calls is validated here.
        `warn`: Keras's warning about missing gradients (off for a check before the step).
        `labels`: the names of list arguments that were a dict's values (its keys), for
        messages.
        """
        plan = self._plan
        writable = plan.writable
        built = self._trainable_variables
        if (
            writable is not None
            and type(grads) in _SEQUENCES
            and len(grads) == len(built)
            and (
                trainable_variables is None
                or (
                    type(trainable_variables) in _SEQUENCES
                    and len(trainable_variables) == len(built)
                    and all(map(is_, trainable_variables, built))
                )
            )
            and all(map(is_not, grads, _NONES))
        ):
            # Every built variable in build order, over several dtype groups: the groups and
            # the arrays the step writes are known from the plan.
            calls: List[Call] = [
                (group, None, [grads[i] for i in group.indices]) for group in plan.groups
            ]
            return self._validate_calls(calls, writable), []
        if isinstance(grads, Mapping):
            grads, variables, labels = self._resolve_named(grads, trainable_variables)
        else:
            if not isinstance(grads, (list, tuple)):
                grads = list(grads)
            if len(grads) == 0:
                return None
            if trainable_variables is None:
                self._build_on(None)
                if len(grads) != len(self._trainable_variables):
                    raise ValueError(
                        "When passing `grads` as a list of gradient tensors, the "
                        "gradients must match `optimizer.variables` one-to-one. "
                        f"Received a list of {len(grads)} gradients, but the "
                        f"optimizer is tracking {len(self._trainable_variables)} "
                        "trainable variables."
                    )
                variables = self._trainable_variables
            else:
                if not self.built:
                    self.build(trainable_variables)
                variables = self._names_and_variables(trainable_variables)[1]
                if len(variables) != len(grads):
                    raise ValueError(
                        f"Received {len(grads)} gradients for {len(variables)} variables."
                    )
        if len(grads) == 0:
            return None
        indices = self._variable_indices(variables, labels, grads)
        if len(set(indices)) != len(indices):
            twice = next(i for k, i in enumerate(indices) if i in indices[:k])
            raise ValueError(
                f"Variable '{self._trainable_variable_names[twice]}' was given twice in one "
                "call; each variable takes one gradient per step."
            )

        present = [k for k, g in enumerate(grads) if g is not None]
        if not present:
            raise ValueError("No gradients provided for any variable.")
        if len(present) != len(grads):
            missing_names = [
                self._trainable_variable_names[indices[k]] for k, g in enumerate(grads) if g is None
            ]
            if warn:
                warn_missing_gradients(missing_names)
            grads = [grads[k] for k in present]
            indices = [indices[k] for k in present]

        groups = self._get_plan().groups
        if len(groups) == 1 and indices == groups[0].indices:
            return [(groups[0], None, grads)], []
        position = {index: k for k, index in enumerate(indices)}
        calls = []
        for group in groups:
            members = [i for i in group.indices if i in position]
            if members:
                calls.append(
                    (
                        group,
                        None if members == group.indices else members,
                        [grads[position[i]] for i in members],
                    )
                )
        if len(calls) > 1:
            calls = self._validate_calls(calls)
        missing = [i for i in range(len(self._trainable_variables)) if i not in position]
        return calls, missing

    def _build_on(self, trainable_variables: Optional[ParamsArg]) -> None:
        """Build on `trainable_variables` if not built yet; Keras's ValueError when there is
        nothing to build on (a step's gradients without variables, before `build`)."""
        if self.built:
            return
        if trainable_variables is None:
            raise ValueError(
                "When passing `grads` without `variables`, the optimizer "
                "must already be built on a list of variables. "
                "Call `optimizer.build(trainable_variables)` first. "
            )
        self.build(trainable_variables)

    def _resolve_named(
        self, grads: Mapping[str, Any], trainable_variables: Optional[ParamsArg]
    ) -> Tuple[List[Any], List[np.ndarray], List[str]]:
        """The gradients of a dict and their variables, aligned (None for a variable without
        a key), and the keys that name them in messages."""
        if trainable_variables is not None and not isinstance(trainable_variables, Mapping):
            raise TypeError(
                "Gradients given as a dict need `trainable_variables` given as a dict too "
                "(or None once the optimizer is built)."
            )
        self._build_on(trainable_variables)
        if trainable_variables is None:
            # Built variables are named by `str(key)`: a dict built on {0: w} takes {0: g}.
            lookup: Mapping[Any, Any] = dict(
                zip(self._trainable_variable_names, self._trainable_variables)
            )
            known = {key: str(key) for key in grads}
        else:
            lookup = trainable_variables
            known = {key: key for key in grads}
        values, variables, labels = [], [], []
        for key, name in known.items():
            if name not in lookup:
                raise ValueError(
                    f"Unknown variable name: '{key}'. The gradients' keys must be names of the "
                    "variables the optimizer was built with."
                )
            variables.append(lookup[name])
            values.append(grads[key])
            labels.append(str(key))
        # A variable without a key is a variable without gradient, as a None value is: left out
        # of the step with Keras's warning (its EMA is still updated).
        given = set(known.values())
        for name, variable in lookup.items():
            if name not in given:
                variables.append(variable)
                values.append(None)
                labels.append(str(name))
        return values, variables, labels

    def _variable_indices(
        self,
        variables: Sequence[Any],
        labels: Optional[Sequence[str]] = None,
        grads: Optional[Sequence[Any]] = None,
    ) -> List[int]:
        """The built indices of `variables` (compared by identity); a ValueError naming the
        first unknown one by its label (`labels`, else its index), or saying that the call
        looks swapped when one of `grads` is a built variable."""
        table = self._trainable_variables_indices
        indices = []
        for k, v in enumerate(variables):
            index = table.get(id(v))
            if index is None or self._trainable_variables[index] is not v:
                raise_unknown_variable(variables, k, labels, grads, self._built_name)
            indices.append(index)
        return indices

    def _built_name(self, obj: Any) -> Optional[str]:
        """The name of the built variable that is `obj` (identity), or None."""
        index = self._trainable_variables_indices.get(id(obj))
        if index is None or self._trainable_variables[index] is not obj:
            return None
        return self._trainable_variable_names[index]

    def _validate_calls(
        self, calls: List[Call], writable: Optional[List[np.ndarray]] = None
    ) -> List[Call]:
        """Check, before the first of several native calls runs, what each would check.

        One native call validates all of its arrays before writing any, but a step that spans
        several dtype groups makes several calls; without this, a bad gradient in the last group
        would fail after the first groups were updated. Gradients that are not arrays are
        converted here once. `writable`: every array the step writes, when the caller knows
        it (a step over every variable); else it is gathered here.
        """
        names = self._trainable_variable_names
        out: List[Call] = []
        gather = writable is None
        if writable is None:
            writable = []
        checked: List[Tuple[str, Any]] = []
        for group, members, grads in calls:
            chosen = group.indices if members is None else members
            converted = []
            for i, g in zip(chosen, grads):
                param = self._trainable_variables[i]
                if isinstance(g, IndexedSlices):
                    check_sparse_gradient(g, param, names[i])
                else:
                    g = checked_gradient(g, param, names[i])
                if not param.flags.writeable:
                    raise ValueError(
                        f"parameter '{names[i]}' is read-only; parameters and optimizer state "
                        "are updated in place"
                    )
                converted.append(g)
                checked.append((names[i], g))
                if gather:
                    writable.extend(written_arrays(self, (i,)))
            out.append((group, members, converted))
        check_no_aliasing(checked, writable)
        return out

    def _get_plan(self) -> StepPlan:
        """The step plan, built on first use after `build` or after a change that drops it."""
        plan = self._plan
        if plan is NO_PLAN:
            plan = self._plan = build_plan(self)
        return plan

    def _rule_options(self, parts: StepParts) -> Any:
        """The form in which `_update_step` receives a call's cross-cutting parts: here one
        `_native.StepOptions` for the fused kernel, or None when no part is on. A rule that
        applies them itself overrides this (`_unfused.Unfused` returns `parts`)."""
        return parts.native()

    def _step(self, calls: List[Call], missing: List[int]) -> None:
        """One step, in Keras's order, over `calls` (one native call each); `missing` are the
        built variables without a gradient in this step."""
        raw = self._iterations
        if raw >= MAX_ITERATIONS:
            refuse_last_iteration()
        k = self._accumulation_steps
        iterations = raw // k if k else raw
        accumulate_only = bool(k) and (raw + 1) % k != 0
        # Keras reads the learning rate only in the update branch of accumulation.
        lr = 0.0 if accumulate_only else self._step_learning_rate(raw, iterations)
        ema_momentum = 0.0
        ema_overwrite = False
        if self.use_ema:
            ema_momentum = float(self.ema_momentum) if iterations != 0 else 0.0
            frequency = self.ema_overwrite_frequency
            ema_overwrite = bool(frequency) and (iterations + 1) % frequency == 0

        clip_scale: Optional[float] = None
        clip = clip_option(self)
        if (
            clip is not None
            and clip[0] == "global_clipnorm"
            and (len(calls) > 1 or self._reduce_sum_squares is not None)
        ):
            if not accumulate_only:
                clip_scale = self._global_clip_scale(calls, clip[1])

        step_state = self._has_step_state and not accumulate_only
        if step_state:
            # Computes this step's scalar state; `_end_update_step` stores it.
            self._begin_update_step(iterations)
        # Every native call of the step, prepared first; then they run as one transaction.
        calls_to_make: List[Tuple[Any, ...]] = []
        key = (accumulate_only, ema_momentum, ema_overwrite)
        loss_scale = self._loss_scale()
        # The options of a full-group call are cached in the plan, except with a loss scale a
        # wrapper lends for this step only.
        cached = clip_scale is None and self._pinned_loss_scale is None
        for group, members, grads in calls:
            if members is None and cached:
                options = group.options.get(key, VARYING)
                if options is VARYING:
                    parts = step_parts(self, group, None, *key, None, loss_scale)
                    options = group.options[key] = self._rule_options(parts)
                params, slots, names = group.params, group.slots, group.names
            else:
                parts = step_parts(self, group, members, *key, clip_scale, loss_scale)
                options = self._rule_options(parts)
                chosen = group.indices if members is None else members
                params = [self._trainable_variables[i] for i in chosen]
                names = [self._trainable_variable_names[i] for i in chosen]
                slots = {name: [lst[i] for i in chosen] for name, lst in self._slot_kinds.items()}
            calls_to_make.append((self._update_step, (params, grads, slots, lr, options), names))

        resets: List[np.ndarray] = []
        if missing:
            if self.use_ema:
                by_dtype: Dict[np.dtype, List[int]] = {}
                for i in missing:
                    by_dtype.setdefault(self._trainable_variables[i].dtype, []).append(i)
                for indices in by_dtype.values():
                    names = [self._trainable_variable_names[i] for i in indices]
                    args = (
                        [self._trainable_variables[i] for i in indices],
                        [self._model_variables_moving_average[i] for i in indices],
                        ema_momentum,
                        ema_overwrite,
                        names,
                    )
                    calls_to_make.append((_ema, args, names))
            if k and not accumulate_only:
                # Keras resets every accumulator on an update step, not only this call's.
                resets = [self._accumulated_gradients[i] for i in missing]

        self._transact(calls_to_make, resets, step_state, raw)

    def _commit_step(self, resets: List[np.ndarray], step_state: bool, raw: int) -> None:
        """The Python side of a step, after its native calls. Idempotent: it may run again
        after an interrupt."""
        for accumulator in resets:
            accumulator.fill(0)
        if step_state:
            self._end_update_step()
        self._iterations = raw + 1

    def _transact(
        self, calls: List[Tuple[Any, ...]], resets: List[np.ndarray], step_state: bool, raw: int
    ) -> None:
        """Run a step's native calls `(function, args, names)` in order, then its commit
        (`_commit_step`), as one transaction: a failure before the first call completes leaves
        everything as it was; once a call has written, the step is completed whatever arrives
        meanwhile.

        The calls are validated before the first one writes (each native call checks all of
        its arrays before writing any; a step of several calls was checked by
        `_validate_calls`), so what can arrive after a write is an asynchronous exception: a
        `KeyboardInterrupt` (Ctrl-C) raised when a native call returns, or between two calls.
        The thread's count of completed native calls (`_native.completed_calls`) tells how far
        the step got; the rest runs, the commit runs, and then the exception is raised.
        """
        if not self._step_resumable:
            # A rule that is not one native call per `_update_step` (Muon, Adafactor: NumPy
            # writes between native calls) cannot be resumed from the count of native calls;
            # its step holds Ctrl-C back instead, which its cost (milliseconds) affords.
            with _sigint_deferred():
                _run_calls(calls)
                self._commit_step(resets, step_state, raw)
            return
        start = _completed_calls()
        try:
            _run_calls(calls)
            # `_commit_step`, inlined: this runs every step.
            for accumulator in resets:
                accumulator.fill(0)
            if step_state:
                self._end_update_step()
            self._iterations = raw + 1
        except BaseException as error:
            if _completed_calls() == start:
                raise  # nothing written
            if isinstance(error, (TypeError, ValueError)):
                raise  # a call refused after an earlier one wrote: cannot be completed

            def finish() -> None:
                for function, args, _ in calls[_completed_calls() - start :]:
                    function(*args)
                self._commit_step(resets, step_state, raw)

            settle(finish)
            raise

    def _learning_rate_ahead(self) -> Optional[float]:
        """The learning rate the next step will use, read once and checked (finite) so that
        a wrapper can refuse the step before any optimizer it holds has written; None when the
        next step reads no learning rate (accumulation only). `_step_learning_rate` returns it
        while `_pinned_learning_rate` holds it."""
        raw = self._iterations
        k = self._accumulation_steps
        if k and (raw + 1) % k != 0:
            return None
        lr = self._step_learning_rate(raw, raw // k if k else raw)
        if not math.isfinite(lr):
            raise ValueError(
                f"The learning rate of optimizer '{self.name}' must be a finite number. "
                f"Received: learning_rate={lr}"
            )
        return lr

    def _global_clip_scale(self, calls: List[Call], clipnorm: float) -> float:
        """Keras's `clip_by_global_norm` scale for a step made of several native calls.

        A kernel sees the norm of its own call only, so the scale is computed here once, in
        float64, for the whole step, and every call multiplies its gradients by it
        (`StepOptions(clip_scale=...)`). Handing each call a share of the clip value instead
        underflows in float32 for a small share and turns weights into NaN (0 * inf). The
        squared norms are summed natively in float64, of the gradients as the kernel sees them
        (cast to the variable's dtype, unscaled and averaged in that dtype), with no copy.
        """
        kwargs: Dict[str, Any] = {}
        loss_scale = self._loss_scale()
        if loss_scale is not None:
            kwargs["loss_scale"] = loss_scale
        total = 0.0
        for group, members, grads in calls:
            chosen = group.indices if members is None else members
            if self._accumulation_steps:
                kwargs["accumulators"] = [self._accumulated_gradients[i] for i in chosen]
                kwargs["accumulation_steps"] = self._accumulation_steps
            total += _native.gradient_sum_squares(
                [self._trainable_variables[i] for i in chosen],
                grads,
                _native.StepOptions(**kwargs) if kwargs else None,
                [self._trainable_variable_names[i] for i in chosen],
            )
        if self._reduce_sum_squares is not None:
            total = self._reduce_sum_squares(total)
        norm = math.sqrt(total)
        if not math.isfinite(norm):
            # Keras's scale is NaN then (`scale + (N - N)`): every gradient becomes NaN.
            return math.nan
        # `c * min(1 / N, 1 / c)`; at N = 0 the gradients are zero and any scale keeps them so.
        return clipnorm * min(1.0 / norm, 1.0 / clipnorm) if norm > 0 else 1.0

    def _step_learning_rate(self, raw: int, iterations: int) -> float:
        """The learning rate of this step, Keras 2 `decay` included, as a Python float."""
        pinned = self._pinned_learning_rate
        if pinned is not None:
            return pinned
        lr = self._learning_rate
        if isinstance(lr, float):
            value = lr
        else:
            result = lr(raw) if isinstance(lr, LearningRateSchedule) else lr()
            # `step_value`'s common case inline (a schedule returns a NumPy float scalar).
            if type(result) in _FLOAT_SCALARS:
                value = float(result)
                if value - value != 0.0:  # NaN or infinite
                    value = step_value(result, lr)
            else:
                value = step_value(result, lr)
        if self._decay:
            value = value / (1.0 + self._decay * iterations)
        return value

    # --- pickling: the plan and the step guard stay behind ---------------------------------

    def __getstate__(self) -> Dict[str, Any]:
        # A snapshot holds whole steps: the step guard is taken here and released once the
        # arrays have been read (see `SnapshotGuard`), not when this returns.
        guard = self._step_guard
        try:
            guard.token.pop()
        except IndexError:
            guard.wait()
        try:
            state = self._snapshot_state()
        except BaseException:
            guard.release()
            raise
        state["_snapshot_guard"] = SnapshotGuard(guard.release)
        return state

    def _snapshot_state(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        # Derived from object identities or holding native objects: rebuilt after loading.
        for key in (
            "_plan",
            # The step guard belongs to this process and this object (a pickle taken while
            # another thread steps must not carry a taken token).
            "_step_guard",
        ):
            state.pop(key, None)
        state["_trainable_variables_indices"] = None
        state["_exclude_from_weight_decay_cache"] = {}
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        state.pop("_snapshot_guard", None)
        self.__dict__.update(state)
        self._trainable_variables_indices = {
            id(v): i for i, v in enumerate(self._trainable_variables)
        }
        self._plan = NO_PLAN
        self._step_guard = StepGuard(self)
