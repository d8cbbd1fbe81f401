"""The test reference (tests/reference.py) against Keras's golden values and hand-derived results.

The reference is what every numerical test of ferroptim compares against, so it is proven here
first: its float32 emulation must reproduce Keras 3.15.1's float32 numbers (docs/keras.md §4.2) to
the bit where Keras's arithmetic is fully determined by the formulas, and its float64 run must agree
with them to float32 accuracy.
"""

import math

import numpy as np
import pytest

import reference as ref
from optimizers_under_test import OPTIMIZERS

F32_EPS = float(np.finfo(np.float32).eps)
# Every optimizer with a reference rule (the records of optimizers_under_test.py).
ALL = [case.name for case in OPTIMIZERS if case.reference is not None]
# The optimizers whose Keras test file has `test_weight_decay` (a zero gradient leaves only the
# decay): the records' `decays_alone`.
WEIGHT_DECAY_TESTS = [case.name for case in OPTIMIZERS if case.decays_alone]


def _run(name, kwargs, var, grads_per_step, dtype, names=None, xla=False):
    """Build a reference on one variable and apply each step's gradient; return the states."""
    opt = ref.make_reference(name, kwargs, xla_scalar_division=xla)
    opt.build([np.array(var, dtype=dtype)], names)
    states = []
    for g in grads_per_step:
        opt.apply([np.array(g, dtype=np.float32)])
        states.append(opt.params[0].copy())
    return opt, states


@pytest.mark.parametrize("name", sorted(ref.SINGLE_STEP))
def test_single_step_float32_is_bit_exact(name):
    # Keras ran on JAX: XLA's division by a broadcast scalar is emulated (Lamb's first element
    # moves by 4 ulps with a true division by its bias corrections).
    _, states = _run(
        name,
        {"learning_rate": 0.5},
        ref.SINGLE_STEP_VAR,
        [ref.SINGLE_STEP_GRAD],
        np.float32,
        xla=True,
    )
    np.testing.assert_array_equal(states[0], np.array(ref.SINGLE_STEP[name], np.float32))


@pytest.mark.parametrize("name", sorted(ref.SINGLE_STEP))
def test_single_step_float64_agrees_to_float32_accuracy(name):
    # Keras's float32 sqrt(1 - 0.999**1) is 6.5e-6 off (docs/keras.md §0.3 rule 3): Adam's step of
    # 0.5 carries that error, hence 2e-5 relative on an update of size 0.5.
    _, states = _run(
        name, {"learning_rate": 0.5}, ref.SINGLE_STEP_VAR, [ref.SINGLE_STEP_GRAD], np.float64
    )
    np.testing.assert_allclose(states[0], ref.SINGLE_STEP[name], rtol=2e-5, atol=1e-6)


def _golden_ids():
    return [name + repr(sorted(kwargs.items())) for name, kwargs, _ in ref.GOLDEN_TRAJECTORIES]


@pytest.mark.parametrize("name,kwargs,rows", ref.GOLDEN_TRAJECTORIES, ids=_golden_ids())
def test_golden_trajectory_float32_is_bit_exact(name, kwargs, rows):
    # Keras ran on JAX: XLA's division by a broadcast scalar (Nadam's bias corrections, Ftrl's
    # division by the learning rate) is emulated; no other optimizer divides by a scalar.
    grads = [ref.GOLDEN_FIRST_GRADS] + [ref.golden_grads(name)] * 5
    _, states = _run(name, kwargs, np.ones(10), grads, np.float32, xla=True)
    for step, (state, row) in enumerate(zip(states, rows), start=1):
        np.testing.assert_array_equal(state, np.array(row, np.float32), err_msg=f"step {step}")


@pytest.mark.parametrize("name,kwargs,rows", ref.GOLDEN_TRAJECTORIES, ids=_golden_ids())
def test_golden_trajectory_float32_with_true_division_is_within_a_few_ulps(name, kwargs, rows):
    # The reference as the tests use it divides as Keras's source writes it (NumPy backend):
    # against XLA's reciprocal it moves by one ulp at most in an intermediate, which a
    # cancellation (w crossing zero, |z| near l1) shows as a few ulps of the row's scale.
    grads = [ref.GOLDEN_FIRST_GRADS] + [ref.golden_grads(name)] * 5
    _, states = _run(name, kwargs, np.ones(10), grads, np.float32)
    for step, (state, row) in enumerate(zip(states, rows), start=1):
        row = np.array(row, np.float32)
        scale = float(np.abs(row).max())
        np.testing.assert_allclose(
            state, row, rtol=2 * F32_EPS, atol=4 * F32_EPS * scale, err_msg=f"step {step}"
        )


@pytest.mark.parametrize("name,kwargs,rows", ref.GOLDEN_TRAJECTORIES, ids=_golden_ids())
def test_golden_trajectory_float64_agrees_to_float32_accuracy(name, kwargs, rows):
    grads = [ref.GOLDEN_FIRST_GRADS] + [ref.golden_grads(name)] * 5
    _, states = _run(name, kwargs, np.ones(10), grads, np.float64)
    for step, (state, row) in enumerate(zip(states, rows), start=1):
        np.testing.assert_allclose(state, row, rtol=2e-5, atol=2e-6, err_msg=f"step {step}")


def test_keras_test_golden_rows_at_keras_tolerance():
    # The 4-decimal rows written in Keras's own tests (docs/keras.md §4.1), at their rtol=atol=5e-4.
    keras_rows = {
        "SGD": [
            [0.9999] * 10,
            [0.9989, 0.9979, 0.9969, 0.9959, 0.9949, 0.9939, 0.9929, 0.9919, 0.9909, 0.9899],
        ],
        "Adam": [[0.999] * 10, [0.9982] * 10, [0.9974] * 10, [0.9965] * 10, [0.9955] * 10],
        "AdamW": [
            [0.4998] * 10,
            [0.2486, 0.2475, 0.2463, 0.2451, 0.244, 0.2428, 0.2417, 0.2405, 0.2394, 0.2382],
        ],
        "RMSprop": [[0.9967] * 10, [0.9933] * 10, [0.9908] * 10, [0.9885] * 10, [0.9864] * 10],
        "Adadelta": [[0.9978] * 10, [0.9947] * 10, [0.9915] * 10, [0.9882] * 10, [0.9849] * 10],
        "Adagrad": [
            [0.9963] * 10,
            [0.9604, 0.9278, 0.9003, 0.8784, 0.8615, 0.8487, 0.8388, 0.8313, 0.8255, 0.8209],
            [0.9251, 0.8629, 0.8137, 0.7768, 0.7497, 0.7298, 0.7151, 0.704, 0.6956, 0.6891],
            [0.8903, 0.8012, 0.7342, 0.6862, 0.6521, 0.6277, 0.6099, 0.5967, 0.5867, 0.579],
            [0.856, 0.7422, 0.6604, 0.6037, 0.5644, 0.5367, 0.5168, 0.5021, 0.491, 0.4825],
        ],
        "Adamax": [
            [0.8] * 10,
            [0.6827, 0.6873, 0.6888, 0.6896, 0.6901, 0.6904, 0.6906, 0.6908, 0.6909, 0.691],
            [0.5333, 0.5407, 0.5431, 0.5444, 0.5451, 0.5456, 0.546, 0.5462, 0.5464, 0.5466],
            [0.368, 0.3773, 0.3804, 0.382, 0.3829, 0.3835, 0.384, 0.3843, 0.3846, 0.3848],
            [0.1933, 0.204, 0.2076, 0.2094, 0.2105, 0.2112, 0.2117, 0.2121, 0.2124, 0.2126],
        ],
        "Nadam": [
            [0.4281] * 10,
            [
                -0.1738,
                -0.1731,
                -0.1726,
                -0.1723,
                -0.1721,
                -0.172,
                -0.1719,
                -0.1718,
                -0.1718,
                -0.1717,
            ],
            [
                -0.7115,
                -0.7103,
                -0.7096,
                -0.7092,
                -0.709,
                -0.7088,
                -0.7086,
                -0.7085,
                -0.7085,
                -0.7084,
            ],
            [
                -1.2335,
                -1.2322,
                -1.2313,
                -1.2309,
                -1.2306,
                -1.2304,
                -1.2302,
                -1.2301,
                -1.23,
                -1.2299,
            ],
            [
                -1.7492,
                -1.7478,
                -1.7469,
                -1.7464,
                -1.7461,
                -1.7459,
                -1.7457,
                -1.7456,
                -1.7455,
                -1.7454,
            ],
        ],
        "Lion": [[0.999] * 10, [0.998] * 10, [0.997] * 10, [0.996] * 10, [0.995] * 10],
        "Lamb": [[0.999] * 10, [0.9982] * 10, [0.9974] * 10, [0.9965] * 10, [0.9955] * 10],
        "Ftrl": [
            [0.0] * 10,
            [
                -0.0034,
                -0.0077,
                -0.0118,
                -0.0157,
                -0.0194,
                -0.023,
                -0.0263,
                -0.0294,
                -0.0325,
                -0.0354,
            ],
            [
                -0.0078,
                -0.0162,
                -0.0242,
                -0.0317,
                -0.0387,
                -0.0454,
                -0.0516,
                -0.0575,
                -0.0631,
                -0.0685,
            ],
            [
                -0.0121,
                -0.0246,
                -0.0363,
                -0.0472,
                -0.0573,
                -0.0668,
                -0.0757,
                -0.0842,
                -0.0922,
                -0.0999,
            ],
            [
                -0.0164,
                -0.0328,
                -0.0481,
                -0.0623,
                -0.0753,
                -0.0875,
                -0.099,
                -0.1098,
                -0.1201,
                -0.1299,
            ],
        ],
    }
    for name, kwargs, _ in ref.GOLDEN_TRAJECTORIES:
        grads = [ref.GOLDEN_FIRST_GRADS] + [ref.golden_grads(name)] * 5
        _, states = _run(name, kwargs, np.ones(10), grads, np.float32)
        for state, row in zip(states, keras_rows[name]):
            np.testing.assert_allclose(state, row, rtol=5e-4, atol=5e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ema_table(dtype):
    opt = ref.make_reference(
        "SGD",
        {"learning_rate": 1.0, "use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 3},
    )
    opt.build([np.array(ref.EMA_V0, dtype)])
    for var, average in ref.EMA_TABLE:
        opt.apply([np.ones((2, 2), np.float32)])
        if dtype is np.float32:
            np.testing.assert_array_equal(opt.params[0], np.array(var, np.float32))
            np.testing.assert_array_equal(opt.averages[0], np.array(average, np.float32))
        else:
            # The table holds float32 results: float32 accuracy is all it can confirm.
            np.testing.assert_allclose(opt.params[0], var, rtol=2 * F32_EPS)
            np.testing.assert_allclose(opt.averages[0], average, rtol=2 * F32_EPS)


def test_ema_overwrite_every_second_step_is_the_average_of_the_plain_trajectory():
    # Hand-derived (Keras's adam_test.test_ema_overwrite_frequency): with ema_momentum=0.9 and
    # overwrite every 2 steps, the average after step 2 is 0.9 * w1 + 0.1 * w2 of the plain run.
    grads = [[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]]
    _, plain = _run("Adam", {"learning_rate": 1.0}, [1.0, 2.0, 3.0], grads, np.float64)
    opt, ema = _run(
        "Adam",
        {"learning_rate": 1.0, "use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 2},
        [1.0, 2.0, 3.0],
        grads,
        np.float64,
    )
    np.testing.assert_allclose(ema[0], plain[0], rtol=0, atol=0)
    np.testing.assert_allclose(ema[1], 0.9 * plain[0] + 0.1 * plain[1], rtol=1e-15)
    np.testing.assert_allclose(opt.averages[0], ema[1], rtol=0, atol=0)


def test_ema_keeps_averaging_variables_without_gradient():
    opt = ref.make_reference("SGD", {"learning_rate": 1.0, "use_ema": True, "ema_momentum": 0.5})
    opt.build([np.array([1.0]), np.array([4.0])])
    opt.apply([np.array([1.0]), None])
    opt.params[1][...] = 8.0  # the average must track the variable's current value
    opt.apply([np.array([1.0]), None])
    np.testing.assert_array_equal(opt.params[0], [-1.0])
    np.testing.assert_array_equal(opt.averages[0], [0.5 * 0.0 + 0.5 * -1.0])
    np.testing.assert_array_equal(opt.averages[1], [0.5 * 4.0 + 0.5 * 8.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_accumulation_table(dtype):
    opt = ref.make_reference("SGD", {"learning_rate": 1.0, "gradient_accumulation_steps": 3})
    opt.build([np.array(ref.ACCUMULATION_W0, dtype)])
    for w, acc, raw, iterations in ref.ACCUMULATION_TABLE:
        opt.apply([np.ones((2, 2))])
        np.testing.assert_array_equal(opt.params[0], w)
        np.testing.assert_array_equal(opt.accumulators[0], acc)
        assert opt.raw_iterations == raw
        assert opt.iterations == iterations


@pytest.mark.parametrize("name", ALL)
def test_accumulated_update_equals_one_step_on_the_mean(name):
    # Keras's test_gradient_accumulation_with_weigth_decay: k micro-batches == one step on their
    # mean, weight decay included (float64; the mean is exact for these dyadic gradients).
    micro = [np.array([0.5, -1.25, 2.0]), np.array([1.5, 0.25, -4.0]), np.array([-0.5, 2.0, 1.0])]
    mean = sum(micro) / 3
    kwargs = {"learning_rate": 0.1, "weight_decay": 0.05}
    if name == "SGD":
        kwargs["momentum"] = 0.5
    one = ref.make_reference(name, kwargs)
    one.build([np.array([1.0, 2.0, 3.0])])
    many = ref.make_reference(name, dict(kwargs, gradient_accumulation_steps=3))
    many.build([np.array([1.0, 2.0, 3.0])])
    for cycle in range(2):
        one.apply([mean * (cycle + 1)])
        for g in micro:
            many.apply([g * (cycle + 1)])
        np.testing.assert_allclose(many.params[0], one.params[0], rtol=1e-15)
        assert many.iterations == one.iterations == cycle + 1


@pytest.mark.parametrize("name", WEIGHT_DECAY_TESTS)
def test_weight_decay_with_exclusions(name):
    var1, var2, var3 = (np.array(2.0, np.float32) for _ in range(3))
    grads = np.zeros((), np.float32)
    opt1 = ref.make_reference(name, {"learning_rate": 1.0, "weight_decay": 0.004})
    opt1.build([var1])
    opt1.apply([grads])
    opt2 = ref.make_reference(name, {"learning_rate": 1.0, "weight_decay": 0.004})
    opt2.exclude_from_weight_decay(var_names=["exclude"])
    opt2.build([var1, var2], names=["variable", "exclude"])
    opt2.apply([grads, grads])
    opt3 = ref.make_reference(name, {"learning_rate": 1.0, "weight_decay": 0.004})
    opt3.exclude_from_weight_decay(indices=[1])
    opt3.build([var1, var3])
    opt3.apply([grads, grads])
    assert var1 == np.float32(ref.WEIGHT_DECAY_VAR1)
    assert var2 == 2.0 and var3 == 2.0


def _one_sgd_step(kwargs, grad, w0=None):
    opt = ref.make_reference("SGD", dict({"learning_rate": 1.0}, **kwargs))
    grad = np.asarray(grad, np.float32)
    opt.build([np.zeros_like(grad) if w0 is None else np.array(w0, np.float32)])
    opt.apply([grad])
    return opt.params[0]


def test_clip_tests():
    # Keras's test_clip_norm / test_clip_value / test_global_clip_norm, read through one SGD step
    # with lr=1 from w=0 (w = -clipped gradient).
    half_sqrt2 = 2**0.5 / 2
    np.testing.assert_allclose(
        _one_sgd_step({"clipnorm": 1}, [100.0, 100.0]), [-half_sqrt2, -half_sqrt2], rtol=F32_EPS
    )
    np.testing.assert_array_equal(_one_sgd_step({"clipvalue": 1}, [100.0, 100.0]), [-1.0, -1.0])
    np.testing.assert_allclose(
        _one_sgd_step({"global_clipnorm": 1}, [50.0, 100.0]), [-0.4472136, -0.8944272], rtol=F32_EPS
    )


def test_clip_precedence_zero_or_negative_disables():
    # docs/keras.md §2.5: each clip applies only when truthy and > 0.
    for kwargs in (
        {"clipnorm": 0.0},
        {"clipnorm": -1.0},
        {"global_clipnorm": 0.0},
        {"clipvalue": -1.0},
        {"clipvalue": 0.0},
    ):
        np.testing.assert_array_equal(_one_sgd_step(kwargs, [100.0, -3.0]), [-100.0, 3.0])


def test_clipnorm_is_per_tensor_and_global_is_over_all():
    opt = ref.make_reference("SGD", {"learning_rate": 1.0, "clipnorm": 5.0})
    opt.build([np.zeros(2), np.zeros(1)])
    opt.apply([np.array([30.0, 40.0]), np.array([3.0])])
    np.testing.assert_allclose(opt.params[0], [-3.0, -4.0], rtol=1e-15)
    np.testing.assert_array_equal(opt.params[1], [-3.0])
    opt = ref.make_reference("SGD", {"learning_rate": 1.0, "global_clipnorm": 6.5})
    opt.build([np.zeros(2), np.zeros(1)])
    opt.apply([np.array([3.0, 4.0]), np.array([12.0])])  # global norm 13
    np.testing.assert_allclose(opt.params[0], [-1.5, -2.0], rtol=1e-15)
    np.testing.assert_allclose(opt.params[1], [-6.0], rtol=1e-15)


def test_non_finite_gradients_under_clipping():
    with np.errstate(invalid="ignore"):
        # clipnorm: a NaN makes that tensor all NaN; an inf zeroes the finite entries.
        nan_tensor = _one_sgd_step({"clipnorm": 1.0}, [np.nan, 1.0])
        assert np.isnan(nan_tensor).all()
        inf_tensor = _one_sgd_step({"clipnorm": 1.0}, [np.inf, 1.0])
        assert np.isnan(inf_tensor[0]) and inf_tensor[1] == 0.0
        # clipvalue keeps NaN and clips inf.
        clipped = _one_sgd_step({"clipvalue": 0.5}, [np.nan, np.inf, -np.inf, 0.25])
        np.testing.assert_array_equal(clipped, [np.nan, -0.5, 0.5, -0.25])
    # global_clipnorm: any non-finite entry makes every gradient NaN.
    opt = ref.make_reference("SGD", {"learning_rate": 1.0, "global_clipnorm": 1.0})
    opt.build([np.zeros(2, np.float32), np.zeros(3, np.float32)])
    opt.apply([np.array([np.inf, 0.0]), np.array([1.0, 2.0, 3.0])])
    assert np.isnan(opt.params[0]).all() and np.isnan(opt.params[1]).all()


def test_zero_gradient_is_not_clipped_to_nan():
    np.testing.assert_array_equal(
        _one_sgd_step({"clipnorm": 1.0}, [0.0, 0.0], [1.0, 2.0]), [1.0, 2.0]
    )
    np.testing.assert_array_equal(
        _one_sgd_step({"global_clipnorm": 1.0}, [0.0, 0.0], [1.0, 2.0]), [1.0, 2.0]
    )


def test_loss_scale():
    w0 = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    result = _one_sgd_step({"loss_scale_factor": 1024.0}, w0 * 1024.0, w0)
    np.testing.assert_array_equal(result, np.zeros((2, 2)))


def test_callable_learning_rate():
    opt = ref.make_reference("SGD", {"learning_rate": lambda: 0.1})
    opt.build([np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)])
    opt.apply([np.ones((2, 2), np.float32)])
    np.testing.assert_allclose(opt.params[0], [[0.9, 1.9], [2.9, 3.9]], rtol=F32_EPS)
    assert opt.iterations == 1
    assert len(opt.variables) == 1  # no learning_rate variable with a callable


def test_schedule_sees_the_raw_iteration_count():
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.5

    opt = ref.make_reference("SGD", {"learning_rate": schedule, "gradient_accumulation_steps": 2})
    opt.build([np.zeros(1)])
    for _ in range(5):
        opt.apply([np.ones(1)])
    assert seen == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(opt.params[0], [-1.0])


def test_float_learning_rate_is_rounded_to_float32_for_float64_variables():
    opt = ref.make_reference("SGD", {"learning_rate": 0.1})
    opt.build([np.zeros(1)])
    opt.apply([np.ones(1)])
    assert opt.params[0][0] == -float(np.float32(0.1))
    assert opt.params[0][0] != -0.1


def test_keras2_decay_is_inverse_time_in_completed_updates():
    # Hand-derived: lr_t = lr / (1 + decay * t) for t = 0, 1, 2 (lr = 0.5 is exact in float32).
    opt = ref.make_reference("SGD", {"learning_rate": 0.5, "decay": 0.25})
    opt.build([np.zeros(1)])
    for _ in range(3):
        opt.apply([np.ones(1)])
    expected = -(0.5 / 1.0 + 0.5 / 1.25 + 0.5 / 1.5)
    assert math.isclose(opt.params[0][0], expected, rel_tol=1e-15)


def test_sgd_momentum_by_hand():
    # m = m * 0.5 - g * lr; nesterov: w += m * 0.5 - g * lr; plain: w += m.
    for nesterov, expected in ((False, [-0.25, -0.625]), (True, [-0.375, -0.8125])):
        opt = ref.make_reference(
            "SGD", {"learning_rate": 0.25, "momentum": 0.5, "nesterov": nesterov}
        )
        opt.build([np.zeros(1)])
        trajectory = []
        for _ in range(2):
            opt.apply([np.ones(1)])
            trajectory.append(opt.params[0][0])
        np.testing.assert_allclose(trajectory, expected, rtol=1e-15)


def test_empty_gradients():
    opt = ref.make_reference("SGD", {"learning_rate": 1.0})
    opt.build([np.array([[3.0, 4.0], [5.0, 6.0]]), np.array([[3.0, 4.0], [5.0, 6.0]])])
    opt.apply([None, np.ones((2, 2))])
    np.testing.assert_array_equal(opt.params[0], [[3.0, 4.0], [5.0, 6.0]])
    np.testing.assert_array_equal(opt.params[1], [[2.0, 3.0], [4.0, 5.0]])
    with pytest.raises(ValueError, match="No gradients provided for any variable."):
        opt.apply([None, None])


def test_variables_order():
    # docs/keras.md §2.10: iteration, learning_rate, averages, accumulators, then the slots.
    opt = ref.make_reference(
        "Adam", {"use_ema": True, "gradient_accumulation_steps": 2, "amsgrad": True}
    )
    a, b = np.zeros(2), np.zeros(3)
    opt.build([a, b])
    shapes = [v.shape for v in opt.variables]
    assert shapes == [(), (), (2,), (3,), (2,), (3,), (2,), (2,), (3,), (3,), (2,), (3,)]
    assert opt.variables[2] is opt.averages[0] and opt.variables[4] is opt.accumulators[0]
    assert opt.variables[6] is opt.rule.momentums[0] and opt.variables[7] is opt.rule.velocities[0]
    assert opt.variables[10] is opt.rule.velocity_hats[0]
    assert len(ref.make_reference("SGD").rule.build([a])) == 0


# --- Adafactor and Muon (docs/keras.md §1.9, §1.13, §4.2) -----------------------------------------


@pytest.mark.parametrize("xla", [False, True])
def test_adafactor_matrix_single_step_float32_is_bit_exact(xla):
    _, states = _run(
        "Adafactor",
        {"learning_rate": 0.5},
        ref.ADAFACTOR_SINGLE_STEP_2D_VAR,
        [ref.ADAFACTOR_SINGLE_STEP_2D_GRAD],
        np.float32,
        xla=xla,
    )
    np.testing.assert_array_equal(states[0], np.array(ref.ADAFACTOR_SINGLE_STEP_2D, np.float32))


def test_adafactor_golden_trajectory():
    # Keras sums the means and RMS in float32, the reference in float64: 7 float32 ulps of the
    # row's scale apart by step 6 (measured), while the weights shrink 30-fold. float64 agrees
    # to float32 accuracy, as for GOLDEN_TRAJECTORIES.
    grads = [ref.GOLDEN_FIRST_GRADS] + [ref.golden_grads("Adafactor")] * 5
    _, states = _run("Adafactor", ref.ADAFACTOR_GOLDEN_KWARGS, np.ones(10), grads, np.float32)
    _, states64 = _run("Adafactor", ref.ADAFACTOR_GOLDEN_KWARGS, np.ones(10), grads, np.float64)
    for step, (state, state64, row) in enumerate(
        zip(states, states64, ref.ADAFACTOR_GOLDEN), start=1
    ):
        scale = float(np.abs(row).max())
        np.testing.assert_allclose(
            state, row, rtol=2 * F32_EPS, atol=10 * F32_EPS * scale, err_msg=f"step {step}"
        )
        np.testing.assert_allclose(state64, row, rtol=2e-5, atol=2e-6, err_msg=f"step {step}")


def test_adafactor_batches_the_leading_axes_and_ignores_relative_step():
    # Rank 3: each matrix of the leading axis is factored on its own; the RMS of w and of the
    # update are over the whole tensor, so the batch equals separate runs only when those are
    # equal: the same matrix twice. relative_step=False changes nothing (docs/keras.md §1.9).
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(3)]
    single = ref.make_reference("Adafactor", {"learning_rate": 0.5})
    single.build([matrix.copy()])
    batch = ref.make_reference("Adafactor", {"learning_rate": 0.5, "relative_step": False})
    batch.build([np.stack([matrix, matrix])])
    for g in grads:
        single.apply([g])
        batch.apply([np.stack([g, g])])
        for half in batch.params[0]:
            np.testing.assert_allclose(half, single.params[0], rtol=1e-13)
    assert batch.rule.rs[0].shape == (2, 3) and batch.rule.cs[0].shape == (2, 4)


def test_muon_single_steps_and_newton_schulz_float32_are_bit_exact():
    _, adamw = _run(
        "Muon",
        {"learning_rate": 0.5, "adam_weight_decay": None},
        ref.SINGLE_STEP_VAR,
        [ref.SINGLE_STEP_GRAD],
        np.float32,
    )
    np.testing.assert_array_equal(adamw[0], np.array(ref.MUON_ADAMW_SINGLE_STEP, np.float32))
    _, muon = _run(
        "Muon",
        {"learning_rate": 0.5, "weight_decay": 0},
        ref.MUON_SINGLE_STEP_VAR,
        [ref.MUON_SINGLE_STEP_GRAD],
        np.float32,
    )
    np.testing.assert_array_equal(muon[0], np.array(ref.MUON_SINGLE_STEP, np.float32))
    ns = ref.newton_schulz(np.array(ref.NS_INPUT, np.float32), 5, 3.4445, -4.7750, 2.0315)
    np.testing.assert_array_equal(ns, np.array(ref.NS_OUTPUT, np.float32))


def test_newton_schulz_transposes_tall_matrices_and_lr_adjust():
    # NS(X^T) = NS(X)^T (a tall matrix is orthogonalized through its transpose); Keras's
    # lr_adjust test: rms_rate 0.2 scales a (4, 2) update by sqrt(4) * 0.2 = 0.4.
    x = np.random.default_rng(1).standard_normal((5, 3))
    np.testing.assert_allclose(
        ref.newton_schulz(x, 5, 3.4445, -4.7750, 2.0315),
        ref.newton_schulz(x.T, 5, 3.4445, -4.7750, 2.0315).T,
        rtol=1e-13,
    )
    g = np.ones((4, 2))
    scaled = ref.make_reference("Muon", {"learning_rate": 1.0, "weight_decay": None})
    plain = ref.make_reference(
        "Muon", {"learning_rate": 1.0, "weight_decay": None, "rms_rate": None}
    )
    for opt in (scaled, plain):
        opt.build([np.zeros((4, 2))])
        opt.apply([g])
    np.testing.assert_allclose(scaled.params[0], plain.params[0] * 0.4, rtol=1e-15)


def test_muon_routing_and_weight_decay_per_path():
    names = ["dense/kernel", "token_Embedding/embeddings", "head/kernel", "dense/bias", "conv"]
    shapes = [(3, 2), (4, 2), (2, 2), (2,), (2, 2, 2)]
    opt = ref.make_reference(
        "Muon",
        {
            "learning_rate": 1.0,
            "weight_decay": 0.5,
            "adam_weight_decay": 0.25,
            "exclude_layers": ["^head"],
        },
    )
    opt.build([np.ones(s) for s in shapes], names=names)
    assert opt.rule.uses_adamw == [False, True, True, True, True]
    opt.apply([np.zeros(s) for s in shapes])
    for w, adamw in zip(opt.params, opt.rule.uses_adamw):
        np.testing.assert_array_equal(w, np.full(w.shape, 0.75 if adamw else 0.5))
