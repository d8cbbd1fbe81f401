"""ferroptim's optimizers and base features against Keras 3's own golden values.

The numbers are Keras 3.15.1's float32 results (docs/keras.md §4.2, in tests/reference.py) for the
scenarios of Keras's test files (`keras/src/optimizers/*_test.py`), fed the exact float32 inputs
Keras used. ferroptim must reproduce them to a few float32 ulps.
"""

import numpy as np
import pytest

import ferroptim as fo
import reference as ref
from optimizers_under_test import OPTIMIZERS

F32_EPS = float(np.finfo(np.float32).eps)


def assert_keras_float32(actual, golden, err_msg=""):
    """A few float32 ulps of Keras's value, on the scale of the row (entries may cancel to ~0)."""
    golden = np.asarray(golden, np.float32)
    assert np.asarray(actual).dtype == np.float32
    scale = float(np.abs(golden).max())
    np.testing.assert_allclose(actual, golden, rtol=2e-6, atol=4 * F32_EPS * scale, err_msg=err_msg)


def _optimizer(name, **kwargs):
    return getattr(fo.optimizers, name)(**kwargs)


@pytest.mark.parametrize("name", sorted(ref.SINGLE_STEP))
def test_single_step(name):
    opt = _optimizer(name, learning_rate=0.5)
    var = np.array(ref.SINGLE_STEP_VAR, np.float32)
    opt.apply_gradients(zip([np.array(ref.SINGLE_STEP_GRAD, np.float32)], [var]))
    assert_keras_float32(var, ref.SINGLE_STEP[name])
    assert int(opt.iterations) == 1


def test_sgd_single_step_variables():
    # Keras's sgd_test.test_single_step: two variables, [iterations, learning_rate] = [1, 0.5].
    opt = fo.optimizers.SGD(learning_rate=0.5)
    var = np.array(ref.SINGLE_STEP_VAR, np.float32)
    opt.apply_gradients(zip([np.array(ref.SINGLE_STEP_GRAD, np.float32)], [var]))
    assert len(opt.variables) == 2
    assert int(np.asarray(opt.variables[0])) == 1
    assert float(np.asarray(opt.variables[1])) == 0.5


@pytest.mark.parametrize(
    "name,kwargs,rows",
    ref.GOLDEN_TRAJECTORIES,
    ids=[name + repr(sorted(kw.items())) for name, kw, _ in ref.GOLDEN_TRAJECTORIES],
)
def test_correctness_with_golden(name, kwargs, rows):
    opt = _optimizer(name, **kwargs)
    x = np.ones(10, np.float32)
    first_grads = np.array(ref.GOLDEN_FIRST_GRADS, np.float32)
    grads = np.array(ref.golden_grads(name), np.float32)
    opt.apply_gradients(zip([first_grads], [x]))
    for step, row in enumerate(rows, start=1):
        assert_keras_float32(x, row, err_msg=f"after step {step}")
        if step < len(rows):
            opt.apply_gradients(zip([grads], [x]))


def test_ema():
    opt = fo.optimizers.SGD(
        learning_rate=1.0, use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=3
    )
    v = np.array(ref.EMA_V0, np.float32)
    for step, (var, average) in enumerate(ref.EMA_TABLE, start=1):
        opt.apply_gradients([(np.ones((2, 2), np.float32), v)])
        assert_keras_float32(v, var, err_msg=f"variable after step {step}")
        # variables: iteration, learning_rate, v_average
        assert_keras_float32(opt.variables[2], average, err_msg=f"average after step {step}")


def test_ema_then_finalize_variable_values():
    # Keras's test_ema_with_model_fit: Dense(2, kernel ones, no bias), x = [[1]], y = [[0]], mse,
    # SGD(0.1), ema_momentum=0.9, two steps; the mse gradient of that kernel is the kernel itself.
    opt = fo.optimizers.SGD(learning_rate=0.1, use_ema=True, ema_momentum=0.9)
    kernel = np.ones((1, 2), np.float32)
    for _ in range(2):
        opt.apply_gradients([(kernel.copy(), kernel)])
    np.testing.assert_allclose(kernel, [[0.81, 0.81]], rtol=2 * F32_EPS)
    np.testing.assert_allclose(opt.variables[2], [[0.891, 0.891]], rtol=2 * F32_EPS)
    opt.finalize_variable_values([kernel])
    np.testing.assert_allclose(kernel, [[0.891, 0.891]], rtol=2 * F32_EPS)


def test_gradient_accumulation():
    opt = fo.optimizers.SGD(learning_rate=1.0, gradient_accumulation_steps=3)
    assert opt.gradient_accumulation_steps == 3
    v = np.array(ref.ACCUMULATION_W0, np.float32)
    for call, (w, acc, raw, iterations) in enumerate(ref.ACCUMULATION_TABLE, start=1):
        opt.apply_gradients([(np.ones((2, 2), np.float32), v)])
        np.testing.assert_array_equal(v, w, err_msg=f"w after call {call}")
        # variables: iteration, learning_rate, v_gradient_accumulator
        np.testing.assert_array_equal(opt.variables[2], acc, err_msg=f"acc after call {call}")
        assert int(np.asarray(opt.variables[0])) == raw
        assert int(opt.iterations) == iterations


# Keras's test_weight_decay: a zero gradient leaves only the decay (the records' `decays_alone`).
@pytest.mark.parametrize("name", [case.name for case in OPTIMIZERS if case.decays_alone])
def test_weight_decay(name):
    grads = np.zeros((), np.float32)
    var1, var2, var3 = (np.array(2.0, np.float32) for _ in range(3))
    opt1 = _optimizer(name, learning_rate=1.0, weight_decay=0.004)
    opt1.apply_gradients(zip([grads], [var1]))
    opt2 = _optimizer(name, learning_rate=1.0, weight_decay=0.004)
    opt2.exclude_from_weight_decay(var_names=["exclude"])
    opt2.apply({"variable": grads, "exclude": grads}, {"variable": var1, "exclude": var2})
    opt3 = _optimizer(name, learning_rate=1.0, weight_decay=0.004)
    opt3.exclude_from_weight_decay(var_list=[var3])
    opt3.apply_gradients(zip([grads, grads], [var1, var3]))
    assert_keras_float32(var1, ref.WEIGHT_DECAY_VAR1)
    assert var2 == 2.0
    assert var3 == 2.0


@pytest.mark.parametrize("name", [case.name for case in OPTIMIZERS])
def test_gradient_accumulation_with_weight_decay(name):
    # Keras's test_gradient_accumulation_with_weigth_decay: k = 3 micro-batches update the
    # variables exactly as one step on their mean, weight decay and bias corrections included.
    # float64 and dyadic micro-gradients: their sum is exact in any order and the mean is that
    # sum / 3 in both runs (scaled by powers of two), so the runs must agree to the bit.
    micro = [np.array([0.5, -1.25, 2.0]), np.array([1.5, 0.25, -4.0]), np.array([-0.5, 2.0, 1.0])]
    mean = sum(micro) / 3
    one_var, many_var = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])
    one = _optimizer(name, learning_rate=0.1, weight_decay=0.05)
    many = _optimizer(name, learning_rate=0.1, weight_decay=0.05, gradient_accumulation_steps=3)
    for cycle, scale in enumerate([1.0, 2.0, 0.5], start=1):
        one.apply_gradients([(mean * scale, one_var)])
        for g in micro:
            many.apply_gradients([(g * scale, many_var)])
        np.testing.assert_array_equal(many_var, one_var, err_msg=f"cycle {cycle}")
        assert many.iterations == one.iterations == cycle
    # The optimizer state too: the accumulated run has its accumulator (zero after an update)
    # between the learning rate and the slots.
    state = [np.asarray(v) for v in many.variables]
    np.testing.assert_array_equal(state[2], np.zeros(3))
    assert len(state) - 3 == len(one.variables) - 2
    for a, b in zip(state[3:], list(one.variables)[2:]):
        np.testing.assert_array_equal(a, b)


def test_clip_norm():
    # Keras's test_clip_norm clips [100, 100] to [sqrt(2)/2] * 2; read through SGD from w = 0.
    # Keras passes the integer clipnorm=1, which it accepts.
    opt = fo.optimizers.SGD(learning_rate=1.0, clipnorm=1)
    w = np.zeros(2, np.float32)
    opt.apply_gradients([(np.array([100.0, 100.0], np.float32), w)])
    np.testing.assert_allclose(w, [-(2**0.5) / 2] * 2, rtol=2 * F32_EPS)


def test_clip_value():
    opt = fo.optimizers.SGD(learning_rate=1.0, clipvalue=1)
    w = np.zeros(2, np.float32)
    opt.apply_gradients([(np.array([100.0, 100.0], np.float32), w)])
    np.testing.assert_array_equal(w, [-1.0, -1.0])


def test_global_clip_norm():
    opt = fo.optimizers.SGD(learning_rate=1.0, global_clipnorm=1)
    grad = np.array([50.0, 100.0], np.float32)
    w = np.zeros(2, np.float32)
    opt.apply_gradients([(grad, w)])
    np.testing.assert_allclose(w, -grad / np.linalg.norm(grad), rtol=2 * F32_EPS)


def test_static_loss_scaling():
    opt = fo.optimizers.SGD(learning_rate=1.0, loss_scale_factor=1024.0)
    v = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    opt.apply_gradients([(v * 1024.0, v)])
    assert opt.scale_loss(1.0) == 1024.0
    np.testing.assert_array_equal(v, np.zeros((2, 2)))


def test_callable_learning_rate():
    opt = fo.optimizers.SGD(learning_rate=lambda: 0.1)
    v = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    assert int(opt.iterations) == 0
    opt.apply_gradients([(np.ones((2, 2), np.float32), v)])
    np.testing.assert_allclose(v, [[0.9, 1.9], [2.9, 3.9]], rtol=F32_EPS)
    assert int(opt.iterations) == 1


def test_iterations_counter():
    opt = fo.optimizers.Adam(learning_rate=1.0)
    v = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    assert int(opt.iterations) == 0
    for step in (1, 2):
        opt.apply_gradients([(np.ones((2, 2), np.float32), v)])
        assert int(opt.iterations) == step


def test_empty_gradients():
    v = np.array([[3.0, 4.0], [5.0, 6.0]], np.float32)
    opt = fo.optimizers.SGD(learning_rate=1.0)
    with pytest.raises(ValueError, match="No gradients provided for any variable."):
        opt.apply_gradients([(None, v)])
    np.testing.assert_array_equal(v, [[3.0, 4.0], [5.0, 6.0]])
    v2 = np.array([[3.0, 4.0], [5.0, 6.0]], np.float32)
    opt = fo.optimizers.SGD(learning_rate=1.0)
    with pytest.warns(UserWarning, match="Gradients do not exist for variables"):
        opt.apply_gradients([(None, v), (np.ones((2, 2), np.float32), v2)])
    np.testing.assert_array_equal(v, [[3.0, 4.0], [5.0, 6.0]])
    np.testing.assert_array_equal(v2, [[2.0, 3.0], [4.0, 5.0]])


def test_empty_gradient_list_is_a_no_op():
    opt = fo.optimizers.Adam()
    opt.apply([], [])
    assert int(opt.iterations) == 0


# --- Adafactor and Muon (docs/keras.md §4.1, §4.2) ------------------------------------------------


def test_adafactor_matrix_single_step():
    # adafactor_test.test_single_step's second case: the factored second moment.
    opt = fo.optimizers.Adafactor(learning_rate=0.5)
    var = np.array(ref.ADAFACTOR_SINGLE_STEP_2D_VAR, np.float32)
    opt.apply_gradients([(np.array(ref.ADAFACTOR_SINGLE_STEP_2D_GRAD, np.float32), var)])
    assert_keras_float32(var, ref.ADAFACTOR_SINGLE_STEP_2D)


def test_adafactor_correctness_with_golden():
    # Keras sums Adafactor's means in float32, ferroptim in float64 (the correctly rounded
    # value): the trajectories drift apart by a few float32 ulps over six steps, within
    # assert_keras_float32's budget.
    opt = fo.optimizers.Adafactor(**ref.ADAFACTOR_GOLDEN_KWARGS)
    x = np.ones(10, np.float32)
    opt.apply_gradients([(np.array(ref.GOLDEN_FIRST_GRADS, np.float32), x)])
    grads = np.array(ref.golden_grads("Adafactor"), np.float32)
    for step, row in enumerate(ref.ADAFACTOR_GOLDEN, start=1):
        assert_keras_float32(x, row, err_msg=f"after step {step}")
        if step < len(ref.ADAFACTOR_GOLDEN):
            opt.apply_gradients([(grads, x)])


def test_muon_adamw_path_single_step():
    # muon_test: a 1-D variable named `test_vars` takes the AdamW path; Keras calls update_step
    # directly, so no weight decay: here adam_weight_decay=None gives the same step.
    opt = fo.optimizers.Muon(learning_rate=0.5, adam_weight_decay=None)
    var = np.array(ref.SINGLE_STEP_VAR, np.float32)
    opt.apply({"test_vars": np.array(ref.SINGLE_STEP_GRAD, np.float32)}, {"test_vars": var})
    assert opt.variable_names[-2:] == ["test_vars_momentum", "test_vars_velocity"]
    assert_keras_float32(var, ref.MUON_ADAMW_SINGLE_STEP)


def test_muon_muon_path_single_step():
    # muon_test: Muon(learning_rate=0.5, weight_decay=0) on a matrix (w - w * 0 * lr is w).
    # Newton-Schulz's matrix products round differently from XLA's: docs/keras.md §4.2 sees up to
    # 4e-6 relative between Keras's own backends on Muon, hence that rtol.
    opt = fo.optimizers.Muon(learning_rate=0.5, weight_decay=0)
    var = np.array(ref.MUON_SINGLE_STEP_VAR, np.float32)
    opt.apply_gradients([(np.array(ref.MUON_SINGLE_STEP_GRAD, np.float32), var)])
    assert opt.variable_names[-1] == "variable_0_momentum"  # no velocity: the Muon path
    np.testing.assert_allclose(var, ref.MUON_SINGLE_STEP, rtol=4e-6)
    assert var.dtype == np.float32


def test_muon_newton_schulz_keras_value():
    # Same budget as above: 4e-6 relative between backends (docs/keras.md §4.2).
    x = fo.optimizers.Muon().zeropower_via_newtonschulz5(ref.NS_INPUT, 5)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, ref.NS_OUTPUT, rtol=4e-6)


def test_muon_weight_decay_keras_test():
    # muon_test's weight decay checks (lr 1, decay 0.01): a matrix through `weight_decay`, the
    # scalar 2.0 through `adam_weight_decay`; a zero gradient makes both updates exactly zero
    # (Muon: NS(0) = 0; AdamW: 0 / (0 + epsilon)), leaving w - 0.01 * w.
    matrix = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    scalar = np.array(2.0, np.float32)
    opt = fo.optimizers.Muon(learning_rate=1.0, weight_decay=0.01, adam_weight_decay=0.01)
    opt.apply_gradients(
        [(np.zeros((2, 2), np.float32), matrix), (np.zeros((), np.float32), scalar)]
    )
    f32 = np.float32
    expected = np.array([[1.0, 2.0], [3.0, 4.0]], f32)
    np.testing.assert_array_equal(matrix, expected - expected * f32(0.01) * f32(1.0))
    assert scalar == f32(2.0) - f32(2.0) * f32(0.01) * f32(1.0)
