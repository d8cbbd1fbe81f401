"""Type stubs for the native extension `ferroptim._native`.

Every update function applies one optimizer step, in place, to a whole list of tensors of one
dtype (float32 or float64) in a single fused pass over memory. The lists are aligned: element i of
every list belongs to parameter i. Scalars are Python floats (computed by the caller in float64 or
rounded to float32 as Keras does); the kernels cast them to the parameters' dtype.

Gradients may be float32 or float64 arrays of any layout whatever the parameters' dtype (the
other float dtype is rounded to the parameters' as it is read, as `astype` rounds, without a
copy); lists, scalars and arrays of other real dtypes are converted as
`numpy.asarray(g, dtype)` would. A gradient may also be row-sparse, a `ferroptim.IndexedSlices`
(`_Gradient`): its rows are summed first (repeated indices in order of appearance, from zero) and
the result is the dense step's on `to_dense()`, bit for bit. Where the rule leaves an element with
a zero gradient as it is (plain SGD, Adagrad) and nothing else changes the other rows (weight
decay, an accumulated gradient), or with `StepOptions(lazy=True)`, only the given rows are
updated (the EMA still covers the whole tensor); otherwise the pass covers the whole tensor with
zeros outside the rows, and no dense gradient is allocated.

`names` (optional, every update function) names the parameters in error messages; without it
they are named by their index in the call.

All arguments are validated before any element changes: on any exception no parameter, slot,
accumulator or average has been modified.
"""

from typing import Any, Optional, Sequence, Union, final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ferroptim._indexed_slices import IndexedSlices

# A dense gradient, or a row-sparse one.
_Gradient = Union[ArrayLike, IndexedSlices]

__all__ = [
    "StepOptions",
    "__version__",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "all_finite",
    "check_disjoint",
    "completed_calls",
    "cos_f32",
    "cos_f64",
    "ema",
    "ftrl",
    "get_num_threads",
    "gradient_sum_squares",
    "lamb",
    "lion",
    "log_f32",
    "log_f64",
    "nadam",
    "newton_schulz",
    "pow_f32",
    "pow_f64",
    "rmsprop",
    "roofline",
    "rule_signatures",
    "schedule_free_adamw",
    "set_num_threads",
    "set_simd_level",
    "sgd",
    "simd_level",
    "transform_gradients",
]

__version__: str

@final
class StepOptions:
    """The cross-cutting parts of a step that are fused into the update pass (Keras order).

    loss_scale: gradients are divided by it first (`g / loss_scale`).
    accumulators, accumulation_steps, accumulate_only: gradient accumulation. With
        `accumulate_only=True` the call only does `acc += g` (then the EMA, if any) and applies no
        update; otherwise `g = (g + acc) / accumulation_steps`, `acc = 0`, then the update.
    clipnorm / global_clipnorm / clipvalue / clip_scale: at most one is not None; applied to the
        (unscaled, averaged) gradient as Keras does. The norms are computed natively in the same
        call; `clip_scale` is a global-norm scale the caller computed over several calls (float64,
        NaN when that norm is not finite), multiplied into every gradient.
    weight_decay, weight_decay_mask: decoupled decay `w = w - w * wd * lr` (lr: the call's
        learning rate, or `weight_decay_learning_rate` when given, as Muon's AdamW path decays
        with the base rate but updates with a scaled one) before the update, for the tensors
        whose mask entry is True (all when the mask is None).
    averages, ema_momentum, ema_overwrite: after the update, `avg = m * avg + (1 - m) * w`
        (m = ema_momentum, pass 0.0 on the first step); then `w = avg` when ema_overwrite.
    lazy: a row-sparse gradient updates only its rows, whatever the rule (and the weight
        decay applies to those rows only); element-wise rules only (not Lamb's); ignored where
        the gradient is averaged with accumulators.
    """

    def __new__(
        cls,
        *,
        loss_scale: Optional[float] = None,
        accumulators: Optional[Sequence[NDArray[np.floating]]] = None,
        accumulation_steps: int = 0,
        accumulate_only: bool = False,
        clipnorm: Optional[float] = None,
        global_clipnorm: Optional[float] = None,
        clipvalue: Optional[float] = None,
        clip_scale: Optional[float] = None,
        weight_decay: Optional[float] = None,
        weight_decay_mask: Optional[Sequence[bool]] = None,
        weight_decay_learning_rate: Optional[float] = None,
        averages: Optional[Sequence[NDArray[np.floating]]] = None,
        ema_momentum: float = 0.0,
        ema_overwrite: bool = False,
        lazy: bool = False,
    ) -> "StepOptions": ...

# --- update rules: generated from rule_signatures() by tests/test_native_stub.py ---

def sgd(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    momentums: Optional[Sequence[NDArray[np.floating]]],
    learning_rate: float,
    momentum: float,
    nesterov: bool,
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """SGD (keras/src/optimizers/sgd.py). `momentums` is None when momentum == 0."""

def adam(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    momentums: Sequence[NDArray[np.floating]],
    velocities: Sequence[NDArray[np.floating]],
    velocity_hats: Optional[Sequence[NDArray[np.floating]]],
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    iterations: int,
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """Adam / AdamW (keras/src/optimizers/adam.py). `iterations` is the count before this step
    (t = iterations + 1); `velocity_hats` is None unless amsgrad."""

def rmsprop(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    velocities: Sequence[NDArray[np.floating]],
    momentums: Optional[Sequence[NDArray[np.floating]]],
    average_gradients: Optional[Sequence[NDArray[np.floating]]],
    learning_rate: float,
    rho: float,
    momentum: float,
    epsilon: float,
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """RMSprop (rmsprop.py). `momentums` only if momentum > 0, `average_gradients` only if
    centered."""

def adagrad(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    accumulators: Sequence[NDArray[np.floating]],
    learning_rate: float,
    epsilon: float,
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """Adagrad (adagrad.py)."""

def adadelta(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    accumulated_grads: Sequence[NDArray[np.floating]],
    accumulated_delta_vars: Sequence[NDArray[np.floating]],
    learning_rate: float,
    rho: float,
    epsilon: float,
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """Adadelta (adadelta.py)."""

def adamax(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    momentums: Sequence[NDArray[np.floating]],
    norms: Sequence[NDArray[np.floating]],
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    iterations: int,
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """Adamax (adamax.py). `iterations` is the count before this step."""

def nadam(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    momentums: Sequence[NDArray[np.floating]],
    velocities: Sequence[NDArray[np.floating]],
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    iterations: int,
    u_product: float,
    schedule_decay: float = 1.0,
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """Nadam (nadam.py). `u_product` is the momentum-cache product already multiplied by this
    step's factor (the caller keeps it, in the dtype of the first variable, as Keras does);
    `schedule_decay` scales the cache exponents (1 in Keras 3, Keras 2's schedule_decay)."""

def lion(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    momentums: Sequence[NDArray[np.floating]],
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """Lion (lion.py)."""

def ftrl(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    accumulators: Sequence[NDArray[np.floating]],
    linears: Sequence[NDArray[np.floating]],
    learning_rate: float,
    learning_rate_power: float,
    l1_regularization_strength: float,
    l2_regularization_strength: float,
    l2_shrinkage_regularization_strength: float,
    beta: float,
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """FTRL (ftrl.py)."""

def lamb(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    momentums: Sequence[NDArray[np.floating]],
    velocities: Sequence[NDArray[np.floating]],
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    iterations: int,
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """Lamb (lamb.py): Adam's moments with a per-tensor trust ratio |w| / |r|, computed by a
    deterministic read-only pass before the update pass. `iterations` is the count before
    this step."""

def schedule_free_adamw(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    momentums: Sequence[NDArray[np.floating]],
    velocities: Sequence[NDArray[np.floating]],
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    warmup_steps: int,
    iterations: int,
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """ScheduleFreeAdamW (schedule_free_adamw.py): the parameters hold y, `momentums` holds z
    (initialised to a copy of the parameters), `velocities` the second moment. The warmup
    factor min(t / warmup_steps, 1) is applied natively."""

# --- end of the generated update rules ---

def rule_signatures() -> dict[str, list[dict[str, Any]]]:
    """The declaration of every update-rule function above (`sgd` to `schedule_free_adamw`),
    from the one place the native module declares it: `{function name: [argument, ...]}` with
    the arguments in order, each a dict with

    - "name": the argument's name;
    - "kind": "params", "grads", "slots" (a required slot list), "optional_slots" (a slot list
      that may be None), "real" (a float, checked finite), "int" (an int, checked >= 0),
      "bool", "options" (a `StepOptions` or None) or "names";
    - "slot": for a slot list, the Keras slot name of its arrays ("momentum", "velocity", ...);
    - "default": present only when the argument has one (None or a float).

    A rule function is called as `fn(params, grads, *slot lists, *scalars, options, names)`;
    the slot lists given (optional ones when not None) reach the kernel in this order."""

def adafactor(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[ArrayLike],
    r: Sequence[Any],
    c: Sequence[Any],
    velocities: Sequence[NDArray[np.floating]],
    rho_t: float,
    beta_2_t: float,
    epsilon_1: float,
    epsilon_2: float,
    clip_threshold: float,
    names: Optional[Sequence[str]] = None,
) -> None:
    """Adafactor (adafactor.py), the update alone: the gradients are final (unscaled,
    accumulated, clipped) and the parameters already weight-decayed. `rho_t` =
    min(learning_rate, 1 / sqrt(t)) and `beta_2_t` = 1 - t ** beta_2_decay are this step's
    scalars, in the parameters' dtype (1 - beta_2_t is computed in that dtype).

    Parameters, velocities and, for parameters of rank >= 2, `r` (shape `w.shape[:-1]`) and
    `c` (shape `w.shape[:-2] + w.shape[-1:]`) must be C-contiguous arrays of the parameters'
    dtype; they are updated in place. For a parameter of rank < 2 its entries of `r` and `c`
    are not read (Keras's int32 placeholders, or None). Gradients of another real dtype or
    layout are converted. Sums (RMS, row and column means) are accumulated in float64 and
    rounded once; the results do not depend on the thread count."""

def all_finite(arrays: Sequence[ArrayLike]) -> bool:
    """True if every element of every array is finite (a native read-only pass; float32 and
    float64 arrays of any layout are read in place, other real dtypes are converted)."""

def newton_schulz(
    x: NDArray[np.floating], steps: int, a: float, b: float, c: float
) -> NDArray[np.floating]:
    """Muon's orthogonalization of a 2-D float32/float64 array (Keras's
    `zeropower_via_newtonschulz5`): a new array of the same shape and dtype. Matrix products
    run natively on the thread pool; results match Keras to rounding, not bitwise."""

def check_disjoint(
    readonly: Sequence[NDArray[Any]],
    writable: Sequence[NDArray[Any]],
    names: Optional[Sequence[str]] = None,
) -> None:
    """ValueError if an array of `readonly` overlaps one of `writable`, or two of `writable`
    overlap (by address range, as every update function checks its own arrays); `names` name
    the `readonly` arrays. For steps that span several native calls."""

def gradient_sum_squares(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> float:
    """The float64 sum of squares of the gradients as an update step of these parameters sees
    them (cast to the parameters' dtype, unscaled by `loss_scale`, averaged with
    `accumulators`; the options' clipping, weight decay and EMA are ignored). Writes nothing;
    the same value for any thread count. For a `global_clipnorm` that spans several calls."""

def transform_gradients(
    out: Sequence[NDArray[np.floating]],
    grads: Sequence[_Gradient],
    options: Optional[StepOptions] = None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """Writes into `out` (one array per gradient, of one float dtype) the gradients an update
    rule would receive: unscaled by the loss scale, averaged with the accumulators (which are
    then reset) and clipped, per `options`, in `out`'s dtype; a -0 element is written +0. With
    `accumulate_only`, only adds to the accumulators and leaves `out` alone. `out` is validated
    like the parameters of an update, and a successful call counts in `completed_calls`. For
    optimizers whose rule runs in NumPy: `options` holds the gradient parts only (a weight decay
    in it has no effect; an EMA would average `out` as written)."""

def ema(
    params: Sequence[NDArray[np.floating]],
    averages: Sequence[NDArray[np.floating]],
    ema_momentum: float,
    ema_overwrite: bool,
    names: Optional[Sequence[str]] = None,
) -> None:
    """EMA pass alone, for variables that were not part of the step call."""

def roofline(
    params: Sequence[NDArray[np.floating]],
    grads: Sequence[NDArray[np.floating]],
    slots: Sequence[Sequence[NDArray[np.floating]]],
) -> None:
    """Benchmark floor: moves the bytes of a step (reads params, grads and every slot, writes
    params and every slot) through the same driver, with one add per element and stream."""

def completed_calls() -> int:
    """Writing native calls (update rules, `ema`, `adafactor`) that returned successfully on this
    thread: a step compares it before and after its calls to tell a call that completed and was
    then interrupted (a KeyboardInterrupt raised as it returned) from one that never wrote."""

def set_num_threads(n: int) -> None:
    """1 to 1024 threads; a ValueError otherwise."""

def get_num_threads() -> int: ...
def simd_level() -> str:
    """The instruction set the kernels run with: "avx512", "avx2" or "baseline"."""

def set_simd_level(level: str) -> None:
    """Force "baseline", "avx2" or "avx512" (a ValueError if the CPU lacks it), or "auto"."""

# Correctly rounded scalars (the same bits on every CPU and C library); the `_f32` forms round
# their arguments to float32 first and return the float32 result as a float.
def pow_f32(x: float, y: float) -> float: ...
def pow_f64(x: float, y: float) -> float: ...
def log_f32(x: float) -> float: ...
def log_f64(x: float) -> float: ...
def cos_f32(x: float) -> float: ...
def cos_f64(x: float) -> float: ...
