"""LossScaleOptimizer against Keras: its tests (loss_scale_optimizer_test.py), the trajectory of
docs/keras.md §4.4, its arguments, errors, variables and config; and its unscaled steps against
the NumPy reference (tests/reference.py) of the inner optimizer given the unscaled gradients.
"""

import doctest
import json
import pickle
import warnings

import numpy as np
import pytest

import ferroptim as fo
import reference as ref
from ferroptim.optimizers import SGD, Adam, LossScaleOptimizer, Nadam

SINGLE_STEP_VAR = [1.0, 2.0, 3.0, 4.0]
SINGLE_STEP_GRAD = [1.0, 6.0, 7.0, 2.0]

# docs/keras.md §4.4: LossScaleOptimizer(SGD(learning_rate=0.5), initial_scale=8.0,
# dynamic_growth_steps=2), v0 = [1, 2, 3, 4]; a finite call passes [1, 6, 7, 2] * scale, a
# non-finite one [inf or nan, 1, 1, 1].
TRAJECTORY = [  # (grads, scale before, v after, scale after, step_counter after, iterations)
    ("finite", 8.0, [0.5, -1.0, -0.5, 3.0], 8.0, 1, 1),
    ("inf", 8.0, [0.5, -1.0, -0.5, 3.0], 4.0, 0, 1),
    ("finite", 4.0, [0.0, -4.0, -4.0, 2.0], 4.0, 1, 2),
    ("finite", 4.0, [-0.5, -7.0, -7.5, 1.0], 8.0, 0, 3),
    ("finite", 8.0, [-1.0, -10.0, -11.0, 0.0], 8.0, 1, 4),
    ("nan", 8.0, [-1.0, -10.0, -11.0, 0.0], 4.0, 0, 4),
    ("finite", 4.0, [-1.5, -13.0, -14.5, -1.0], 4.0, 1, 5),
]


def _f32(values):
    return np.array(values, np.float32)


# --- Keras's tests ------------------------------------------------------------------------------


def test_keras_trajectory():
    opt = LossScaleOptimizer(SGD(learning_rate=0.5), initial_scale=8.0, dynamic_growth_steps=2)
    v = _f32(SINGLE_STEP_VAR)
    opt.build([v])
    for call, (kind, before, after, scale, counter, iterations) in enumerate(TRAJECTORY, 1):
        assert float(opt.dynamic_scale) == before, f"call {call}"
        if kind == "finite":
            grads = _f32(SINGLE_STEP_GRAD) * np.float32(before)
        else:
            grads = _f32([np.inf if kind == "inf" else np.nan, 1.0, 1.0, 1.0])
        opt.apply([grads], [v])
        np.testing.assert_array_equal(v, after, err_msg=f"call {call}")
        assert float(opt.dynamic_scale) == scale, f"call {call}"
        assert int(opt.step_counter) == counter, f"call {call}"
        assert opt.iterations == iterations == opt.inner_optimizer.iterations, f"call {call}"


def test_finite_step():
    opt = LossScaleOptimizer(SGD(learning_rate=0.5))
    v = _f32(SINGLE_STEP_VAR)
    opt.apply([_f32(SINGLE_STEP_GRAD) * np.float32(opt.initial_scale)], [v])
    np.testing.assert_array_equal(v, [0.5, -1.0, -0.5, 3.0])


def test_infinite_step():
    opt = LossScaleOptimizer(SGD(learning_rate=0.5))
    v = _f32(SINGLE_STEP_VAR)
    opt.apply([_f32([np.inf] * 4)], [v])
    np.testing.assert_array_equal(v, SINGLE_STEP_VAR)
    assert opt.iterations == 0


def test_downscaling():
    opt = LossScaleOptimizer(SGD(learning_rate=0.5), initial_scale=400.0)
    v = _f32(SINGLE_STEP_VAR)
    opt.build([v])
    for _ in range(4):
        opt.apply([_f32([np.inf] * 4)], [v])
    assert opt.scale_loss(1.0) == 25.0


def test_upscaling():
    opt = LossScaleOptimizer(SGD(learning_rate=0.5), initial_scale=2.0, dynamic_growth_steps=2)
    v = _f32(SINGLE_STEP_VAR)
    opt.build([v])
    for _ in range(8):
        opt.apply([_f32(SINGLE_STEP_GRAD)], [v])
    assert opt.scale_loss(1.0) == 32.0


def test_config():
    # Keras's test_config: run_class_serialization_test (config, serialize, pickle).
    opt = LossScaleOptimizer(
        SGD(learning_rate=0.5, momentum=0.06, nesterov=True, weight_decay=0.004),
        initial_scale=1024.0,
        dynamic_growth_steps=100,
        name="lso",
    )
    config = opt.get_config()
    assert list(config) == ["name", "inner_optimizer", "initial_scale", "dynamic_growth_steps"]
    assert config["name"] == "lso"
    assert config["initial_scale"] == 1024.0 and config["dynamic_growth_steps"] == 100
    assert config["inner_optimizer"] == fo.optimizers.serialize(opt.inner_optimizer)
    assert config["inner_optimizer"]["class_name"] == "SGD"
    as_json = json.dumps(config, sort_keys=True)
    revived = LossScaleOptimizer.from_config(json.loads(as_json))
    assert type(revived.inner_optimizer) is SGD
    assert json.dumps(revived.get_config(), sort_keys=True) == as_json
    serialized = json.loads(json.dumps(fo.optimizers.serialize(opt)))
    assert serialized["module"] == "keras.optimizers"
    assert serialized["class_name"] == "LossScaleOptimizer"
    for revived in (
        fo.optimizers.deserialize(serialized),
        fo.optimizers.get(serialized),
        pickle.loads(pickle.dumps(opt)),
    ):
        assert type(revived) is LossScaleOptimizer
        assert json.dumps(revived.get_config(), sort_keys=True) == as_json
    assert config == opt.get_config(), "from_config must not modify the config"


def test_from_config_with_custom_objects_for_the_inner_optimizer():
    class Custom(SGD):
        pass

    config = LossScaleOptimizer(Custom(learning_rate=0.25)).get_config()
    assert config["inner_optimizer"]["class_name"] == "Custom"
    revived = fo.optimizers.deserialize(
        {"class_name": "LossScaleOptimizer", "config": config},
        custom_objects={"Custom": Custom},
    )
    assert type(revived.inner_optimizer) is Custom
    assert revived.learning_rate == 0.25


def test_registered_under_keras_key_but_needs_an_inner_optimizer():
    with pytest.raises(ValueError, match="needs an `inner_optimizer`"):
        fo.optimizers.get("lossscaleoptimizer")
    inner = fo.optimizers.serialize(Adam())
    opt = fo.optimizers.deserialize(
        {"class_name": "LOSSSCALEOPTIMIZER", "config": {"inner_optimizer": inner}}
    )
    assert type(opt) is LossScaleOptimizer and type(opt.inner_optimizer) is Adam


# --- arguments ----------------------------------------------------------------------------------


def test_defaults_and_inner_loss_scale_is_disabled():
    inner = Adam(loss_scale_factor=128.0)
    opt = LossScaleOptimizer(inner)
    assert opt.initial_scale == 2.0**15 and opt.dynamic_growth_steps == 2000
    assert opt.name.startswith("loss_scale_optimizer")
    # Keras: otherwise the gradients would be unscaled twice.
    assert inner.loss_scale_factor is None
    assert opt.scale_loss(3.0) == 3.0 * 2.0**15


def test_dynamic_false_is_rejected_with_keras_message():
    with pytest.raises(ValueError) as info:
        LossScaleOptimizer(SGD(), dynamic=False)
    assert str(info.value) == (
        "LossScaleOptimizer no longer supports `dynamic=False`. Instead, simply set "
        "`loss_scale_factor` directly on the `inner_optimizer`."
    )
    LossScaleOptimizer(SGD(), dynamic=True)


@pytest.mark.parametrize(
    "argument,default",
    [
        ("weight_decay", None),
        ("clipnorm", None),
        ("global_clipnorm", None),
        ("clipvalue", None),
        ("use_ema", False),
        ("ema_momentum", 0.99),
        ("ema_overwrite_frequency", None),
        ("loss_scale_factor", None),
        ("gradient_accumulation_steps", None),
    ],
)
def test_base_arguments_only_at_their_defaults(argument, default):
    # Older Keras configs carry them at their defaults: accepted; any other value is refused.
    LossScaleOptimizer(SGD(), **{argument: default})
    other = {None: 0.5, False: True, 0.99: 0.5}[default]
    with pytest.raises(ValueError) as info:
        LossScaleOptimizer(SGD(), **{argument: other})
    assert str(info.value) == (
        f"LossScaleOptimizer does not support `{argument}`. "
        f"Instead, set `{argument}` on the `inner_optimizer`."
    )


def test_unknown_arguments_are_refused_with_keras_message():
    with pytest.raises(ValueError) as info:
        LossScaleOptimizer(SGD(), foo=1, learning_rate=0.1)
    assert str(info.value) == (
        "LossScaleOptimizer does not support arguments: `foo`, `learning_rate`."
    )


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (
            {"inner_optimizer": "adam"},
            TypeError,
            "Argument `inner_optimizer` must be an `Optimizer`",
        ),
        (
            {"inner_optimizer": SGD(), "initial_scale": 0.0},
            ValueError,
            "Argument `initial_scale` must be a finite number > 0. Received: initial_scale=0.0",
        ),
        (
            {"inner_optimizer": SGD(), "initial_scale": float("inf")},
            ValueError,
            "Argument `initial_scale` must be a finite number > 0",
        ),
        (
            {"inner_optimizer": SGD(), "dynamic_growth_steps": 0},
            ValueError,
            "Argument `dynamic_growth_steps` must be an integer >= 1. Received: "
            "dynamic_growth_steps=0",
        ),
        (
            {"inner_optimizer": SGD(), "dynamic_growth_steps": 2.0},
            ValueError,
            "Argument `dynamic_growth_steps` must be an integer >= 1",
        ),
    ],
)
def test_arguments_keras_does_not_check(kwargs, error, message):
    with pytest.raises(error) as info:
        LossScaleOptimizer(**kwargs)
    assert message in str(info.value)


# --- state --------------------------------------------------------------------------------------


def test_variables_are_own_then_inner():
    opt = LossScaleOptimizer(Adam(learning_rate=0.25), initial_scale=64.0)
    w = {"kernel": np.ones(3, np.float32)}
    opt.build(w)
    assert opt.variable_names == [
        "iteration",
        "learning_rate",
        "step_counter",
        "dynamic_scale",
        "iteration",
        "learning_rate",
        "kernel_momentum",
        "kernel_velocity",
    ]
    values = opt.variables
    assert values[2].dtype == np.int64 and int(values[2]) == 0
    assert values[3].dtype == np.float32 and float(values[3]) == 64.0
    assert float(values[5]) == 0.25
    opt.apply({"kernel": np.full(3, 64.0, np.float32)})
    values = opt.variables
    # Its own iteration never advances (Keras); the inner one does.
    assert int(values[0]) == 0 and int(values[4]) == 1 and int(values[2]) == 1


def test_learning_rate_and_iterations_are_the_inner_optimizers():
    inner = SGD(learning_rate=0.5)
    opt = LossScaleOptimizer(inner, initial_scale=4.0)
    assert opt.learning_rate == 0.5
    opt.learning_rate = 0.25
    assert inner.learning_rate == 0.25
    w = np.ones(2, np.float32)
    assert opt.apply_gradients([(np.full(2, 4.0, np.float32), w)]) == 1
    np.testing.assert_array_equal(w, [0.75, 0.75])
    assert opt.iterations == inner.iterations == 1


def test_save_load_and_set_weights_cover_the_inner_optimizer():
    def make():
        return LossScaleOptimizer(
            Adam(learning_rate=0.1), initial_scale=8.0, dynamic_growth_steps=1
        )

    w = np.array([1.0, -1.0], np.float32)
    first = make()
    for g in ([8.0, 4.0], [np.inf, 0.0], [2.0, -4.0]):
        first.apply([_f32(g)], [w])
    store = {}
    first.save_own_variables(store)
    assert len(store) == len(first.variables) == 8
    w2 = w.copy()
    second = make()
    second.build([w2])
    second.load_own_variables(store)
    for a, b in zip(second.variables, first.variables):
        np.testing.assert_array_equal(a, b)
    for g in ([1.0, 2.0], [-3.0, 0.5]):
        first.apply([_f32(g)], [w])
        second.apply([_f32(g)], [w2])
        np.testing.assert_array_equal(w2, w)
    with pytest.warns(
        UserWarning, match="because it has 8 variables whereas the saved optimizer has 7 variables"
    ):
        second.load_own_variables({str(i): store[str(i)] for i in range(7)})


def _built_over_adam():
    """A LossScaleOptimizer over Adam, built for one float32 vector of 2, and a copy of its
    variables: the outer iterations, learning_rate, step_counter and dynamic_scale, then Adam's
    iterations, learning_rate, momentum and velocity."""
    opt = LossScaleOptimizer(Adam(), initial_scale=8.0)
    opt.build([np.ones(2, np.float32)])
    return opt, [np.array(v, copy=True) for v in opt.variables]


def _assert_unchanged(opt, before):
    for a, b in zip(opt.variables, before):
        np.testing.assert_array_equal(a, b)


def test_set_weights_checks_every_shape_before_assigning():
    opt, before = _built_over_adam()
    bad = [np.array(x) for x in (0, 0.0, 5, 2.0, 3, 0.5)] + [np.ones(2), np.ones(3)]
    with pytest.raises(
        ValueError,
        match=r"variable_0_velocity has shape \(2,\) not compatible "
        r"with provided weight shape \(3,\)",
    ):
        opt.set_weights(bad)
    _assert_unchanged(opt, before)
    bad[-1] = np.full(2, 7.0)
    opt.set_weights(bad)
    assert int(opt.step_counter) == 5 and float(opt.dynamic_scale) == 2.0
    assert opt.iterations == 3
    np.testing.assert_array_equal(opt.variables[-1], [7.0, 7.0])


@pytest.mark.parametrize(
    "index, bad_value",
    [(5, np.array("x")), (4, np.array(-1)), (7, np.ones(2, np.complex64))],
    ids=["text", "negative_iterations", "complex"],
)
def test_set_weights_converts_every_value_before_assigning(index, bad_value):
    # The outer optimizer's entries come first: a value of the inner optimizer that cannot be
    # converted must still leave the outer ones (and everything else) as they were.
    opt, before = _built_over_adam()
    bad = [np.array(x) for x in (4, 16.0, 5, 2.0, 3, 0.5)] + [np.ones(2), np.ones(2)]
    bad[index] = bad_value
    with pytest.raises((TypeError, ValueError)):
        opt.set_weights(bad)
    _assert_unchanged(opt, before)
    assert opt.iterations == 0 and float(opt.dynamic_scale) == 8.0


def test_pickle_mid_trajectory_continues_identically():
    opt = LossScaleOptimizer(Nadam(learning_rate=0.1), initial_scale=16.0, dynamic_growth_steps=2)
    w = np.array([1.0, 2.0, -3.0], np.float32)
    rng = np.random.default_rng(0)
    for _ in range(3):
        opt.apply([rng.standard_normal(3).astype(np.float32)], [w])
    w2, opt2 = pickle.loads(pickle.dumps((w, opt)))
    for g in (
        rng.standard_normal(3).astype(np.float32),
        _f32([np.nan, 0, 0]),
        rng.standard_normal(3).astype(np.float32),
    ):
        opt.apply([g], [w])
        opt2.apply([g], [w2])
        np.testing.assert_array_equal(w2, w)
        assert float(opt2.dynamic_scale) == float(opt.dynamic_scale)
        assert int(opt2.step_counter) == int(opt.step_counter)


def test_scale_loss_follows_the_dynamic_scale():
    opt = LossScaleOptimizer(SGD(), initial_scale=8.0)
    assert opt.scale_loss(2.0) == 16.0
    w = np.ones(1, np.float32)
    opt.apply([_f32([np.inf])], [w])
    assert opt.scale_loss(2.0) == 8.0
    loss = np.array([1.0, 3.0], np.float32)
    scaled = opt.scale_loss(loss)
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled, [4.0, 12.0])


def test_scale_stays_float32():
    # 2**127 doubles to inf in float32 (Keras's float32 variable overflows the same way).
    opt = LossScaleOptimizer(SGD(), initial_scale=2.0**127, dynamic_growth_steps=1)
    w = np.zeros(1, np.float32)
    opt.apply([_f32([0.0])], [w])
    assert opt.dynamic_scale.dtype == np.float32 and np.isinf(opt.dynamic_scale)


def test_finalize_variable_values_is_the_inner_optimizers():
    opt = LossScaleOptimizer(
        SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.5), initial_scale=2.0
    )
    w = np.array([4.0], np.float32)
    opt.apply([_f32([2.0])], [w])  # w = 3, average = 3 (first step takes the variable)
    opt.apply([_f32([2.0])], [w])  # w = 2, average = 0.5 * 3 + 0.5 * 2
    opt.finalize_variable_values([w])
    np.testing.assert_array_equal(w, [2.5])


# --- the step -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("Adam", {"learning_rate": 0.01}),
        ("Lamb", {"clipnorm": 1.0}),
        ("SGD", {"momentum": 0.9, "gradient_accumulation_steps": 2, "use_ema": True}),
        ("AdamW", {"global_clipnorm": 0.5}),
    ],
)
def test_finite_steps_are_the_inner_step_on_the_unscaled_gradients(name, kwargs, dtype):
    # Keras divides the gradients by the float32 scale, then runs the inner optimizer: the
    # reference does that with `loss_scale_factor` (a division first, in the working dtype).
    # 1000 is not a power of two, so the division rounds and its order shows.
    rng = np.random.default_rng(11)
    shapes = [(5,), (3, 4), ()]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    opt = LossScaleOptimizer(
        getattr(fo.optimizers, name)(**kwargs), initial_scale=1000.0, dynamic_growth_steps=1000
    )
    reference = ref.make_reference(name, dict(kwargs, loss_scale_factor=1000.0))
    reference.build([p.copy() for p in params])
    for step in range(5):
        grads = [(1000 * rng.standard_normal(s)).astype(dtype) for s in shapes]
        opt.apply_gradients(zip(grads, params))
        reference.apply(grads)
        for p, e in zip(params, reference.params):
            ref.assert_close(p, e, err_msg=f"step {step}")
    assert opt.inner_optimizer.loss_scale_factor is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_gradient_anywhere_skips_the_whole_step(dtype, bad):
    # Every variable, slot and counter of the inner optimizer stays as it was, bit for bit.
    rng = np.random.default_rng(5)
    params = [rng.standard_normal(s).astype(dtype) for s in [(7,), (2, 3)]]
    opt = LossScaleOptimizer(Adam(learning_rate=0.1, use_ema=True), initial_scale=4.0)
    opt.apply([rng.standard_normal(p.shape).astype(dtype) for p in params], params)
    before_params = [p.copy() for p in params]
    before_inner = [np.array(v, copy=True) for v in opt.inner_optimizer.variables]
    grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
    grads[1][1, 2] = bad
    opt.apply(grads, params)
    for p, b in zip(params, before_params):
        np.testing.assert_array_equal(p, b)
    for v, b in zip(opt.inner_optimizer.variables, before_inner):
        np.testing.assert_array_equal(v, b)
    assert float(opt.dynamic_scale) == 2.0 and int(opt.step_counter) == 0


def test_missing_gradients_are_ignored_by_the_check():
    opt = LossScaleOptimizer(SGD(learning_rate=1.0), initial_scale=2.0)
    a, b = np.ones(2, np.float32), np.ones(2, np.float32)
    with pytest.warns(UserWarning, match="Gradients do not exist for variables"):
        opt.apply([None, _f32([2.0, 4.0])], [a, b])
    np.testing.assert_array_equal(a, [1.0, 1.0])
    np.testing.assert_array_equal(b, [0.0, -1.0])
    assert int(opt.step_counter) == 1


def test_dict_gradients():
    opt = LossScaleOptimizer(SGD(learning_rate=1.0), initial_scale=2.0)
    params = {"a": np.ones(2, np.float32), "b": np.ones(1)}
    opt.apply({"a": _f32([2.0, 2.0]), "b": np.array([np.inf])}, params)
    np.testing.assert_array_equal(params["a"], [1.0, 1.0])
    with pytest.warns(UserWarning, match=r"Gradients do not exist for variables \['a'\]"):
        opt.apply({"b": np.array([1.0])})  # scale 1 now; "a" has no gradient this step
    np.testing.assert_array_equal(params["b"], [0.0])


def test_empty_gradients_are_a_no_op():
    opt = LossScaleOptimizer(SGD())
    opt.apply([], [])
    assert not opt.built and opt.iterations == 0


def test_apply_without_variables_before_build_is_rejected():
    with pytest.raises(ValueError, match="When passing `grads` without `variables`"):
        LossScaleOptimizer(SGD()).apply([np.ones(2)])


def test_a_failing_inner_step_changes_nothing_and_restores_the_inner_loss_scale():
    inner = SGD(learning_rate=1.0)
    opt = LossScaleOptimizer(inner, initial_scale=2.0)
    w = np.ones(3, np.float32)
    opt.build([w])
    with pytest.raises(ValueError, match="gradient 'variable_0' has shape"):
        opt.apply([np.ones(2, np.float32)], [w])
    np.testing.assert_array_equal(w, [1.0, 1.0, 1.0])
    assert inner.loss_scale_factor is None
    assert int(opt.step_counter) == 0 and opt.iterations == 0


@pytest.mark.parametrize("as_dict", [True, False])
def test_a_gradient_the_finiteness_check_cannot_read_is_named(as_dict):
    opt = LossScaleOptimizer(SGD())
    params = {"kernel": np.ones(2), "bias": np.ones(2)}
    grads = {"kernel": None, "bias": np.array(["a", "b"])}
    name = "bias" if as_dict else "variable_1"  # a list names its variables by position
    with pytest.raises(TypeError, match=f"gradient '{name}' has dtype <U1"):
        if as_dict:
            opt.apply(grads, params)
        else:
            opt.apply(list(grads.values()), list(params.values()))
    np.testing.assert_array_equal(params["kernel"], [1.0, 1.0])


def test_a_loss_scale_set_on_the_inner_optimizer_later_divides_again():
    # Keras forces the inner factor to None at construction only; set later, both divide.
    inner = SGD(learning_rate=1.0)
    opt = LossScaleOptimizer(inner, initial_scale=4.0)
    inner.loss_scale_factor = 2.0
    w = np.zeros(2, np.float32)
    opt.apply([_f32([8.0, 16.0])], [w])
    np.testing.assert_array_equal(w, [-1.0, -2.0])
    assert inner.loss_scale_factor == 2.0


def test_no_warning_on_overflowing_or_halving_the_scale():
    opt = LossScaleOptimizer(SGD(), initial_scale=2.0**127, dynamic_growth_steps=1)
    w = np.zeros(1, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.apply([_f32([1.0])], [w])
        opt.apply([_f32([np.nan])], [w])


def test_steps_from_two_threads_are_serialized():
    # Each step borrows the inner optimizer's loss scale; two threads interleaving without the
    # step guard would let one thread's restore un-scale the other's step. lr, the scale and
    # the gradients are powers of two, so every result below is exact. The arrays are large
    # enough for the kernel to release the GIL, so the threads do interleave.
    import threading

    opt = LossScaleOptimizer(SGD(learning_rate=0.25), initial_scale=4.0, dynamic_growth_steps=10**9)
    w = np.full(200_000, 1000.0, np.float32)
    opt.build([w])
    g = np.full(200_000, 4.0, np.float32)

    def run():
        for _ in range(200):
            opt.apply([g], [w])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_array_equal(w, np.full(200_000, 1000.0 - 400 * 0.25, np.float32))
    assert opt.iterations == 400 and int(opt.step_counter) == 400
    assert opt.inner_optimizer.loss_scale_factor is None


def test_docstring_examples_run():
    import ferroptim.optimizers.loss_scale_optimizer as module

    results = doctest.testmod(module)
    assert results.attempted > 0 and results.failed == 0


def test_inner_configuration_is_not_changed_during_a_step():
    # The dynamic scale reaches the inner step as an argument, not by assigning the inner
    # optimizer's `loss_scale_factor`: code that runs inside the step (here the learning-rate
    # callable) sees the inner configuration as the user left it, and the step is the same as
    # dividing the gradient by the scale first (powers of two: exact).
    seen = []
    inner = SGD(learning_rate=lambda: seen.append(inner.loss_scale_factor) or 0.5)
    opt = LossScaleOptimizer(inner, initial_scale=8.0)
    w = np.array([1.0, 2.0], np.float32)
    opt.apply([np.array([16.0, -8.0], np.float32)], [w])
    np.testing.assert_array_equal(w, np.array([1.0 - 0.5 * 2.0, 2.0 + 0.5 * 1.0], np.float32))
    assert seen == [None]
    assert inner.loss_scale_factor is None
