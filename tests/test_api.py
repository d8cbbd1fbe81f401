"""The Python API surface: Keras 3's `keras.optimizers` names, arguments, errors and state.

Numerics of the update rules against the NumPy reference live in test_numerics.py; here the
expected values come from Keras (its test files and messages, docs/keras.md), from hand-derived
arithmetic, or from a float64 computation written out in the test.
"""

import doctest
import functools
import importlib
import inspect
import json
import pickle
import re

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _native
from ferroptim.optimizers import (
    SGD,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Ftrl,
    Lion,
    Muon,
    Nadam,
    Optimizer,
    RMSprop,
)
from optimizers_under_test import OPTIMIZERS, build, label
from reference import _BASE_ARGS, cr_pow

BASE_KEYS = [
    "name",
    "learning_rate",
    "weight_decay",
    "clipnorm",
    "global_clipnorm",
    "clipvalue",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "loss_scale_factor",
    "gradient_accumulation_steps",
]
# The optimizers whose own arguments come between `learning_rate` and the base ones, in Keras's
# positional order (their records' `own_defaults`); Muon's surround the base ones and have their
# own test below.
KERAS_SIGNATURE = [case for case in OPTIMIZERS if case.own_defaults is not None]
CLASSES = [case.cls for case in OPTIMIZERS]
# The optimizers whose rule runs in NumPy around native calls (Adafactor, Muon): their own paths
# for checks, accumulation and state.
UNFUSED = [case.cls for case in OPTIMIZERS if not case.fused]


def _name(cls):
    return cls.__name__


def _f32(values):
    return np.array(values, dtype=np.float32)


# --- package surface -----------------------------------------------------------------------------


def test_package_exports():
    assert set(fo.__all__) == {
        "IndexedSlices",
        "optimizers",
        "set_num_threads",
        "get_num_threads",
        "__version__",
    }
    assert isinstance(fo.__version__, str) and fo.__version__
    assert {"Optimizer", "schedules", "get", "serialize", "deserialize"} | {
        case.name for case in OPTIMIZERS
    } <= set(fo.optimizers.__all__)
    for name in fo.optimizers.__all__:
        obj = getattr(fo.optimizers, name)
        if isinstance(obj, type) and issubclass(obj, Optimizer) and obj is not Optimizer:
            if name in ("LossScaleOptimizer", "MultiOptimizer"):
                # Wrappers need the optimizers they wrap: a name alone cannot build them (in
                # Keras neither); test_loss_scale.py and test_multi_optimizer.py cover them.
                continue
            # Every optimizer class exported is reachable by name through `get`.
            assert type(fo.optimizers.get(name.upper())) is obj


def test_set_num_threads_round_trip_and_validation():
    before = fo.get_num_threads()
    try:
        fo.set_num_threads(1)
        assert fo.get_num_threads() == 1
        fo.set_num_threads(2)
        assert fo.get_num_threads() == 2
    finally:
        fo.set_num_threads(before)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="int >= 1"):
            fo.set_num_threads(bad)
    for bad in ("2", 2.0, True, None):
        with pytest.raises(TypeError, match="int >= 1"):
            fo.set_num_threads(bad)
    assert fo.get_num_threads() == before


@pytest.mark.parametrize(
    "module", ["ferroptim", "ferroptim._indexed_slices"] + [cls.__module__ for cls in CLASSES]
)
def test_docstring_examples_run(module):
    results = doctest.testmod(importlib.import_module(module))
    assert results.attempted > 0 and results.failed == 0


# --- constructor: Keras's signatures and defaults ------------------------------------------------


def test_positional_order_matches_keras():
    # Keras: SGD(learning_rate, momentum, nesterov, ...), Adam(learning_rate, beta_1, beta_2,
    # epsilon, amsgrad, ...), AdamW(learning_rate, weight_decay, beta_1, ...).
    sgd = SGD(0.5, 0.25, True)
    assert (sgd.learning_rate, sgd.momentum, sgd.nesterov) == (0.5, 0.25, True)
    adam = Adam(0.5, 0.8, 0.75, 0.125, True)
    assert (adam.beta_1, adam.beta_2, adam.epsilon, adam.amsgrad) == (0.8, 0.75, 0.125, True)
    adamw = AdamW(0.5, 0.25, 0.8)
    assert (adamw.weight_decay, adamw.beta_1) == (0.25, 0.8)
    rmsprop = RMSprop(0.5, 0.8, 0.25, 0.125, True, 0.01)
    assert (
        rmsprop.rho,
        rmsprop.momentum,
        rmsprop.epsilon,
        rmsprop.centered,
        rmsprop.weight_decay,
    ) == (0.8, 0.25, 0.125, True, 0.01)
    adagrad = Adagrad(0.5, 0.25, 0.125, 0.01)
    assert (adagrad.initial_accumulator_value, adagrad.epsilon, adagrad.weight_decay) == (
        0.25,
        0.125,
        0.01,
    )
    adadelta = Adadelta(0.5, 0.8, 0.125, 0.01)
    assert (adadelta.rho, adadelta.epsilon, adadelta.weight_decay) == (0.8, 0.125, 0.01)
    for cls in (Adamax, Nadam):
        opt = cls(0.5, 0.8, 0.75, 0.125, 0.01)
        assert (opt.beta_1, opt.beta_2, opt.epsilon, opt.weight_decay) == (0.8, 0.75, 0.125, 0.01)
    lion = Lion(0.5, 0.8, 0.75, 0.01)
    assert (lion.beta_1, lion.beta_2, lion.weight_decay) == (0.8, 0.75, 0.01)
    ftrl = Ftrl(0.5, -0.25, 0.5, 0.125, 0.0625, 0.03125, 0.75, 0.01)
    assert (
        ftrl.learning_rate_power,
        ftrl.initial_accumulator_value,
        ftrl.l1_regularization_strength,
        ftrl.l2_regularization_strength,
        ftrl.l2_shrinkage_regularization_strength,
        ftrl.beta,
        ftrl.weight_decay,
    ) == (-0.25, 0.5, 0.125, 0.0625, 0.03125, 0.75, 0.01)


# BaseOptimizer's arguments in Keras 3's signature order: the reference's, but for Keras 2's
# `decay`.
BASE_ARGUMENTS = [argument for argument in _BASE_ARGS if argument != "decay"]


@pytest.mark.parametrize("case", KERAS_SIGNATURE, ids=repr)
def test_signature_is_keras(case):
    # Keras 3: learning_rate, the optimizer's own arguments, then the base arguments in
    # BaseOptimizer's order (AdamW puts weight_decay second), name, **kwargs; ferroptim's
    # `lazy` after `name` where the optimizer takes it.
    base = [*BASE_ARGUMENTS, "name", *(["lazy"] if case.lazy else []), "kwargs"]
    cls = case.cls
    own = list(case.own_defaults)
    if cls is AdamW:
        own = ["weight_decay"] + own
        base.remove("weight_decay")
    parameters = inspect.signature(cls).parameters
    assert list(parameters) == ["learning_rate"] + own + base
    assert parameters["learning_rate"].default == case.default_learning_rate
    for key, default in case.own_defaults.items():
        assert parameters[key].default == default, key
        assert type(parameters[key].default) is type(default), key
    assert parameters["name"].default == case.default_name


@pytest.mark.parametrize("case", KERAS_SIGNATURE, ids=repr)
def test_config_keys_and_defaults(case):
    cls = case.cls
    config = cls().get_config()
    assert list(config) == BASE_KEYS + list(case.own_defaults)
    lr = case.default_learning_rate
    # Keras stores a float learning rate in a float32 variable.
    assert config["learning_rate"] == float(np.float32(lr))
    assert config["learning_rate"] != lr
    assert config["weight_decay"] == (0.004 if cls is AdamW else None)
    assert config["ema_momentum"] == 0.99
    assert config["use_ema"] is False
    for key in (
        "clipnorm",
        "global_clipnorm",
        "clipvalue",
        "ema_overwrite_frequency",
        "loss_scale_factor",
        "gradient_accumulation_steps",
    ):
        assert config[key] is None
    own = {key: config[key] for key in case.own_defaults}
    assert own == case.own_defaults


def test_adam_config_learning_rate_is_the_float32_value():
    assert Adam().get_config()["learning_rate"] == 0.0010000000474974513


def test_default_names_are_keras_defaults():
    # Keras 3: a default name is a fixed string, or None (automatic: SGD's, Lamb's, Muon's).
    for case in OPTIMIZERS:
        if case.default_name is not None:
            assert case.cls().name == case.default_name and case.cls().name == case.default_name
    first, second = SGD().name, SGD().name
    match = re.fullmatch(r"sgd(?:_(\d+))?", first)
    assert match
    assert second == f"sgd_{int(match.group(1) or 0) + 1}"


def test_automatic_names_are_snake_case_and_unique():
    class RMSprop(SGD):
        pass

    class ScheduleFreeAdamW(SGD):
        pass

    assert RMSprop().name == "rm_sprop"
    assert RMSprop().name == "rm_sprop_1"
    assert ScheduleFreeAdamW().name == "schedule_free_adam_w"
    assert Adam(name=None).name.startswith("adam")
    names = {AdamW(name=None).name for _ in range(3)}
    assert len(names) == 3 and all(re.fullmatch(r"adam_w(_\d+)?", n) for n in names)
    assert SGD(name="mine").name == "mine" and SGD(name="mine").name == "mine"


# --- constructor errors (Keras's wording) --------------------------------------------------------


@pytest.mark.parametrize(
    "factory,message",
    [
        (lambda: Adam(foo=1), "Argument(s) not recognized: {'foo': 1}"),
        (
            lambda: SGD(momentum=0.9, bar=2, baz=3),
            "Argument(s) not recognized: {'bar': 2, 'baz': 3}",
        ),
        (
            lambda: Adam(learning_rate=1),
            "Argument `learning_rate` should be float, or an instance "
            "of LearningRateSchedule, or a callable (that takes in the "
            "current iteration value and returns the corresponding "
            "learning rate value). Received instead: learning_rate=1",
        ),
        (lambda: SGD(learning_rate=np.float32(0.1)), "Argument `learning_rate` should be float"),
        (lambda: SGD(momentum=1), "`momentum` must be a float between [0, 1]."),
        (lambda: SGD(momentum=1.5), "`momentum` must be a float between [0, 1]."),
        (
            lambda: AdamW(weight_decay=None),
            "Argument `weight_decay` must be a float. Received: weight_decay=None",
        ),
        (
            lambda: SGD(clipnorm=1.0, global_clipnorm=1.0),
            "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
            "clipnorm=1.0, clipvalue=None, global_clipnorm=1.0",
        ),
        (
            lambda: Adam(gradient_accumulation_steps=1),
            "`gradient_accumulation_steps` must be an integer >= 2. Received: "
            "gradient_accumulation_steps=1",
        ),
        (
            lambda: Adam(use_ema=True, ema_momentum=1.5),
            "`ema_momentum` must be in the range [0, 1]. Received: ema_momentum=1.5",
        ),
        (
            lambda: Adam(use_ema=True, ema_overwrite_frequency=2.0),
            "`ema_overwrite_frequency` must be an integer >= 1 or None. Received: "
            "ema_overwrite_frequency=2.0",
        ),
    ],
)
def test_constructor_errors_use_keras_wording(factory, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        factory()


def test_np_float64_learning_rate_is_a_float():
    # Keras's check is isinstance(x, float), which np.float64 passes.
    assert SGD(learning_rate=np.float64(0.5)).learning_rate == 0.5


# --- Keras 2 spellings ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES, ids=_name)
def test_lr_is_an_alias_of_learning_rate(cls):
    assert cls(lr=0.25).get_config()["learning_rate"] == 0.25
    assert cls(lr=0.1, name="x").get_config() == cls(learning_rate=0.1, name="x").get_config()


@pytest.mark.parametrize("cls", CLASSES, ids=_name)
def test_lr_and_learning_rate_together_is_an_error(cls):
    with pytest.raises(ValueError, match="Both `learning_rate` and its Keras 2 alias `lr`"):
        cls(learning_rate=0.1, lr=0.2)
    # Even when the explicit value equals the default.
    with pytest.raises(ValueError, match="`lr`"):
        cls(learning_rate=float(str(cls().get_config()["learning_rate"])), lr=0.2)


def test_lr_in_a_subclass_that_forwards_its_arguments():
    class Mine(SGD):
        def __init__(self, **kwargs):
            super().__init__(momentum=0.5, **kwargs)

    assert Mine(lr=0.25).learning_rate == 0.25
    with pytest.raises(ValueError, match="`lr`"):
        Mine(learning_rate=0.5, lr=0.25)


def test_lr_follows_the_learning_rate_rules():
    with pytest.raises(ValueError, match="Argument `learning_rate` should be float"):
        SGD(lr=1)
    schedule = fo.optimizers.schedules.PiecewiseConstantDecay([2], [0.5, 0.25])
    assert SGD(lr=schedule).get_config()["learning_rate"]["class_name"] == (
        "PiecewiseConstantDecay"
    )


def test_keras2_style_call():
    opt = SGD(lr=0.01, decay=1e-6, momentum=0.9, nesterov=True)
    config = opt.get_config()
    assert config["decay"] == 1e-6 and config["momentum"] == 0.9 and config["nesterov"] is True
    assert list(config)[len(BASE_KEYS)] == "decay"


@pytest.mark.parametrize("decay", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_bad_decay_is_rejected(decay):
    with pytest.raises(ValueError, match="`decay`"):
        SGD(decay=decay)


@pytest.mark.parametrize("decay", [None, 0, 0.0])
def test_decay_zero_or_none_is_not_reported(decay):
    assert "decay" not in SGD(decay=decay).get_config()


def test_epsilon_none_means_1e_7():
    assert Adam(epsilon=None).epsilon == 1e-7
    assert AdamW(epsilon=None).get_config()["epsilon"] == 1e-7


def _decayed_sgd_reference(lr, decay, weight_decay, w0, grads, accumulation=None):
    """float64 Keras 2 decay: lr_t = float32(lr) / (1 + decay * iterations), applied to the
    update and to decoupled weight decay; iterations counts updates."""
    w = np.array(w0, dtype=np.float64)
    base = float(np.float32(lr))
    acc = np.zeros_like(w)
    updates = 0
    for raw, g in enumerate(grads):
        g = np.asarray(g, dtype=np.float64)
        if accumulation:
            if (raw + 1) % accumulation != 0:
                acc = acc + g
                continue
            g = (g + acc) / accumulation
            acc = np.zeros_like(w)
        lr_t = base / (1.0 + decay * updates)
        if weight_decay is not None:
            w = w - w * weight_decay * lr_t
        w = w - g * lr_t
        updates += 1
    return w


@pytest.mark.parametrize(
    "kwargs",
    [
        {"decay": 0.5},
        {"decay": 0.05, "weight_decay": 0.2},
        {"decay": 0.3, "gradient_accumulation_steps": 2},
    ],
)
def test_decay_divides_the_learning_rate_by_one_plus_decay_times_iterations(kwargs):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(7)
    grads = [rng.standard_normal(7) for _ in range(6)]
    expected = _decayed_sgd_reference(
        0.1,
        kwargs["decay"],
        kwargs.get("weight_decay"),
        w,
        grads,
        kwargs.get("gradient_accumulation_steps"),
    )
    opt = SGD(lr=0.1, **kwargs)
    for g in grads:
        opt.apply_gradients([(g, w)])
    np.testing.assert_allclose(w, expected, rtol=1e-13, atol=1e-15)


def test_decay_zero_is_bit_identical_to_no_decay():
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((4, 5)).astype(np.float32)
    w_plain, w_zero = w0.copy(), w0.copy()
    plain = AdamW(learning_rate=0.01, weight_decay=0.1)
    zero = AdamW(learning_rate=0.01, weight_decay=0.1, decay=0.0)
    for _ in range(5):
        g = rng.standard_normal((4, 5)).astype(np.float32)
        plain.apply_gradients([(g, w_plain)])
        zero.apply_gradients([(g, w_zero)])
    assert np.array_equal(w_plain, w_zero)


def test_decay_stacks_on_a_callable_learning_rate():
    w = np.zeros(3)
    opt = SGD(learning_rate=lambda: 0.5, decay=1.0)
    for _ in range(3):
        opt.apply_gradients([(np.ones(3), w)])
    # lr_t = 0.5 / (1 + it): 0.5 + 0.25 + 0.5/3
    np.testing.assert_allclose(w, -(0.5 + 0.25 + 0.5 / 3) * np.ones(3), rtol=1e-15)


# --- learning rate: float, schedule, callable, setter --------------------------------------------


class _RecordingSchedule(fo.optimizers.schedules.LearningRateSchedule):
    """lr(step) = (step + 1) / 8, exact in float32; records every step it is called with."""

    def __init__(self):
        self.steps = []

    def __call__(self, step):
        self.steps.append(int(step))
        return (int(step) + 1) / 8

    def get_config(self):
        return {}


def test_schedule_is_called_with_the_raw_iteration_count():
    schedule = _RecordingSchedule()
    w = np.zeros(2)
    opt = SGD(learning_rate=schedule, gradient_accumulation_steps=2)
    for _ in range(6):
        opt.apply_gradients([(np.ones(2), w)])
    # Update steps happen at raw counts 1, 3, 5; the gradient is the mean of ones.
    np.testing.assert_allclose(w, -np.full(2, (2 + 4 + 6) / 8))
    assert schedule.steps == [1, 3, 5]
    assert opt.iterations == 3
    assert opt.learning_rate == (6 + 1) / 8  # read at raw count 6
    assert schedule.steps[-1] == 6


def test_callable_learning_rate_keras_test():
    # keras optimizer_test.test_callable_learning_rate
    w = _f32([[1.0, 2.0], [3.0, 4.0]])
    opt = SGD(learning_rate=lambda: 0.1)
    opt.apply_gradients([(np.ones((2, 2), np.float32), w)])
    np.testing.assert_allclose(w, [[0.9, 1.9], [2.9, 3.9]], rtol=1e-6)


def test_learning_rate_setter_rounds_to_float32():
    opt = SGD(learning_rate=0.5)
    opt.learning_rate = 0.1
    assert opt.learning_rate == float(np.float32(0.1))
    assert opt.get_config()["learning_rate"] == float(np.float32(0.1))
    w = np.zeros(1)
    opt.apply_gradients([(np.ones(1), w)])
    assert w[0] == -float(np.float32(0.1))  # float64 params see float64(float32(lr))


def test_learning_rate_setter_on_a_schedule_optimizer_is_a_type_error():
    opt = SGD(learning_rate=_RecordingSchedule())
    with pytest.raises(
        TypeError,
        match=re.escape(
            "This optimizer was created with a `LearningRateSchedule` object as its "
            "`learning_rate` constructor argument, hence its learning rate is not settable."
        ),
    ):
        opt.learning_rate = 0.1


def test_setting_a_callable_untracks_the_learning_rate_variable():
    # keras optimizer_test.test_setting_lr_to_callable_untracks_lr_var
    w = np.ones(3, np.float32)
    opt = Adam(learning_rate=0.001)
    opt.build([w])
    assert len(opt.variables) == 4
    assert opt.variable_names[1] == "learning_rate"
    opt.learning_rate = lambda: 0.5
    assert len(opt.variables) == 3
    assert "learning_rate" not in opt.variable_names
    assert opt.learning_rate == 0.5


def test_learning_rate_change_between_steps_is_used():
    w = np.zeros(1)
    opt = SGD(learning_rate=1.0)
    opt.apply_gradients([(np.ones(1), w)])
    opt.learning_rate = 0.5
    opt.apply_gradients([(np.ones(1), w)])
    assert w[0] == -1.5


# --- variables, names, build ---------------------------------------------------------------------


def test_variables_order_keras_example():
    # docs/keras.md §2.10: Adam(use_ema=True, gradient_accumulation_steps=2) on one variable `kern`.
    params = {"kern": np.ones((2, 3), np.float32)}
    opt = Adam(use_ema=True, gradient_accumulation_steps=2)
    opt.build(params)
    assert opt.variable_names == [
        "iteration",
        "learning_rate",
        "kern_average",
        "kern_gradient_accumulator",
        "kern_momentum",
        "kern_velocity",
    ]
    shapes = [np.shape(v) for v in opt.variables]
    assert shapes == [(), (), (2, 3), (2, 3), (2, 3), (2, 3)]


def test_variables_order_with_two_variables():
    params = {"dense/kernel": np.ones((2, 2), np.float32), "dense/bias": np.ones(2, np.float32)}
    opt = Adam(amsgrad=True, use_ema=True, gradient_accumulation_steps=3)
    opt.build(params)
    # Averages then accumulators per variable; momentum/velocity interleaved; velocity_hat last.
    assert opt.variable_names == [
        "iteration",
        "learning_rate",
        "dense_kernel_average",
        "dense_bias_average",
        "dense_kernel_gradient_accumulator",
        "dense_bias_gradient_accumulator",
        "dense_kernel_momentum",
        "dense_kernel_velocity",
        "dense_bias_momentum",
        "dense_bias_velocity",
        "dense_kernel_velocity_hat",
        "dense_bias_velocity_hat",
    ]


def test_list_variables_are_named_by_position():
    opt = SGD(momentum=0.5)
    opt.build([np.ones(2), np.ones(3)])
    assert opt.variable_names == [
        "iteration",
        "learning_rate",
        "variable_0_momentum",
        "variable_1_momentum",
    ]


def test_sgd_without_momentum_has_no_slots_keras_single_step():
    # keras sgd_test.test_single_step: two variables (iteration, learning_rate) = [1, 0.5].
    w = _f32([1.0, 2.0, 3.0, 4.0])
    opt = SGD(learning_rate=0.5)
    opt.apply_gradients([(_f32([1.0, 6.0, 7.0, 2.0]), w)])
    np.testing.assert_array_equal(w, [0.5, -1.0, -0.5, 3.0])
    assert len(opt.variables) == 2
    assert [v.item() for v in opt.variables] == [1, 0.5]
    assert opt.variables[0].dtype == np.int64 and opt.variables[1].dtype == np.float32


def test_schedule_learning_rate_has_no_variable():
    opt = Adam(learning_rate=_RecordingSchedule())
    opt.build([np.ones(3)])
    assert opt.variable_names == ["iteration", "variable_0_momentum", "variable_0_velocity"]


def test_slots_are_zeros_with_the_parameter_shape_dtype_and_layout():
    c = np.ones((3, 4), np.float32)
    f = np.asfortranarray(np.ones((3, 4), np.float64))
    opt = Adam()
    opt.build([c, f])
    slots = opt.variables[2:]
    for slot, param in zip(slots, [c, c, f, f]):
        assert slot.shape == param.shape and slot.dtype == param.dtype
        assert not slot.any()
    assert slots[0].flags.c_contiguous
    assert slots[2].flags.f_contiguous and not slots[2].flags.c_contiguous


def test_build_is_idempotent():
    w = np.ones(3)
    opt = Adam()
    opt.build([w])
    opt.build([w, np.ones(2)])
    assert len(opt.variables) == 4


def test_variables_are_live_slots():
    w = np.ones(3, np.float32)
    opt = SGD(learning_rate=1.0, momentum=0.5)
    opt.apply_gradients([(np.ones(3, np.float32), w)])
    momentum = opt.variables[2]
    np.testing.assert_array_equal(momentum, -np.ones(3))
    opt.apply_gradients([(np.ones(3, np.float32), w)])
    # m = 0.5 * (-1) - 1 = -1.5, seen through the array returned before the step.
    np.testing.assert_array_equal(momentum, np.full(3, -1.5))


def test_iterations_and_apply_gradients_return_value():
    w = np.ones(2)
    opt = SGD(gradient_accumulation_steps=3)
    returned = [opt.apply_gradients([(np.ones(2), w)]) for _ in range(7)]
    assert returned == [1, 2, 3, 4, 5, 6, 7]  # Keras returns the raw counter
    assert opt.iterations == 2
    assert int(opt.variables[0]) == 7


def test_empty_gradients_are_a_no_op():
    opt = SGD()
    assert opt.apply_gradients([]) == 0
    opt.apply([], [])
    assert opt.iterations == 0 and not opt.built


# --- save / load / set_weights -------------------------------------------------------------------


def test_save_own_variables_keras_example():
    # docs/keras.md §2.10: Adam(weight_decay=0.1) on one 3-vector saves "0".."3".
    opt = Adam(weight_decay=0.1)
    w = np.ones(3, np.float32)
    opt.apply_gradients([(np.ones(3, np.float32), w)])
    store = {}
    opt.save_own_variables(store)
    assert sorted(store) == ["0", "1", "2", "3"]
    assert [store[str(i)].shape for i in range(4)] == [(), (), (3,), (3,)]
    assert int(store["0"]) == 1
    # The store holds copies: a later step does not change it.
    saved = store["2"].copy()
    opt.apply_gradients([(np.ones(3, np.float32), w)])
    np.testing.assert_array_equal(store["2"], saved)


def _run(opt, params, grads_list):
    for grads in grads_list:
        opt.apply_gradients(zip(grads, params))


def _resume(first, make, params):
    # A new optimizer `make()` built over copies of `params` that loads the variables `first`
    # saves: it, the copies and the store.
    store = {}
    first.save_own_variables(store)
    copies = [p.copy() for p in params]
    resumed = make()
    resumed.build(copies)
    resumed.load_own_variables(store)
    return resumed, copies, store


def _assert_resumed_and_pickled_go_on_exactly(first, params, resumed, copies, grads):
    # `first`, `resumed` (over `copies`) and a pickled copy of `first` run `grads` and end with
    # the same parameters and variables, to the bit.
    pickled_params, pickled = pickle.loads(pickle.dumps((params, first)))
    _run(first, params, grads)
    _run(resumed, copies, grads)
    _run(pickled, pickled_params, grads)
    _assert_same_state(params, first, copies, resumed)
    _assert_same_state(params, first, pickled_params, pickled)


def _assert_same_state(params, opt, other_params, other):
    # The same parameters and the same optimizer variables, to the bit.
    for a, b in zip(params, other_params):
        np.testing.assert_array_equal(a, b)
    assert len(opt.variables) == len(other.variables)
    for a, b in zip(opt.variables, other.variables):
        np.testing.assert_array_equal(a, b)


def test_save_and_load_resume_training_exactly():
    rng = np.random.default_rng(2)
    params = [rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(4)]
    grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(8)]
    kwargs = dict(
        learning_rate=0.01,
        amsgrad=False,
        use_ema=True,
        ema_momentum=0.9,
        gradient_accumulation_steps=3,
        weight_decay=0.01,
    )
    first = Adam(**kwargs)
    _run(first, params, grads[:4])
    resumed, copies, _ = _resume(first, lambda: Adam(**kwargs), params)
    assert resumed.iterations == first.iterations == 1
    _run(first, params, grads[4:])
    _run(resumed, copies, grads[4:])
    _assert_same_state(params, first, copies, resumed)


def test_load_own_variables_restores_the_learning_rate():
    source = SGD(learning_rate=0.25)
    source.build([np.ones(2)])
    store = {}
    source.save_own_variables(store)
    target = SGD(learning_rate=0.5)
    target.build([np.ones(2)])
    target.load_own_variables(store)
    assert target.learning_rate == 0.25


def test_load_own_variables_with_another_count_warns_and_skips():
    opt = Adam(name="adam_x")
    opt.build([np.ones(3)])
    before = [np.array(v, copy=True) for v in opt.variables]
    with pytest.warns(
        UserWarning,
        match=re.escape(
            "Skipping variable loading for optimizer 'adam_x', because it has 4 variables "
            "whereas the saved optimizer has 2 variables."
        ),
    ):
        opt.load_own_variables({"0": np.array(5), "1": np.array(0.1, np.float32)})
    for a, b in zip(opt.variables, before):
        np.testing.assert_array_equal(a, b)


def test_set_weights():
    opt = SGD(momentum=0.5)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "You are calling `set_weights()` on an optimizer that has not yet been built."
        ),
    ):
        opt.set_weights([np.array(3)])
    w = np.ones(2, np.float32)
    opt.build([w])
    with pytest.raises(ValueError, match=r"not compatible with provided weight shape \(3,\)"):
        opt.set_weights([np.array(3), np.array(0.5, np.float32), np.ones(3)])
    opt.set_weights([np.array(4), np.array(0.5, np.float32), np.array([2.0, 3.0])])
    assert opt.iterations == 4 and opt.learning_rate == 0.5
    np.testing.assert_array_equal(opt.variables[2], [2.0, 3.0])
    opt.apply_gradients([(np.ones(2, np.float32), w)])
    # m = 0.5 * m - 0.5 * g; w = w + m
    np.testing.assert_array_equal(w, 1 + np.array([0.5, 1.0], np.float32))
    assert opt.iterations == 5


# --- config round trips, pickle, registry --------------------------------------------------------


@pytest.mark.parametrize(
    "case,kwargs",
    [
        pytest.param(case, kwargs, id=case.name + "(" + ",".join(kwargs) + ")")
        for case in OPTIMIZERS
        for kwargs in case.round_trip
    ],
)
def test_config_round_trip(case, kwargs):
    cls = case.cls
    opt = cls(**kwargs)
    config = opt.get_config()
    as_json = json.dumps(config, sort_keys=True)
    revived = cls.from_config(config)
    assert json.dumps(revived.get_config(), sort_keys=True) == as_json
    assert set(dir(revived)) == set(dir(opt))
    serialized = json.loads(json.dumps(fo.optimizers.serialize(opt)))
    assert serialized["module"] == "keras.optimizers"
    assert serialized["class_name"] == cls.__name__
    via_module = fo.optimizers.deserialize(serialized)
    assert type(via_module) is cls
    assert json.dumps(via_module.get_config(), sort_keys=True) == as_json
    assert type(fo.optimizers.get(serialized)) is cls
    unpickled = pickle.loads(pickle.dumps(opt))
    assert json.dumps(unpickled.get_config(), sort_keys=True) == as_json
    for key, value in kwargs.items():
        assert config[key] == (float(np.float32(value)) if key == "learning_rate" else value)


def test_config_round_trip_with_a_schedule():
    schedule = fo.optimizers.schedules.PiecewiseConstantDecay([2, 5], [0.5, 0.25, 0.125])
    opt = Adam(learning_rate=schedule)
    config = opt.get_config()
    assert config["learning_rate"]["module"] == "keras.optimizers.schedules"
    assert config["learning_rate"]["class_name"] == "PiecewiseConstantDecay"
    json.dumps(config)
    revived = Adam.from_config(config)
    assert isinstance(revived.learning_rate, float) is False
    assert isinstance(revived._learning_rate, fo.optimizers.schedules.PiecewiseConstantDecay)
    assert json.dumps(revived.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
    assert isinstance(config["learning_rate"], dict)  # from_config did not modify it


def test_pickle_of_a_built_optimizer_with_its_parameters_keeps_training_identically():
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(5).astype(np.float32), rng.standard_normal((2, 2))]
    opt = Adam(learning_rate=0.01, use_ema=True, weight_decay=0.01)
    opt.exclude_from_weight_decay(var_list=[params[1]])
    grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(6)]
    _run(opt, params, grads[:3])
    params2, opt2 = pickle.loads(pickle.dumps((params, opt)))
    _run(opt, params, grads[3:])
    _run(opt2, params2, grads[3:])
    _assert_same_state(params, opt, params2, opt2)
    with pytest.raises(ValueError, match="Unknown variable"):
        opt2.apply_gradients(zip(grads[0], params))


def test_serialize_format():
    opt = AdamW(learning_rate=0.5)
    assert fo.optimizers.serialize(opt) == {
        "module": "keras.optimizers",
        "class_name": "AdamW",
        "config": opt.get_config(),
        "registered_name": None,
    }


@pytest.mark.parametrize(
    "identifier,cls",
    [
        pytest.param(identifier, case.cls, id=identifier)
        for case in OPTIMIZERS
        for identifier in dict.fromkeys([case.name.lower(), case.name, case.name.upper()])
    ],
)
def test_get_by_name_is_case_insensitive(identifier, cls):
    # Keras forgets Lamb in its registry (docs/keras.md §1.12); here every optimizer is reachable.
    opt = fo.optimizers.get(identifier)
    assert type(opt) is cls
    assert opt.get_config()["learning_rate"] == cls().get_config()["learning_rate"]
    assert type(fo.optimizers.deserialize({"class_name": identifier, "config": {}})) is cls


def test_get_dict_instance_and_none():
    assert fo.optimizers.get(None) is None
    opt = SGD(momentum=0.5)
    assert fo.optimizers.get(opt) is opt
    revived = fo.optimizers.get({"class_name": "SGD", "config": {"momentum": 0.5}})
    assert type(revived) is SGD and revived.momentum == 0.5
    upper = fo.optimizers.deserialize({"class_name": "ADAMW", "config": {"weight_decay": 0.5}})
    assert type(upper) is AdamW and upper.weight_decay == 0.5


@pytest.mark.parametrize("identifier", ["nope", "rmsprop_", 3, 0.1, [SGD]])
def test_get_unknown_identifier(identifier):
    with pytest.raises(
        ValueError, match=re.escape(f"Could not interpret optimizer identifier: {identifier}")
    ):
        fo.optimizers.get(identifier)


def test_deserialize_unknown_class_and_custom_objects():
    with pytest.raises(ValueError, match="Could not locate class 'Nope'"):
        fo.optimizers.deserialize({"class_name": "Nope", "config": {}})

    class Custom(SGD):
        pass

    opt = fo.optimizers.deserialize(
        {"class_name": "Custom", "config": {"learning_rate": 0.5}},
        custom_objects={"Custom": Custom},
    )
    assert type(opt) is Custom and opt.learning_rate == 0.5
    assert fo.optimizers.serialize(opt)["class_name"] == "Custom"


# --- gradients and variables given to apply ------------------------------------------------------


def test_unknown_variable_is_rejected_with_keras_wording():
    w = np.ones(2)
    opt = SGD()
    opt.apply_gradients([(np.ones(2), w)])
    with pytest.raises(
        ValueError,
        match="This optimizer can only be called for the variables it was originally built with.",
    ):
        opt.apply_gradients([(np.ones(2), w.copy())])


def test_none_gradient_warns_and_leaves_the_variable():
    # keras optimizer_test.test_empty_gradients
    v = _f32([[3.0, 4.0], [5.0, 6.0]])
    v2 = _f32([[3.0, 4.0], [5.0, 6.0]])
    opt = SGD(learning_rate=1.0)
    with pytest.warns(
        UserWarning,
        match=re.escape(
            "Gradients do not exist for variables ['variable_0'] when minimizing the loss."
        ),
    ):
        opt.apply_gradients([(None, v), (np.ones((2, 2), np.float32), v2)])
    np.testing.assert_array_equal(v, [[3, 4], [5, 6]])
    np.testing.assert_array_equal(v2, [[2, 3], [4, 5]])
    assert opt.iterations == 1


def test_all_none_gradients_is_an_error():
    opt = SGD()
    with pytest.raises(ValueError, match=re.escape("No gradients provided for any variable.")):
        opt.apply_gradients([(None, np.ones(2)), (None, np.ones(3))])


def test_apply_without_variables_needs_a_built_optimizer():
    opt = SGD()
    with pytest.raises(ValueError, match="the optimizer must already be built"):
        opt.apply([np.ones(2)])
    w = np.ones(2)
    opt.build([w])
    with pytest.raises(
        ValueError,
        match="Received a list of 2 gradients, but the optimizer is "
        "tracking 1 trainable variables.",
    ):
        opt.apply([np.ones(2), np.ones(2)])
    opt.apply([np.ones(2)])
    np.testing.assert_allclose(w, 1 - float(np.float32(0.01)) * np.ones(2), rtol=1e-15)


def test_variables_may_come_in_any_order_and_subset():
    a, b, c = np.zeros(2), np.zeros(3), np.zeros(1)
    opt = SGD(learning_rate=1.0)
    opt.build([a, b, c])
    opt.apply([np.full(1, 3.0), np.full(2, 1.0)], [c, a])
    np.testing.assert_array_equal(a, [-1.0, -1.0])
    np.testing.assert_array_equal(b, np.zeros(3))
    np.testing.assert_array_equal(c, [-3.0])


def test_same_variable_twice_in_one_call_is_an_error():
    a = np.zeros(2)
    opt = SGD(learning_rate=1.0)
    opt.build([a, np.zeros(3)])
    with pytest.raises(ValueError, match="given twice"):
        opt.apply([np.ones(2), np.ones(2)], [a, a])
    np.testing.assert_array_equal(a, np.zeros(2))


@pytest.mark.parametrize(
    "param,message",
    [
        ([1.0, 2.0], "must be a NumPy array"),
        (np.ones(2, np.int32), "float32 or float64"),
        (np.ones(2, np.complex64), "float32 or float64"),
        (np.ones(2, np.float16), "float32 or float64"),
    ],
)
def test_bad_parameters_are_type_errors(param, message):
    opt = SGD()
    with pytest.raises(TypeError, match=message):
        opt.build([np.ones(2), param])
    assert not opt.built


def test_gradients_of_other_types_are_cast():
    w = np.zeros(3, np.float32)
    opt = SGD(learning_rate=0.5)
    opt.apply_gradients([([1.0, 2.0, 4.0], w)])  # a list
    opt.apply_gradients([(np.array([2, 2, 2], np.int64), w)])  # integers
    opt.apply_gradients([(np.ones(3, np.float64), w)])  # another float dtype
    np.testing.assert_array_equal(w, -0.5 * np.array([4.0, 5.0, 7.0]))


# --- dict parameters and weight-decay exclusion --------------------------------------------------


def test_dict_parameters_with_exclusion_by_name():
    params = {
        "dense/kernel": np.full((2, 2), 2.0),
        "dense/bias": np.full(2, 2.0),
        "norm/gamma": np.full(2, 2.0),
    }
    opt = SGD(learning_rate=0.5, weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["bias", "^norm"])
    zeros = {k: np.zeros_like(v) for k, v in params.items()}
    for _ in range(3):
        opt.apply(zeros, params)
    # w <- w - w * 0.1 * float32(0.5), three times, for the kernel only.
    expected = 2.0 * (1 - 0.1 * 0.5) ** 3
    np.testing.assert_allclose(params["dense/kernel"], np.full((2, 2), expected), rtol=1e-15)
    np.testing.assert_array_equal(params["dense/bias"], [2.0, 2.0])
    np.testing.assert_array_equal(params["norm/gamma"], [2.0, 2.0])
    assert opt.iterations == 3


def test_dict_gradients_subset_and_built_names():
    # A variable missing from the gradients' keys is a variable without gradient, as a None
    # value is: left out with Keras's warning.
    params = {"a": np.zeros(2), "b": np.zeros(2)}
    opt = SGD(learning_rate=1.0)
    with pytest.warns(UserWarning, match=r"Gradients do not exist for variables \['a'\]"):
        opt.apply({"b": np.ones(2)}, params)  # builds on both, updates b only
    assert opt.variable_names == ["iteration", "learning_rate"]
    with pytest.warns(UserWarning, match=r"Gradients do not exist for variables \['b'\]"):
        opt.apply({"a": np.ones(2)})  # built: names resolve to the built arrays
    np.testing.assert_array_equal(params["a"], [-1.0, -1.0])
    np.testing.assert_array_equal(params["b"], [-1.0, -1.0])
    with pytest.raises(ValueError, match="Unknown variable name: 'c'"):
        opt.apply({"c": np.ones(2)})


def test_dict_of_non_string_keys_steps_by_the_same_keys():
    # Variables are named `str(key)`; gradients keyed like the parameters find them.
    params = {0: np.zeros(2), 1: np.zeros(3)}
    opt = SGD(learning_rate=1.0)
    opt.apply({0: np.ones(2), 1: np.ones(3)}, params)
    opt.apply({1: np.ones(3), 0: np.ones(2)})
    np.testing.assert_array_equal(params[0], [-2.0, -2.0])
    np.testing.assert_array_equal(params[1], [-2.0, -2.0, -2.0])


def test_dict_steps_in_any_key_order_and_refuse_a_replaced_array():
    # Dict steps in build order take the fast path, others the general one: same results.
    params = {"a": np.zeros(3), "b": np.zeros(2)}
    twin = {"a": np.zeros(3), "b": np.zeros(2)}
    opt, twin_opt = SGD(learning_rate=0.5, momentum=0.9), SGD(learning_rate=0.5, momentum=0.9)
    grads = [{"a": np.arange(3.0), "b": np.ones(2)}, {"b": np.full(2, 2.0), "a": np.ones(3)}]
    for g in grads * 2:
        opt.apply(g, params)
        twin_opt.apply([g["a"], g["b"]], [twin["a"], twin["b"]])
    for key in params:
        np.testing.assert_array_equal(params[key], twin[key])
    opt.apply(grads[0])  # no variables: the built ones, by name
    twin_opt.apply([grads[0]["a"], grads[0]["b"]])
    for key in params:
        np.testing.assert_array_equal(params[key], twin[key])
    # The same names over another array: refused, nothing changes.
    before = [params["a"].copy(), params["b"].copy()] + [np.array(v) for v in opt.variables]
    with pytest.raises(ValueError, match="Unknown variable"):
        opt.apply(grads[0], {"a": np.zeros(3), "b": params["b"]})
    after = [params["a"], params["b"]] + [np.array(v) for v in opt.variables]
    for x, y in zip(after, before):
        np.testing.assert_array_equal(x, y)


def test_keras_weight_decay_test():
    # keras optimizer tests, test_weight_decay: var1 is decayed by three optimizers in turn, var2
    # is excluded by name, var3 by identity: var1 = 2 * (1 - 0.004)**3, var2 = var3 = 2.
    var1, var2, var3 = (np.array(2.0, np.float32) for _ in range(3))
    grad = np.zeros((), np.float32)
    opt1 = Adam(learning_rate=1.0, weight_decay=0.004)
    opt1.apply_gradients(zip([grad], [var1]))
    opt2 = Adam(learning_rate=1.0, weight_decay=0.004)
    opt2.exclude_from_weight_decay(var_names=["exclude"])
    opt2.apply([grad, grad], {"variable": var1, "exclude": var2})
    opt3 = Adam(learning_rate=1.0, weight_decay=0.004)
    opt3.exclude_from_weight_decay(var_list=[var3])
    opt3.apply_gradients(zip([grad, grad], [var1, var3]))
    np.testing.assert_almost_equal(var1, 1.9760959, decimal=6)
    assert var2 == 2.0 and var3 == 2.0


def test_exclude_from_weight_decay_replaces_previous_settings_and_works_after_build():
    a, b = np.ones(2), np.ones(2)
    opt = SGD(learning_rate=1.0, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_list=[a])
    opt.apply_gradients([(np.zeros(2), a), (np.zeros(2), b)])
    np.testing.assert_array_equal(a, [1.0, 1.0])
    np.testing.assert_array_equal(b, [0.5, 0.5])
    opt.exclude_from_weight_decay(var_names=["variable_1"])  # replaces var_list=[a]
    opt.apply_gradients([(np.zeros(2), a), (np.zeros(2), b)])
    np.testing.assert_array_equal(a, [0.5, 0.5])
    np.testing.assert_array_equal(b, [0.5, 0.5])


# --- mixed float32 / float64 parameters ----------------------------------------------------------


def _single_dtype_twin(cls, kwargs, params, grads_list):
    """The same steps, each dtype in its own optimizer: what one optimizer over both must do
    for every option that acts tensor by tensor."""
    out = []
    for dtype in (np.float32, np.float64):
        chosen = [i for i, p in enumerate(params) if p.dtype == dtype]
        copies = [params[i].copy() for i in chosen]
        opt = cls(**kwargs)
        for grads in grads_list:
            opt.apply_gradients(zip([grads[i] for i in chosen], copies))
        out += list(zip(chosen, copies))
    return [p for _, p in sorted(out, key=lambda t: t[0])]


@pytest.mark.parametrize(
    "case,kwargs",
    [
        pytest.param(case, case.mixed_dtypes, id=label(case, case.mixed_dtypes))
        for case in OPTIMIZERS
        if case.mixed_dtypes is not None
    ],
)
def test_mixed_dtypes_equal_one_optimizer_per_dtype(case, kwargs):
    cls = case.cls
    rng = np.random.default_rng(4)
    shapes = [((3, 2), np.float32), ((4,), np.float64), ((5,), np.float32), ((), np.float64)]
    params = [np.asarray(rng.standard_normal(s), d) for s, d in shapes]
    grads_list = [
        [np.asarray(rng.standard_normal(p.shape), p.dtype) for p in params] for _ in range(5)
    ]
    expected = _single_dtype_twin(cls, kwargs, params, grads_list)
    opt = cls(**kwargs)
    for grads in grads_list:
        opt.apply_gradients(zip(grads, params))
    for p, e in zip(params, expected):
        assert p.dtype == e.dtype
        np.testing.assert_array_equal(p, e)
    # The first slot is variable 0's (Adafactor's r and c carry the bare variable name).
    assert opt.variable_names[2].startswith("variable_0")


def test_mixed_dtypes_global_clipnorm_uses_the_norm_of_all_gradients():
    # SGD(lr=1, global_clipnorm=1): every gradient is scaled by 1 / N, N over all tensors.
    a = np.zeros(2, np.float32)
    b = np.zeros(2, np.float64)
    opt = SGD(learning_rate=1.0, global_clipnorm=1.0)
    ga, gb = np.array([3.0, 0.0], np.float32), np.array([0.0, 4.0])
    opt.apply_gradients([(ga, a), (gb, b)])
    np.testing.assert_allclose(a, [-0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(b, [0.0, -0.8], rtol=1e-14)


def test_mixed_dtypes_global_clipnorm_with_loss_scale_and_accumulation():
    # The global norm is that of the unscaled, averaged gradients of both groups:
    # step 1 accumulates, step 2 averages (g1 + g2) / 2 = g, unscales by 4, clips by 1 / N.
    a = np.zeros(2, np.float32)
    b = np.zeros(2, np.float64)
    opt = SGD(
        learning_rate=1.0, global_clipnorm=1.0, loss_scale_factor=4.0, gradient_accumulation_steps=2
    )
    ga, gb = np.array([12.0, 0.0], np.float32), np.array([0.0, 16.0])
    opt.apply_gradients([(ga, a), (gb, b)])
    assert not a.any() and not b.any()
    opt.apply_gradients([(ga, a), (gb, b)])
    # Unscaled gradients (3, 0) and (0, 4): N = 5.
    np.testing.assert_allclose(a, [-0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(b, [0.0, -0.8], rtol=1e-14)


def test_gradient_sum_squares_is_the_norm_a_step_sees():
    rng = np.random.default_rng(3)
    params = [np.zeros(n, np.float32) for n in (5, 70_000, 3)]
    grads = [rng.standard_normal(p.size).astype(np.float64) for p in params]
    accumulators = [rng.standard_normal(p.size).astype(np.float32) for p in params]
    before = [x.copy() for x in params + accumulators]
    options = _native.StepOptions(loss_scale=8.0, accumulators=accumulators, accumulation_steps=3)
    total = _native.gradient_sum_squares(params, grads, options)
    expected = 0.0
    for g, acc in zip(grads, accumulators):
        final = (g.astype(np.float32) / np.float32(8.0) + acc) / np.float32(3.0)
        expected += float(np.sum(final.astype(np.float64) ** 2))
    assert total == pytest.approx(expected, rel=1e-13)
    for x, y in zip(params + accumulators, before):
        np.testing.assert_array_equal(x, y)
    assert _native.gradient_sum_squares([], []) == 0.0
    with pytest.raises(ValueError):
        _native.gradient_sum_squares(params, grads[:2])


def test_mixed_dtypes_bad_gradient_changes_nothing():
    a = np.ones(2, np.float32)
    b = np.ones(2, np.float64)
    opt = SGD(learning_rate=1.0, momentum=0.5)
    opt.apply_gradients([(np.ones(2, np.float32), a), (np.ones(2), b)])
    before = [a.copy(), b.copy()] + [np.array(v, copy=True) for v in opt.variables]
    for bad, error in [
        (np.ones(3), ValueError),
        (np.ones(2, np.complex128), TypeError),
        (b, ValueError),
    ]:
        with pytest.raises(error):
            opt.apply_gradients([(np.ones(2, np.float32), a), (bad, b)])
        after = [a, b] + list(opt.variables)
        for x, y in zip(after, before):
            np.testing.assert_array_equal(x, y)


# --- EMA, accumulation, loss scale (Keras's optimizer_test tables) -------------------------------


def test_ema_keras_table_and_finalize():
    # docs/keras.md §2.7 / §4.2 test_ema: SGD(lr=1, use_ema, 0.9, overwrite every 3).
    table = [
        ([[2.0, 3.0], [4.0, 5.0]], [[2.0, 3.0], [4.0, 5.0]]),
        ([[1.0, 2.0], [3.0, 4.0]], [[1.9, 2.8999999], [3.9, 4.9]]),
        ([[1.7099999, 2.71], [3.71, 4.71]], [[1.7099999, 2.71], [3.71, 4.71]]),
        ([[0.7099999, 1.71], [2.71, 3.71]], [[1.6099999, 2.61], [3.6100001, 4.61]]),
    ]
    v = _f32([[3.0, 4.0], [5.0, 6.0]])
    opt = SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=3)
    for var, average in table:
        opt.apply_gradients([(np.ones((2, 2), np.float32), v)])
        np.testing.assert_allclose(v, var, rtol=1e-6)
        np.testing.assert_allclose(opt.variables[2], average, rtol=1e-6)
    opt.finalize_variable_values([v])
    np.testing.assert_array_equal(v, opt.variables[2])
    with pytest.raises(
        ValueError, match=re.escape("The length of model variables (2) to override does not match")
    ):
        opt.finalize_variable_values([v, v])


def test_ema_averages_variables_without_gradient():
    a = np.full(2, 4.0, np.float32)
    b = np.full(2, 8.0)
    opt = SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.5)
    opt.apply_gradients([(np.ones(2, np.float32), a), (np.ones(2), b)])
    with pytest.warns(UserWarning, match="Gradients do not exist"):
        opt.apply_gradients([(np.ones(2, np.float32), a), (None, b)])
    # b: step 1 -> 7 and average 7; step 2 unchanged, average 0.5 * 7 + 0.5 * 7 = 7.
    # a: 3 then 2; average 3 then 0.5 * 3 + 0.5 * 2 = 2.5.
    np.testing.assert_array_equal(opt.variables[2], [2.5, 2.5])
    np.testing.assert_array_equal(opt.variables[3], [7.0, 7.0])


def test_gradient_accumulation_keras_table():
    # docs/keras.md §2.3 test_gradient_accumulation.
    table = [
        ([[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]], 1, 0),
        ([[1.0, 2.0], [3.0, 4.0]], [[2.0, 2.0], [2.0, 2.0]], 2, 0),
        ([[0.0, 1.0], [2.0, 3.0]], [[0.0, 0.0], [0.0, 0.0]], 3, 1),
        ([[0.0, 1.0], [2.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]], 4, 1),
    ]
    w = _f32([[1.0, 2.0], [3.0, 4.0]])
    opt = SGD(learning_rate=1.0, gradient_accumulation_steps=3)
    for w_after, acc_after, raw, iterations in table:
        opt.apply_gradients([(np.ones((2, 2), np.float32), w)])
        np.testing.assert_array_equal(w, w_after)
        np.testing.assert_array_equal(opt.variables[2], acc_after)
        assert int(opt.variables[0]) == raw and opt.iterations == iterations


def test_update_step_resets_the_accumulator_of_a_variable_without_gradient():
    a, b = np.zeros(2), np.zeros(2)
    opt = SGD(learning_rate=1.0, gradient_accumulation_steps=2)
    opt.apply_gradients([(np.ones(2), a), (np.ones(2), b)])
    with pytest.warns(UserWarning):
        opt.apply_gradients([(np.ones(2), a), (None, b)])
    np.testing.assert_array_equal(a, [-1.0, -1.0])
    np.testing.assert_array_equal(b, [0.0, 0.0])
    np.testing.assert_array_equal(opt.variables[3], [0.0, 0.0])  # Keras resets all accumulators


def test_loss_scale_factor_keras_test():
    # keras optimizer_test.test_static_loss_scaling
    w = _f32([[1.0, 2.0], [3.0, 4.0]])
    opt = SGD(learning_rate=1.0, loss_scale_factor=1024.0)
    opt.apply_gradients([(w * 1024.0, w)])
    np.testing.assert_array_equal(w, np.zeros((2, 2)))
    assert opt.scale_loss(1.0) == 1024.0
    assert SGD().scale_loss(3.0) == 3.0


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"clipnorm": 1.0}, [2**-0.5, 2**-0.5]),
        ({"clipvalue": 1.0}, [1.0, 1.0]),
        ({"global_clipnorm": 1.0}, [2**-0.5, 2**-0.5]),
        ({"clipnorm": 0.0}, [100.0, 100.0]),  # <= 0 disables clipping (Keras's precedence)
        ({"clipvalue": -1.0}, [100.0, 100.0]),
    ],
)
def test_clipping_keras_tests(kwargs, expected):
    w = np.zeros(2, np.float32)
    opt = SGD(learning_rate=1.0, **kwargs)
    opt.apply_gradients([(np.full(2, 100.0, np.float32), w)])
    np.testing.assert_allclose(-w, expected, rtol=1e-6)


def test_changing_a_hyperparameter_after_build_takes_effect():
    w = np.zeros(2)
    opt = SGD(learning_rate=1.0)
    opt.apply_gradients([(np.full(2, 100.0), w)])
    opt.clipvalue = 1.0
    opt.apply_gradients([(np.full(2, 100.0), w)])
    np.testing.assert_array_equal(w, [-101.0, -101.0])
    opt.weight_decay = 0.5
    opt.clipvalue = None
    opt.apply_gradients([(np.zeros(2), w)])
    np.testing.assert_array_equal(w, [-50.5, -50.5])


# --- RMSprop, Adagrad, Adadelta, Adamax, Nadam, Lion, Ftrl: Keras's own checks and state ---------


# Ftrl's sign checks all word their message alike: (argument, a rejected value, the sign it needs).
_FTRL_SIGN_CHECKS = [
    ("initial_accumulator_value", -0.1, "positive"),
    ("learning_rate_power", 0.5, "negative"),
    ("l1_regularization_strength", -1.0, "positive"),
    ("l2_regularization_strength", -0.5, "positive"),
    ("l2_shrinkage_regularization_strength", -0.01, "positive"),
]


@pytest.mark.parametrize(
    "factory,message",
    [
        *(
            (
                functools.partial(Ftrl, **{name: value}),
                f"`{name}` needs to be {sign} or zero. Received: {name}={value}.",
            )
            for name, value, sign in _FTRL_SIGN_CHECKS
        ),
        (
            lambda: Lion(beta_1=0.0),
            "Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer degenerates "
            "to SignSGD. Received: beta_1=0.0.",
        ),
        (lambda: Lion(beta_1=-0.5), "Argument `beta_1` must be in the [0, 1] range."),
        (lambda: Lion(beta_1=1.5), "Received: beta_1=1.5."),
        (lambda: RMSprop(rho=float("nan")), "Argument `rho` must be a finite number."),
        (
            lambda: Adagrad(initial_accumulator_value=float("inf")),
            "Argument `initial_accumulator_value` must be a finite number.",
        ),
        (lambda: Nadam(schedule_decay="0.004"), "Argument `schedule_decay` must be a finite"),
        (lambda: Ftrl(beta=float("nan")), "Argument `beta` must be a finite number."),
        (lambda: Nadam(momentum=0.9), "Argument(s) not recognized: {'momentum': 0.9}"),
    ],
)
def test_constructor_errors_of_the_other_optimizers(factory, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        factory()


def test_keras_accepts_the_boundaries_it_accepts():
    # Keras's checks are strict where it says so: beta_1 = 1 is a valid Lion, zero strengths
    # and learning_rate_power = 0 a valid Ftrl; Adagrad's accumulator value is not checked.
    assert Lion(beta_1=1.0).beta_1 == 1.0
    Ftrl(learning_rate_power=0.0, initial_accumulator_value=0.0)
    assert Adagrad(initial_accumulator_value=-1.0).initial_accumulator_value == -1.0


@pytest.mark.parametrize("cls", [case.cls for case in OPTIMIZERS if case.keras2_epsilon], ids=_name)
def test_epsilon_none_means_1e_7_everywhere(cls):
    assert cls(epsilon=None).get_config()["epsilon"] == 1e-7


def test_keras2_standalone_signatures():
    # Keras 2.2.4's calls: lr, epsilon=None, decay (Nadam: schedule_decay instead of decay).
    calls = [
        (RMSprop(lr=0.001, rho=0.9, epsilon=None, decay=0.1), {"rho": 0.9}),
        (Adagrad(lr=0.01, epsilon=None, decay=0.1), {"initial_accumulator_value": 0.1}),
        (Adadelta(lr=1.0, rho=0.95, epsilon=None, decay=0.1), {"rho": 0.95}),
        (Adamax(lr=0.002, beta_1=0.9, beta_2=0.999, epsilon=None, decay=0.1), {"beta_2": 0.999}),
    ]
    for opt, own in calls:
        config = opt.get_config()
        assert config["decay"] == 0.1 and config["epsilon"] == 1e-7
        assert {key: config[key] for key in own} == own
    nadam = Nadam(lr=0.002, beta_1=0.9, beta_2=0.999, epsilon=None, schedule_decay=0.004)
    config = nadam.get_config()
    assert config["learning_rate"] == float(np.float32(0.002)) and "decay" not in config
    assert list(config)[-4:] == ["beta_1", "beta_2", "epsilon", "schedule_decay"]
    assert config["schedule_decay"] == 0.004
    assert "schedule_decay" not in Nadam().get_config()


@pytest.mark.parametrize(
    "case,kwargs,names",
    [
        pytest.param(case, kwargs, names, id=label(case, kwargs))
        for case in OPTIMIZERS
        for kwargs, names in case.slots
    ],
)
def test_slot_names_and_order(case, kwargs, names):
    # Keras's names: the variable's path with "/" as "_", then the slot's name.
    params = {"dense/kern": np.ones((2, 3), np.float32), "bias": np.ones(3, np.float64)}
    prefixes = {"dense_kern": params["dense/kern"], "bias": params["bias"]}
    opt = build(case, kwargs)
    opt.build(params)
    assert opt.variable_names == ["iteration", "learning_rate"] + list(names)
    for name, value in zip(opt.variable_names[2:], opt.variables[2:]):
        # A slot per variable has its shape and dtype; Adafactor's factored moments (named as
        # the variable) and Nadam's u_product are not per element.
        param = next((p for prefix, p in prefixes.items() if name.startswith(prefix + "_")), None)
        if param is not None:
            assert value.shape == param.shape and value.dtype == param.dtype, name


@pytest.mark.parametrize(
    "case,kwargs",
    [
        pytest.param(case, kwargs, id=label(case, kwargs))
        for case in OPTIMIZERS
        if "initial_accumulator_value" in (case.own_defaults or {})
        for kwargs in ({}, {"initial_accumulator_value": 0.3}, {"initial_accumulator_value": 0.4})
    ],
)
def test_accumulators_start_at_initial_accumulator_value(case, kwargs):
    # Keras's Constant initializer: the value cast to each variable's dtype. The accumulator is
    # each variable's first slot.
    cls, slot = case.cls, 0
    value = kwargs.get("initial_accumulator_value", case.own_defaults["initial_accumulator_value"])
    params = [np.ones(3, np.float32), np.ones((2, 2), np.float64)]
    opt = cls(**kwargs)
    opt.build(params)
    per_variable = len(opt.variables[2:]) // 2
    for i, param in enumerate(params):
        accumulator = opt.variables[2 + i * per_variable + slot]
        assert accumulator.dtype == param.dtype
        np.testing.assert_array_equal(accumulator, np.full(param.shape, value, param.dtype))
    if cls is Ftrl:
        assert not opt.variables[3].any() and not opt.variables[5].any()  # linear: zeros


def test_lion_keeps_a_zero_sign_and_moves_by_the_learning_rate():
    # w -= lr * sign(m * beta_1 + g * (1 - beta_1)); m starts at 0, so the first step moves each
    # element by exactly lr against its gradient's sign, and not at all where g == 0.
    w = np.array([1.0, 2.0, 3.0, -4.0], np.float64)
    opt = Lion(learning_rate=0.25)
    opt.apply_gradients([(np.array([1e-30, -5.0, 0.0, 7.0]), w)])
    np.testing.assert_array_equal(w, [0.75, 2.25, 3.0, -4.25])
    # m = 0 * 0.99 + g * (1 - 0.99), with 1 - 0.99 = 0.010000000000000009 in float64.
    np.testing.assert_array_equal(
        opt.variables[2], np.array([1e-30, -5.0, 0.0, 7.0]) * (1.0 - 0.99)
    )


def test_ftrl_l1_zeroes_weights_and_learning_rate_power_zero_by_hand():
    # p = 0: n**0 = 1, so z = z + g (no sigma term) and w = (clip(z, -l1, l1) - z) / (1 / lr).
    w = np.zeros(4)
    opt = Ftrl(learning_rate=0.5, learning_rate_power=0.0, l1_regularization_strength=1.0)
    for _ in range(2):
        opt.apply_gradients([(np.array([0.25, 3.0, -4.0, 0.75]), w)])
    z = 2 * np.array([0.25, 3.0, -4.0, 0.75])
    np.testing.assert_array_equal(w, (np.clip(z, -1.0, 1.0) - z) * 0.5)
    assert w[0] == 0.0 and w[3] != 0.0


def _nadam_product(beta_1, dtype, steps, schedule_decay=None):
    """Keras's `_backend_update_step`, written out: u = (u * beta_1) * (1 - 0.5 * 0.96**t),
    the power correctly rounded (never NumPy's or the C library's, whose last bit varies)."""
    T = np.dtype(dtype).type
    u = T(1.0)
    for t in steps:
        exponent = T(t) if schedule_decay is None else T(t) * T(schedule_decay)
        u = u * T(beta_1) * (T(1.0) - T(0.5) * cr_pow(T(0.96), exponent, T))
    return u


@pytest.mark.parametrize("first_dtype", [np.float32, np.float64])
def test_nadam_u_product_advances_once_per_step_in_the_first_variables_dtype(first_dtype):
    other = np.float64 if first_dtype is np.float32 else np.float32
    params = [np.ones(3, first_dtype), np.ones(2, other), np.ones(4, first_dtype)]
    opt = Nadam(learning_rate=0.01, beta_1=0.8)
    for _ in range(3):
        opt.apply_gradients(zip([np.ones_like(p) for p in params], params))
    u_product = opt.variables[-1]
    assert opt.variable_names[-1] == "u_product"
    assert u_product.shape == () and u_product.dtype == first_dtype
    # Three dtype-group calls per step, one advance per step.
    assert u_product == _nadam_product(0.8, first_dtype, [1, 2, 3])
    assert u_product != _nadam_product(0.8, first_dtype, range(1, 10))


def test_nadam_u_product_of_an_empty_build_is_float32():
    opt = Nadam()
    opt.build([])
    assert opt.variables[-1].dtype == np.float32 and opt.variables[-1] == 1.0


def test_nadam_u_product_does_not_advance_on_accumulation_only_calls():
    w = np.ones(3)
    opt = Nadam(gradient_accumulation_steps=3)
    for call in range(1, 8):
        opt.apply_gradients([(np.ones(3), w)])
        assert opt.variables[-1] == _nadam_product(0.9, np.float64, range(1, call // 3 + 1))


def test_nadam_schedule_decay_scales_the_cache_exponent():
    w = np.ones(3)
    opt = Nadam(schedule_decay=0.004)
    for _ in range(4):
        opt.apply_gradients([(np.full(3, 0.5), w)])
    assert opt.variables[-1] == _nadam_product(0.9, np.float64, range(1, 5), 0.004)
    # schedule_decay = 1 is Keras 3's cache: t * 1.0 is exactly t, so the same bits.
    rng = np.random.default_rng(9)
    grads = [rng.standard_normal(5).astype(np.float32) for _ in range(4)]
    a, b = np.ones(5, np.float32), np.ones(5, np.float32)
    keras3, keras2 = Nadam(learning_rate=0.1), Nadam(learning_rate=0.1, schedule_decay=1.0)
    for g in grads:
        keras3.apply_gradients([(g, a)])
        keras2.apply_gradients([(g, b)])
    np.testing.assert_array_equal(a, b)
    assert keras3.variables[-1] == keras2.variables[-1]


def test_nadam_failed_step_leaves_u_product_and_everything_unchanged():
    w = np.ones(3, np.float32)
    opt = Nadam(learning_rate=0.1)
    opt.apply_gradients([(np.ones(3, np.float32), w)])
    before = [w.copy()] + [np.array(v, copy=True) for v in opt.variables]
    with pytest.raises(ValueError, match="shape"):
        opt.apply_gradients([(np.ones(4, np.float32), w)])
    for x, y in zip([w] + list(opt.variables), before):
        np.testing.assert_array_equal(x, y)
    # The next step is the second one, as if the failed call never happened.
    fresh_w = np.ones(3, np.float32)
    fresh = Nadam(learning_rate=0.1)
    for _ in range(2):
        fresh.apply_gradients([(np.ones(3, np.float32), fresh_w)])
    opt.apply_gradients([(np.ones(3, np.float32), w)])
    np.testing.assert_array_equal(w, fresh_w)
    assert opt.variables[-1] == fresh.variables[-1]


def test_nadam_save_load_and_pickle_resume_training_exactly():
    rng = np.random.default_rng(5)
    params = [rng.standard_normal(4).astype(np.float32), rng.standard_normal((2, 3))]
    grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(6)]
    first = Nadam(learning_rate=0.01, schedule_decay=0.004)
    _run(first, params, grads[:3])
    resumed, copies, store = _resume(
        first, lambda: Nadam(learning_rate=0.01, schedule_decay=0.004), params
    )
    assert len(store) == 2 + 4 + 1 and store[str(len(store) - 1)].shape == ()
    assert resumed.variables[-1] == first.variables[-1] != 1.0
    _assert_resumed_and_pickled_go_on_exactly(first, params, resumed, copies, grads[3:])
    # set_weights writes the product too.
    weights = [np.array(v, copy=True) for v in first.variables]
    weights[-1] = np.array(0.5, np.float32)
    first.set_weights(weights)
    assert first.variables[-1] == 0.5


# --- Adafactor and Muon --------------------------------------------------------------------------


def test_muon_signature_config_and_name_are_keras():
    # Keras 3.13+: Muon's own arguments around the base ones, weight_decay 0.004, name None.
    parameters = inspect.signature(Muon).parameters
    assert list(parameters) == [
        "learning_rate",
        "adam_beta_1",
        "adam_beta_2",
        "adam_weight_decay",
        "epsilon",
        *BASE_ARGUMENTS,
        "name",
        *"exclude_layers exclude_embeddings muon_a muon_b muon_c adam_lr_ratio momentum".split(),
        *"ns_steps nesterov rms_rate kwargs".split(),
    ]
    defaults = dict(
        name=None,
        learning_rate=0.001,
        adam_beta_1=0.9,
        adam_beta_2=0.999,
        adam_weight_decay=0.004,
        epsilon=1e-7,
        weight_decay=0.004,
        exclude_layers=None,
        exclude_embeddings=True,
        muon_a=3.4445,
        muon_b=-4.7750,
        muon_c=2.0315,
        adam_lr_ratio=1,
        momentum=0.95,
        ns_steps=5,
        nesterov=True,
        rms_rate=0.2,
    )
    for key, default in defaults.items():
        assert parameters[key].default == default, key
        assert type(parameters[key].default) is type(default), key
    config = Muon().get_config()
    own_keys = (
        "adam_beta_1 adam_beta_2 epsilon exclude_layers muon_a muon_b muon_c adam_lr_ratio "
        "momentum ns_steps nesterov exclude_embeddings adam_weight_decay rms_rate"
    )
    assert list(config) == BASE_KEYS + own_keys.split()
    assert config["weight_decay"] == 0.004 and config["exclude_layers"] == []
    assert re.fullmatch(r"muon(_\d+)?", Muon().name)
    muon = Muon(0.5, 0.8, 0.75, 0.25, 0.125, 0.01)
    assert (
        muon.adam_beta_1,
        muon.adam_beta_2,
        muon.adam_weight_decay,
        muon.epsilon,
        muon.weight_decay,
    ) == (0.8, 0.75, 0.25, 0.125, 0.01)


@pytest.mark.parametrize(
    "factory,message",
    [
        (
            lambda: Muon(ns_steps=2.5),
            "Argument `ns_steps` must be an integer >= 0. Received: ns_steps=2.5",
        ),
        (lambda: Muon(ns_steps=-1), "Argument `ns_steps` must be an integer >= 0."),
        (lambda: Muon(ns_steps=True), "Argument `ns_steps` must be an integer >= 0."),
        (lambda: Muon(momentum=float("nan")), "Argument `momentum` must be a finite number."),
        (lambda: Muon(rms_rate="0.2"), "Argument `rms_rate` must be a finite number."),
        (
            lambda: Muon(adam_weight_decay=float("inf")),
            "Argument `adam_weight_decay` must be a finite number.",
        ),
        (
            lambda: Adafactor(clip_threshold=float("inf")),
            "Argument `clip_threshold` must be a finite number.",
        ),
        (
            lambda: Adafactor(beta_2_decay="-0.8"),
            "Argument `beta_2_decay` must be a finite number.",
        ),
        (lambda: Adafactor(beta_1=0.9), "Argument(s) not recognized: {'beta_1': 0.9}"),
    ],
)
def test_adafactor_and_muon_constructor_errors(factory, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        factory()


def test_adafactor_slots():
    # r and c per variable, named after it with no suffix, then its velocity; rank < 2 gets
    # scalar int32 placeholders; rank 3 factors its last two axes.
    params = {
        "kern": np.ones((2, 3), np.float32),
        "bias": np.ones(3, np.float64),
        "dense/cube": np.ones((2, 3, 4), np.float32),
    }
    opt = Adafactor()
    opt.build(params)
    assert opt.variable_names == [
        "iteration",
        "learning_rate",
        "kern",
        "kern",
        "kern_velocity",
        "bias",
        "bias",
        "bias_velocity",
        "dense_cube",
        "dense_cube",
        "dense_cube_velocity",
    ]
    slots = opt.variables[2:]
    assert [s.shape for s in slots] == [(2,), (3,), (2, 3), (), (), (3,), (2, 3), (2, 4), (2, 3, 4)]
    assert [s.dtype for s in slots] == [np.float32] * 3 + [np.int32, np.int32, np.float64] + [
        np.float32
    ] * 3
    assert not any(s.any() for s in slots)


def test_adafactor_relative_step_changes_nothing():
    rng = np.random.default_rng(6)
    params = [rng.standard_normal((4, 3)), rng.standard_normal(5)]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(4)]
    copies = [p.copy() for p in params]
    _run(Adafactor(learning_rate=0.9, relative_step=True), params, grads)
    _run(Adafactor(learning_rate=0.9, relative_step=False), copies, grads)
    for a, b in zip(params, copies):
        np.testing.assert_array_equal(a, b)


def _slot_owners(opt, slot):
    return [n[: -len(slot) - 1] for n in opt.variable_names if n.endswith("_" + slot)]


def test_muon_routing():
    # AdamW path: rank != 2, "embedding" in the lower-cased name, or an exclude_layers regex
    # found in the name (re.search). The velocity slot follows its momentum.
    params = {
        "dense/kernel": np.ones((3, 2)),
        "dense/bias": np.ones(2),
        "scale": np.ones(()),
        "conv/kernel": np.ones((3, 3, 2)),
        "conv4d/kernel": np.ones((2, 2, 2, 2)),
        "Token_Embedding/embeddings": np.ones((5, 2)),
        "output_dense/kernel": np.ones((2, 4)),
        "dense_1/kernel": np.ones((2, 2)),
        "head": np.ones((2, 2)),
        "header": np.ones((2, 2)),
    }
    opt = Muon(exclude_layers=["output_dense", "^he.d$"])
    opt.build(params)
    adamw = [
        "dense_bias",
        "scale",
        "conv_kernel",
        "conv4d_kernel",
        "Token_Embedding_embeddings",
        "output_dense_kernel",
        "head",
    ]
    assert _slot_owners(opt, "velocity") == adamw
    assert len(_slot_owners(opt, "momentum")) == len(params)
    names = opt.variable_names
    for owner in adamw:
        assert names[names.index(owner + "_momentum") + 1] == owner + "_velocity"
    opt = Muon(exclude_embeddings=False)
    opt.build(params)
    assert "Token_Embedding_embeddings" not in _slot_owners(opt, "velocity")
    assert "output_dense_kernel" not in _slot_owners(opt, "velocity")
    # A list's variables are named by position, and exclude_layers sees those names.
    opt = Muon(exclude_layers=["variable_1"])
    opt.build([np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2))])
    assert _slot_owners(opt, "velocity") == ["variable_1"]


def test_muon_adamw_path_is_adamw_and_muon_path_is_not():
    # An excluded matrix is updated exactly as AdamW updates it (the same fused kernel, decay
    # included); the same matrix on the Muon path moves elsewhere.
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal((4, 3)).astype(np.float32)
    grads = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(3)]
    excluded, adamw, muon = w0.copy(), w0.copy(), w0.copy()
    opt = Muon(learning_rate=0.01, exclude_layers=["excluded"])
    reference = AdamW(learning_rate=0.01, weight_decay=0.004)
    plain = Muon(learning_rate=0.01)
    for g in grads:
        opt.apply({"excluded": g}, {"excluded": excluded})
        reference.apply_gradients([(g, adamw)])
        plain.apply_gradients([(g, muon)])
    np.testing.assert_array_equal(excluded, adamw)
    assert np.abs(muon - adamw).max() > 1e-3


def test_muon_weight_decay_per_path_with_the_base_learning_rate():
    # weight_decay on the Muon path, adam_weight_decay on the AdamW path, both times the base
    # learning rate (adam_lr_ratio scales Adam's step only); None turns a path's decay off;
    # exclude_from_weight_decay applies to both. Zero gradients leave only the decay.
    f32 = np.float32

    def run(**kwargs):
        params = {
            "w": np.ones((2, 2), f32),
            "b": np.ones(2, f32),
            "skip_w": np.ones((2, 2), f32),
            "skip_b": np.ones(2, f32),
        }
        opt = Muon(learning_rate=0.5, adam_lr_ratio=0.1, **kwargs)
        opt.exclude_from_weight_decay(var_names=["skip"])
        opt.apply({k: np.zeros_like(v) for k, v in params.items()}, params)
        return {k: float(v.flat[0]) for k, v in params.items()}

    def decayed(wd):
        return float(f32(1) - f32(1) * f32(wd) * f32(0.5))

    assert run(weight_decay=0.1, adam_weight_decay=0.2) == {
        "w": decayed(0.1),
        "b": decayed(0.2),
        "skip_w": 1.0,
        "skip_b": 1.0,
    }
    assert run(weight_decay=None, adam_weight_decay=0.2) == {
        "w": 1.0,
        "b": decayed(0.2),
        "skip_w": 1.0,
        "skip_b": 1.0,
    }
    assert run(weight_decay=0.1, adam_weight_decay=None) == {
        "w": decayed(0.1),
        "b": 1.0,
        "skip_w": 1.0,
        "skip_b": 1.0,
    }


def test_muon_adam_lr_ratio_scales_the_adamw_step():
    rng = np.random.default_rng(8)
    b, twin = np.ones(5), np.ones(5)
    opt = Muon(learning_rate=0.5, adam_lr_ratio=0.25, adam_weight_decay=None)
    adam = Adam(learning_rate=0.125)
    for _ in range(3):
        g = rng.standard_normal(5)
        opt.apply_gradients([(g, b)])
        adam.apply_gradients([(g, twin)])
    np.testing.assert_array_equal(b, twin)


def test_muon_rms_rate_scales_the_update_by_sqrt_of_the_larger_side():
    # Keras's lr_adjust test: rms_rate 0.2 on a (4, 2) update gives 0.2 * sqrt(4) = 0.4 times
    # the unscaled one (from w = 0 and no decay, w is minus the update).
    g = np.random.default_rng(9).standard_normal((4, 2))
    scaled, plain = np.zeros((4, 2)), np.zeros((4, 2))
    Muon(learning_rate=1.0, weight_decay=None).apply_gradients([(g, scaled)])
    Muon(learning_rate=1.0, weight_decay=None, rms_rate=None).apply_gradients([(g, plain)])
    np.testing.assert_allclose(scaled, plain * 0.4, rtol=1e-15)
    assert np.abs(plain).max() > 0.1


def test_muon_zeropower_takes_leading_axes_as_a_batch():
    opt = Muon()
    x = np.random.default_rng(10).standard_normal((2, 3, 4, 5))
    out = opt.zeropower_via_newtonschulz5(x, 5)
    assert out.shape == x.shape and out.dtype == np.float64
    for i, j in np.ndindex(2, 3):
        np.testing.assert_array_equal(out[i, j], opt.zeropower_via_newtonschulz5(x[i, j], 5))
    with pytest.raises(ValueError, match="rank >= 2"):
        opt.zeropower_via_newtonschulz5(np.ones(3), 5)


@pytest.mark.parametrize("cls", UNFUSED, ids=_name)
def test_accumulated_matrix_update_equals_one_step_on_the_mean(cls):
    # The factored (Adafactor) and orthogonalized (Muon) paths, as Keras's accumulation test:
    # three dyadic float64 micro-batches give the same variables as one step on their mean.
    micro = [
        np.array([[0.5, -1.25, 2.0], [1.0, 0.25, -0.5]]),
        np.array([[1.5, 0.25, -4.0], [-2.0, 0.5, 0.75]]),
        np.array([[-0.5, 2.0, 1.0], [0.25, -1.0, 3.0]]),
    ]
    mean = sum(micro) / 3
    one_var, many_var = np.arange(6.0).reshape(2, 3), np.arange(6.0).reshape(2, 3)
    one = cls(learning_rate=0.1, weight_decay=0.05)
    many = cls(learning_rate=0.1, weight_decay=0.05, gradient_accumulation_steps=3)
    for cycle, scale in enumerate([1.0, 2.0, 0.5], start=1):
        one.apply_gradients([(mean * scale, one_var)])
        for g in micro:
            many.apply_gradients([(g * scale, many_var)])
        np.testing.assert_array_equal(many_var, one_var, err_msg=f"cycle {cycle}")
    assert len(many.variables) - 3 == len(one.variables) - 2
    for a, b in zip(list(many.variables)[3:], list(one.variables)[2:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"learning_rate": 0.1, "use_ema": True, "clipnorm": 1.0},
        {"learning_rate": 0.1, "use_ema": True, "global_clipnorm": 1.0},
    ],
    ids=["clipnorm", "global_clipnorm"],
)
@pytest.mark.parametrize("cls", UNFUSED, ids=_name)
def test_a_bad_gradient_changes_nothing(cls, kwargs):
    # Every gradient is checked before the first array changes: the AdamW-path tensors (one
    # native call) and the Muon or Adafactor tensors (NumPy) alike.
    rng = np.random.default_rng(11)
    params = {
        "bias": rng.standard_normal(3).astype(np.float32),
        "kernel": rng.standard_normal((3, 2)).astype(np.float32),
        "last": rng.standard_normal((2, 2)).astype(np.float32),
    }
    opt = cls(**kwargs)
    for _ in range(2):
        opt.apply({k: rng.standard_normal(v.shape) for k, v in params.items()}, params)
    before = [np.array(v, copy=True) for v in list(params.values()) + list(opt.variables)]
    good = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    # A (2, 2) view over the 3 elements of the bias's velocity (an AdamW-path slot in Muon).
    velocity = opt.variables[opt.variable_names.index("bias_velocity")]
    overlapping = np.lib.stride_tricks.as_strided(velocity, (2, 2), (velocity.itemsize,) * 2)
    faults = [
        (dict(good, last=np.ones(3)), ValueError, "'last'.*shape"),
        (dict(good, last=np.ones((2, 2), np.complex64)), TypeError, "cast"),
        (dict(good, last=params["kernel"][:2]), ValueError, "memory"),
        (dict(good, last=overlapping), ValueError, "memory"),
    ]
    for grads, error, pattern in faults:
        with pytest.raises(error, match=pattern):
            opt.apply(grads, params)
        after = list(params.values()) + list(opt.variables)
        assert len(after) == len(before)
        for a, b in zip(after, before):
            np.testing.assert_array_equal(a, b)
    assert opt.iterations == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"learning_rate": 0.1, "weight_decay": 0.01, "use_ema": True},
        {"learning_rate": 0.05, "gradient_accumulation_steps": 2},
    ],
    ids=["weight_decay-ema", "accumulation"],
)
@pytest.mark.parametrize("cls", UNFUSED, ids=_name)
def test_unfused_save_load_and_pickle_resume_training_exactly(cls, kwargs):
    rng = np.random.default_rng(12)
    params = [
        rng.standard_normal((3, 4)).astype(np.float32),
        rng.standard_normal(4),
        rng.standard_normal((2, 2, 3)).astype(np.float32),
    ]
    grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(7)]
    first = cls(**kwargs)
    _run(first, params, grads[:3])
    resumed, copies, _ = _resume(first, lambda: cls(**kwargs), params)
    _assert_resumed_and_pickled_go_on_exactly(first, params, resumed, copies, grads[3:])
