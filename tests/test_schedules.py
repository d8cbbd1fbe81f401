"""Learning-rate schedules against Keras 3.

References: the float32 values the released Keras 3.15.1 returns (JAX backend, schedule called with
a Python int step), the expected values written in Keras's own ``learning_rate_schedule_test.py``,
and float64 NumPy references of each formula written here, independently of the implementation,
in Keras's operation order.
"""

import copy
import json
import math
import pickle

import numpy as np
import pytest

from ferroptim.optimizers import schedules
from ferroptim.optimizers.schedules import (
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    LearningRateSchedule,
    PiecewiseConstantDecay,
    PolynomialDecay,
)

GOLDEN_STEPS = [0, 1, 2, 3, 4, 5, 7, 10, 15, 20, 25, 30, 50, 100]


def _values(text):
    # A row of the golden table: the values at GOLDEN_STEPS, as Keras prints them.
    return [float(value) for value in text.split()]


# (schedule, the float32 values Keras 3.15.1 returns at GOLDEN_STEPS).
GOLDEN = [
    (
        ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5),
        _values(
            "0.1 0.0933033 0.08705506 0.08122524 0.07578583 0.07071068 0.061557222 0.05 "
            "0.03535534 0.025 0.01767767 0.0125 0.003125 9.765625e-05"
        ),
    ),
    (
        ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True),
        _values("0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.05 0.05 0.025 0.025 0.0125 0.003125 9.765625e-05"),
    ),
    (
        PiecewiseConstantDecay(boundaries=[5, 10], values=[1.0, 0.5, 0.1]),
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
    ),
    (
        PolynomialDecay(0.1, decay_steps=10),
        _values(
            "0.1 0.09001 0.08002 0.070030004 0.060040005 0.05005 0.030070001 1e-04 1e-04 1e-04 "
            "1e-04 1e-04 1e-04 1e-04"
        ),
    ),
    (
        PolynomialDecay(0.1, decay_steps=10, end_learning_rate=0.01, power=2.0),
        _values(
            "0.1 0.082899995 0.067600004 0.0541 0.042400002 0.0325 0.0181 0.01 0.01 0.01 0.01 "
            "0.01 0.01 0.01"
        ),
    ),
    (
        PolynomialDecay(0.1, decay_steps=10, end_learning_rate=0.01, power=0.5, cycle=True),
        _values(
            "0.1 0.0953815 0.09049845 0.0852994 0.0797137 0.07363961 0.059295036 0.01 0.055 0.01 "
            "0.04674235 0.01 0.01 0.01"
        ),
    ),
    (
        InverseTimeDecay(0.1, decay_steps=10, decay_rate=0.5),
        _values(
            "0.1 0.095238104 0.09090909 0.08695652 0.08333333 0.08 0.074074075 0.06666667 "
            "0.057142857 0.05 0.044444446 0.04 0.028571429 0.016666668"
        ),
    ),
    (
        InverseTimeDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True),
        _values(
            "0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.06666667 0.06666667 0.05 0.05 0.04 0.028571429 "
            "0.016666668"
        ),
    ),
    (
        CosineDecay(0.1, decay_steps=20),
        _values(
            "0.1 0.09938442 0.09755283 0.09455033 0.090450846 0.08535534 0.072699524 0.049999997 "
            "0.014644662 0.0 0.0 0.0 0.0 0.0"
        ),
    ),
    (
        CosineDecay(0.1, decay_steps=20, alpha=0.1),
        _values(
            "0.1 0.09944598 0.09779754 0.09509529 0.091405764 0.08681981 0.07542957 0.054999996 "
            "0.023180196 0.010000001 0.010000001 0.010000001 0.010000001 0.010000001"
        ),
    ),
    (
        CosineDecay(0.0, decay_steps=20, alpha=0.1, warmup_target=0.2, warmup_steps=5),
        _values(
            "0.0 0.040000003 0.080000006 0.120000005 0.16000001 0.2 0.19559507 0.17363961 "
            "0.10999999 0.046360392 0.020000001 0.020000001 0.020000001 0.020000001"
        ),
    ),
    (
        CosineDecay(0.01, decay_steps=20, warmup_target=0.1, warmup_steps=10),
        _values(
            "0.01 0.019 0.028 0.037 0.046 0.055 0.073 0.1 0.08535534 0.049999997 0.014644662 0.0 "
            "0.0 0.0"
        ),
    ),
    (
        CosineDecayRestarts(0.1, first_decay_steps=10),
        _values(
            "0.1 0.09755283 0.090450846 0.07938927 0.06545085 0.049999997 0.02061074 0.1 "
            "0.08535534 0.049999997 0.014644662 0.1 0.049999997 0.06913417"
        ),
    ),
    (
        CosineDecayRestarts(0.1, first_decay_steps=10, t_mul=1.0, m_mul=0.5, alpha=0.1),
        _values(
            "0.1 0.09779754 0.091405764 0.081450336 0.06890576 0.054999996 0.028549666 "
            "0.055000003 0.0325 0.0325 0.02125 0.02125 0.0128125 0.0100878915"
        ),
    ),
    (
        CosineDecayRestarts(0.1, first_decay_steps=10, t_mul=3.0, m_mul=0.8),
        _values(
            "0.1 0.09755283 0.090450846 0.07938927 0.06545085 0.049999997 0.02061074 0.080000006 "
            "0.07464102 0.060000002 0.04 0.019999998 0.06207017 0.016"
        ),
    ),
]

GOLDEN_IDS = [f"{type(s).__name__}-{i}" for i, (s, _) in enumerate(GOLDEN)]

# Float32 ulps allowed around a reference value of about `value`: a float32 cos/pow/log may
# differ by an ulp or two between NumPy and XLA.
F32_RTOL = 1e-6


def _assert_f32_close(actual, expected, *, atol=0.0):
    assert type(actual) is np.float32
    np.testing.assert_allclose(np.float64(actual), expected, rtol=F32_RTOL, atol=atol)


# ---------------------------------------------------------------------------------------------
# Float64 references of the formulas of keras/src/optimizers/schedules/learning_rate_schedule.py.


def ref_exponential(step, initial, decay_steps, decay_rate, staircase=False):
    p = step / decay_steps
    if staircase:
        p = math.floor(p)
    return initial * decay_rate**p


def ref_piecewise(step, boundaries, values):
    for boundary, value in zip(boundaries, values):
        if step <= boundary:
            return value
    return values[-1]


def ref_polynomial(step, initial, decay_steps, end=0.0001, power=1.0, cycle=False):
    if cycle:
        period = decay_steps * (1 if step == 0 else math.ceil(step / decay_steps))
        s = step
    else:
        period = decay_steps
        s = min(step, decay_steps)
    return (initial - end) * (1 - s / period) ** power + end


def ref_inverse_time(step, initial, decay_steps, decay_rate, staircase=False):
    p = step / decay_steps
    if staircase:
        p = math.floor(p)
    return initial / (1 + decay_rate * p)


def _ref_cosine_part(s, decay_steps, decay_from, alpha):
    return decay_from * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * s / decay_steps)) + alpha)


def ref_cosine(step, initial, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    if warmup_target is None:
        return _ref_cosine_part(min(step, decay_steps), decay_steps, initial, alpha)
    s = min(step, decay_steps + warmup_steps)
    if s < warmup_steps:
        return (warmup_target - initial) * (s / warmup_steps) + initial
    return _ref_cosine_part(s - warmup_steps, decay_steps, warmup_target, alpha)


def ref_restarts(step, initial, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0):
    # Walks the periods one by one (as Keras's test does), rather than the closed form.
    period, scale, s = float(first_decay_steps), 1.0, float(step)
    while s >= period:
        s -= period
        period *= t_mul
        scale *= m_mul
    cosine = 0.5 * scale * (1 + math.cos(math.pi * s / period))
    return initial * ((1 - alpha) * cosine + alpha)


def restart_points(first_decay_steps, t_mul, up_to):
    """Steps at which a new period of CosineDecayRestarts starts."""
    points, start, period = set(), 0.0, float(first_decay_steps)
    while start <= up_to:
        points.add(round(start))
        start += period
        period *= t_mul
    return points


# ---------------------------------------------------------------------------------------------
# Golden values (Keras 3.15.1, float32).


@pytest.mark.parametrize(("schedule", "expected"), GOLDEN, ids=GOLDEN_IDS)
def test_golden_values(schedule, expected):
    for step, value in zip(GOLDEN_STEPS, expected):
        actual = schedule(step)
        # Exact zeros (a finished cosine) get an absolute tolerance of a float32 ulp of 0.1.
        _assert_f32_close(actual, value, atol=1e-8 if value == 0 else 0.0)
        # The golden values are float32 results printed in full: allow two float32 ulps for the
        # libm behind float32 `pow`/`log`, which differs between platforms.
        np.testing.assert_array_max_ulp(actual, np.float32(value), maxulp=2)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [case for case in GOLDEN if type(case[0]) is CosineDecay],
    ids=[i for i in GOLDEN_IDS if i.startswith("CosineDecay-")],
)
def test_cosine_golden_values_are_bit_exact(schedule, expected):
    # CosineDecay uses no float32 pow/log, only the basic operations, a cosine and, with warmup,
    # the fused multiply-adds XLA forms inside `ops.cond`; all of these round the same way on
    # every platform, so Keras's float32 results are reproduced exactly.
    for step, value in zip(GOLDEN_STEPS, expected):
        assert schedule(step) == np.float32(value), step


@pytest.mark.parametrize(("schedule", "expected"), GOLDEN, ids=GOLDEN_IDS)
def test_golden_values_with_numpy_steps(schedule, expected):
    # The optimizer's iterations counter may be a NumPy integer or a 0-d array.
    for step, value in zip(GOLDEN_STEPS, expected):
        for numpy_step in (np.int64(step), np.int32(step), np.array(step)):
            _assert_f32_close(schedule(numpy_step), value, atol=1e-8 if value == 0 else 0.0)


@pytest.mark.parametrize(("schedule", "expected"), GOLDEN, ids=GOLDEN_IDS)
def test_golden_values_after_config_round_trip(schedule, expected):
    rebuilt = schedules.deserialize(json.loads(json.dumps(schedules.serialize(schedule))))
    assert type(rebuilt) is type(schedule)
    for step in GOLDEN_STEPS:
        assert rebuilt(step) == schedule(step)


# ---------------------------------------------------------------------------------------------
# Float64 reference sweeps.

SWEEP = list(range(0, 400)) + [997, 1000, 1003, 5000, 12345]


def _cases(cls, reference, *configs):
    # One (class, constructor arguments, float64 reference) case per config.
    return [(cls, config, reference) for config in configs]


REFERENCE_CASES = [
    *_cases(
        ExponentialDecay,
        ref_exponential,
        dict(initial_learning_rate=0.05, decay_steps=7, decay_rate=0.9),
        dict(initial_learning_rate=0.05, decay_steps=7, decay_rate=0.9, staircase=True),
        dict(initial_learning_rate=1e-3, decay_steps=1000, decay_rate=0.96),
    ),
    *_cases(
        PolynomialDecay,
        ref_polynomial,
        dict(initial_learning_rate=0.1, decay_steps=37),
        dict(initial_learning_rate=0.1, decay_steps=37, end_learning_rate=0.003, power=3.0),
        dict(
            initial_learning_rate=0.3, decay_steps=37, end_learning_rate=0.01, power=0.5, cycle=True
        ),
    ),
    *_cases(
        InverseTimeDecay,
        ref_inverse_time,
        dict(initial_learning_rate=0.1, decay_steps=3, decay_rate=0.7),
        dict(initial_learning_rate=0.1, decay_steps=3, decay_rate=0.7, staircase=True),
    ),
    *_cases(
        CosineDecay,
        ref_cosine,
        dict(initial_learning_rate=0.2, decay_steps=150, alpha=0.05),
        dict(
            initial_learning_rate=1e-4,
            decay_steps=150,
            alpha=0.1,
            warmup_target=0.03,
            warmup_steps=40,
        ),
    ),
    *_cases(
        CosineDecayRestarts,
        ref_restarts,
        dict(initial_learning_rate=0.1, first_decay_steps=13),
        dict(initial_learning_rate=0.1, first_decay_steps=13, t_mul=1.0, m_mul=0.7, alpha=0.2),
        dict(initial_learning_rate=0.1, first_decay_steps=10, t_mul=1.5, m_mul=0.9, alpha=0.1),
    ),
]

# The tests below run once per case of REFERENCE_CASES.
_each_reference_case = pytest.mark.parametrize(
    ("cls", "kwargs", "reference"),
    REFERENCE_CASES,
    ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(REFERENCE_CASES)],
)


def _reference_steps(cls, kwargs):
    steps = SWEEP
    if cls is CosineDecayRestarts:
        # At the first step of a period the float32 closed form may land on either side of the
        # restart (the period index comes from a float32 log ratio); Keras shares that, so the
        # reference comparison skips those steps and the golden values cover them.
        skip = restart_points(kwargs["first_decay_steps"], kwargs.get("t_mul", 2.0), max(SWEEP))
        steps = [s for s in SWEEP if s not in skip]
    return steps


@_each_reference_case
def test_float32_matches_float64_reference(cls, kwargs, reference):
    schedule = cls(**kwargs)
    for step in _reference_steps(cls, kwargs):
        expected = reference(step, *kwargs.values())
        # Cancellation near a cosine's zero leaves an absolute float32 error of about
        # ulp(initial learning rate); elsewhere the relative error is a few float32 ulps.
        atol = 4 * np.spacing(np.float32(kwargs["initial_learning_rate"]))
        _assert_f32_close(schedule(step), expected, atol=float(atol))


@_each_reference_case
def test_float64_initial_rate_computes_in_float64(cls, kwargs, reference):
    kwargs = dict(kwargs, initial_learning_rate=np.float64(kwargs["initial_learning_rate"]))
    schedule = cls(**kwargs)
    for step in _reference_steps(cls, kwargs):
        value = schedule(step)
        assert type(value) is np.float64
        expected = reference(step, *kwargs.values())
        np.testing.assert_allclose(value, expected, rtol=1e-13, atol=1e-16)


def test_piecewise_matches_reference():
    boundaries, values = [3, 17, 40, 41], [0.5, 0.25, 0.125, 0.0625, 0.03125]
    schedule = PiecewiseConstantDecay(boundaries, values)
    for step in range(-5, 60):
        value = schedule(step)
        assert type(value) is np.float32
        assert value == np.float32(ref_piecewise(step, boundaries, values))


def test_float64_piecewise_values_stay_float64():
    schedule = PiecewiseConstantDecay([10], [np.float64(0.1), np.float64(0.01)])
    assert type(schedule(3)) is np.float64
    assert schedule(3) == 0.1
    assert schedule(11) == 0.01


def test_float64_result_keeps_precision_float32_loses():
    schedule32 = ExponentialDecay(0.1, 3, 0.7)
    schedule64 = ExponentialDecay(np.float64(0.1), 3, 0.7)
    assert schedule64(5) == pytest.approx(0.1 * 0.7 ** (5 / 3), rel=1e-15)
    assert schedule32(5) != schedule64(5)
    assert schedule32(5) == pytest.approx(schedule64(5), rel=1e-6)


def test_large_step_is_cast_to_float32_like_keras():
    # 2**24 + 1 is not a float32; Keras casts the step to the schedule's dtype first, which
    # rounds it to 2**24.
    step = 2**24 + 1
    schedule = InverseTimeDecay(1.0, decay_steps=1, decay_rate=1.0)
    assert schedule(step) == np.float32(1.0) / (np.float32(1.0) + np.float32(2.0**24))
    assert schedule(np.int64(step)) == schedule(step)


def test_float_steps_are_accepted():
    schedule = CosineDecay(0.1, 20)
    assert schedule(7.0) == schedule(7)
    assert schedule(np.float32(7)) == schedule(7)
    assert type(schedule(np.float64(7))) is np.float32


# ---------------------------------------------------------------------------------------------
# Keras's own test cases (keras/src/optimizers/schedules/learning_rate_schedule_test.py).


def test_exponential_keras_cases():
    assert ExponentialDecay(0.05, 10, 0.96)(5) == pytest.approx(0.05 * 0.96**0.5, rel=1e-6)
    staircase = ExponentialDecay(0.1, 3, 0.96, staircase=True)
    assert staircase(1) == pytest.approx(0.1, rel=1e-6)
    assert staircase(2) == pytest.approx(0.1, rel=1e-6)
    assert staircase(100) == pytest.approx(0.1 * 0.96 ** (100 // 3), rel=1e-6)
    assert staircase(np.float32(1.0)) == pytest.approx(0.1, rel=1e-6)


def test_piecewise_keras_cases():
    schedule = PiecewiseConstantDecay([100, 110, 120], [1.0, 0.1, 0.01, 0.001])
    expected = {-999: 1.0, 100: 1.0, 105: 0.1, 110: 0.1, 120: 0.01, 999: 0.001}
    for step, value in expected.items():
        assert schedule(step) == pytest.approx(value, rel=1e-6)
        # Keras's test uses a float variable as the step.
        assert schedule(np.float32(step)) == pytest.approx(value, rel=1e-6)


def test_piecewise_boundaries_cast_to_step_dtype():
    schedule = PiecewiseConstantDecay([1, 2, 3], [0.4, 0.5, 0.6, 0.7])
    for step, value in [(0, 0.4), (1, 0.4), (2, 0.5), (3, 0.6), (4, 0.7)]:
        assert schedule(np.int64(step)) == pytest.approx(value, rel=1e-6)
    # Float boundaries meet an integer step truncated, as Keras's cast to the step's dtype does.
    truncating = PiecewiseConstantDecay([2.7], [1.0, 2.0])
    assert truncating(2) == 1.0
    assert truncating(3) == 2.0
    assert truncating(2.5) == 1.0
    assert truncating(2.8) == 2.0


def test_piecewise_int_values_stay_int():
    schedule = PiecewiseConstantDecay([10, 20], [1, 2, 3])
    assert schedule(5) == 1 and schedule(15) == 2 and schedule(25) == 3
    assert np.asarray(schedule(15)).dtype.kind == "i"


def test_piecewise_unsorted_boundaries_sum_like_keras():
    # Keras adds value * (step in interval) over every interval; with boundaries out of order
    # several intervals can match at once. boundaries [10, 5]: step 7 is <= 10 (values[0]) and
    # > 5 (values[-1]); step 12 is > 5 only; step 3 is <= 10 only.
    schedule = PiecewiseConstantDecay([10, 5], [1.0, 2.0, 4.0])
    assert schedule(7) == 5.0
    assert schedule(12) == 4.0
    assert schedule(3) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "step", "expected"),
    [
        (dict(end_learning_rate=0.0), 5, 0.05 * 0.5),
        (dict(end_learning_rate=0.001), 10, 0.001),
        (dict(end_learning_rate=0.001), 5, (0.05 + 0.001) * 0.5),
        (dict(end_learning_rate=0.001), 15, 0.001),
        (dict(end_learning_rate=0.001, cycle=True), 15, (0.05 - 0.001) * 0.25 + 0.001),
        (dict(end_learning_rate=0.0, power=0.5), 5, 0.05 * 0.5**0.5),
        (dict(end_learning_rate=0.001, power=0.5), 10, 0.001),
        (dict(end_learning_rate=0.001, power=0.5), 5, (0.05 - 0.001) * 0.5**0.5 + 0.001),
        (dict(end_learning_rate=0.001, power=0.5), 15, 0.001),
        (
            dict(end_learning_rate=0.001, power=0.5, cycle=True),
            15,
            (0.05 - 0.001) * 0.25**0.5 + 0.001,
        ),
    ],
)
def test_polynomial_keras_cases(kwargs, step, expected):
    assert PolynomialDecay(0.05, 10, **kwargs)(step) == pytest.approx(expected, rel=1e-6)


def test_polynomial_cycle_at_step_zero_is_initial():
    assert PolynomialDecay(0.001, 10, cycle=True)(0) == pytest.approx(0.001, rel=1e-6)


def test_inverse_time_keras_cases():
    continuous = InverseTimeDecay(0.1, 10, 0.96)
    staircase = InverseTimeDecay(0.1, 10, 0.96, staircase=True)
    for i in range(11):
        assert continuous(i) == pytest.approx(0.1 / (1 + i / 10 * 0.96), rel=1e-6)
        assert staircase(i) == pytest.approx(0.1 / (1 + 0.96 * (i // 10)), rel=1e-6)


def test_inverse_time_is_keras2_decay():
    schedule = InverseTimeDecay(0.01, 1, 1e-3)
    for it in (0, 1, 10, 1000):
        assert schedule(it) == pytest.approx(0.01 / (1 + 1e-3 * it), rel=1e-6)


def _keras_cosine(step, decay_steps, alpha=0.0):
    step = min(step, decay_steps)
    return (1.0 - alpha) * 0.5 * (1.0 + math.cos(math.pi * step / decay_steps)) + alpha


def test_cosine_keras_cases():
    for step in range(0, 1500, 250):
        expected = _keras_cosine(step, 1000)
        assert CosineDecay(1.0, 1000)(step) == pytest.approx(expected, rel=1e-6, abs=1e-7)
        assert CosineDecay(np.float64(1.0), 1000)(step) == pytest.approx(
            expected, rel=1e-6, abs=1e-7
        )
        assert CosineDecay(1.0, 1000, 0.1)(step) == pytest.approx(
            _keras_cosine(step, 1000, 0.1), rel=1e-6
        )
        warmup = CosineDecay(0.0, 10, warmup_target=10.0, warmup_steps=1500)
        assert warmup(step) == pytest.approx(step / 1500 * 10.0, rel=1e-6)
    for step in range(0, 3000, 250):
        schedule = CosineDecay(0.0, 1000, warmup_target=10.0, warmup_steps=2000)
        if step <= 2000:
            expected = step / 2000 * 10.0
        else:
            expected = 10.0 * _keras_cosine(step - 2000, 1000)
        assert schedule(step) == pytest.approx(expected, rel=1e-6, abs=1e-6)


def _keras_restarts(step, decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0):
    fac = 1.0
    while step >= decay_steps:
        step -= decay_steps
        decay_steps *= t_mul
        fac *= m_mul
    decay = fac * 0.5 * (1.0 + math.cos(math.pi * step / decay_steps))
    return (1.0 - alpha) * decay + alpha


@pytest.mark.parametrize(
    "kwargs", [{}, dict(alpha=0.1), dict(m_mul=0.9), dict(t_mul=1.0)], ids=repr
)
@pytest.mark.parametrize("initial", [1.0, np.float64(1.0)], ids=["float", "float64"])
def test_restarts_keras_cases(kwargs, initial):
    schedule = CosineDecayRestarts(initial, 1000, **kwargs)
    for step in range(0, 1500, 250):
        expected = _keras_restarts(step, 1000, **kwargs)
        assert schedule(step) == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_restarts_shrinking_periods_end_in_nan_quietly():
    # With t_mul < 1 the periods sum to first_decay_steps / (1 - t_mul); past that Keras's
    # closed form takes the log of a non-positive number and returns NaN, without a warning.
    schedule = CosineDecayRestarts(0.1, 10, t_mul=0.5)
    assert np.isfinite(schedule(15))
    assert np.isnan(schedule(25))


# ---------------------------------------------------------------------------------------------
# Validation.


@pytest.mark.parametrize("bad", [0, -1, -0.5])
@pytest.mark.parametrize(
    ("cls", "args"),
    [
        (ExponentialDecay, (0.1,)),
        (PolynomialDecay, (0.1,)),
        (InverseTimeDecay, (0.1,)),
        (CosineDecay, (0.1,)),
    ],
)
def test_decay_steps_must_be_positive(cls, args, bad):
    extra = (0.5,) if cls in (ExponentialDecay, InverseTimeDecay) else ()
    with pytest.raises(ValueError) as info:
        cls(*args, bad, *extra)
    assert str(info.value) == f"Argument `decay_steps` must be > 0. Received: decay_steps={bad}"


def test_first_decay_steps_must_be_positive():
    with pytest.raises(ValueError) as info:
        CosineDecayRestarts(0.1, 0)
    assert str(info.value) == (
        "Argument `first_decay_steps` must be > 0. Received: first_decay_steps=0"
    )


def test_piecewise_lengths_must_match():
    with pytest.raises(ValueError) as info:
        PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    assert str(info.value) == (
        "The length of boundaries should be 1 less than the length of values. "
        "Received: boundaries=[1, 2] of length 2, and values=[0.1, 0.2] of length 2."
    )


def test_base_class_must_be_overridden():
    class Incomplete(LearningRateSchedule):
        pass

    with pytest.raises(NotImplementedError, match="must override `__call__"):
        Incomplete()(0)
    with pytest.raises(NotImplementedError, match="must override `get_config"):
        Incomplete().get_config()


# ---------------------------------------------------------------------------------------------
# Configs and serialization.

CONFIG_CASES = [
    (
        ExponentialDecay(0.05, decay_steps=10, decay_rate=0.96, staircase=True, name="my_ed"),
        {
            "initial_learning_rate": 0.05,
            "decay_steps": 10,
            "decay_rate": 0.96,
            "staircase": True,
            "name": "my_ed",
        },
    ),
    (
        PiecewiseConstantDecay(boundaries=[10, 20], values=[1, 2, 3], name="my_pcd"),
        {"boundaries": [10, 20], "values": [1, 2, 3], "name": "my_pcd"},
    ),
    (
        PolynomialDecay(
            0.1, decay_steps=100, end_learning_rate=0.005, power=1.0, cycle=False, name="my_ld"
        ),
        {
            "initial_learning_rate": 0.1,
            "decay_steps": 100,
            "end_learning_rate": 0.005,
            "power": 1.0,
            "cycle": False,
            "name": "my_ld",
        },
    ),
    (
        InverseTimeDecay(0.05, decay_steps=10, decay_rate=0.96, staircase=True, name="my_itd"),
        {
            "initial_learning_rate": 0.05,
            "decay_steps": 10,
            "decay_rate": 0.96,
            "staircase": True,
            "name": "my_itd",
        },
    ),
    (
        CosineDecay(
            0.05, decay_steps=10, alpha=0.1, warmup_target=0.2, warmup_steps=2, name="my_cd"
        ),
        {
            "initial_learning_rate": 0.05,
            "decay_steps": 10,
            "alpha": 0.1,
            "name": "my_cd",
            "warmup_target": 0.2,
            "warmup_steps": 2,
        },
    ),
    (
        CosineDecayRestarts(
            0.05, first_decay_steps=10, alpha=0.1, t_mul=3.0, m_mul=4.0, name="my_cdr"
        ),
        {
            "initial_learning_rate": 0.05,
            "first_decay_steps": 10,
            "t_mul": 3.0,
            "m_mul": 4.0,
            "alpha": 0.1,
            "name": "my_cdr",
        },
    ),
]

CONFIG_IDS = [type(s).__name__ for s, _ in CONFIG_CASES]


@pytest.mark.parametrize(("schedule", "config"), CONFIG_CASES, ids=CONFIG_IDS)
def test_get_config_keys_and_values(schedule, config):
    assert schedule.get_config() == config
    assert list(schedule.get_config()) == list(config)


DEFAULT_CASES = [
    (ExponentialDecay(0.1, 5, 0.5), {"staircase": False, "name": "ExponentialDecay"}),
    (PiecewiseConstantDecay([1], [0.1, 0.2]), {"name": "PiecewiseConstant"}),
    (
        PolynomialDecay(0.1, 5),
        {"end_learning_rate": 0.0001, "power": 1.0, "cycle": False, "name": "PolynomialDecay"},
    ),
    (InverseTimeDecay(0.1, 5, 0.5), {"staircase": False, "name": "InverseTimeDecay"}),
    (
        CosineDecay(0.1, 5),
        {"alpha": 0.0, "name": "CosineDecay", "warmup_target": None, "warmup_steps": 0},
    ),
    (CosineDecayRestarts(0.1, 5), {"t_mul": 2.0, "m_mul": 1.0, "alpha": 0.0, "name": "SGDRDecay"}),
]


@pytest.mark.parametrize(
    ("schedule", "defaults"), DEFAULT_CASES, ids=[type(s).__name__ for s, _ in DEFAULT_CASES]
)
def test_keras_defaults(schedule, defaults):
    config = schedule.get_config()
    assert {key: config[key] for key in defaults} == defaults


def _assert_rebuilt(rebuilt, schedule, config):
    # `rebuilt`, a copy of `schedule` through its config or pickle, is the same schedule.
    assert type(rebuilt) is type(schedule)
    assert rebuilt.get_config() == config
    for step in (0, 1, 3, 9, 10, 11, 25, 100):
        assert rebuilt(step) == schedule(step)


@pytest.mark.parametrize(("schedule", "config"), CONFIG_CASES, ids=CONFIG_IDS)
def test_from_config_round_trip(schedule, config):
    rebuilt = type(schedule).from_config(schedule.get_config())
    _assert_rebuilt(rebuilt, schedule, config)


@pytest.mark.parametrize(("schedule", "config"), CONFIG_CASES, ids=CONFIG_IDS)
def test_serialize_format(schedule, config):
    serialized = schedules.serialize(schedule)
    assert serialized == {
        "module": "keras.optimizers.schedules",
        "class_name": type(schedule).__name__,
        "config": config,
        "registered_name": None,
    }
    assert json.loads(json.dumps(serialized)) == serialized


@pytest.mark.parametrize(("schedule", "config"), CONFIG_CASES, ids=CONFIG_IDS)
def test_deserialize_round_trip(schedule, config):
    rebuilt = schedules.deserialize(schedules.serialize(schedule))
    _assert_rebuilt(rebuilt, schedule, config)


@pytest.mark.parametrize(("schedule", "config"), CONFIG_CASES, ids=CONFIG_IDS)
def test_pickle_and_copy_round_trip(schedule, config):
    schedule(3)  # a schedule copied after use behaves as the original
    for rebuilt in (pickle.loads(pickle.dumps(schedule)), copy.deepcopy(schedule)):
        _assert_rebuilt(rebuilt, schedule, config)


def test_deserialize_keras_written_config():
    # The docstring example of keras.optimizers.schedules.deserialize: no module, name None.
    schedule = schedules.deserialize(
        {
            "class_name": "PolynomialDecay",
            "config": {
                "cycle": False,
                "decay_steps": 10000,
                "end_learning_rate": 0.01,
                "initial_learning_rate": 0.1,
                "name": None,
                "power": 0.5,
            },
        }
    )
    assert isinstance(schedule, PolynomialDecay)
    assert schedule(10000) == pytest.approx(0.01, rel=1e-6)


def test_deserialize_class_name_is_case_sensitive():
    config = schedules.serialize(ExponentialDecay(0.1, 10, 0.5))
    config["class_name"] = "exponentialdecay"
    with pytest.raises(ValueError, match="Unknown decay: 'exponentialdecay'"):
        schedules.deserialize(config)


def test_deserialize_needs_a_class_name():
    with pytest.raises(ValueError, match="Unknown `config` as a `dict`"):
        schedules.deserialize({"config": {}})
    with pytest.raises(TypeError, match="Could not parse config"):
        schedules.deserialize(3)
    assert schedules.deserialize(None) is None


class HalvingSchedule(LearningRateSchedule):
    """A user schedule: ``initial_learning_rate / 2 ** step``."""

    def __init__(self, initial_learning_rate):
        self.initial_learning_rate = initial_learning_rate

    def __call__(self, step):
        return self.initial_learning_rate / 2**step

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate}


def test_custom_schedule_round_trip():
    serialized = schedules.serialize(HalvingSchedule(0.5))
    assert serialized == {
        "module": __name__,
        "class_name": "HalvingSchedule",
        "config": {"initial_learning_rate": 0.5},
        "registered_name": "HalvingSchedule",
    }
    with pytest.raises(ValueError, match="Unknown decay: 'HalvingSchedule'"):
        schedules.deserialize(serialized)
    rebuilt = schedules.deserialize(serialized, custom_objects={"HalvingSchedule": HalvingSchedule})
    assert isinstance(rebuilt, HalvingSchedule)
    assert rebuilt(3) == 0.0625


def test_serialize_turns_numpy_scalars_into_python_numbers():
    serialized = schedules.serialize(ExponentialDecay(np.float64(0.1), np.int64(10), 0.5))
    config = serialized["config"]
    assert type(config["initial_learning_rate"]) is float
    assert type(config["decay_steps"]) is int
    assert json.loads(json.dumps(serialized)) == serialized


def test_assigned_attributes_change_the_next_value():
    # Keras reads the hyperparameters on every call.
    schedule = ExponentialDecay(0.1, 10, 0.5)
    assert schedule(10) == pytest.approx(0.05, rel=1e-7)
    schedule.initial_learning_rate = 0.2
    assert schedule(10) == pytest.approx(0.1, rel=1e-7)
    schedule.decay_rate = 0.25
    assert schedule(10) == pytest.approx(0.05, rel=1e-7)
    restarts = CosineDecayRestarts(0.1, 10)
    assert restarts(15) == pytest.approx(ref_restarts(15, 0.1, 10), rel=1e-6)
    restarts._t_mul = 1.0
    assert restarts(15) == pytest.approx(ref_restarts(15, 0.1, 10, t_mul=1.0), rel=1e-6)


def test_public_names():
    decays = ["CosineDecay", "CosineDecayRestarts", "ExponentialDecay", "InverseTimeDecay"]
    others = ["LearningRateSchedule", "PiecewiseConstantDecay", "PolynomialDecay"]
    assert sorted(schedules.__all__) == sorted(decays + others + ["deserialize", "serialize"])
    for name in schedules.__all__:
        assert getattr(schedules, name).__doc__
