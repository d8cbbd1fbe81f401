"""ferroptim against the independent NumPy reference (tests/reference.py), table-driven.

The records of optimizers_under_test.py drive every generic test below (each optimizer's
`numerics` arguments), so a new optimizer or a new option is covered by one line there. Each test
runs several steps of random gradients (negative values included) through ferroptim and through
the reference and compares parameters after every step and every optimizer variable at the end:

- float32 parameters against the reference's float32 emulation of Keras: a few float32 ulps;
- float64 parameters against the reference run in float64: relative 1e-12;

except for the optimizers whose record has a `tolerance`, each with its reason.
"""

import contextlib
import zlib

import numpy as np
import pytest

import ferroptim as fo
import reference as ref
from optimizers_under_test import cases, fo_kwargs, reference_kwargs


def _budget(case):
    """The `ref.assert_close` keyword arguments for `case`'s comparisons (its tolerance)."""
    return dict(case.tolerance)


CASE_PARAMS = cases("numerics")
DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
STEPS = 6


def make_pair(case, kwargs):
    """A ferroptim optimizer and the reference for the same constructor arguments."""
    opt = case.cls(**fo_kwargs(kwargs))
    return opt, ref.make_reference(case.name, reference_kwargs(kwargs))


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _random(rng, shape, dtype):
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def _grad_like(rng, p, dtype=None):
    return _random(rng, p.shape, dtype or p.dtype)


def check_variables(opt, reference, err_msg="", budget=None):
    """Every optimizer variable, in Keras's order, against the reference's (`budget`: the
    record's `tolerance`)."""
    actual = [np.asarray(v) for v in opt.variables]
    expected = reference.variables
    assert len(actual) == len(expected), (
        f"{err_msg}: {len(actual)} variables, Keras order has {len(expected)}: "
        f"{[a.shape for a in actual]} vs {[e.shape for e in expected]}"
    )
    assert int(actual[0]) == int(expected[0]), f"{err_msg}: iteration variable"
    for i, (a, e) in enumerate(zip(actual[1:], expected[1:]), start=1):
        ref.assert_close(a, e, **(budget or {}), err_msg=f"{err_msg}: variables[{i}]")
    assert int(opt.iterations) == reference.iterations, f"{err_msg}: iterations"


# --- layouts: how the parameters and gradients of one call are laid out in memory -------------


class Layout:
    """Parameters and a gradient factory for one memory layout.

    params: the arrays given to ferroptim (possibly views into `bases`).
    bases: (array, mask of the elements no parameter covers): those must never change.
    grads(rng): one step's gradients in the form the layout gives them.
    """

    def __init__(self, params, grads, bases=()):
        self.params = params
        self.grads = grads
        self.bases = [(base, mask, base[mask].copy()) for base, mask in bases]

    def check_untouched(self, err_msg):
        for base, mask, original in self.bases:
            np.testing.assert_array_equal(base[mask], original, err_msg=err_msg)


def _contiguous(shapes, order="C"):
    def make(dtype, rng):
        params = [np.asarray(_random(rng, s, dtype), order=order) for s in shapes]
        return Layout(params, lambda r: [_grad_like(r, p) for p in params])

    return make


def _strided_views(dtype, rng):
    big = _random(rng, (8, 34), dtype)
    wide = _random(rng, (10, 6), dtype)
    line = _random(rng, (40,), dtype)
    params = [big[:, ::2], wide.T, line[::-3]]
    big_mask = np.ones(big.shape, bool)
    big_mask[:, ::2] = False
    line_mask = np.ones(line.shape, bool)
    line_mask[::-3] = False
    return Layout(
        params, lambda r: [_grad_like(r, p) for p in params], [(big, big_mask), (line, line_mask)]
    )


def _strided_grads(dtype, rng):
    params = [_random(rng, s, dtype) for s in [(33,), (4, 5), ()]]

    def grads(r):
        return [_random(r, p.shape + (3,), dtype)[..., 1] for p in params]

    return Layout(params, grads)


def _other_dtype_grads(dtype, rng):
    params = [_random(rng, s, dtype) for s in [(65,), (3, 3)]]
    other = np.float64 if dtype == np.float32 else np.float32
    return Layout(params, lambda r: [_grad_like(r, p, other) for p in params])


def _other_dtype_strided_grads(dtype, rng):
    # Read with a cast through every walk: strided, transposed, and Fortran order beside a
    # Fortran parameter (memory order).
    other = np.float64 if dtype == np.float32 else np.float32
    params = [
        _random(rng, (33,), dtype),
        _random(rng, (4, 5), dtype),
        np.asfortranarray(_random(rng, (6, 7), dtype)),
    ]

    def grads(r):
        return [
            _random(r, (33, 3), other)[:, 1],
            _random(r, (5, 4), other).T,
            np.asfortranarray(_random(r, (6, 7), other)),
        ]

    return Layout(params, grads)


def _list_grads(dtype, rng):
    params = [_random(rng, s, dtype) for s in [(7,), (2, 3), ()]]
    return Layout(params, lambda r: [_grad_like(r, p, np.float64).tolist() for p in params])


LAYOUTS = {
    "0d": _contiguous([()]),
    "1": _contiguous([(1,)]),
    **{str(n): _contiguous([(n,)]) for n in (7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 1023, 1025)},
    "mixed_sizes": _contiguous([(3, 4), (17,), (), (1025,), (2, 3, 5), (64,), (1,)]),
    "2d": _contiguous([(13, 7)]),
    "fortran": _contiguous([(9, 11), (5,)], order="F"),
    "strided_params": _strided_views,
    "strided_grads": _strided_grads,
    "other_dtype_grads": _other_dtype_grads,
    "other_dtype_strided_grads": _other_dtype_strided_grads,
    "list_grads": _list_grads,
}


# --- the generic tests --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case,kwargs", CASE_PARAMS)
def test_matches_reference(case, kwargs, dtype, layout):
    rng = _rng(case.name, kwargs, dtype, layout)
    setup = LAYOUTS[layout](dtype, rng)
    opt, reference = make_pair(case, kwargs)
    reference.build([p.copy() for p in setup.params])
    for step in range(1, STEPS + 1):
        grads = setup.grads(rng)
        grads_before = [np.array(g, copy=True) for g in grads]
        opt.apply_gradients(zip(grads, setup.params))
        reference.apply(grads)
        for i, (p, e) in enumerate(zip(setup.params, reference.params)):
            ref.assert_close(p, e, **_budget(case), err_msg=f"step {step}, param {i} {p.shape}")
        for g, before in zip(grads, grads_before):
            np.testing.assert_array_equal(g, before, err_msg="a gradient was modified")
        setup.check_untouched(f"step {step}: memory outside the parameter views changed")
    check_variables(opt, reference, budget=_budget(case))


def _steps_agree(case, kwargs, rng, params, edit_grads=None, stepping=contextlib.nullcontext):
    """STEPS steps of the optimizer and of its reference on the same random gradients, which
    `edit_grads(step, grads)` may change first; the optimizer's steps run inside `stepping()`.
    Every parameter is checked against the reference after each step, the variables at the end.
    """
    opt, reference = make_pair(case, kwargs)
    reference.build([p.copy() for p in params])
    for step in range(1, STEPS + 1):
        grads = [_grad_like(rng, p) for p in params]
        if edit_grads is not None:
            edit_grads(step, grads)
        with stepping():
            opt.apply_gradients(zip(grads, params))
        reference.apply(grads)
        for i, (p, e) in enumerate(zip(params, reference.params)):
            ref.assert_close(p, e, **_budget(case), err_msg=f"step {step}, param {i} {p.dtype}")
    check_variables(opt, reference, budget=_budget(case))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case,kwargs", CASE_PARAMS)
def test_non_finite_gradients_propagate(case, kwargs, dtype):
    # NaN and inf flow through as in Keras: no clamping; clipvalue keeps NaN; a NaN norm makes the
    # clipped tensor (clipnorm) or every tensor (global_clipnorm) NaN.
    rng = _rng("nonfinite", case.name, kwargs, dtype)
    params = [_random(rng, s, dtype) for s in [(5,), (17,), (3, 3)]]

    def edit_grads(step, grads):
        if step == 2:
            grads[0][1] = np.nan
        if step == 3:
            grads[1][2] = np.inf
            grads[2][0, 0] = -np.inf

    _steps_agree(case, kwargs, rng, params, edit_grads, lambda: np.errstate(all="ignore"))


@pytest.mark.parametrize("case,kwargs", CASE_PARAMS)
def test_mixed_float32_and_float64_parameters(case, kwargs):
    rng = _rng("mixed", case.name, kwargs)
    specs = [
        ((5,), np.float32),
        ((7,), np.float64),
        ((3, 3), np.float32),
        ((), np.float64),
        ((33,), np.float32),
    ]
    _steps_agree(case, kwargs, rng, [_random(rng, s, d) for s, d in specs])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case,kwargs", CASE_PARAMS)
def test_missing_gradients(case, kwargs, dtype):
    # A None gradient: Keras warns and leaves that variable out of the step; the EMA still
    # averages every built variable.
    rng = _rng("none", case.name, kwargs, dtype)
    params = [_random(rng, s, dtype) for s in [(6,), (4, 4), (9,)]]

    def edit_grads(step, grads):
        grads[1] = None
        if step % 2 == 0:
            grads[2] = None

    def warns():
        return pytest.warns(UserWarning, match="Gradients do not exist for variables")

    _steps_agree(case, kwargs, rng, params, edit_grads, warns)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case,kwargs", CASE_PARAMS)
def test_dict_parameters_with_weight_decay_exclusion(case, kwargs, dtype):
    rng = _rng("dict", case.name, kwargs, dtype)
    shapes = {"dense/kernel": (4, 3), "dense/bias": (3,), "out/kernel": (3, 2), "out/bias": (2,)}
    params = {k: _random(rng, s, dtype) for k, s in shapes.items()}
    opt, reference = make_pair(case, kwargs)
    opt.exclude_from_weight_decay(var_names=["bias"])
    reference.exclude_from_weight_decay(var_names=["bias"])
    reference.build([p.copy() for p in params.values()], names=list(params))
    for step in range(1, STEPS + 1):
        grads = {k: _grad_like(rng, p) for k, p in params.items()}
        opt.apply(grads, params)
        reference.apply(list(grads.values()))
        for (k, p), e in zip(params.items(), reference.params):
            ref.assert_close(p, e, **_budget(case), err_msg=f"step {step}, {k}")
    check_variables(opt, reference, budget=_budget(case))


@pytest.mark.parametrize("case,kwargs", CASE_PARAMS)
def test_build_then_apply_without_variables(case, kwargs):
    rng = _rng("build", case.name, kwargs)
    params = [_random(rng, s, np.float32) for s in [(10,), (2, 5)]]
    opt, reference = make_pair(case, kwargs)
    opt.build(params)
    reference.build([p.copy() for p in params])
    check_variables(opt, reference, "after build", _budget(case))
    for step in range(1, STEPS + 1):
        grads = [_grad_like(rng, p) for p in params]
        opt.apply(grads)
        reference.apply(grads)
        for i, (p, e) in enumerate(zip(params, reference.params)):
            ref.assert_close(p, e, **_budget(case), err_msg=f"step {step}, param {i}")
    check_variables(opt, reference, budget=_budget(case))


# --- specific behaviours ------------------------------------------------------------------------


def test_float_learning_rate_is_float32_for_float64_parameters():
    # docs/keras.md §0.3 rule 2: Keras stores a float lr in a float32 variable.
    w = np.zeros(1, np.float64)
    fo.optimizers.SGD(learning_rate=0.1).apply_gradients([(np.ones(1), w)])
    assert w[0] == -float(np.float32(0.1))


def test_keras2_lr_alias():
    w, w_ref = np.ones(3, np.float32), np.ones(3, np.float32)
    g = np.array([1.0, -2.0, 3.0], np.float32)
    opt = fo.optimizers.Adam(lr=0.01)
    for _ in range(3):
        opt.apply_gradients([(g, w)])
    reference = ref.make_reference("Adam", {"learning_rate": 0.01})
    reference.build([w_ref])
    for _ in range(3):
        reference.apply([g])
    ref.assert_close(w, w_ref)


def test_ema_averages_variables_left_out_of_a_call():
    # Keras averages every built variable after each call, also those given no gradient.
    opt = fo.optimizers.SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.5)
    a, b = np.array([1.0], np.float32), np.array([4.0], np.float32)
    opt.apply_gradients([(np.ones(1, np.float32), a), (np.ones(1, np.float32), b)])
    b[...] = 8.0
    with pytest.warns(UserWarning, match="Gradients do not exist"):
        opt.apply_gradients([(np.ones(1, np.float32), a), (None, b)])
    averages = [np.asarray(v) for v in opt.variables[2:4]]
    np.testing.assert_array_equal(averages[0], [0.5 * 0.0 + 0.5 * -1.0])
    np.testing.assert_array_equal(averages[1], [0.5 * 3.0 + 0.5 * 8.0])


def test_accumulation_only_calls_leave_parameters_bitwise_unchanged():
    opt = fo.optimizers.AdamW(
        learning_rate=0.1, weight_decay=0.5, gradient_accumulation_steps=3, clipnorm=0.1
    )
    w = np.array([1.0, -2.0, 3.0], np.float32)
    before = w.copy()
    for _ in range(2):
        opt.apply_gradients([(np.array([5.0, 6.0, -7.0], np.float32), w)])
        np.testing.assert_array_equal(w, before)
    assert int(opt.iterations) == 0


def test_lion_takes_one_minus_beta_in_the_variables_dtype():
    # Keras casts beta_1 to the variable's dtype first: 1 - float32(0.9) = 0.100000024, not
    # float32(1 - 0.9) = 0.1. With m = 1 and g = -8.999999 (float32), m * beta_1 + g * (1 - beta_1)
    # is -1.2e-7 in Keras's arithmetic and +6e-8 with the other rounding: the sign of the step
    # tells them apart (w moves by +lr in Keras's).
    w = np.zeros(1, np.float32)
    opt = fo.optimizers.Lion(learning_rate=0.5, beta_1=0.9)
    opt.build([w])
    opt.variables[2][...] = 1.0  # the momentum slot
    g = np.array([np.nextafter(np.float32(-9.0), np.float32(0.0))], np.float32)
    opt.apply_gradients([(g, w)])
    np.testing.assert_array_equal(w, [0.5])


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (7, 3), (3, 7), (64, 48), (100, 130)])
def test_newton_schulz_against_the_float64_reference(shape):
    # Muon's orthogonalization alone (tall matrices go through their transpose). float64: the
    # same products in another summation order, 6e-15 of the result's scale seen, budget 1e-12.
    # float32 against the float64 truth: 15 matrix products of float32 rounding, up to 3e-6 of
    # the scale seen (NumPy's own float32 products land as far), budget 1e-5.
    x = _random(_rng("ns", shape), shape, np.float64)
    expected = ref.newton_schulz(x, 5, 3.4445, -4.7750, 2.0315)
    scale = float(np.abs(expected).max())
    opt = fo.optimizers.Muon()
    got64 = opt.zeropower_via_newtonschulz5(x, 5)
    np.testing.assert_allclose(got64, expected, rtol=0, atol=1e-12 * scale)
    got32 = opt.zeropower_via_newtonschulz5(x.astype(np.float32), 5)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, rtol=0, atol=1e-5 * scale)
