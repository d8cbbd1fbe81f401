"""The same bits on every CPU, whatever kernels NumPy picks for it.

NumPy chooses its ufunc kernels by CPU when it is imported: on an AVX-512 machine float32
`power`, `log`, `exp` and `cos` (0-d arrays and NumPy scalars included) run SIMD approximations
whose last bit differs from what an AVX2 machine computes. ferroptim promises the same results
on every CPU, so no such value may reach a parameter, a variable or a schedule's value. The
cross-dispatch test runs a few hundred steps of every registered optimizer and every schedule in
two child processes, one with NumPy's default dispatch and one with its AVX-512 targets disabled
through NPY_DISABLE_CPU_FEATURES (what an AVX2 machine runs), and compares every bit. Where NumPy
has no AVX-512 target on the CPU both children run the same kernels and agree trivially; the
test runs anyway.

First, the correctly rounded helpers of tests/reference.py, which the numerical tests use instead
of NumPy's ufuncs, are checked on values derived by hand.

Run as a script, this file prints the names to give NPY_DISABLE_CPU_FEATURES on this machine
(nothing when there are none); .ci/run uses it for its second pass of the numerical tests.
"""

import math
import os
import pickle
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

import ferroptim as fo
import optimizers_under_test as under_test
import reference as ref

F32, F64 = np.float32, np.float64

# --- the reference's correctly rounded helpers --------------------------------------------------


def _bits(x):
    x = np.asarray(x)
    return x.view(np.uint32 if x.dtype == F32 else np.uint64)[()]


def _same(got, want, dtype):
    """Bitwise equality of a NumPy scalar of `dtype` with `want` rounded to dtype (NaN: any)."""
    assert type(got) is dtype, type(got)
    want = dtype(want)
    return bool(np.isnan(got)) if np.isnan(want) else _bits(got) == _bits(want)


def _ulps(a, b, dtype):
    return abs(int(_bits(dtype(a)).astype(np.int64)) - int(_bits(dtype(b)).astype(np.int64)))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_cr_pow_exact_cases(dtype):
    for x, y, want in [
        (0.5, 3, 0.125),
        (2.0, 10, 1024.0),
        (-2.0, 3, -8.0),
        (-2.0, 2, 4.0),
        (4.0, 0.5, 2.0),
        (0.25, -0.5, 2.0),
        (0.96, 1, dtype(0.96)),
        (7.0, 0, 1.0),
    ]:
        assert _same(ref.cr_pow(dtype(x), dtype(y), dtype), want, dtype), (x, y)


def test_cr_pow_rounds_exact_midpoints_half_to_even():
    # Each exact power lies halfway between two values of the dtype; the one whose significand
    # is even wins, worked out by hand.
    k = 2**18 - 1  # k**3 = 18014192351838207: odd, 54 bits, where float64's spacing is 2
    cases = [  # (dtype, x, y, the exact power, the even neighbour)
        # 1 + 2**-11 + 2**-24: half an ulp (2**-23) above 1 + 2**-11, whose last bit is 0.
        (F32, 1 + 2.0**-12, 2, Fraction(1 + 2.0**-12) ** 2, 1 + 2.0**-11),
        # 1 + 9 * 2**-8 + 27 * 2**-16 + 13.5 * 2**-23: up to 14 * 2**-23.
        (
            F32,
            1 + 3 * 2.0**-8,
            3,
            Fraction(1 + 3 * 2.0**-8) ** 3,
            1 + 9 * 2.0**-8 + 27 * 2.0**-16 + 14 * 2.0**-23,
        ),
        # 66049 = 257**2 and 67081 = 259**2: x**1.5 is 257**3 = 16974593 (down to 2 * 8487296)
        # and 259**3 = 17373979 (up to 2 * 8686990), float32's spacing being 2 there.
        (F32, 66049.0, 1.5, Fraction(257**3), 16974592.0),
        (F32, 67081.0, 1.5, Fraction(259**3), 17373980.0),
        (F64, float(k**2), 1.5, Fraction(k**3), 18014192351838208.0),
        # Half the smallest subnormal: 2**-150 (float32), 2**-1075 (float64), down to 0.
        (F32, 2.0**-75, 2, Fraction(2) ** -150, 0.0),
        (F64, 0.5, 1075, Fraction(2) ** -1075, 0.0),
    ]
    for dtype, x, y, exact, want in cases:
        other = np.nextafter(dtype(want), dtype(math.inf if exact > want else -math.inf))
        assert exact == (Fraction(want) + Fraction(float(other))) / 2, (x, y)  # a midpoint
        assert _bits(dtype(want)) % 2 == 0 and _bits(other) % 2 == 1, (x, y)
        got = ref.cr_pow(dtype(x), dtype(y), dtype)
        assert _same(got, want, dtype), (x, y, got, want)


def test_cr_pow_subnormals_and_overflow():
    tiny32 = 2.0**-149  # float32's smallest subnormal
    assert _same(ref.cr_pow(2.0, -149, F32), tiny32, F32)
    assert _same(ref.cr_pow(3 * 2.0**-76, 2, F32), tiny32, F32)  # 1.125 * 2**-149
    assert _same(ref.cr_pow(3 * 2.0**-75, 2, F32), 4 * tiny32, F32)  # 4.5 * 2**-149, tie: 4
    assert _same(ref.cr_pow(0.5, 1074, F64), 5e-324, F64)
    assert _same(ref.cr_pow(2.0, 127, F32), 2.0**127, F32)
    assert _same(ref.cr_pow(2.0, 128, F32), math.inf, F32)
    assert _same(ref.cr_pow(10.0, 309, F64), math.inf, F64)
    assert _same(ref.cr_pow(-10.0, 309, F64), -math.inf, F64)
    assert _same(ref.cr_pow(0.9, 2.0**63, F32), 0.0, F32)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_cr_pow_special_operands_follow_c99(dtype):
    inf, nan = math.inf, math.nan
    cases = [
        (nan, 0.0, 1.0),
        (1.0, nan, 1.0),
        (nan, 1.0, nan),
        (2.0, nan, nan),
        (0.0, -1.0, inf),
        (-0.0, -1.0, -inf),
        (-0.0, -2.0, inf),
        (0.0, 0.5, 0.0),
        (-0.0, 3.0, -0.0),
        (-0.0, 2.0, 0.0),
        (-0.0, 0.5, 0.0),
        (-8.0, 1 / 3, nan),
        (-1.0, inf, 1.0),
        (-1.0, -inf, 1.0),
        (0.5, inf, 0.0),
        (0.5, -inf, inf),
        (-2.0, inf, inf),
        (2.0, -inf, 0.0),
        (inf, -1.0, 0.0),
        (inf, 0.5, inf),
        (-inf, 3.0, -inf),
        (-inf, 2.0, inf),
        (-inf, -3.0, -0.0),
        (-inf, -2.0, 0.0),
    ]
    for x, y, want in cases:
        assert _same(ref.cr_pow(dtype(x), dtype(y), dtype), want, dtype), (x, y)


def test_cr_pow_agrees_with_the_c_library_within_an_ulp():
    # The C library's pow is within an ulp of the truth (glibc's within 0.52): so must the
    # correctly rounded value be, on the bias corrections' arguments.
    rng = np.random.default_rng(3)
    for _ in range(300):
        beta, t = float(rng.uniform(0.5, 1.0)), float(rng.integers(1, 100_000))
        assert _ulps(ref.cr_pow(beta, t, F64), math.pow(beta, t), F64) <= 1, (beta, t)
        beta32, t32 = float(F32(beta)), float(F32(t))
        # float64's pow rounded to float32 is within an ulp of float32's correct rounding.
        assert _ulps(ref.cr_pow(beta32, t32, F32), math.pow(beta32, t32), F32) <= 1, (beta, t)
        y = float(rng.uniform(-3, 3))
        assert _ulps(ref.cr_pow(beta * 4, y, F64), math.pow(beta * 4, y), F64) <= 1, (beta, y)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_cr_log_and_cr_cos(dtype):
    assert _same(ref.cr_log(1.0, dtype), 0.0, dtype)
    assert _same(ref.cr_log(0.0, dtype), -math.inf, dtype)
    assert _same(ref.cr_log(-1.0, dtype), math.nan, dtype)
    assert _same(ref.cr_log(math.inf, dtype), math.inf, dtype)
    assert _same(ref.cr_cos(0.0, dtype), 1.0, dtype)
    assert _same(ref.cr_cos(-0.0, dtype), 1.0, dtype)
    assert _same(ref.cr_cos(math.inf, dtype), math.nan, dtype)
    assert _same(ref.cr_cos(dtype(math.pi), dtype), -1.0, dtype)  # -1 + (pi - x)**2 / 2
    rng = np.random.default_rng(4)
    for x in np.concatenate([rng.uniform(0, 3, 50), 10.0 ** rng.uniform(-20, 20, 50)]):
        x = float(dtype(x))
        assert _ulps(ref.cr_log(x, dtype), math.log(x), dtype) <= 1, x
    for x in rng.uniform(-100, 100, 100):
        x = float(dtype(x))
        assert _ulps(ref.cr_cos(x, dtype), math.cos(x), dtype) <= 1, x


def test_cr_cos_reduces_large_arguments_exactly():
    # cos(fl(pi / 2)) = sin(pi / 2 - fl(pi / 2)) = 6.123233995736766e-17 (pi / 2 - fl(pi / 2));
    # cos(10**22) = 0.52321478539513894549... (the classic test of argument reduction).
    assert _same(ref.cr_cos(math.pi / 2, F64), 6.123233995736766e-17, F64)
    assert _same(ref.cr_cos(1e22, F64), 0.5232147853951389454975944733847094921409, F64)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_ftrl_power_of_arrays_is_cr_pow_elementwise(dtype):
    # The reference's element-wise power decides most elements from a wider NumPy power; every
    # element must still be exactly cr_pow's.
    rng = np.random.default_rng(5)
    x = (rng.uniform(0, 1, 1500) * 10.0 ** rng.uniform(-8, 8, 1500)).astype(dtype)
    x[:4] = [0.0, np.inf, np.nan, 1.0]
    for p in (0.3, 0.5, 1.7):
        got = ref._power(x.reshape(30, 50), p).ravel()
        for a, g in zip(x, got):
            assert _same(g, ref.cr_pow(a, p, dtype), dtype), (a, p)


# --- NumPy's dispatch on and off ----------------------------------------------------------------

# NumPy's names of the AVX-512 family and above: AVX512F ... AVX512_SPR, and X86_V4 since
# NumPy 2.4 groups them; AVX10 for CPUs after those.
_AVX512_PREFIXES = ("AVX512", "X86_V4", "AVX10")


def avx512_dispatch_targets():
    """NumPy's dispatch targets of the AVX-512 family that this CPU has: what
    NPY_DISABLE_CPU_FEATURES must name for NumPy to run an AVX2 machine's kernels.

    Only dispatch targets may be named (NumPy refuses to start when a baseline feature is named,
    and ignores an unknown name with a warning). Read in a process started without
    NPY_DISABLE_CPU_FEATURES: the features it disables read as absent.
    """
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as umath
    return [
        name
        for name in umath.__cpu_dispatch__
        if name.startswith(_AVX512_PREFIXES) and umath.__cpu_features__.get(name)
    ]


STEPS = 250
# Every variable is compared after these steps, not only at the end: an early difference may
# fade (Nadam's u_product underflows to 0 within a few hundred steps).
CHECKPOINTS = (1, 2, 3, 5, 10, 30, 100, STEPS)
# (name, shape): a 0-d, two vectors and a matrix that Adafactor factors and Muon orthogonalizes.
SHAPES = [("a", ()), ("b", (7,)), ("c", (33,)), ("d", (6, 5))]


def _schedules(dtype):
    """One of each schedule, computing in `dtype`: Python floats give float32, as in Keras;
    float64 needs NumPy float64 rates (or values)."""
    S = fo.optimizers.schedules
    rate = float if dtype is F32 else dtype
    lr = rate(0.01)
    return [
        S.ExponentialDecay(lr, decay_steps=20, decay_rate=0.9),
        S.ExponentialDecay(lr, decay_steps=20, decay_rate=0.9, staircase=True),
        S.PiecewiseConstantDecay([50, 120], [lr, rate(0.005), rate(0.001)]),
        S.PolynomialDecay(lr, decay_steps=100, end_learning_rate=1e-4, power=0.5),
        S.PolynomialDecay(lr, decay_steps=70, end_learning_rate=1e-4, power=0.5, cycle=True),
        S.InverseTimeDecay(lr, decay_steps=15, decay_rate=0.5),
        S.CosineDecay(lr, decay_steps=200, alpha=0.1),
        S.CosineDecay(rate(0.001), decay_steps=150, warmup_target=0.01, warmup_steps=50),
        S.CosineDecayRestarts(lr, first_decay_steps=30, t_mul=2.0, m_mul=0.8),
        # Periods shrink by 0.9 and sum to 300 steps: the period index's log nears its pole.
        S.CosineDecayRestarts(lr, first_decay_steps=30, t_mul=0.9, m_mul=0.8, alpha=0.05),
    ]


def _optimizers(dtype):
    """(label, optimizer) for every registered optimizer, with the options that derive a power
    (its record's `cross_dispatch`: Nadam with and without Keras 2's schedule_decay, amsgrad,
    Ftrl's general power); then the wrappers, SGD under each schedule (the parameters' dtype),
    and Adam under one."""
    OPT = fo.optimizers
    cases = [
        (under_test.label(case, kwargs), under_test.build(case, kwargs))
        for case in under_test.OPTIMIZERS
        for kwargs in case.cross_dispatch
    ]
    cases += [
        (
            "LossScaleOptimizer(Nadam)",
            OPT.LossScaleOptimizer(
                OPT.Nadam(schedule_decay=0.004), initial_scale=4.0, dynamic_growth_steps=20
            ),
        ),
        (
            "MultiOptimizer(Adam, Nadam, Adafactor)",
            OPT.MultiOptimizer(
                OPT.OptimizerMap(OPT.Adam(amsgrad=True), {"b": OPT.Nadam(), "d": OPT.Adafactor()})
            ),
        ),
    ]
    for schedule in _schedules(dtype):
        label = type(schedule).__name__ + repr(sorted(schedule.get_config().items()))
        cases.append((f"SGD({label})", OPT.SGD(learning_rate=schedule, momentum=0.9)))
    cases.append(
        ("Adam(CosineDecayRestarts)", OPT.Adam(learning_rate=_schedules(dtype)[-2], amsgrad=True))
    )
    return cases


def run_everything():
    """Every case in float32 and float64: {label: [(variable name, array), ...]}."""
    results = {}
    for dtype in (F32, F64):
        rng = np.random.default_rng(1234)
        # float64 draws cast to the dtype: both children draw the same numbers.
        start = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES}
        grads = [
            {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES}
            for _ in range(STEPS)
        ]
        for label, opt in _optimizers(dtype):
            params = {name: value.copy() for name, value in start.items()}
            state = []
            for step, g in enumerate(grads, start=1):
                opt.apply(g, params)
                if step in CHECKPOINTS:
                    names = getattr(opt, "variable_names", None) or []
                    state += [(f"step {step}: param {k}", v.copy()) for k, v in params.items()]
                    state += [
                        (
                            f"step {step}: " + (names[i] if i < len(names) else f"variables[{i}]"),
                            np.array(v),
                        )
                        for i, v in enumerate(opt.variables)
                    ]
            results[f"{label} {dtype.__name__}"] = state
        for schedule in _schedules(dtype):
            label = type(schedule).__name__ + repr(sorted(schedule.get_config().items()))
            steps = list(range(STEPS)) + [1000, 12345, 10**6]
            values = np.array([schedule(step) for step in steps])
            results[f"{label} {dtype.__name__}"] = [
                ("values at steps 0.. and 1000, 12345, 1e6", values)
            ]
    return results


def _child(out_path, disable):
    """Run `run_everything` in a new interpreter with NPY_DISABLE_CPU_FEATURES=`disable` (None:
    unset) and return what it pickled: its AVX-512 targets still enabled, and the results."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES")
    }
    if disable:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(disable)
    done = subprocess.run(
        [sys.executable, __file__, "--run", str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (
        f"child with NPY_DISABLE_CPU_FEATURES={disable} failed:\n{done.stdout}\n{done.stderr}"
    )
    with open(out_path, "rb") as f:
        return pickle.load(f)


def _first_difference(a, b):
    """How two arrays of one shape and dtype differ, in words."""
    unsigned = np.dtype(f"u{a.itemsize}")
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    differ = np.flatnonzero(flat_a.view(unsigned) != flat_b.view(unsigned))
    i = int(differ[0])
    return (
        f"{differ.size} of {flat_a.size} elements differ, the first at flat index {i}: "
        f"{flat_a[i]!r} (default dispatch) vs {flat_b[i]!r} (AVX-512 off)"
    )


def test_every_variable_is_bitwise_equal_with_numpy_avx512_dispatch_off(tmp_path):
    default = _child(tmp_path / "default.pkl", None)
    targets = default["avx512"]  # what NumPy dispatches to on this CPU, read with nothing off
    off = _child(tmp_path / "avx512_off.pkl", targets)
    assert off["avx512"] == [], (
        f"NumPy still dispatches to {off['avx512']} with NPY_DISABLE_CPU_FEATURES={targets}"
    )
    assert list(off["results"]) == list(default["results"])
    failures = []
    for label, state in default["results"].items():
        other = off["results"][label]
        assert [name for name, _ in other] == [name for name, _ in state], label
        for (name, a), (_, b) in zip(state, other):
            assert a.dtype == b.dtype and a.shape == b.shape, (label, name)
            if a.tobytes() != b.tobytes():
                failures.append(f"{label}: {name} {a.shape}: {_first_difference(a, b)}")
    assert not failures, (
        f"results differ with NumPy's {' '.join(targets)} kernels disabled:\n" + "\n".join(failures)
    )


def test_the_cross_dispatch_run_covers_every_optimizer_and_schedule():
    # A new optimizer or schedule fails this until it is added to the cases above.
    OPT = fo.optimizers
    public = [getattr(OPT, name) for name in OPT.__all__]
    registered = {cls for cls in public if isinstance(cls, type) and issubclass(cls, OPT.Optimizer)}
    covered = {type(opt) for _, opt in _optimizers(F32)}
    assert registered - {OPT.Optimizer} <= covered, (
        f"not run: {registered - covered - {OPT.Optimizer}}"
    )
    schedules = {
        getattr(OPT.schedules, name)
        for name in OPT.schedules.__all__
        if name not in ("LearningRateSchedule", "serialize", "deserialize")
    }
    assert schedules == {type(s) for s in _schedules(F32)}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run"]:
        with open(sys.argv[2], "wb") as out:
            pickle.dump({"avx512": avx512_dispatch_targets(), "results": run_everything()}, out)
    else:
        print(" ".join(avx512_dispatch_targets()))
