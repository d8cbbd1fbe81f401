"""The correctly rounded scalar functions (`_native.pow_f32` and friends, `kernels/crmath.rs`)
against an exact reference (`reference.cr_pow`, `cr_log`, `cr_cos`: decimal arithmetic rounded
by hand), on the arguments a step uses and on the hard ones: exact midpoints, subnormal and
overflowing results, special operands."""

import math

import numpy as np
import pytest

import reference as ref
from ferroptim import _native

F32, F64 = np.float32, np.float64
POW = {F32: _native.pow_f32, F64: _native.pow_f64}
LOG = {F32: _native.log_f32, F64: _native.log_f64}
COS = {F32: _native.cos_f32, F64: _native.cos_f64}


def _bits(x, dtype):
    return np.asarray(x, dtype).view(np.uint32 if dtype is F32 else np.uint64)[()]


def _assert_same(got, want, dtype, what):
    got, want = dtype(got), dtype(want)
    if np.isnan(want):
        assert np.isnan(got), f"{what}: {got!r}, want NaN"
    else:
        assert _bits(got, dtype) == _bits(want, dtype), f"{what}: {got!r}, want {want!r}"


def _step_arguments(rng, dtype):
    """Bias corrections, Nadam's cache and schedule powers: (base, exponent) pairs."""
    pairs = []
    for beta in (0.9, 0.999, 0.95, 0.5, 0.67, 0.85):
        for t in (1, 2, 3, 10, 1000, 12345, 10**6):
            pairs.append((beta, t))
    for t in range(1, 300):
        pairs.append((0.96, float(dtype(t) * dtype(0.004))))
    for _ in range(300):
        pairs.append((float(rng.uniform(0, 1.5)), float(rng.uniform(-40, 400))))
        pairs.append((float(rng.uniform(0.5, 1)), float(rng.integers(1, 5000))))
    return [(float(dtype(b)), float(dtype(e))) for b, e in pairs]


@pytest.mark.parametrize("dtype", [F32, F64])
def test_pow_is_correctly_rounded(dtype):
    rng = np.random.default_rng(8)
    for base, exponent in _step_arguments(rng, dtype):
        want = ref.cr_pow(dtype(base), dtype(exponent), dtype)
        _assert_same(POW[dtype](base, exponent), want, dtype, f"pow({base!r}, {exponent!r})")


@pytest.mark.parametrize("dtype", [F32, F64])
def test_log_and_cos_are_correctly_rounded(dtype):
    rng = np.random.default_rng(9)
    xs = np.concatenate(
        [rng.uniform(0, 2, 300), rng.uniform(0.99, 1.01, 100), 10.0 ** rng.uniform(-30, 30, 100)]
    ).astype(dtype)
    for x in xs:
        _assert_same(LOG[dtype](float(x)), ref.cr_log(x, dtype), dtype, f"log({x!r})")
    # Cosine arguments of the schedules: pi * fraction, fraction in [0, 1], and a few beyond.
    angles = np.concatenate(
        [
            dtype(math.pi) * rng.uniform(0, 1, 300).astype(dtype),
            rng.uniform(0, 100, 100).astype(dtype),
            np.array([dtype(math.pi) / 2, dtype(math.pi)], dtype),
        ]
    )
    for x in angles.astype(dtype):
        _assert_same(COS[dtype](float(x)), ref.cr_cos(x, dtype), dtype, f"cos({x!r})")


def test_exact_midpoints_round_half_to_even():
    # (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 lies halfway between two float32 values.
    assert _native.pow_f32(1 + 2**-12, 2) == 1 + 2**-11
    # 66049^1.5 = 257^3 = 16974593, halfway between 16974592 and 16974594.
    assert _native.pow_f32(66049, 1.5) == 16974592


def test_subnormal_overflow_and_special_results():
    assert _native.pow_f32(0.5, 149) == 2.0**-149
    assert _native.pow_f32(0.5, 150) == 0.0
    assert _native.pow_f64(0.5, 1074) == 5e-324
    assert _native.pow_f32(10.0, 39) == math.inf
    assert _native.pow_f64(-2.0, 3) == -8.0
    assert math.isnan(_native.pow_f64(-2.0, 0.5))
    assert _native.pow_f64(math.nan, 0.0) == 1.0
    assert _native.pow_f64(0.0, -1.0) == math.inf
    assert math.copysign(1, _native.pow_f64(-0.0, 3.0)) == -1
    assert _native.log_f32(0.0) == -math.inf
    assert math.isnan(_native.log_f64(-1.0))
    assert math.isnan(_native.cos_f32(math.inf))


def test_float32_functions_round_their_arguments_first():
    # 0.96 is not a float32: the power is of float32(0.96), as Keras casts the constant.
    assert _native.pow_f32(0.96, 3.0) == _native.pow_f32(float(F32(0.96)), 3.0)
    assert _native.pow_f32(0.96, 3.0) == float(ref.cr_pow(F32(0.96), F32(3), F32))
