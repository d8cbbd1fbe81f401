"""The commonest mistakes of a NumPy training loop get a message that says what is wrong and how
to fix it, and change nothing.

Each test checks the exception's type, the key parts of its message (the variable named by its
key or its index, its shape as a Python tuple and its dtype, the fix), and that parameters,
optimizer variables and `iterations` are bitwise as they were (`Snapshot`).
"""

import pickle
import re
import warnings

import numpy as np
import pytest

import ferroptim as fo
from snapshot import Snapshot

# Enough elements that printing the values (what the messages used to do) is unmistakable.
SHAPES = {"dense/kernel": (78, 25), "dense/bias": (25,)}


def _model(dtype=np.float32):
    rng = np.random.default_rng(3)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}


def _grads(params):
    if isinstance(params, dict):
        return {name: np.full(p.shape, 0.25, p.dtype) for name, p in params.items()}
    return [np.full(p.shape, 0.25, p.dtype) for p in params]


def _stepped(params, optimizer=None, steps=2):
    """An Adam with EMA that took `steps` steps on `params` (non-zero slots)."""
    opt = optimizer or fo.optimizers.Adam(learning_rate=0.1, use_ema=True)
    for _ in range(steps):
        opt.apply(_grads(params), params)
    return opt


def _assert_no_values(message, array):
    """The message does not print the array's values (a few of its numbers would appear)."""
    assert np.array2string(array.ravel()[:3], precision=4)[1:-1].split()[0] not in message
    assert len(message) < 600, message


# --- a variable the optimizer was not built on ----------------------------------------------


def test_rebinding_a_listed_parameter_names_its_index_shape_dtype_and_the_fix():
    params = list(_model().values())
    opt = _stepped(params)
    old = params[0]
    snapshot = Snapshot(opt, params + [old])
    params[0] = params[0] * 0.5  # rebinding: the optimizer still holds the old array
    with pytest.raises(ValueError) as info:
        opt.apply_gradients(zip(_grads(params), params))
    message = str(info.value)
    assert message.startswith("Unknown variable at index 0 (shape (78, 25), dtype float32)")
    for fix in ("updated in place", "`w = w * 0.5`", "`w *= 0.5`", "`w[...] = ...`"):
        assert fix in message, message
    assert "new optimizer" in message, message
    _assert_no_values(message, params[0])
    snapshot.check()
    # Updating in place is what works.
    params[0] = old
    params[0] *= 0.5
    opt.apply_gradients(zip(_grads(params), params))
    assert opt.iterations == 3


def test_rebinding_a_dict_parameter_names_its_key():
    params = _model(np.float64)
    opt = _stepped(params)
    snapshot = Snapshot(opt, params)
    params["dense/bias"] = params["dense/bias"] * 0.5
    with pytest.raises(ValueError) as info:
        opt.apply(_grads(params), params)
    message = str(info.value)
    assert message.startswith("Unknown variable 'dense/bias' (shape (25,), dtype float64)")
    assert "`w *= 0.5`" in message, message
    _assert_no_values(message, params["dense/bias"])
    snapshot.check()


def test_reusing_an_optimizer_on_another_model():
    first, second = _model(), _model()
    opt = _stepped(first)
    snapshot = Snapshot(opt, list(first.values()) + list(second.values()))
    with pytest.raises(ValueError, match=r"Unknown variable 'dense/kernel' \(shape \(78, 25\)"):
        opt.apply(_grads(second), second)
    with pytest.raises(ValueError, match=r"recreate a new optimizer instance"):
        opt.apply_gradients(zip(_grads(second).values(), second.values()))
    snapshot.check()


def test_unpickled_arrays_are_other_arrays():
    params = _model()
    opt = _stepped(params)
    restored = pickle.loads(pickle.dumps(params))
    snapshot = Snapshot(opt, list(params.values()) + list(restored.values()))
    with pytest.raises(
        ValueError, match=r"Unknown variable 'dense/kernel' \(shape \(78, 25\), dtype"
    ):
        opt.apply(_grads(restored), restored)
    snapshot.check()


# --- what apply_gradients takes ----------------------------------------------------------------


@pytest.mark.parametrize("built", [False, True], ids=["unbuilt", "built"])
def test_a_single_pair_is_explained(built):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)  # two rows: zip(g, w) would not fail
    g = np.ones_like(w)
    opt = fo.optimizers.SGD(learning_rate=0.5, momentum=0.5)
    if built:
        opt.apply_gradients([(g, w)])
    snapshot = Snapshot(opt, [w, g])
    with pytest.raises(TypeError) as info:
        opt.apply_gradients((g, w))
    message = str(info.value)
    assert "one pair" in message, message
    assert "`apply_gradients([(g, w)])`" in message, message
    assert "shape (2, 3), dtype float32" in message, message
    snapshot.check()
    assert opt.built is built


@pytest.mark.parametrize("built", [False, True], ids=["unbuilt", "built"])
def test_a_bare_list_of_gradients_is_explained(built):
    params = list(_model().values())
    opt = fo.optimizers.Adam()
    if built:
        opt.apply_gradients(zip(_grads(params), params))
    snapshot = Snapshot(opt, params)
    with pytest.raises(TypeError) as info:
        opt.apply_gradients(_grads(params))
    message = str(info.value)
    assert "received 2 arrays, gradients without their variables" in message, message
    assert "`apply_gradients(zip(grads, params))`" in message, message
    assert "`apply(grads)`" in message, message
    snapshot.check()
    assert opt.built is built


def test_an_item_that_is_not_a_pair_is_named():
    w = np.ones(3, np.float32)
    opt = fo.optimizers.SGD()
    with pytest.raises(TypeError, match=r"the item at index 1 is not a pair: None"):
        opt.apply_gradients([(np.ones(3, np.float32), w), None])
    with pytest.raises(TypeError, match=r"the item at index 0 is not a pair"):
        opt.apply_gradients([(np.ones(3), w, w)])
    assert not opt.built
    np.testing.assert_array_equal(w, 1.0)


@pytest.mark.parametrize("built", [False, True], ids=["unbuilt", "built"])
def test_zipping_two_dicts_is_explained(built):
    params = _model()
    opt = fo.optimizers.Adam()
    if built:
        opt.apply(_grads(params), params)
    snapshot = Snapshot(opt, params)
    with pytest.raises(TypeError) as info:
        opt.apply_gradients(zip(_grads(params), params))
    message = str(info.value)
    assert "('dense/kernel', 'dense/kernel')" in message, message
    assert "pairs their keys" in message, message
    assert "`optimizer.apply(grads, params)`" in message, message
    assert "`zip(grads.values(), params.values())`" in message, message
    snapshot.check()
    assert opt.built is built


# --- swapped gradients and variables -----------------------------------------------------------


@pytest.mark.parametrize("call", ["apply_gradients", "apply"])
def test_swapped_gradients_and_variables_are_detected_once_built(call):
    params = list(_model().values())
    opt = _stepped(params)
    grads = _grads(params)
    snapshot = Snapshot(opt, params + grads)
    with pytest.raises(ValueError) as info:
        if call == "apply":
            opt.apply(params, grads)
        else:
            opt.apply_gradients(zip(params, grads))
    message = str(info.value)
    assert "The gradient at index 0 is the optimizer's variable 'variable_0'" in message, message
    assert "look swapped" in message, message
    assert "(gradient, variable) pairs" in message, message
    assert "`zip(grads, params)`" in message, message
    snapshot.check()


def test_swapped_dicts_are_named_by_key():
    params = _model()
    opt = _stepped(params)
    grads = _grads(params)
    snapshot = Snapshot(opt, list(params.values()) + list(grads.values()))
    with pytest.raises(ValueError, match="The gradient 'dense/kernel' is the optimizer's variable"):
        opt.apply(params, grads)
    snapshot.check()


def test_a_first_step_swapped_is_caught_at_the_second():
    # Before `build` the optimizer knows no variables, so both orders are plausible on the first
    # call (the documented limit): it builds on the gradients. With fresh gradient arrays each
    # step (what backpropagation returns), the second step is refused before it writes.
    params = list(_model().values())
    opt = fo.optimizers.Adam()
    opt.apply_gradients(zip(params, _grads(params)))
    grads = _grads(params)
    snapshot = Snapshot(opt, params + grads)
    with pytest.raises(ValueError, match=r"Unknown variable at index 0 \(shape \(78, 25\)"):
        opt.apply_gradients(zip(params, grads))
    snapshot.check()


# --- a gradient left out -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: fo.optimizers.Adam(learning_rate=0.1),
        lambda: fo.optimizers.LossScaleOptimizer(fo.optimizers.Adam(learning_rate=0.1)),
        lambda: fo.optimizers.MultiOptimizer(
            fo.optimizers.OptimizerMap(fo.optimizers.SGD(), {"kernel": fo.optimizers.Adam()})
        ),
    ],
    ids=["Adam", "LossScaleOptimizer", "MultiOptimizer"],
)
def test_a_missing_key_warns_as_a_none_gradient(make):
    params = _model()
    opt = make()
    opt.apply(_grads(params), params)
    bias = params["dense/bias"].copy()
    kernel = params["dense/kernel"].copy()
    for grads in ({"dense/kernel": _grads(params)["dense/kernel"]}, {**_grads(params)}):
        if len(grads) == 2:
            grads["dense/bias"] = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opt.apply(grads, params)
        assert len(caught) == 1, [str(w.message) for w in caught]
        message = str(caught[0].message)
        assert message.startswith("Gradients do not exist for variables ['dense/bias']"), message
        assert "without the variable's key" in message, message
        # Attributed to the line of the call, here, not to the package.
        assert caught[0].filename == __file__
    np.testing.assert_array_equal(params["dense/bias"].tobytes(), bias.tobytes())
    assert not np.array_equal(params["dense/kernel"], kernel)


# --- shapes are spelled as Python spells them ----------------------------------------------------


def _native_message(run):
    with pytest.raises((TypeError, ValueError)) as info:
        run()
    message = str(info.value)
    assert not re.search(r"\[\d+(, \d+)*\]", message), message
    return message


def test_a_gradient_of_another_shape_prints_python_tuples():
    w = np.ones((4, 3), np.float32)
    opt = fo.optimizers.Adam()
    opt.apply_gradients([(np.ones((4, 3), np.float32), w)])
    snapshot = Snapshot(opt, [w])
    message = _native_message(lambda: opt.apply_gradients([(np.ones((3, 4), np.float32), w)]))
    assert "has shape (3, 4) but the parameter has shape (4, 3)" in message, message
    message = _native_message(lambda: opt.apply_gradients([(np.ones(12, np.float32), w)]))
    assert "has shape (12,) but the parameter has shape (4, 3)" in message, message
    snapshot.check()


def test_a_slot_of_another_shape_prints_python_tuples():
    from ferroptim import _native

    w = np.ones((4, 3), np.float32)
    message = _native_message(
        lambda: _native.sgd(
            [w], [np.ones((4, 3), np.float32)], [np.zeros((3, 4), np.float32)], 0.1, 0.9, False
        )
    )
    assert "has shape (3, 4) but the parameter has shape (4, 3)" in message, message
    np.testing.assert_array_equal(w, 1.0)


def test_adafactor_slots_and_newton_schulz_print_python_tuples():
    from ferroptim import _native

    message = _native_message(
        lambda: _native.newton_schulz(np.ones(5, np.float32), 5, 3.4445, -4.775, 2.0315)
    )
    assert "got shape (5,)" in message, message
    w = np.ones((4, 3), np.float32)
    opt = fo.optimizers.Adafactor()
    opt.apply_gradients([(np.ones((4, 3), np.float32), w)])
    name = next(n for n in opt._slot_kinds if opt._slot_kinds[n][0].shape == (4,))
    opt._slot_kinds[name][0] = np.zeros(5, np.float32)
    opt._invalidate_plan()
    message = _native_message(lambda: opt.apply_gradients([(np.ones((4, 3), np.float32), w)]))
    assert "(5,)" in message and "(4,)" in message, message
