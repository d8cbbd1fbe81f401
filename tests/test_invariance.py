"""Results do not depend on the thread count or the SIMD level, bit for bit.

The element-wise rules are independent per element, and the norms (clipnorm, global_clipnorm,
Lamb's trust ratio) and Adafactor's row and column sums are reduced with a fixed chunking and a
fixed combination order, so the same inputs must give the same bits whatever the engine's
configuration; Muon's matrix products are blocked the same way for any thread count. The
tensors are large enough (about 3.3M elements in one call, plus small ones) for the work to be
split across the thread pool, and the 520 x 600 matrix takes Newton-Schulz's symmetric products.
"""

import functools

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _native
from optimizers_under_test import build, cases

SHAPES = [(1_500_000,), (1_000_003,), (500_001,), (17,), (1,), (), (300, 7), (520, 600)]
STEPS = 3

# Each record's `invariance` arguments: the reductions and code paths of its rule.
CASE_PARAMS = cases("invariance", ids=lambda case, kw: case.name + repr(sorted(kw.items())))
DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


@pytest.fixture(autouse=True)
def restore_engine():
    """Put the thread count and the SIMD level back after each test."""
    threads = fo.get_num_threads()
    level = _native.simd_level()
    yield
    fo.set_num_threads(threads)
    _native.set_simd_level(level)


@functools.lru_cache(maxsize=None)
def _inputs(dtype):
    rng = np.random.default_rng(20240601)
    params = [np.asarray(rng.standard_normal(s), dtype) for s in SHAPES]
    grads = [[np.asarray(rng.standard_normal(s), dtype) for s in SHAPES] for _ in range(STEPS)]
    for g in grads:
        for a in g:
            a.flags.writeable = False
    return params, grads


def _run(case, kwargs, dtype):
    params0, grads = _inputs(dtype)
    params = [p.copy() for p in params0]
    opt = build(case, kwargs)
    for g in grads:
        opt.apply_gradients(zip(g, params))
    return params + [np.asarray(v) for v in opt.variables]


def _assert_bitwise_equal(results, baseline, what):
    assert len(results) == len(baseline)
    for i, (a, b) in enumerate(zip(results, baseline)):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.tobytes() != b.tobytes():
            differing = int(np.count_nonzero(a.view(np.uint8) != b.view(np.uint8)))
            pytest.fail(f"{what}: array {i} {a.shape} differs in {differing} bytes")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case,kwargs", CASE_PARAMS)
def test_thread_count_does_not_change_results(case, kwargs, dtype):
    fo.set_num_threads(1)
    assert fo.get_num_threads() == 1
    baseline = _run(case, kwargs, dtype)
    for threads in (2, 3):
        fo.set_num_threads(threads)
        assert fo.get_num_threads() == threads
        _assert_bitwise_equal(_run(case, kwargs, dtype), baseline, f"{threads} threads vs 1")


def _available_levels():
    levels = ["baseline"]
    for level in ("avx2", "avx512"):
        try:
            _native.set_simd_level(level)
        except ValueError:
            continue
        levels.append(level)
    _native.set_simd_level("auto")
    return levels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case,kwargs", CASE_PARAMS)
def test_simd_level_does_not_change_results(case, kwargs, dtype):
    fo.set_num_threads(2)
    _native.set_simd_level("auto")
    auto = _native.simd_level()
    baseline = _run(case, kwargs, dtype)
    for level in _available_levels():
        _native.set_simd_level(level)
        assert _native.simd_level() == level
        _assert_bitwise_equal(_run(case, kwargs, dtype), baseline, f"{level} vs auto ({auto})")


def test_auto_picks_the_widest_level_the_cpu_has():
    levels = _available_levels()
    _native.set_simd_level("auto")
    assert _native.simd_level() == levels[-1]


def test_unknown_simd_level_is_rejected():
    level = _native.simd_level()
    with pytest.raises(ValueError):
        _native.set_simd_level("sse9")
    assert _native.simd_level() == level
