"""The optimizers under test: one record per optimizer, the table every per-optimizer test reads.

A test module that runs something for each optimizer takes its cases from `OPTIMIZERS` and
filters them by a record's fields (`case.hyperparameters is not None`, `case.decays_alone`, ...);
it never lists optimizers itself, so a new optimizer is covered everywhere by one new record
here (and its reference rule in reference.py). test_coverage.py checks that every class in the
registry has a record and every record a registered class.

Constructor arguments below may hold a `LearningRate`: a schedule or callable that each test
builds fresh (schedules are objects an optimizer owns) together with its twin for the reference.
`build(case, kwargs)` and `reference_kwargs(kwargs)` convert them.

Tests of the step machinery itself (threads, fork, signals, sizes past 2**31, the wrappers, the
Keras end-to-end scenarios) run it through the one optimizer that takes the path they test; they
are not per-optimizer and do not read this table.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Tuple

import pytest
from hypothesis import strategies as st

import ferroptim as fo
import reference as ref
from ferroptim import _native

Kwargs = Mapping[str, Any]


class LearningRate:
    """A learning-rate schedule or callable that a test builds fresh, and its reference twin.

    Args:
        label: its `repr`, used in test ids and random seeds (keep it stable).
        make: builds the ferroptim value (a `LearningRateSchedule` or a callable).
        reference: builds the reference's value (a function of the step, or of nothing), or
            None where only ferroptim runs it.
    """

    def __init__(
        self, label: str, make: Callable[[], Any], reference: Optional[Callable[[], Any]] = None
    ):
        self.label = label
        self.make = make
        self.reference = reference

    def to_fo(self) -> Any:
        """A new ferroptim learning rate."""
        return self.make()

    def to_reference(self) -> Any:
        """The reference's learning rate."""
        if self.reference is None:
            raise ValueError(f"{self.label} has no reference twin")
        return self.reference()

    def __repr__(self) -> str:
        return self.label


def _piecewise(step: int) -> float:
    """PiecewiseConstantDecay([1, 3], [2**-4, 2**-5, 2**-6]) for the reference."""
    for boundary, value in zip([1, 3], [2.0**-4, 2.0**-5, 2.0**-6]):
        if step <= boundary:
            return value
    return 2.0**-6


# Values exact in float32, so a test sees which value each step takes (the schedule is called
# with the raw iteration count) without depending on how a schedule rounds.
SCHEDULE = LearningRate(
    "PiecewiseConstantDecay",
    lambda: fo.optimizers.schedules.PiecewiseConstantDecay([1, 3], [2.0**-4, 2.0**-5, 2.0**-6]),
    lambda: _piecewise,
)
# A learning-rate callable taking no argument (Keras calls it at every read).
CALLABLE = LearningRate("callable", lambda: lambda: 2.0**-7, lambda: lambda: 2.0**-7)
# Schedules with state worth checkpointing: a staircase decay and a warm-up.
DECAY = LearningRate(
    "ExponentialDecay",
    lambda: fo.optimizers.schedules.ExponentialDecay(
        0.05, decay_steps=2, decay_rate=0.7, staircase=True
    ),
)
WARMUP = LearningRate(
    "CosineDecay",
    lambda: fo.optimizers.schedules.CosineDecay(0.02, 20, warmup_target=0.05, warmup_steps=3),
)


def fo_kwargs(kwargs: Kwargs) -> dict:
    """`kwargs` with each `LearningRate` built for ferroptim."""
    return {k: v.to_fo() if isinstance(v, LearningRate) else v for k, v in kwargs.items()}


def reference_kwargs(kwargs: Kwargs) -> dict:
    """`kwargs` with each `LearningRate` built for the reference."""
    return {k: v.to_reference() if isinstance(v, LearningRate) else v for k, v in kwargs.items()}


def build(case: "OptimizerCase", kwargs: Optional[Kwargs] = None) -> Any:
    """A new `case.cls(**kwargs)`, learning rates built fresh."""
    return case.cls(**fo_kwargs(kwargs or {}))


def label(case: "OptimizerCase", kwargs: Kwargs) -> str:
    """A readable test id: `Adam(amsgrad=True,clipnorm=1.0)`."""
    return case.name + "(" + ",".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


# eq=False: records are compared (and hashed) by identity, their fields hold dicts.
@dataclasses.dataclass(frozen=True, eq=False)
class OptimizerCase:
    """What the tests know of one optimizer.

    Attributes:
        cls: the class (registered in `ferroptim.optimizers._BUILTINS`).
        reference: its rule in reference.py (what `reference.make_reference(name)` runs), or
            None.
        elementwise: each element's update reads only that element's gradient and state (and
            the step's scalars); False for per-tensor norms, factored moments and matrices.
        fused: the whole step runs in one native call (not the `Unfused` mixin).
        own_defaults: its own constructor arguments in Keras's positional order, with Keras's
            defaults, which are also its own `get_config` keys in that order; None where the
            own arguments sit around the base ones (Muon: its own test in test_api.py).
        default_learning_rate: Keras's default `learning_rate`.
        default_name: Keras's default `name`; None means an automatic snake_case name.
        keras2_epsilon: `epsilon=None` is taken as Keras 2's `K.epsilon()` (1e-7).
        decays_alone: Keras's `test_weight_decay` holds: with a zero gradient a step applies
            only the weight decay (not Ftrl, whose decay is part of its rule, nor
            ScheduleFreeAdamW, whose first step moves y onto z; Muon has no such test).
        slots: (constructor arguments, the slot names Keras builds for the parameters
            {"dense/kern": float32 (2, 3), "bias": float64 (3,)}, in order), per variant.
        numerics: constructor arguments compared with the reference (test_numerics.py), every
            variant and base feature the optimizer has.
        tolerance: `reference.assert_close` budget where the implementation cannot follow the
            reference's arithmetic to the last bit (with the reason beside it).
        hyperparameters: a hypothesis strategy of its own arguments (test_hypothesis.py), or
            None.
        round_trip: arguments whose `get_config` round trip is checked (test_api.py).
        mixed_dtypes: arguments run over float32 and float64 parameters at once (test_api.py).
        invariance: arguments run under several thread counts and SIMD levels
            (test_invariance.py): the reductions and code paths its rule has.
        checkpoint: arguments of the run interrupted and resumed (test_checkpoint.py); the
            bias is excluded from weight decay.
        memory: arguments of the step whose allocations are traced (test_memory.py), or None.
        cross_dispatch: arguments run with and without NumPy's AVX-512 kernels
            (test_cpu_independence.py): the options that derive a power or a norm.
        lazy: it takes `lazy=True` (row-sparse gradients update only their rows), its own
            argument after Keras's `name` (test_sparse.py).
    """

    cls: type
    reference: Optional[type]
    elementwise: bool
    fused: bool
    own_defaults: Optional[Kwargs]
    default_learning_rate: float = 0.001
    default_name: Optional[str] = None
    keras2_epsilon: bool = False
    decays_alone: bool = False
    slots: Tuple[Tuple[Kwargs, Tuple[str, ...]], ...] = ()
    numerics: Tuple[Kwargs, ...] = ()
    tolerance: Kwargs = dataclasses.field(default_factory=dict)
    hyperparameters: Optional[st.SearchStrategy] = None
    round_trip: Tuple[Kwargs, ...] = ()
    mixed_dtypes: Optional[Kwargs] = None
    invariance: Tuple[Kwargs, ...] = ()
    checkpoint: Kwargs = dataclasses.field(default_factory=dict)
    memory: Optional[Kwargs] = None
    cross_dispatch: Tuple[Kwargs, ...] = ()
    lazy: bool = False

    @property
    def name(self) -> str:
        """The class name ("Adam"), as reference.py and `fo.optimizers` spell it."""
        return self.cls.__name__

    def __repr__(self) -> str:
        return self.name


_unit = st.floats(0.0, 1.0)
_beta = st.floats(0.0, 0.999)
_beta_2 = st.floats(0.5, 0.9999)
_epsilon = st.sampled_from([1e-8, 1e-7, 1e-5, 1e-3, 0.1])


def _adam_slots() -> Tuple[str, ...]:
    """Adam's two slots per variable, variable by variable (the layout of most optimizers)."""
    return tuple(f"{v}_{s}" for v in ("dense_kern", "bias") for s in ("momentum", "velocity"))


OPTIMIZERS: Tuple[OptimizerCase, ...] = (
    OptimizerCase(
        fo.optimizers.SGD,
        ref.SGDRule,
        elementwise=True,
        fused=True,
        lazy=True,
        own_defaults={"momentum": 0.0, "nesterov": False},
        default_learning_rate=0.01,
        default_name=None,
        decays_alone=True,
        slots=(({}, ()), ({"momentum": 0.9}, ("dense_kern_momentum", "bias_momentum"))),
        numerics=(
            {},
            {"learning_rate": 0.1, "momentum": 0.9},
            {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
            {"learning_rate": 0.1, "momentum": 0.5, "weight_decay": 0.01},
            {"momentum": 0.9, "global_clipnorm": 2.0},
            {"learning_rate": 0.1, "clipvalue": 0.5},
            {"learning_rate": 0.1, "clipnorm": 0.0},  # Keras: a clip <= 0 is off
            {"momentum": 0.9, "loss_scale_factor": 1000.0},
            {"momentum": 0.9, "nesterov": True, "gradient_accumulation_steps": 3},
            {"learning_rate": 0.1, "use_ema": True, "ema_momentum": 0.9},
            {"learning_rate": 0.1, "momentum": 0.9, "decay": 0.1},
            {"learning_rate": SCHEDULE, "momentum": 0.9},
        ),
        # A momentum that float32 rounds to zero has its own test (test_hypothesis.py).
        hyperparameters=st.fixed_dictionaries(
            {
                "momentum": st.sampled_from([0.0, 0.5]) | st.floats(1e-30, 1.0),
                "nesterov": st.booleans(),
            }
        ),
        round_trip=({"learning_rate": 0.5, "momentum": 0.9, "nesterov": True, "clipnorm": 1.0},),
        mixed_dtypes={"learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
        invariance=(
            {"momentum": 0.9, "nesterov": True, "clipnorm": 1.0},
            {"clipvalue": 0.5, "gradient_accumulation_steps": 2},
        ),
        checkpoint={
            "learning_rate": DECAY,
            "momentum": 0.9,
            "nesterov": True,
            "use_ema": True,
            "ema_overwrite_frequency": 3,
            "gradient_accumulation_steps": 3,
            "weight_decay": 0.01,
        },
        memory={"momentum": 0.9, "global_clipnorm": 1.0},
        cross_dispatch=({"learning_rate": 0.05, "momentum": 0.9, "nesterov": True},),
    ),
    OptimizerCase(
        fo.optimizers.RMSprop,
        ref.RMSpropRule,
        elementwise=True,
        fused=True,
        lazy=True,
        own_defaults={"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False},
        default_name="rmsprop",
        keras2_epsilon=True,
        decays_alone=True,
        slots=(
            ({}, ("dense_kern_velocity", "bias_velocity")),
            # Keras: momentum <= 0 means no momentum (and no slots).
            ({"momentum": -0.5}, ("dense_kern_velocity", "bias_velocity")),
            (
                {"momentum": 0.5, "centered": True},
                (
                    "dense_kern_velocity",
                    "bias_velocity",
                    "dense_kern_momentum",
                    "bias_momentum",
                    "dense_kern_average_gradient",
                    "bias_average_gradient",
                ),
            ),
            (
                {"centered": True},
                (
                    "dense_kern_velocity",
                    "bias_velocity",
                    "dense_kern_average_gradient",
                    "bias_average_gradient",
                ),
            ),
        ),
        numerics=(
            {},
            {"learning_rate": 0.01, "momentum": 0.9},
            {"learning_rate": 0.01, "centered": True},
            {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.5, "centered": True},
            {"momentum": -0.5},  # Keras: momentum <= 0 means no momentum (and no slots)
            {"clipnorm": 1.0, "weight_decay": 0.05, "epsilon": 1e-3},
            {"momentum": 0.9, "centered": True, "gradient_accumulation_steps": 2, "use_ema": True},
            {"lr": 0.01, "decay": 0.05, "epsilon": None},  # Keras 2 spelling
        ),
        hyperparameters=st.fixed_dictionaries(
            {
                "rho": st.floats(0.5, 0.99),
                "momentum": st.sampled_from([0.0, 0.9]) | _unit,
                "epsilon": _epsilon,
                "centered": st.booleans(),
            }
        ),
        round_trip=(
            {
                "learning_rate": 0.25,
                "rho": 0.8,
                "momentum": 0.5,
                "epsilon": 1e-3,
                "centered": True,
                "clipvalue": 0.5,
            },
        ),
        mixed_dtypes={"learning_rate": 0.01, "momentum": 0.5, "centered": True},
        invariance=({"momentum": 0.9, "centered": True, "clipnorm": 1.0},),
        checkpoint={
            "learning_rate": 0.01,
            "centered": True,
            "momentum": 0.5,
            "loss_scale_factor": 64.0,
            "clipnorm": 1.0,
            "weight_decay": 0.02,
        },
        memory={"momentum": 0.9, "centered": True},
        cross_dispatch=({"momentum": 0.5, "centered": True},),
    ),
    OptimizerCase(
        fo.optimizers.Adam,
        ref.AdamRule,
        elementwise=True,
        fused=True,
        lazy=True,
        own_defaults={"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
        default_name="adam",
        keras2_epsilon=True,
        decays_alone=True,
        slots=(
            ({}, _adam_slots()),
            ({"amsgrad": True}, _adam_slots() + ("dense_kern_velocity_hat", "bias_velocity_hat")),
        ),
        numerics=(
            {},
            {"learning_rate": 0.01, "amsgrad": True},
            {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5},
            {"clipnorm": 1.0},
            {"global_clipnorm": 2.0},
            {"amsgrad": True, "clipvalue": 0.5},
            {"clipvalue": -1.0},
            {"loss_scale_factor": 1000.0, "clipnorm": 1.0},
            {"gradient_accumulation_steps": 3, "amsgrad": True},
            {"use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 2},
            {"decay": 0.1, "weight_decay": 0.05},
            {"learning_rate": CALLABLE, "weight_decay": 0.02},
        ),
        hyperparameters=st.fixed_dictionaries(
            {"beta_1": _beta, "beta_2": _beta_2, "epsilon": _epsilon, "amsgrad": st.booleans()}
        ),
        round_trip=(
            {
                "learning_rate": 0.3,
                "amsgrad": True,
                "use_ema": True,
                "ema_overwrite_frequency": 3,
                "loss_scale_factor": 128.0,
            },
        ),
        mixed_dtypes={"learning_rate": 0.01, "weight_decay": 0.1, "clipnorm": 0.5},
        invariance=(
            {"amsgrad": True},
            {"clipnorm": 10.0, "weight_decay": 0.01, "loss_scale_factor": 8.0},
        ),
        checkpoint={
            "learning_rate": 0.01,
            "amsgrad": True,
            "use_ema": True,
            "ema_momentum": 0.9,
            "gradient_accumulation_steps": 2,
            "weight_decay": 0.01,
            "decay": 0.01,
        },
        memory={},
        cross_dispatch=(
            {},
            {"learning_rate": 0.01, "amsgrad": True, "beta_1": 0.85, "beta_2": 0.95},
        ),
    ),
    OptimizerCase(
        fo.optimizers.AdamW,
        ref.AdamRule,
        elementwise=True,
        fused=True,
        lazy=True,
        own_defaults={"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
        default_name="adamw",
        keras2_epsilon=True,
        decays_alone=True,
        slots=(({}, _adam_slots()),),
        numerics=(
            {"learning_rate": 0.01},
            {"learning_rate": 0.01, "weight_decay": 0.1, "amsgrad": True},
            {"gradient_accumulation_steps": 3, "global_clipnorm": 1.0},
            {"use_ema": True, "ema_overwrite_frequency": 3, "gradient_accumulation_steps": 2},
            {"learning_rate": SCHEDULE, "gradient_accumulation_steps": 2, "clipnorm": 0.5},
        ),
        hyperparameters=st.fixed_dictionaries(
            {"beta_1": _beta, "beta_2": _beta_2, "epsilon": _epsilon, "amsgrad": st.booleans()}
        ),
        round_trip=(
            {
                "weight_decay": 0.1,
                "global_clipnorm": 2.0,
                "gradient_accumulation_steps": 4,
                "decay": 0.01,
            },
        ),
        mixed_dtypes={
            "learning_rate": 0.01,
            "use_ema": True,
            "ema_momentum": 0.5,
            "ema_overwrite_frequency": 2,
            "gradient_accumulation_steps": 2,
        },
        invariance=({"global_clipnorm": 1.0, "use_ema": True, "ema_momentum": 0.9},),
        checkpoint={"learning_rate": WARMUP, "global_clipnorm": 1.0},
        memory={"weight_decay": 0.01},
        cross_dispatch=({"learning_rate": 0.01, "weight_decay": 0.1, "amsgrad": True},),
    ),
    OptimizerCase(
        fo.optimizers.Adadelta,
        ref.AdadeltaRule,
        elementwise=True,
        fused=True,
        lazy=True,
        own_defaults={"rho": 0.95, "epsilon": 1e-7},
        default_name="adadelta",
        keras2_epsilon=True,
        decays_alone=True,
        slots=(
            (
                {},
                (
                    "dense_kern_accumulated_grad",
                    "dense_kern_accumulated_delta_var",
                    "bias_accumulated_grad",
                    "bias_accumulated_delta_var",
                ),
            ),
        ),
        numerics=(
            {},
            {"learning_rate": 1.0, "rho": 0.8, "epsilon": 1e-6},
            {"learning_rate": 1.0, "clipvalue": 0.5, "use_ema": True, "ema_overwrite_frequency": 2},
            {"learning_rate": CALLABLE, "weight_decay": 0.1},
        ),
        hyperparameters=st.fixed_dictionaries(
            {"rho": st.floats(0.5, 0.99), "epsilon": st.sampled_from([1e-7, 1e-5, 1e-3])}
        ),
        round_trip=({"learning_rate": 1.0, "rho": 0.8, "epsilon": 1e-6, "use_ema": True},),
        mixed_dtypes={"learning_rate": 1.0, "clipnorm": 0.5},
        invariance=({"learning_rate": 1.0, "weight_decay": 0.01},),
        checkpoint={
            "learning_rate": 1.0,
            "rho": 0.8,
            "gradient_accumulation_steps": 3,
            "weight_decay": 0.01,
        },
        memory={"learning_rate": 1.0},
        cross_dispatch=({"learning_rate": 1.0, "rho": 0.8},),
    ),
    OptimizerCase(
        fo.optimizers.Adagrad,
        ref.AdagradRule,
        elementwise=True,
        fused=True,
        own_defaults={"initial_accumulator_value": 0.1, "epsilon": 1e-7},
        default_name="adagrad",
        keras2_epsilon=True,
        decays_alone=True,
        slots=(({}, ("dense_kern_accumulator", "bias_accumulator")),),
        numerics=(
            {},
            {"learning_rate": 0.1, "initial_accumulator_value": 0.0, "epsilon": 1e-3},
            {"learning_rate": 0.1, "initial_accumulator_value": 2.5},
            {"learning_rate": 0.1, "global_clipnorm": 1.0, "loss_scale_factor": 64.0},
            {"learning_rate": SCHEDULE, "gradient_accumulation_steps": 3},
        ),
        hyperparameters=st.fixed_dictionaries(
            {"initial_accumulator_value": st.floats(0.01, 1.0), "epsilon": _epsilon}
        ),
        round_trip=({"initial_accumulator_value": 0.5, "epsilon": 1e-5, "decay": 0.1},),
        mixed_dtypes={"learning_rate": 0.1, "initial_accumulator_value": 0.3},
        invariance=({"global_clipnorm": 1.0},),
        checkpoint={
            "learning_rate": 0.05,
            "initial_accumulator_value": 0.5,
            "clipvalue": 0.5,
            "use_ema": True,
            "weight_decay": 0.01,
        },
        memory={"learning_rate": 0.1},
        cross_dispatch=({"learning_rate": 0.1},),
    ),
    OptimizerCase(
        fo.optimizers.Adamax,
        ref.AdamaxRule,
        elementwise=True,
        fused=True,
        lazy=True,
        own_defaults={"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
        default_name="adamax",
        keras2_epsilon=True,
        decays_alone=True,
        slots=(({}, ("dense_kern_momentum", "dense_kern_norm", "bias_momentum", "bias_norm")),),
        numerics=(
            {},
            {"learning_rate": 0.2, "beta_1": 0.85, "beta_2": 0.95, "epsilon": 1e-6},
            {"learning_rate": 0.01, "gradient_accumulation_steps": 2, "clipnorm": 0.5},
            {"decay": 0.1, "weight_decay": 0.01},
        ),
        hyperparameters=st.fixed_dictionaries(
            {"beta_1": _beta, "beta_2": _beta_2, "epsilon": _epsilon}
        ),
        round_trip=({"beta_1": 0.85, "beta_2": 0.95, "epsilon": 1e-6, "weight_decay": 0.01},),
        mixed_dtypes={"learning_rate": 0.1, "gradient_accumulation_steps": 2},
        invariance=({"use_ema": True, "ema_momentum": 0.9},),
        checkpoint={
            "learning_rate": 0.02,
            "use_ema": True,
            "ema_overwrite_frequency": 2,
            "weight_decay": 0.01,
        },
        memory={"use_ema": True},
        cross_dispatch=({"learning_rate": 0.2, "beta_1": 0.85, "beta_2": 0.95},),
    ),
    OptimizerCase(
        fo.optimizers.Nadam,
        ref.NadamRule,
        elementwise=True,
        fused=True,
        lazy=True,
        own_defaults={"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
        default_name="nadam",
        keras2_epsilon=True,
        decays_alone=True,
        slots=(({}, _adam_slots() + ("u_product",)),),
        numerics=(
            {},
            {"learning_rate": 0.5, "beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5},
            {"learning_rate": 0.01, "schedule_decay": 0.004},  # Keras 2's default
            {"learning_rate": 0.01, "schedule_decay": 1.0},
            {"gradient_accumulation_steps": 3, "use_ema": True},
            {"global_clipnorm": 1.0, "weight_decay": 0.05},
            {"learning_rate": SCHEDULE, "schedule_decay": 0.004, "gradient_accumulation_steps": 2},
        ),
        hyperparameters=st.fixed_dictionaries(
            {"beta_1": st.floats(0.1, 0.99), "beta_2": _beta_2, "epsilon": _epsilon},
            optional={"schedule_decay": st.sampled_from([0.004, 1.0])},
        ),
        round_trip=(
            {"beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5, "gradient_accumulation_steps": 2},
            {"learning_rate": 0.002, "schedule_decay": 0.004},
        ),
        # mixed_dtypes: None, its u_product is one float32 scalar every dtype reads, so one
        # optimizer per dtype is no twin of it.
        invariance=({"loss_scale_factor": 8.0},),
        checkpoint={
            "learning_rate": DECAY,
            "gradient_accumulation_steps": 2,
            "use_ema": True,
            "weight_decay": 0.01,
        },
        memory={"use_ema": True},
        cross_dispatch=(
            {"learning_rate": 0.01, "beta_2": 0.67},
            {"learning_rate": 0.01, "schedule_decay": 0.004},
        ),
    ),
    OptimizerCase(
        fo.optimizers.Lion,
        ref.LionRule,
        elementwise=True,
        fused=True,
        lazy=True,
        own_defaults={"beta_1": 0.9, "beta_2": 0.99},
        default_name="lion",
        decays_alone=True,
        slots=(({}, ("dense_kern_momentum", "bias_momentum")),),
        numerics=(
            {},
            {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9},
            {"learning_rate": 0.01, "beta_1": 1.0, "weight_decay": 0.1},
            {"clipvalue": 0.1, "gradient_accumulation_steps": 2, "use_ema": True},
        ),
        # Keras refuses beta_1 = 0 (SignSGD).
        hyperparameters=st.fixed_dictionaries({"beta_1": st.floats(1e-3, 1.0), "beta_2": _unit}),
        round_trip=({"beta_1": 0.5, "beta_2": 0.9, "weight_decay": 0.1, "clipnorm": 1.0},),
        mixed_dtypes={"learning_rate": 0.01, "weight_decay": 0.1},
        invariance=({"weight_decay": 0.1},),
        checkpoint={"learning_rate": 0.001, "weight_decay": 0.1, "loss_scale_factor": 8.0},
        memory={},
        cross_dispatch=({"learning_rate": 0.001, "weight_decay": 0.1},),
    ),
    OptimizerCase(
        fo.optimizers.Ftrl,
        ref.FtrlRule,
        elementwise=True,
        fused=True,
        lazy=True,
        own_defaults={
            "learning_rate_power": -0.5,
            "initial_accumulator_value": 0.1,
            "l1_regularization_strength": 0.0,
            "l2_regularization_strength": 0.0,
            "l2_shrinkage_regularization_strength": 0.0,
            "beta": 0.0,
        },
        default_name="ftrl",
        slots=(
            (
                {},
                ("dense_kern_accumulator", "dense_kern_linear", "bias_accumulator", "bias_linear"),
            ),
        ),
        numerics=(
            {},
            {
                "learning_rate": 0.05,
                "learning_rate_power": -0.2,
                "initial_accumulator_value": 0.4,
                "l1_regularization_strength": 0.05,
                "l2_regularization_strength": 0.15,
                "l2_shrinkage_regularization_strength": 0.01,
                "beta": 0.3,
            },
            {"learning_rate": 0.1, "learning_rate_power": 0.0, "l1_regularization_strength": 0.01},
            {"learning_rate": 0.1, "learning_rate_power": -1.0, "l2_regularization_strength": 0.5},
            {
                "learning_rate": 0.1,
                "initial_accumulator_value": 0.0,
                "l2_shrinkage_regularization_strength": 0.1,
                "beta": 0.5,
            },
            {
                "learning_rate": SCHEDULE,
                "l1_regularization_strength": 0.1,
                "gradient_accumulation_steps": 2,
                "use_ema": True,
                "clipnorm": 1.0,
            },
        ),
        hyperparameters=st.fixed_dictionaries(
            {
                "learning_rate_power": st.sampled_from([-0.5, 0.0, -1.0]) | st.floats(-1.0, 0.0),
                "initial_accumulator_value": st.floats(0.05, 1.0),
                "l1_regularization_strength": st.sampled_from([0.0, 0.01]),
                "l2_regularization_strength": st.sampled_from([0.0, 0.1]),
                "l2_shrinkage_regularization_strength": st.sampled_from([0.0, 0.05]),
                "beta": st.sampled_from([0.0, 0.5]),
            }
        ),
        round_trip=(
            {
                "learning_rate": 0.05,
                "learning_rate_power": -0.2,
                "initial_accumulator_value": 0.4,
                "l1_regularization_strength": 0.05,
                "l2_regularization_strength": 0.15,
                "l2_shrinkage_regularization_strength": 0.01,
                "beta": 0.3,
            },
        ),
        mixed_dtypes={
            "learning_rate": 0.1,
            "learning_rate_power": -0.2,
            "l1_regularization_strength": 0.01,
            "beta": 0.5,
        },
        invariance=(
            {"l1_regularization_strength": 0.01},  # learning_rate_power -0.5: a sqrt
            {"learning_rate_power": -0.2, "beta": 0.5},
        ),  # a general power
        checkpoint={
            "learning_rate": 0.05,
            "l1_regularization_strength": 0.01,
            "l2_regularization_strength": 0.01,
            "l2_shrinkage_regularization_strength": 0.01,
            "beta": 0.1,
            "use_ema": True,
        },
        memory={"learning_rate_power": -0.3},
        cross_dispatch=(
            {
                "learning_rate": 0.05,
                "learning_rate_power": -0.3,
                "l1_regularization_strength": 0.01,
                "l2_regularization_strength": 0.1,
                "beta": 0.3,
            },
            {"learning_rate": 0.1},
        ),
    ),
    OptimizerCase(
        # The trust ratio is a per-tensor norm, read in a reduction pass before the update.
        fo.optimizers.Lamb,
        ref.LambRule,
        elementwise=False,
        fused=True,
        own_defaults={"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
        default_name=None,
        decays_alone=True,
        slots=(({}, _adam_slots()),),
        numerics=(
            {},
            {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5},
            {"learning_rate": 0.01, "weight_decay": 0.1},
            {"clipnorm": 1.0, "loss_scale_factor": 1000.0},
            {"global_clipnorm": 1.0, "use_ema": True, "ema_overwrite_frequency": 2},
            {"clipvalue": 0.5, "gradient_accumulation_steps": 3, "weight_decay": 0.05},
            {"learning_rate": SCHEDULE, "decay": 0.1},
        ),
        hyperparameters=st.fixed_dictionaries(
            {"beta_1": _beta, "beta_2": _beta_2, "epsilon": _epsilon}
        ),
        round_trip=(
            {
                "learning_rate": 0.25,
                "beta_1": 0.5,
                "beta_2": 0.75,
                "epsilon": 1e-5,
                "weight_decay": 0.01,
                "clipnorm": 1.0,
            },
            {
                "use_ema": True,
                "ema_overwrite_frequency": 2,
                "gradient_accumulation_steps": 3,
                "decay": 0.1,
            },
        ),
        mixed_dtypes={"learning_rate": 0.01, "weight_decay": 0.1},
        invariance=(
            {},  # per-tensor norms from the read-only reduction pass
            {"weight_decay": 0.01, "global_clipnorm": 1.0},
        ),
        checkpoint={"learning_rate": 0.01, "weight_decay": 0.01, "gradient_accumulation_steps": 2},
        memory={},
        cross_dispatch=({"learning_rate": 0.01, "weight_decay": 0.01},),
    ),
    OptimizerCase(
        fo.optimizers.ScheduleFreeAdamW,
        ref.ScheduleFreeAdamWRule,
        elementwise=True,
        fused=True,
        own_defaults={"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "warmup_steps": 0},
        default_learning_rate=0.0025,
        default_name="schedule_free_adamw",
        slots=(({}, _adam_slots()),),
        numerics=(
            {},
            {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5},
            {"learning_rate": 0.01, "warmup_steps": 4, "weight_decay": 0.1},
            {"warmup_steps": 2, "gradient_accumulation_steps": 2, "clipnorm": 0.5},
            {"global_clipnorm": 1.0, "use_ema": True, "loss_scale_factor": 64.0},
            {
                "learning_rate": CALLABLE,
                "clipvalue": 0.1,
                "use_ema": True,
                "ema_overwrite_frequency": 3,
            },
        ),
        hyperparameters=st.fixed_dictionaries(
            {
                "beta_1": _beta,
                "beta_2": _beta_2,
                "epsilon": _epsilon,
                "warmup_steps": st.integers(0, 3),
            }
        ),
        round_trip=(
            {
                "learning_rate": 0.5,
                "beta_1": 0.8,
                "beta_2": 0.9,
                "epsilon": 1e-6,
                "warmup_steps": 100,
                "weight_decay": 0.1,
            },
            {"global_clipnorm": 2.0, "loss_scale_factor": 128.0, "use_ema": True},
        ),
        mixed_dtypes={"learning_rate": 0.01, "warmup_steps": 2, "weight_decay": 0.1},
        invariance=({"warmup_steps": 2},),
        checkpoint={"learning_rate": 0.01, "warmup_steps": 3, "weight_decay": 0.01},
        memory={},
        cross_dispatch=({"warmup_steps": 20},),
    ),
    OptimizerCase(
        # The factored second moment reduces rows and columns: NumPy around one native call.
        fo.optimizers.Adafactor,
        ref.AdafactorRule,
        elementwise=False,
        fused=False,
        own_defaults={
            "beta_2_decay": -0.8,
            "epsilon_1": 1e-30,
            "epsilon_2": 1e-3,
            "clip_threshold": 1.0,
            "relative_step": True,
        },
        default_name="adafactor",
        decays_alone=True,
        # A vector's r and c are placeholders named as the variable (Keras's build).
        slots=(
            (
                {},
                (
                    "dense_kern",
                    "dense_kern",
                    "dense_kern_velocity",
                    "bias",
                    "bias",
                    "bias_velocity",
                ),
            ),
        ),
        numerics=(
            {},
            {"learning_rate": 0.5},  # above 1 / sqrt(t): the cap applies
            {
                "learning_rate": 0.01,
                "beta_2_decay": -0.5,
                "epsilon_1": 1e-20,
                "epsilon_2": 1e-2,
                "clip_threshold": 0.5,
                "relative_step": False,
            },
            {"weight_decay": 0.05, "clipnorm": 1.0},
            {"global_clipnorm": 1.0, "use_ema": True, "ema_overwrite_frequency": 2},
            {"clipvalue": 0.5, "gradient_accumulation_steps": 3, "loss_scale_factor": 64.0},
            {"learning_rate": SCHEDULE, "decay": 0.1},
        ),
        round_trip=(
            {
                "learning_rate": 0.5,
                "beta_2_decay": -0.65,
                "epsilon_1": 1e-15,
                "epsilon_2": 1e-4,
                "clip_threshold": 0.9,
                "relative_step": False,
                "weight_decay": 0.01,
            },
        ),
        mixed_dtypes={"learning_rate": 0.1, "weight_decay": 0.1, "clipnorm": 0.5},
        invariance=({},),  # row and column sums; (300, 7) is factored
        checkpoint={"learning_rate": 0.01, "weight_decay": 0.01},
        memory={},
        cross_dispatch=({"learning_rate": 0.1, "beta_2_decay": -0.65},),
    ),
    OptimizerCase(
        # Newton-Schulz on matrices, AdamW (one native call) on the rest.
        fo.optimizers.Muon,
        ref.MuonRule,
        elementwise=False,
        fused=False,
        own_defaults=None,
        # Muon's slots depend on the path: a momentum for a matrix, AdamW's two otherwise.
        slots=(({}, ("dense_kern_momentum", "bias_momentum", "bias_velocity")),),
        numerics=(
            {},
            {
                "learning_rate": 0.01,
                "momentum": 0.9,
                "nesterov": False,
                "ns_steps": 3,
                "rms_rate": None,
            },
            {
                "learning_rate": 0.02,
                "adam_lr_ratio": 0.1,
                "adam_weight_decay": None,
                "weight_decay": 0.1,
                "exclude_layers": ["variable_0", "out/"],
            },
            {"global_clipnorm": 1.0, "use_ema": True, "ema_overwrite_frequency": 2},
            {"clipnorm": 1.0, "gradient_accumulation_steps": 2, "loss_scale_factor": 64.0},
            {"clipvalue": 0.5, "use_ema": True, "weight_decay": None, "adam_weight_decay": 0.1},
            {"learning_rate": SCHEDULE, "decay": 0.1, "muon_a": 2.0, "muon_b": -1.5, "muon_c": 0.5},
            {"learning_rate": CALLABLE, "exclude_embeddings": False},
            # A step as large as the weights: the orthogonalized update dominates every result.
            {"learning_rate": 0.5, "weight_decay": None, "adam_weight_decay": None},
        ),
        # Newton-Schulz's matrix products (the native gemm against NumPy's BLAS) sum in other
        # orders, and the iteration carries those roundings into the update: up to 4 float32
        # ulps (of a step as large as the weights) and 1e-12 relative in float64 seen here;
        # the budget leaves room for other CPUs' kernels, whose summation orders differ again.
        tolerance={"ulps": 8, "rtol64": 1e-10},
        round_trip=(
            {
                "adam_beta_1": 0.8,
                "adam_beta_2": 0.99,
                "adam_weight_decay": None,
                "epsilon": 1e-6,
                "weight_decay": 0.1,
                "exclude_layers": ["head", "^out/"],
                "exclude_embeddings": False,
                "muon_a": 2.0,
                "muon_b": -1.5,
                "muon_c": 0.5,
                "adam_lr_ratio": 0.1,
                "momentum": 0.9,
                "ns_steps": 6,
                "nesterov": False,
                "rms_rate": None,
                "global_clipnorm": 1.0,
            },
        ),
        mixed_dtypes={"learning_rate": 0.1, "use_ema": True, "gradient_accumulation_steps": 2},
        invariance=({},),  # Newton-Schulz on (300, 7), AdamW on the rest
        checkpoint={"learning_rate": 0.01, "use_ema": True},
        memory={},
        cross_dispatch=({"learning_rate": 0.02},),
    ),
)


def cases(field: str, *, ids: Callable[[OptimizerCase, Kwargs], str] = label) -> list:
    """`pytest.param(case, kwargs)` for every record and each argument set in its `field` (a
    tuple of argument mappings), with readable ids."""
    return [
        pytest.param(case, kwargs, id=ids(case, kwargs))
        for case in OPTIMIZERS
        for kwargs in getattr(case, field)
    ]


# A valid value for every scalar argument of the native update functions, by argument name. The
# functions and their arguments come from the native declaration (`_native.rule_signatures()`),
# so a new rule whose hyperparameters have these names needs nothing here; a new name needs
# one entry (test_fuzz and test_bad_input fail until it has one).
NATIVE_SCALARS = {
    "learning_rate": 0.1,
    "momentum": 0.9,
    "nesterov": True,
    "rho": 0.9,
    "beta_1": 0.9,
    "beta_2": 0.999,
    "epsilon": 1e-7,
    "iterations": 3,
    "u_product": 0.5,
    "schedule_decay": 1.0,
    "learning_rate_power": -0.5,
    "l1_regularization_strength": 0.01,
    "l2_regularization_strength": 0.01,
    "l2_shrinkage_regularization_strength": 0.01,
    "beta": 0.1,
    "warmup_steps": 2,
}
_SCALAR_KINDS = ("real", "int", "bool")


def native_scalars(name):
    """Valid values of the scalar arguments of native update function `name`, in order."""
    args = _native.rule_signatures()[name]
    return [NATIVE_SCALARS[a["name"]] for a in args if a["kind"] in _SCALAR_KINDS]
