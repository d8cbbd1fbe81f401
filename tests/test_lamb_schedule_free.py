"""Lamb and ScheduleFreeAdamW: Keras's names and slot initialisation, and behaviour derived by
hand from their update rules.

Their signatures, config round trips, registry keys, slot names and docstring examples are
checked with every other optimizer's in test_api.py (from their records in
optimizers_under_test.py), the numerics against the NumPy reference (every base option, both
dtypes, every memory layout) in test_numerics.py and Keras's golden values in
test_keras_golden.py; here the expected values come from Keras's source (its defaults, names and
slot initialisation) or are derived by hand from the formulas in docs/keras.md §1.12 and §1.14.
"""

import inspect

import numpy as np
import pytest

from ferroptim.optimizers import Lamb, ScheduleFreeAdamW

# --- Keras's surface ---------------------------------------------------------------------------


def test_default_names_are_keras():
    # Keras: Lamb(name=None) gets an automatic name, ScheduleFreeAdamW's default is a string.
    assert inspect.signature(Lamb).parameters["name"].default is None
    assert Lamb().name.startswith("lamb")
    assert ScheduleFreeAdamW().name == "schedule_free_adamw"


def test_lamb_slots_start_at_zero():
    w = np.array([1.0, -2.0], np.float32)
    opt = Lamb()
    opt.build([w])
    for slot in opt.variables[2:]:
        np.testing.assert_array_equal(slot, [0.0, 0.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_schedule_free_momentum_starts_as_a_copy_of_the_variable(dtype):
    # Keras's build assigns a copy of the variable to z (not zeros); the velocity is zeros.
    w = np.array([[1.5, -2.0], [3.0, 0.25]], dtype)
    opt = ScheduleFreeAdamW()
    opt.build([w])
    z, v = opt.variables[2], opt.variables[3]
    assert z.dtype == dtype and v.dtype == dtype
    np.testing.assert_array_equal(z, [[1.5, -2.0], [3.0, 0.25]])
    np.testing.assert_array_equal(v, np.zeros((2, 2)))
    assert not np.shares_memory(z, w)
    w[0, 0] = 9.0
    assert z[0, 0] == 1.5


@pytest.mark.parametrize(
    "factory,message",
    [
        (
            lambda: Lamb(epsilon=None),
            "Argument `epsilon` must be a finite number. Received: epsilon=None",
        ),
        (lambda: Lamb(beta_1=float("nan")), "Argument `beta_1` must be a finite number"),
        (
            lambda: ScheduleFreeAdamW(beta_2=float("inf")),
            "Argument `beta_2` must be a finite number",
        ),
        (lambda: ScheduleFreeAdamW(epsilon=None), "Argument `epsilon` must be a finite number"),
        (
            lambda: ScheduleFreeAdamW(warmup_steps=2.5),
            "Argument `warmup_steps` must be an integer. Received: warmup_steps=2.5",
        ),
        (lambda: ScheduleFreeAdamW(warmup_steps=True), "Argument `warmup_steps` must be an"),
        (lambda: Lamb(foo=1), "Argument(s) not recognized: {'foo': 1}"),
    ],
)
def test_bad_arguments(factory, message):
    with pytest.raises(ValueError) as info:
        factory()
    assert message in str(info.value)


# --- Lamb: behaviour derived from its rule ------------------------------------------------------


def test_lamb_ratio_is_one_for_a_zero_variable():
    # ||w|| = 0: the trust ratio is 1 and the step is Adam's bias-corrected direction. At t = 1,
    # m / (1 - beta_1) = g and sqrt(v / (1 - beta_2)) = |g| (to rounding), so w = -lr * g / (|g|
    # + eps).
    w = np.zeros(3)
    g = np.array([3.0, -4.0, 0.5])
    Lamb(learning_rate=0.5).apply_gradients([(g, w)])
    np.testing.assert_allclose(w, -0.5 * g / (np.abs(g) + 1e-7), rtol=1e-12)


def test_lamb_zero_gradient_moves_nothing():
    # r = 0: ||r|| = 0, the ratio falls back to 1 and the step is 0 (no division by zero).
    w = np.array([1.0, -2.0])
    Lamb(learning_rate=0.5).apply_gradients([(np.zeros(2), w)])
    np.testing.assert_array_equal(w, [1.0, -2.0])


def test_lamb_trust_ratio_is_per_tensor():
    # Two tensors in one call step exactly as each alone: the ratio is ||w_i|| / ||r_i|| of
    # each tensor, not a global one.
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal(5), 10 * rng.standard_normal((3, 4))
    alone = [a.copy(), b.copy()]
    together = Lamb(learning_rate=0.1)
    single = [Lamb(learning_rate=0.1), Lamb(learning_rate=0.1)]
    for _ in range(3):
        ga, gb = rng.standard_normal(5), rng.standard_normal((3, 4))
        together.apply_gradients([(ga, a), (gb, b)])
        single[0].apply_gradients([(ga, alone[0])])
        single[1].apply_gradients([(gb, alone[1])])
    np.testing.assert_array_equal(a, alone[0])
    np.testing.assert_array_equal(b, alone[1])


def test_lamb_first_step_by_hand():
    # t = 1: the direction is g / (|g| + eps) (to rounding), so ||r|| = sqrt(n) for a gradient
    # without zeros and the step moves every element by lr * ||w|| / sqrt(n).
    w = np.array([1.0, 2.0, 3.0, 4.0])
    g = np.array([1.0, 6.0, 7.0, 2.0])
    Lamb(learning_rate=0.5).apply_gradients([(g, w)])
    step = 0.5 * np.sqrt(30.0) / 2.0
    np.testing.assert_allclose(w, [1.0 - step, 2.0 - step, 3.0 - step, 4.0 - step], rtol=1e-6)


# --- ScheduleFreeAdamW: behaviour derived from its rule -----------------------------------------


@pytest.mark.parametrize(
    "warmup_steps,factors",
    [(0, [1.0, 1.0, 1.0]), (4, [0.25, 0.5, 0.75]), (2, [0.5, 1.0, 1.0]), (-3, [1.0, 1.0, 1.0])],
)
def test_schedule_free_warmup_scales_the_z_step(warmup_steps, factors):
    # z moves by lr * min(t / warmup_steps, 1) * g / (sqrt(v_hat) + eps); with a constant
    # gradient of 1, sqrt(v_hat) = 1, so z moves by that factor times lr (to 1e-8). A warmup
    # <= 0 means none (Keras's `if warmup_steps > 0`).
    w = np.zeros(1)
    opt = ScheduleFreeAdamW(learning_rate=0.5, warmup_steps=warmup_steps, epsilon=0.0)
    z_before = 0.0
    for step, factor in enumerate(factors, start=1):
        opt.apply_gradients([(np.ones(1), w)])
        z = float(opt.variables[2][0])
        assert z - z_before == pytest.approx(-0.5 * factor, rel=1e-12), f"step {step}"
        z_before = z


def test_schedule_free_first_step_puts_y_on_z():
    # t = 1: x = z_1 (weight 1), y = (1 - beta_1) z_1 + beta_1 z_1 = z_1.
    w = np.array([1.0, -2.0, 3.0])
    opt = ScheduleFreeAdamW(learning_rate=0.1)
    opt.apply_gradients([(np.array([0.5, 0.5, -2.0]), w)])
    np.testing.assert_allclose(w, opt.variables[2], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_swap_to_eval_gives_the_average_of_the_z_sequence_and_swap_to_train_returns(dtype):
    # x_t = (1 - 1/t) x_{t-1} + (1/t) z_t is the plain mean of z_1 .. z_t; swap_to_eval must
    # recover it from y and z, and swap_to_train must put y back.
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 3)).astype(dtype)
    opt = ScheduleFreeAdamW(learning_rate=0.05, beta_1=0.8)
    zs = []
    for _ in range(5):
        opt.apply_gradients([(rng.standard_normal((4, 3)).astype(dtype), w)])
        zs.append(np.array(opt.variables[2], np.float64))
    y = w.copy()
    opt.swap_to_eval()
    assert w.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(w, np.mean(zs, axis=0), rtol=tol, atol=tol)
    opt.swap_to_train()
    np.testing.assert_allclose(w, y, rtol=tol, atol=tol)


def test_swap_aliases_and_their_formulas_in_the_variables_dtype():
    # eval: x = (y - (1 - b1) z) / b1; train: y = (1 - b1) z + b1 x; b1 and 1 - b1 in the
    # variable's dtype, as Keras casts beta_1 first.
    w = np.array([1.0, 2.0], np.float32)
    opt = ScheduleFreeAdamW(beta_1=0.9)
    opt.build([w])
    opt.variables[2][...] = [3.0, -1.0]  # z
    b1 = np.float32(0.9)
    y = np.array([1.0, 2.0], np.float32)
    z = np.array([3.0, -1.0], np.float32)
    x = (y - (np.float32(1) - b1) * z) / b1
    opt.eval()
    np.testing.assert_array_equal(w, x)
    opt.train()
    np.testing.assert_array_equal(w, (np.float32(1) - b1) * z + b1 * x)


def test_swaps_before_build_do_nothing():
    opt = ScheduleFreeAdamW()
    opt.swap_to_eval()
    opt.swap_to_train()
    assert not opt.built


def test_swaps_cover_every_variable_of_a_dict():
    params = {"a": np.array([1.0, 2.0]), "b": np.array([[3.0]], np.float32)}
    opt = ScheduleFreeAdamW(learning_rate=0.1)
    opt.apply({"a": np.array([1.0, -1.0]), "b": np.array([[2.0]], np.float32)}, params)
    opt.apply({"a": np.array([0.5, 0.5]), "b": np.array([[-1.0]], np.float32)}, params)
    before = {k: v.copy() for k, v in params.items()}
    slots = dict(zip(opt.variable_names, opt.variables))
    opt.swap_to_eval()
    for key in params:
        z = slots[f"{key}_momentum"]
        T = params[key].dtype.type
        expected = (before[key] - (T(1) - T(0.9)) * z) / T(0.9)
        np.testing.assert_array_equal(params[key], expected)
