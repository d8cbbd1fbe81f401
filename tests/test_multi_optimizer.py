"""MultiOptimizer and OptimizerMap (docs/keras.md §1.16): look-up rules, validation with Keras's
wording, dispatch (every share must move exactly as its sub-optimizer alone would move it),
variables, loss scale, config and pickling.
"""

import doctest
import json
import pickle

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.optimizers import (
    SGD,
    Adam,
    Lamb,
    Lion,
    LossScaleOptimizer,
    MultiOptimizer,
    Nadam,
    OptimizerMap,
    RMSprop,
)


def _params(rng, spec):
    return {name: rng.standard_normal(shape).astype(dtype) for name, (shape, dtype) in spec.items()}


SPEC = {
    "encoder/dense/kernel": ((4, 3), np.float32),
    "encoder/dense/bias": ((3,), np.float32),
    "encoder/norm/gamma": ((3,), np.float64),
    "decoder/dense/kernel": ((3, 2), np.float32),
    "decoder/dense/bias": ((2,), np.float64),
    "head": ((), np.float32),
}


# --- OptimizerMap --------------------------------------------------------------------------------


def test_lookup_exact_key_then_fullmatch_then_default():
    default, exact, pattern, bias = SGD(), Adam(), RMSprop(), Lion()
    opt_map = OptimizerMap(default)
    opt_map["encoder/dense/kernel"] = exact
    opt_map["encoder/.*"] = pattern
    opt_map[".*/bias"] = bias
    assert opt_map.default_optimizer is default
    # An exact key wins even though "encoder/.*" matches it too.
    assert opt_map["encoder/dense/kernel"] is exact
    assert opt_map["encoder/attention/query"] is pattern
    assert opt_map["decoder/dense/bias"] is bias
    # Whole-name matches only: "encoder/.*" does not cover "xencoder/a", nor ".*/bias" "a/bias2".
    assert opt_map["xencoder/a"] is default
    assert opt_map["a/bias2"] is default
    assert opt_map("decoder/dense/kernel") is default
    with pytest.raises(
        ValueError, match="Multiple optimizers assigned to variable encoder/dense/bias"
    ):
        opt_map["encoder/dense/bias"]


def test_mapping_protocol():
    a, b = Adam(), SGD()
    opt_map = OptimizerMap(RMSprop(), {"a": a, "b.*": b})
    assert list(opt_map) == ["a", "b.*"] and len(opt_map) == 2
    assert list(opt_map.values()) == [a, b]
    # `in` is about the keys, although any name can be looked up.
    assert "a" in opt_map and "b1" not in opt_map
    del opt_map["a"]
    assert list(opt_map) == ["b.*"]
    opt_map["a"] = b
    assert opt_map["a"] is b


def test_a_key_that_is_not_a_regular_expression_only_matches_exactly():
    adam = Adam()
    opt_map = OptimizerMap(SGD(), {"dense(": adam})
    assert opt_map["dense("] is adam
    assert type(opt_map["dense(x"]) is SGD


def test_pairs_are_added_in_order_and_duplicates_refused():
    opt_map = OptimizerMap(SGD(), [("x", Adam()), ("y", SGD())])
    assert list(opt_map) == ["x", "y"]
    first = Adam()
    with pytest.raises(ValueError) as info:
        OptimizerMap(SGD(), [("x", first), ("x", SGD())])
    assert str(info.value) == (
        f"x already exist in the OptimizerMap with value {first}. Please make sure to not use "
        "duplicated keys."
    )
    with pytest.raises(ValueError, match="already exist in the OptimizerMap"):
        opt_map["y"] = Adam()


@pytest.mark.parametrize(
    "key,value,message",
    [
        (3, SGD(), "key must be a string. Received: 3"),
        (("a", "b"), SGD(), "key must be a string."),
        ("k", "adam", "The value of key 'k' must be an Optimizer instance. Received: adam"),
        ("k", None, "must be an Optimizer instance"),
        ("k", LossScaleOptimizer(SGD()), "is a LossScaleOptimizer"),
        ("k", MultiOptimizer(OptimizerMap(SGD())), "MultiOptimizers cannot be nested"),
    ],
)
def test_bad_entries_are_refused(key, value, message):
    opt_map = OptimizerMap(SGD())
    with pytest.raises(ValueError) as info:
        opt_map[key] = value
    assert message in str(info.value)
    assert len(opt_map) == 0


def test_bad_default_optimizer():
    with pytest.raises(
        TypeError, match="default_optimizer must be a Keras Optimizer instance. Received: sgd"
    ):
        OptimizerMap("sgd")
    with pytest.raises(ValueError, match="is a LossScaleOptimizer"):
        OptimizerMap(LossScaleOptimizer(SGD()))
    with pytest.raises(ValueError, match="cannot be nested"):
        OptimizerMap(MultiOptimizer(OptimizerMap(SGD())))


def test_optimizer_map_config_round_trip():
    opt_map = OptimizerMap(SGD(learning_rate=0.5), {"a/.*": Adam(amsgrad=True), "b": Lamb()})
    config = opt_map.get_config()
    assert list(config) == ["default_optimizer", "optimizer_map"]
    assert config["default_optimizer"] == fo.optimizers.serialize(opt_map.default_optimizer)
    revived = OptimizerMap.from_config(json.loads(json.dumps(config)))
    assert json.dumps(revived.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
    assert [type(v) for v in revived.values()] == [Adam, Lamb]
    serialized = fo.optimizers.serialize(opt_map)
    assert serialized["class_name"] == "OptimizerMap"
    assert serialized["module"] == "keras.optimizers"
    assert type(fo.optimizers.deserialize(serialized)) is OptimizerMap
    with pytest.raises(ValueError, match="needs a `default_optimizer`"):
        fo.optimizers.deserialize({"class_name": "optimizermap", "config": {}})


# --- MultiOptimizer: dispatch -------------------------------------------------------------------


def _map_and_twins(kwargs_by_key, default_kwargs):
    """An OptimizerMap of fresh optimizers, and for each key an identical optimizer that will
    run alone on the same share."""
    classes = {
        "adam": Adam,
        "sgd": SGD,
        "lion": Lion,
        "nadam": Nadam,
        "lamb": Lamb,
        "rmsprop": RMSprop,
    }

    def make(spec):
        name, kwargs = spec
        return classes[name](**kwargs)

    opt_map = OptimizerMap(make(default_kwargs), {k: make(v) for k, v in kwargs_by_key.items()})
    twins = {k: make(v) for k, v in kwargs_by_key.items()}
    twins[None] = make(default_kwargs)
    return opt_map, twins


@pytest.mark.parametrize("as_dict", [True, False])
def test_each_share_moves_exactly_as_its_optimizer_alone(as_dict):
    rng = np.random.default_rng(1)
    params = _params(rng, SPEC)
    opt_map, twins = _map_and_twins(
        {
            "encoder/.*": ("adam", {"learning_rate": 0.01, "amsgrad": True, "clipnorm": 1.0}),
            ".*/bias": ("nadam", {"learning_rate": 0.02, "use_ema": True}),
            "head": ("lamb", {"weight_decay": 0.1}),
        },
        ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "gradient_accumulation_steps": 2}),
    )
    # "encoder/dense/bias" matches two keys: give it its own exact key.
    opt_map["encoder/dense/bias"] = opt_map[".*/bias"]
    names = list(params)
    owner = {
        "encoder/dense/kernel": "encoder/.*",
        "encoder/dense/bias": ".*/bias",
        "encoder/norm/gamma": "encoder/.*",
        "decoder/dense/kernel": None,
        "decoder/dense/bias": ".*/bias",
        "head": "head",
    }
    if not as_dict:
        # A list names its variables by position: the map must route those names.
        opt_map, twins = _map_and_twins(
            {
                "variable_[02]": (
                    "adam",
                    {"learning_rate": 0.01, "amsgrad": True, "clipnorm": 1.0},
                ),
                "variable_[14]": ("nadam", {"learning_rate": 0.02, "use_ema": True}),
                "variable_5": ("lamb", {"weight_decay": 0.1}),
            },
            ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "gradient_accumulation_steps": 2}),
        )
        owner = {
            name: key
            for name, key in zip(
                names,
                [
                    "variable_[02]",
                    "variable_[14]",
                    "variable_[02]",
                    None,
                    "variable_[14]",
                    "variable_5",
                ],
            )
        }
    alone = {name: p.copy() for name, p in params.items()}
    shares = {}
    for name in names:
        shares.setdefault(owner[name], []).append(name)
    opt = MultiOptimizer(opt_map)
    for step in range(5):
        grads = {name: rng.standard_normal(p.shape).astype(p.dtype) for name, p in params.items()}
        if as_dict:
            opt.apply(grads, params)
        else:
            opt.apply_gradients(zip(grads.values(), params.values()))
        for key, members in shares.items():
            twins[key].apply_gradients([(grads[n], alone[n]) for n in members])
        for name in names:
            np.testing.assert_array_equal(params[name], alone[name], err_msg=f"{step} {name}")
        assert opt.iterations == step + 1
    for key, twin in twins.items():
        sub = opt_map.default_optimizer if key is None else opt_map[key]
        assert sub.iterations == twin.iterations
        for a, b in zip(sub.variables, twin.variables):
            np.testing.assert_array_equal(a, b)


def test_sub_optimizers_name_slots_after_the_variables_and_see_their_names():
    params = {"dense/kernel": np.ones(2, np.float32), "dense/bias": np.ones(2, np.float32)}
    adam = Adam(weight_decay=0.5, learning_rate=0.1)
    adam.exclude_from_weight_decay(var_names=["bias"])
    opt = MultiOptimizer(OptimizerMap(adam))
    opt.apply({k: np.zeros(2, np.float32) for k in params}, params)
    assert adam.variable_names[2:] == [
        "dense_kernel_momentum",
        "dense_kernel_velocity",
        "dense_bias_momentum",
        "dense_bias_velocity",
    ]
    np.testing.assert_array_equal(params["dense/kernel"], np.float32([0.95, 0.95]))
    np.testing.assert_array_equal(params["dense/bias"], [1.0, 1.0])


def test_a_callable_map_gets_the_names_and_orders_sub_optimizers_by_first_return():
    seen = []
    slow, fast = SGD(learning_rate=0.1, name="slow"), SGD(learning_rate=1.0, name="fast")

    def route(name):
        seen.append(name)
        return fast if name.endswith("1") else slow

    opt = MultiOptimizer(route)
    params = [np.ones(1, np.float32), np.ones(1, np.float32), np.ones(1, np.float32)]
    opt.apply_gradients(zip([np.ones(1, np.float32)] * 3, params))
    assert seen == ["variable_0", "variable_1", "variable_2"]
    np.testing.assert_allclose(params, [[0.9], [0.0], [0.9]], rtol=1e-6)
    # variables: own iteration, learning_rate, then `slow` (returned first), then `fast`.
    assert [int(v) for v in opt.variables[0::2]] == [1, 1, 1]
    assert [float(v) for v in opt.variables[1::2]] == [0.0, np.float32(0.1), 1.0]


def test_variables_are_own_then_map_values_in_order_then_default():
    default, first, second = SGD(name="d"), Adam(name="a"), Lion(name="l")
    opt = MultiOptimizer(OptimizerMap(default, {"x": first, "y": second}))
    # Before build: every optimizer of the map, unbuilt.
    assert opt.variable_names == ["iteration", "learning_rate"] * 4
    params = {"y": np.ones(2, np.float32), "z": np.ones(1, np.float32)}
    opt.build(params)
    assert opt.variable_names == [
        "iteration",
        "learning_rate",
        "iteration",
        "learning_rate",  # first: no share, not built
        "iteration",
        "learning_rate",
        "y_momentum",  # second
        "iteration",
        "learning_rate",  # default (plain SGD has no slot)
    ]
    assert not first.built and second.built and default.built


def test_learning_rate_is_an_attribute_error():
    opt = MultiOptimizer(OptimizerMap(SGD()))
    with pytest.raises(AttributeError, match="no learning rate of its own"):
        _ = opt.learning_rate
    with pytest.raises(AttributeError, match="no learning rate of its own"):
        opt.learning_rate = 0.1
    assert not hasattr(opt, "learning_rate")


def test_loss_scale_factor_is_given_to_every_sub_optimizer():
    a, b = SGD(learning_rate=1.0, loss_scale_factor=3.0), SGD(learning_rate=1.0)
    opt = MultiOptimizer(OptimizerMap(a, {"b": b}), loss_scale_factor=4.0)
    assert a.loss_scale_factor == b.loss_scale_factor == 4.0
    assert opt.scale_loss(2.0) == 8.0
    params = {"a": np.zeros(1, np.float32), "b": np.zeros(1, np.float32)}
    opt.apply({"a": np.full(1, 8.0, np.float32), "b": np.full(1, 4.0, np.float32)}, params)
    np.testing.assert_array_equal(params["a"], [-2.0])
    np.testing.assert_array_equal(params["b"], [-1.0])
    opt.loss_scale_factor = None
    assert a.loss_scale_factor is None and b.loss_scale_factor is None
    assert opt.scale_loss(2.0) == 2.0
    # A callable map: its optimizers are only known at build, which gives them the factor.
    c = SGD()
    opt = MultiOptimizer(lambda name: c, loss_scale_factor=2.0)
    assert c.loss_scale_factor is None
    opt.build([np.zeros(1)])
    assert c.loss_scale_factor == 2.0


def test_wrapped_in_a_loss_scale_optimizer():
    a, b = SGD(learning_rate=1.0), Adam(learning_rate=0.5)
    twin_a, twin_b = SGD(learning_rate=1.0), Adam(learning_rate=0.5)
    opt = LossScaleOptimizer(MultiOptimizer(OptimizerMap(a, {"b": b})), initial_scale=8.0)
    params = {"a": np.ones(2, np.float32), "b": np.ones(2, np.float32)}
    alone = {k: v.copy() for k, v in params.items()}
    grads = {"a": np.array([8.0, -16.0], np.float32), "b": np.array([4.0, 1.0], np.float32)}
    opt.apply(grads, params)
    twin_a.apply_gradients([(grads["a"] / 8, alone["a"])])
    twin_b.apply_gradients([(grads["b"] / 8, alone["b"])])
    for k in params:
        np.testing.assert_array_equal(params[k], alone[k])
    assert a.loss_scale_factor is None and b.loss_scale_factor is None
    assert opt.iterations == 1
    opt.apply({"a": np.array([np.nan, 0], np.float32), "b": np.ones(2, np.float32)}, params)
    assert opt.iterations == 1 and float(opt.dynamic_scale) == 4.0


def test_missing_gradients_warn_once_and_a_share_without_any_is_not_stepped():
    a, b = SGD(learning_rate=1.0), SGD(learning_rate=1.0)
    opt = MultiOptimizer(OptimizerMap(a, {"b.*": b}))
    params = {
        "a": np.ones(1, np.float32),
        "b0": np.ones(1, np.float32),
        "b1": np.ones(1, np.float32),
    }
    with pytest.warns(UserWarning, match=r"Gradients do not exist for variables \['a', 'b1'\]"):
        opt.apply({"a": None, "b0": np.ones(1, np.float32), "b1": None}, params)
    np.testing.assert_array_equal([params["a"], params["b0"], params["b1"]], [[1.0], [0.0], [1.0]])
    assert a.iterations == 0 and b.iterations == 1 and opt.iterations == 1
    with pytest.raises(ValueError, match="No gradients provided for any variable."):
        opt.apply({"a": None})


def test_finalize_variable_values_reaches_every_share():
    a = SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.5)
    b = SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.5)
    opt = MultiOptimizer(OptimizerMap(a, {"b": b}))
    params = {"a": np.array([4.0]), "b": np.array([10.0])}
    for _ in range(2):
        opt.apply({"a": np.ones(1), "b": np.full(1, 2.0)}, params)
    # a: 3, then 2 (averages 3, then 2.5); b: 8, then 6 (averages 8, then 7).
    opt.finalize_variable_values(params)
    np.testing.assert_array_equal(params["a"], [2.5])
    np.testing.assert_array_equal(params["b"], [7.0])


# --- MultiOptimizer: bad input ------------------------------------------------------------------


def test_a_bad_gradient_for_one_share_changes_no_share():
    a, b = Adam(learning_rate=0.1), SGD(learning_rate=0.1, momentum=0.9)
    opt = MultiOptimizer(OptimizerMap(a, {"b": b}))
    params = {"a": np.ones(3, np.float32), "b": np.ones(2, np.float32)}
    opt.build(params)
    before = [np.array(v, copy=True) for v in opt.variables]
    with pytest.raises(
        ValueError,
        match=r"gradient 'b' has shape \(3,\) but the parameter "
        r"has shape \(2,\)",
    ):
        opt.apply({"a": np.ones(3, np.float32), "b": np.ones(3, np.float32)}, params)
    with pytest.raises(TypeError, match="gradient 'b' has dtype"):
        opt.apply({"a": np.ones(3, np.float32), "b": np.array(["x", "y"])}, params)
    with pytest.raises(ValueError, match="shares memory"):
        opt.apply({"a": np.ones(3, np.float32), "b": params["b"]}, params)
    np.testing.assert_array_equal(params["a"], np.ones(3))
    np.testing.assert_array_equal(params["b"], np.ones(2))
    for v, w in zip(opt.variables, before):
        np.testing.assert_array_equal(v, w)
    assert opt.iterations == a.iterations == b.iterations == 0


def test_a_sub_optimizer_built_elsewhere_is_caught_before_any_share_moves():
    a, b = SGD(learning_rate=1.0), SGD(learning_rate=1.0)
    b.build([np.zeros(1)])  # built on other variables
    opt = MultiOptimizer(OptimizerMap(a, {"b": b}))
    params = {"a": np.ones(1), "b": np.ones(1)}
    with pytest.raises(ValueError, match="Unknown variable"):
        opt.apply({"a": np.ones(1), "b": np.ones(1)}, params)
    np.testing.assert_array_equal(params["a"], [1.0])


def test_unknown_variables_are_refused():
    opt = MultiOptimizer(OptimizerMap(SGD()))
    opt.build([np.ones(1)])
    with pytest.raises(ValueError, match="Unknown variable"):
        opt.apply([np.ones(1)], [np.ones(1)])


@pytest.mark.parametrize(
    "route,message",
    [
        (lambda name: "sgd", "The optimizer of variable 'variable_0' must be an Optimizer"),
        (lambda name: None, "must be an Optimizer instance"),
        (lambda name: LossScaleOptimizer(SGD()), "is a LossScaleOptimizer"),
        (lambda name: MultiOptimizer(OptimizerMap(SGD())), "cannot be nested"),
    ],
)
def test_a_callable_map_returning_junk_is_refused_at_build(route, message):
    opt = MultiOptimizer(route)
    with pytest.raises(ValueError, match=message):
        opt.build([np.ones(1)])
    assert not opt.built


def test_several_matching_keys_fail_the_build():
    opt_map = OptimizerMap(SGD(), {"a.*": Adam(), ".*b": Lion()})
    opt = MultiOptimizer(opt_map)
    with pytest.raises(ValueError, match="Multiple optimizers assigned to variable ab"):
        opt.build({"ab": np.ones(1)})
    assert not opt.built


@pytest.mark.parametrize("bad", [SGD(), "adam", None, 3])
def test_optimizer_map_must_be_a_map_or_callable(bad):
    with pytest.raises(
        ValueError, match="Argument `optimizer_map` must be an `OptimizerMap` or a callable"
    ):
        MultiOptimizer(bad)


def test_bad_loss_scale_factor_touches_no_sub_optimizer():
    sub = SGD(loss_scale_factor=2.0)
    with pytest.raises(ValueError, match="Argument `loss_scale_factor` must be a finite number"):
        MultiOptimizer(OptimizerMap(sub), loss_scale_factor=float("nan"))
    assert sub.loss_scale_factor == 2.0


# --- MultiOptimizer: state and config -----------------------------------------------------------


def _trained_multi(rng, params):
    opt = MultiOptimizer(
        OptimizerMap(
            SGD(learning_rate=0.1, momentum=0.5),
            {"encoder/.*": Adam(learning_rate=0.01), "head": Nadam()},
        ),
        name="multi",
    )
    for _ in range(2):
        opt.apply(
            {k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}, params
        )
    return opt


def test_config_round_trip_and_pickle():
    rng = np.random.default_rng(2)
    params = _params(rng, SPEC)
    opt = _trained_multi(rng, params)
    config = opt.get_config()
    assert list(config) == ["optimizer_map", "loss_scale_factor", "name"]
    assert config["optimizer_map"]["class_name"] == "OptimizerMap"
    as_json = json.dumps(config, sort_keys=True)
    revived = MultiOptimizer.from_config(json.loads(as_json))
    assert json.dumps(revived.get_config(), sort_keys=True) == as_json
    serialized = json.loads(json.dumps(fo.optimizers.serialize(opt)))
    assert serialized["class_name"] == "MultiOptimizer"
    for revived in (fo.optimizers.deserialize(serialized), fo.optimizers.get(serialized)):
        assert type(revived) is MultiOptimizer
        assert json.dumps(revived.get_config(), sort_keys=True) == as_json
    assert not revived.built
    # Pickled with its parameters, a trained MultiOptimizer continues identically.
    params2, opt2 = pickle.loads(pickle.dumps((params, opt)))
    for _ in range(2):
        grads = {k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}
        opt.apply(grads, params)
        opt2.apply(grads, params2)
        for k in params:
            np.testing.assert_array_equal(params2[k], params[k])
    assert opt2.iterations == opt.iterations == 4


def test_a_callable_map_is_kept_in_the_config():
    def route(name):
        return SGD()

    opt = MultiOptimizer(route, loss_scale_factor=8.0)
    assert opt.get_config() == {"optimizer_map": route, "loss_scale_factor": 8.0, "name": opt.name}
    assert MultiOptimizer.from_config(opt.get_config()).optimizer_map is route


def test_registered_under_keras_key_but_needs_a_map():
    with pytest.raises(ValueError, match="needs an `optimizer_map`"):
        fo.optimizers.get("multioptimizer")


def test_save_load_and_set_weights_span_every_sub_optimizer():
    rng = np.random.default_rng(4)
    params = _params(rng, SPEC)
    opt = _trained_multi(rng, params)
    store = {}
    opt.save_own_variables(store)
    assert len(store) == len(opt.variables)
    params2 = {k: p.copy() for k, p in params.items()}
    fresh = MultiOptimizer(
        OptimizerMap(
            SGD(learning_rate=0.1, momentum=0.5),
            {"encoder/.*": Adam(learning_rate=0.01), "head": Nadam()},
        )
    )
    fresh.build(params2)
    fresh.load_own_variables(store)
    for a, b in zip(fresh.variables, opt.variables):
        np.testing.assert_array_equal(a, b)
    grads = {k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}
    opt.apply(grads, params)
    fresh.apply(grads, params2)
    for k in params:
        np.testing.assert_array_equal(params2[k], params[k])
    weights = [np.array(v, copy=True) for v in opt.variables]
    weights[-1] = np.zeros(5)  # wrong shape: nothing is assigned
    with pytest.raises(ValueError, match="not compatible with provided weight shape"):
        fresh.set_weights(weights)
    assert fresh.iterations == 3


def test_steps_from_two_threads_are_serialized():
    # Concurrent steps through a MultiOptimizer: each is counted once and moves every share
    # once (exact values: powers of two).
    import threading

    a, b = SGD(learning_rate=0.25), SGD(learning_rate=0.5)
    opt = MultiOptimizer(OptimizerMap(a, {"b": b}))
    # Large enough for the kernels to release the GIL, so the threads do interleave.
    params = {"a": np.full(100_000, 1000.0), "b": np.full(100_000, 1000.0, np.float32)}
    opt.build(params)
    grads = {"a": np.ones(100_000), "b": np.ones(100_000, np.float32)}

    def run():
        for _ in range(200):
            opt.apply(grads, params)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert opt.iterations == a.iterations == b.iterations == 400
    np.testing.assert_array_equal(params["a"], np.full(100_000, 900.0))
    np.testing.assert_array_equal(params["b"], np.full(100_000, 800.0))


def test_docstring_examples_run():
    import ferroptim.optimizers.multi_optimizer as module

    results = doctest.testmod(module)
    assert results.attempted > 0 and results.failed == 0
