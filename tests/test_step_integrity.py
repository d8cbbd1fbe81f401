"""A step is all-or-nothing and never silently corrupts: the cases of the step contract that
are not about bad arrays (those are in test_bad_input.py)."""

import math
import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest

import ferroptim as fo
from optimizers_under_test import OPTIMIZERS


def test_global_clipnorm_over_dtype_groups_uses_one_float64_scale():
    # A float32 group whose share of the global norm underflows in float32: each call used to
    # derive its clip value from that share and compute 0 * inf = NaN.
    a, b = np.ones(4, np.float32), np.ones(4)
    ga, gb = np.full(4, 1e-30, np.float32), np.full(4, 1e20)
    fo.optimizers.SGD(learning_rate=0.1, global_clipnorm=1.0).apply([ga, gb], [a, b])
    norm = math.sqrt(4 * float(ga[0]) ** 2 + 4 * 1e40)
    scale = 1.0 * min(1.0 / norm, 1.0)
    want_a = np.float32(1) - np.float32(0.1) * (ga * np.float32(scale))
    # Keras holds the learning rate in a float32 variable: float32(0.1) reaches float64 too.
    want_b = 1.0 - float(np.float32(0.1)) * (gb * scale)
    np.testing.assert_array_equal(a, want_a)
    np.testing.assert_array_equal(b, want_b)
    assert np.all(np.isfinite(a))


def test_global_clipnorm_over_dtype_groups_poisons_on_a_non_finite_norm():
    # Keras: `scale + (N - N)` is NaN when the global norm is not finite.
    a, b = np.ones(3, np.float32), np.ones(3)
    fo.optimizers.SGD(learning_rate=0.1, global_clipnorm=1.0).apply(
        [np.full(3, np.inf, np.float32), np.ones(3)], [a, b]
    )
    assert np.all(np.isnan(a)) and np.all(np.isnan(b))


def test_muon_global_clipnorm_across_its_two_paths_stays_finite():
    params = {"k": np.ones((4, 4), np.float32), "bias": np.ones(4, np.float32)}
    grads = {"k": np.full((4, 4), 1e15, np.float32), "bias": np.full(4, 1e-30, np.float32)}
    fo.optimizers.Muon(global_clipnorm=1.0).apply(grads, params)
    assert np.all(np.isfinite(params["bias"])) and np.all(np.isfinite(params["k"]))
    # The bias's clipped gradient is ~1e-47 (0 in float32): AdamW then only decays it.
    assert np.all(params["bias"] <= 1.0) and np.all(params["bias"] > 0.99)


def _snapshot(params, opt):
    return [p.copy() for p in params.values()] + [np.copy(v) for v in opt.variables]


def _assert_unchanged(before, params, opt):
    after = [p.copy() for p in params.values()] + [np.copy(v) for v in opt.variables]
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def _multi(second_lr):
    # The map's optimizers step in insertion order, then the default: `second_lr` belongs to
    # the optimizer that steps second.
    params = {"kernel": np.ones(3, np.float32), "bias": np.ones(3, np.float32)}
    opt_map = fo.optimizers.OptimizerMap(
        fo.optimizers.SGD(learning_rate=second_lr), {"bias": fo.optimizers.Adam(learning_rate=0.1)}
    )
    opt = fo.optimizers.MultiOptimizer(opt_map)
    grads = {"kernel": np.ones(3, np.float32), "bias": np.ones(3, np.float32)}
    opt.apply(grads, params)
    return opt, params, grads


def test_multi_optimizer_refuses_a_step_whose_later_learning_rate_raises():
    calls = []

    def learning_rate():
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("schedule failed")
        return 0.5

    opt, params, grads = _multi(learning_rate)
    before = _snapshot(params, opt)
    try:
        opt.apply(grads, params)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the failing learning rate did not raise")
    _assert_unchanged(before, params, opt)
    assert opt.iterations == 1


def test_multi_optimizer_refuses_a_step_whose_later_learning_rate_is_nan():
    rates = iter([0.5, float("nan")])
    opt, params, grads = _multi(lambda: next(rates))
    before = _snapshot(params, opt)
    try:
        opt.apply(grads, params)
    except ValueError as error:
        assert "learning rate" in str(error)
    else:
        raise AssertionError("a NaN learning rate did not raise")
    _assert_unchanged(before, params, opt)


def test_multi_optimizer_reads_each_learning_rate_once_per_step():
    calls = []

    def learning_rate():
        calls.append(1)
        return 0.5

    opt, params, grads = _multi(learning_rate)
    opt.apply(grads, params)
    assert len(calls) == 2  # one per step
    np.testing.assert_array_equal(params["kernel"], np.zeros(3, np.float32))


def test_loss_scale_optimizer_refuses_malformed_non_finite_gradients():
    params = [np.ones(4, np.float32), np.ones(3, np.float32)]
    opt = fo.optimizers.LossScaleOptimizer(fo.optimizers.SGD(learning_rate=0.1))
    opt.apply([np.ones(4, np.float32), np.ones(3, np.float32)], params)
    scale = float(opt.dynamic_scale)
    bad = [
        [np.full(5, np.nan, np.float32), np.ones(3, np.float32)],  # wrong shape
        [np.full(4, np.nan, np.float32)],  # wrong count
        [np.full(4, np.nan, np.float32), np.array(["x", "y", "z"])],  # wrong dtype
    ]
    for grads in bad:
        before = [p.copy() for p in params] + [np.copy(v) for v in opt.variables]
        try:
            opt.apply(grads, params)
        except (TypeError, ValueError):
            pass
        else:
            raise AssertionError(f"malformed gradients were accepted: {grads}")
        after = [p.copy() for p in params] + [np.copy(v) for v in opt.variables]
        for a, b in zip(before, after):
            np.testing.assert_array_equal(a, b)
    # A gradient for a variable the optimizer was not built on, holding NaN.
    try:
        opt.apply([np.full(4, np.nan, np.float32)], [np.ones(4, np.float32)])
    except ValueError:
        pass
    else:
        raise AssertionError("a gradient of an unknown variable was accepted")
    assert float(opt.dynamic_scale) == scale
    # Well-formed non-finite gradients still halve the scale, as in Keras.
    opt.apply([np.full(4, np.nan, np.float32), np.ones(3, np.float32)], params)
    assert float(opt.dynamic_scale) == scale / 2


# --- one rule for learning rates, iterations and thread counts ---------------------------


def test_a_learning_rate_beyond_float32_is_refused_at_construction_and_assignment():
    with pytest.raises(ValueError, match="learning_rate"):
        fo.optimizers.Adam(learning_rate=1e300)
    opt = fo.optimizers.Adam(learning_rate=0.1)
    for bad, error in [
        (1e300, ValueError),
        (float("nan"), ValueError),
        ("0.1", TypeError),
        (b"0.1", TypeError),
        (None, TypeError),
    ]:
        with pytest.raises(error):
            opt.learning_rate = bad
        assert opt.learning_rate == float(np.float32(0.1))
    opt.learning_rate = 1  # a real number, as Keras's variable assignment takes it
    assert opt.learning_rate == 1.0
    opt.learning_rate = np.float64(0.25)
    assert opt.learning_rate == 0.25


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), 10**400, "0.1"], ids=["nan", "inf", "1e400", "str"]
)
@pytest.mark.parametrize("name", [case.name for case in OPTIMIZERS])
def test_a_schedule_or_callable_returning_a_non_finite_rate_refuses_the_step(name, value):
    params = {"k": np.ones((4, 3), np.float32), "b": np.ones(3, np.float32)}
    opt = getattr(fo.optimizers, name)(learning_rate=lambda: value)
    grads = {"k": np.ones((4, 3), np.float32), "b": np.ones(3, np.float32)}
    opt.build(params)
    before = _snapshot(params, opt)
    with pytest.raises((ValueError, TypeError), match="learning rate|learning-rate"):
        opt.apply(grads, params)
    _assert_unchanged(before, params, opt)
    assert opt.iterations == 0


def test_the_last_recordable_iteration_refuses_the_next_step():
    opt = fo.optimizers.SGD(learning_rate=0.1)
    w = np.ones(3, np.float32)
    opt.build([w])
    opt.set_weights([np.int64(2**63 - 1), np.float32(0.1)])
    with pytest.raises(ValueError, match="iteration count is at its limit"):
        opt.apply_gradients([(np.ones(3, np.float32), w)])
    np.testing.assert_array_equal(w, np.ones(3, np.float32))
    assert opt.iterations == 2**63 - 1
    # What the step would have broken still works.
    assert int(opt.variables[0]) == 2**63 - 1
    store = {}
    opt.save_own_variables(store)


def test_the_thread_count_variable_follows_set_num_threads_rule():
    code = "import ferroptim as fo; print(fo.get_num_threads())"
    for value in ["3000", "0", "-2", "many", "1_000"]:
        env = dict(os.environ, FERROPTIM_NUM_THREADS=value)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert "FERROPTIM_NUM_THREADS must be an int from 1 to 1024" in out.stderr, value
        assert 1 <= int(out.stdout) <= 1024
    env = dict(os.environ, FERROPTIM_NUM_THREADS="3")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stderr == "" and int(out.stdout) == 3


# --- another thread ------------------------------------------------------------------------


def test_a_pickle_taken_while_another_thread_steps_holds_whole_steps():
    n = 200_000  # large enough that the kernel runs with the GIL released
    g = np.linspace(-1, 1, n, dtype=np.float32)
    w = np.ones(n, np.float32)
    opt = fo.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    opt.build([w])
    stop = threading.Event()

    def step():
        while not stop.is_set() and opt.iterations < 100_000:
            opt.apply_gradients([(g, w)])

    stepper = threading.Thread(target=step)
    stepper.start()
    snapshots = []
    try:
        while len(snapshots) < 8 and stepper.is_alive():
            snapshots.append(pickle.loads(pickle.dumps((opt, w))))
    finally:
        stop.set()
        stepper.join()
    assert len(snapshots) == 8
    # Replay from scratch and compare each snapshot with the state after as many steps.
    snapshots.sort(key=lambda s: s[0].iterations)
    fresh_w = np.ones(n, np.float32)
    fresh = fo.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    fresh.build([fresh_w])
    for copy, params in snapshots:
        while fresh.iterations < copy.iterations:
            fresh.apply_gradients([(g, fresh_w)])
        k = copy.iterations
        np.testing.assert_array_equal(params, fresh_w, err_msg=f"parameters after {k} steps")
        np.testing.assert_array_equal(
            copy.variables[2], fresh.variables[2], err_msg=f"momentum after {k} steps"
        )


@pytest.mark.parametrize(
    "make",
    [
        lambda: fo.optimizers.Nadam(),
        lambda: fo.optimizers.SGD(use_ema=True),
        lambda: fo.optimizers.SGD(gradient_accumulation_steps=2),
    ],
    ids=["Nadam", "SGD-ema", "SGD-accumulation"],
)
def test_assigning_hyperparameters_while_another_thread_steps_never_breaks_a_step(make):
    # Small steps and a short switch interval: the threads interleave inside steps.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        w = np.ones(1000, np.float32)
        g = np.full(1000, 1e-3, np.float32)
        opt = make()
        opt.build({"w": w})
        errors = []

        def step():
            try:
                for _ in range(5000):
                    opt.apply([g], [w])
            except Exception as error:  # noqa: BLE001 - the test reports any failure
                errors.append(error)

        stepper = threading.Thread(target=step)
        stepper.start()
        flip = 0
        while stepper.is_alive():
            flip += 1
            opt.clipnorm = 1.0 if flip % 2 else None
            opt.exclude_from_weight_decay(var_names=["w"] if flip % 2 else None)
        stepper.join()
    finally:
        sys.setswitchinterval(switch)
    assert not errors, errors
    assert opt._iterations == 5000
