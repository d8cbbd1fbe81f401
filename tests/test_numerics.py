"""ferroptim against the independent NumPy reference (tests/reference.py), table-driven.

One list of (optimizer, kwargs) cases drives every generic test below, so a new optimizer or a new
option is covered by adding one line to CASES. Each test runs several steps of random gradients
(negative values included) through ferroptim and through the reference and compares parameters
after every step and every optimizer variable at the end:

- float32 parameters against the reference's float32 emulation of Keras: a few float32 ulps;
- float64 parameters against the reference run in float64: relative 1e-12;

except for the optimizers in TOLERANCES, each with its reason.
"""

import zlib

import numpy as np
import pytest

import ferroptim as fo
import reference as ref


class Schedule:
    """PiecewiseConstantDecay(boundaries=[1, 3], values=[2**-4, 2**-5, 2**-6]).

    Its values are exact in float32, so the test checks which value each step sees (the schedule
    is called with the raw iteration count) without depending on how a schedule rounds.
    """

    boundaries = [1, 3]
    values = [2.0**-4, 2.0**-5, 2.0**-6]

    def to_fo(self):
        return fo.optimizers.schedules.PiecewiseConstantDecay(self.boundaries, self.values)

    def to_reference(self):
        def schedule(step):
            for boundary, value in zip(self.boundaries, self.values):
                if step <= boundary:
                    return value
            return self.values[-1]

        return schedule

    def __repr__(self):
        return "PiecewiseConstantDecay"


class Callable:
    """A learning-rate callable taking no argument (Keras calls it at every read)."""

    value = 2.0**-7

    def to_fo(self):
        return lambda: self.value

    def to_reference(self):
        return lambda: self.value

    def __repr__(self):
        return "callable"


SCHEDULE = Schedule()
CALLABLE = Callable()

# (optimizer class name in fo.optimizers, constructor kwargs)
CASES = [
    ("SGD", {}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.5, "weight_decay": 0.01}),
    ("SGD", {"momentum": 0.9, "global_clipnorm": 2.0}),
    ("SGD", {"learning_rate": 0.1, "clipvalue": 0.5}),
    ("SGD", {"learning_rate": 0.1, "clipnorm": 0.0}),  # Keras: a clip <= 0 is off
    ("SGD", {"momentum": 0.9, "loss_scale_factor": 1000.0}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "gradient_accumulation_steps": 3}),
    ("SGD", {"learning_rate": 0.1, "use_ema": True, "ema_momentum": 0.9}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "decay": 0.1}),
    ("SGD", {"learning_rate": SCHEDULE, "momentum": 0.9}),
    ("Adam", {}),
    ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
    ("Adam", {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5}),
    ("Adam", {"clipnorm": 1.0}),
    ("Adam", {"global_clipnorm": 2.0}),
    ("Adam", {"amsgrad": True, "clipvalue": 0.5}),
    ("Adam", {"clipvalue": -1.0}),
    ("Adam", {"loss_scale_factor": 1000.0, "clipnorm": 1.0}),
    ("Adam", {"gradient_accumulation_steps": 3, "amsgrad": True}),
    ("Adam", {"use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 2}),
    ("Adam", {"decay": 0.1, "weight_decay": 0.05}),
    ("Adam", {"learning_rate": CALLABLE, "weight_decay": 0.02}),
    ("AdamW", {"learning_rate": 0.01}),
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {"gradient_accumulation_steps": 3, "global_clipnorm": 1.0}),
    ("AdamW", {"use_ema": True, "ema_overwrite_frequency": 3, "gradient_accumulation_steps": 2}),
    ("AdamW", {"learning_rate": SCHEDULE, "gradient_accumulation_steps": 2, "clipnorm": 0.5}),
    ("RMSprop", {}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.9}),
    ("RMSprop", {"learning_rate": 0.01, "centered": True}),
    ("RMSprop", {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.5, "centered": True}),
    ("RMSprop", {"momentum": -0.5}),  # Keras: momentum <= 0 means no momentum (and no slots)
    ("RMSprop", {"clipnorm": 1.0, "weight_decay": 0.05, "epsilon": 1e-3}),
    ("RMSprop", {"momentum": 0.9, "centered": True, "gradient_accumulation_steps": 2,
                 "use_ema": True}),
    ("RMSprop", {"lr": 0.01, "decay": 0.05, "epsilon": None}),  # Keras 2 spelling
    ("Adagrad", {}),
    ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.0, "epsilon": 1e-3}),
    ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 2.5}),
    ("Adagrad", {"learning_rate": 0.1, "global_clipnorm": 1.0, "loss_scale_factor": 64.0}),
    ("Adagrad", {"learning_rate": SCHEDULE, "gradient_accumulation_steps": 3}),
    ("Adadelta", {}),
    ("Adadelta", {"learning_rate": 1.0, "rho": 0.8, "epsilon": 1e-6}),
    ("Adadelta", {"learning_rate": 1.0, "clipvalue": 0.5, "use_ema": True,
                  "ema_overwrite_frequency": 2}),
    ("Adadelta", {"learning_rate": CALLABLE, "weight_decay": 0.1}),
    ("Adamax", {}),
    ("Adamax", {"learning_rate": 0.2, "beta_1": 0.85, "beta_2": 0.95, "epsilon": 1e-6}),
    ("Adamax", {"learning_rate": 0.01, "gradient_accumulation_steps": 2, "clipnorm": 0.5}),
    ("Adamax", {"decay": 0.1, "weight_decay": 0.01}),
    ("Nadam", {}),
    ("Nadam", {"learning_rate": 0.5, "beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5}),
    ("Nadam", {"learning_rate": 0.01, "schedule_decay": 0.004}),  # Keras 2's default
    ("Nadam", {"learning_rate": 0.01, "schedule_decay": 1.0}),
    ("Nadam", {"gradient_accumulation_steps": 3, "use_ema": True}),
    ("Nadam", {"global_clipnorm": 1.0, "weight_decay": 0.05}),
    ("Nadam", {"learning_rate": SCHEDULE, "schedule_decay": 0.004,
               "gradient_accumulation_steps": 2}),
    ("Lion", {}),
    ("Lion", {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9}),
    ("Lion", {"learning_rate": 0.01, "beta_1": 1.0, "weight_decay": 0.1}),
    ("Lion", {"clipvalue": 0.1, "gradient_accumulation_steps": 2, "use_ema": True}),
    ("Ftrl", {}),
    ("Ftrl", {"learning_rate": 0.05, "learning_rate_power": -0.2, "initial_accumulator_value": 0.4,
              "l1_regularization_strength": 0.05, "l2_regularization_strength": 0.15,
              "l2_shrinkage_regularization_strength": 0.01, "beta": 0.3}),
    ("Ftrl", {"learning_rate": 0.1, "learning_rate_power": 0.0,
              "l1_regularization_strength": 0.01}),
    ("Ftrl", {"learning_rate": 0.1, "learning_rate_power": -1.0,
              "l2_regularization_strength": 0.5}),
    ("Ftrl", {"learning_rate": 0.1, "initial_accumulator_value": 0.0,
              "l2_shrinkage_regularization_strength": 0.1, "beta": 0.5}),
    ("Ftrl", {"learning_rate": SCHEDULE, "l1_regularization_strength": 0.1,
              "gradient_accumulation_steps": 2, "use_ema": True, "clipnorm": 1.0}),
    ("Lamb", {}),
    ("Lamb", {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5}),
    ("Lamb", {"learning_rate": 0.01, "weight_decay": 0.1}),
    ("Lamb", {"clipnorm": 1.0, "loss_scale_factor": 1000.0}),
    ("Lamb", {"global_clipnorm": 1.0, "use_ema": True, "ema_overwrite_frequency": 2}),
    ("Lamb", {"clipvalue": 0.5, "gradient_accumulation_steps": 3, "weight_decay": 0.05}),
    ("Lamb", {"learning_rate": SCHEDULE, "decay": 0.1}),
    ("ScheduleFreeAdamW", {}),
    ("ScheduleFreeAdamW", {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.67,
                           "epsilon": 1e-5}),
    ("ScheduleFreeAdamW", {"learning_rate": 0.01, "warmup_steps": 4, "weight_decay": 0.1}),
    ("ScheduleFreeAdamW", {"warmup_steps": 2, "gradient_accumulation_steps": 2,
                           "clipnorm": 0.5}),
    ("ScheduleFreeAdamW", {"global_clipnorm": 1.0, "use_ema": True, "loss_scale_factor": 64.0}),
    ("ScheduleFreeAdamW", {"learning_rate": CALLABLE, "clipvalue": 0.1, "use_ema": True,
                           "ema_overwrite_frequency": 3}),
    ("Adafactor", {}),
    ("Adafactor", {"learning_rate": 0.5}),  # above 1 / sqrt(t): the cap applies
    ("Adafactor", {"learning_rate": 0.01, "beta_2_decay": -0.5, "epsilon_1": 1e-20,
                   "epsilon_2": 1e-2, "clip_threshold": 0.5, "relative_step": False}),
    ("Adafactor", {"weight_decay": 0.05, "clipnorm": 1.0}),
    ("Adafactor", {"global_clipnorm": 1.0, "use_ema": True, "ema_overwrite_frequency": 2}),
    ("Adafactor", {"clipvalue": 0.5, "gradient_accumulation_steps": 3,
                   "loss_scale_factor": 64.0}),
    ("Adafactor", {"learning_rate": SCHEDULE, "decay": 0.1}),
    ("Muon", {}),
    ("Muon", {"learning_rate": 0.01, "momentum": 0.9, "nesterov": False, "ns_steps": 3,
              "rms_rate": None}),
    ("Muon", {"learning_rate": 0.02, "adam_lr_ratio": 0.1, "adam_weight_decay": None,
              "weight_decay": 0.1, "exclude_layers": ["variable_0", "out/"]}),
    ("Muon", {"global_clipnorm": 1.0, "use_ema": True, "ema_overwrite_frequency": 2}),
    ("Muon", {"clipnorm": 1.0, "gradient_accumulation_steps": 2, "loss_scale_factor": 64.0}),
    ("Muon", {"clipvalue": 0.5, "use_ema": True, "weight_decay": None,
              "adam_weight_decay": 0.1}),
    ("Muon", {"learning_rate": SCHEDULE, "decay": 0.1, "muon_a": 2.0, "muon_b": -1.5,
              "muon_c": 0.5}),
    ("Muon", {"learning_rate": CALLABLE, "exclude_embeddings": False}),
    # A step as large as the weights: the orthogonalized update dominates every result.
    ("Muon", {"learning_rate": 0.5, "weight_decay": None, "adam_weight_decay": None}),
]

# Comparison budgets (keyword arguments of `ref.assert_close`) where an implementation cannot
# follow the reference's arithmetic to the last bit; every other case gets the defaults.
TOLERANCES = {
    # Newton-Schulz's matrix products (the native gemm against NumPy's BLAS) sum in other
    # orders, and the iteration carries those roundings into the update: up to 4 float32 ulps
    # (of a step as large as the weights) and 1e-12 relative in float64 seen here; the budget
    # leaves room for other CPUs' kernels, whose summation orders differ again.
    "Muon": {"ulps": 8, "rtol64": 1e-10},
}


def _budget(name):
    """The `ref.assert_close` keyword arguments for `name`'s comparisons."""
    return TOLERANCES.get(name, {})


def _case_id(case):
    name, kwargs = case
    return name + "(" + ",".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


CASE_PARAMS = [pytest.param(*case, id=_case_id(case)) for case in CASES]
DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
STEPS = 6


def _converted(kwargs, method):
    return {k: getattr(v, method)() if isinstance(v, (Schedule, Callable)) else v
            for k, v in kwargs.items()}


def make_pair(name, kwargs):
    """A ferroptim optimizer and the reference for the same constructor arguments."""
    opt = getattr(fo.optimizers, name)(**_converted(kwargs, "to_fo"))
    return opt, ref.make_reference(name, _converted(kwargs, "to_reference"))


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _random(rng, shape, dtype):
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def _grad_like(rng, p, dtype=None):
    return _random(rng, p.shape, dtype or p.dtype)


def check_variables(opt, reference, err_msg="", budget=None):
    """Every optimizer variable, in Keras's order, against the reference's (`budget`: the
    case's `TOLERANCES` entry)."""
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
    return Layout(params, lambda r: [_grad_like(r, p) for p in params],
                  [(big, big_mask), (line, line_mask)])


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
    params = [_random(rng, (33,), dtype), _random(rng, (4, 5), dtype),
              np.asfortranarray(_random(rng, (6, 7), dtype))]

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
@pytest.mark.parametrize("name,kwargs", CASE_PARAMS)
def test_matches_reference(name, kwargs, dtype, layout):
    rng = _rng(name, kwargs, dtype, layout)
    setup = LAYOUTS[layout](dtype, rng)
    opt, reference = make_pair(name, kwargs)
    reference.build([p.copy() for p in setup.params])
    for step in range(1, STEPS + 1):
        grads = setup.grads(rng)
        grads_before = [np.array(g, copy=True) for g in grads]
        opt.apply_gradients(zip(grads, setup.params))
        reference.apply(grads)
        for i, (p, e) in enumerate(zip(setup.params, reference.params)):
            ref.assert_close(p, e, **_budget(name), err_msg=f"step {step}, param {i} {p.shape}")
        for g, before in zip(grads, grads_before):
            np.testing.assert_array_equal(g, before, err_msg="a gradient was modified")
        setup.check_untouched(f"step {step}: memory outside the parameter views changed")
    check_variables(opt, reference, budget=_budget(name))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs", CASE_PARAMS)
def test_non_finite_gradients_propagate(name, kwargs, dtype):
    # NaN and inf flow through as in Keras: no clamping; clipvalue keeps NaN; a NaN norm makes the
    # clipped tensor (clipnorm) or every tensor (global_clipnorm) NaN.
    rng = _rng("nonfinite", name, kwargs, dtype)
    params = [_random(rng, s, dtype) for s in [(5,), (17,), (3, 3)]]
    opt, reference = make_pair(name, kwargs)
    reference.build([p.copy() for p in params])
    for step in range(1, STEPS + 1):
        grads = [_grad_like(rng, p) for p in params]
        if step == 2:
            grads[0][1] = np.nan
        if step == 3:
            grads[1][2] = np.inf
            grads[2][0, 0] = -np.inf
        with np.errstate(all="ignore"):
            opt.apply_gradients(zip(grads, params))
        reference.apply(grads)
        for i, (p, e) in enumerate(zip(params, reference.params)):
            ref.assert_close(p, e, **_budget(name), err_msg=f"step {step}, param {i}")
    check_variables(opt, reference, budget=_budget(name))


@pytest.mark.parametrize("name,kwargs", CASE_PARAMS)
def test_mixed_float32_and_float64_parameters(name, kwargs):
    rng = _rng("mixed", name, kwargs)
    specs = [((5,), np.float32), ((7,), np.float64), ((3, 3), np.float32), ((), np.float64),
             ((33,), np.float32)]
    params = [_random(rng, s, d) for s, d in specs]
    opt, reference = make_pair(name, kwargs)
    reference.build([p.copy() for p in params])
    for step in range(1, STEPS + 1):
        grads = [_grad_like(rng, p) for p in params]
        opt.apply_gradients(zip(grads, params))
        reference.apply(grads)
        for i, (p, e) in enumerate(zip(params, reference.params)):
            ref.assert_close(p, e, **_budget(name), err_msg=f"step {step}, param {i} {p.dtype}")
    check_variables(opt, reference, budget=_budget(name))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs", CASE_PARAMS)
def test_missing_gradients(name, kwargs, dtype):
    # A None gradient: Keras warns and leaves that variable out of the step; the EMA still
    # averages every built variable.
    rng = _rng("none", name, kwargs, dtype)
    params = [_random(rng, s, dtype) for s in [(6,), (4, 4), (9,)]]
    opt, reference = make_pair(name, kwargs)
    reference.build([p.copy() for p in params])
    for step in range(1, STEPS + 1):
        grads = [_grad_like(rng, p) for p in params]
        grads[1] = None
        if step % 2 == 0:
            grads[2] = None
        with pytest.warns(UserWarning, match="Gradients do not exist for variables"):
            opt.apply_gradients(zip(grads, params))
        reference.apply(grads)
        for i, (p, e) in enumerate(zip(params, reference.params)):
            ref.assert_close(p, e, **_budget(name), err_msg=f"step {step}, param {i}")
    check_variables(opt, reference, budget=_budget(name))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs", CASE_PARAMS)
def test_dict_parameters_with_weight_decay_exclusion(name, kwargs, dtype):
    rng = _rng("dict", name, kwargs, dtype)
    shapes = {"dense/kernel": (4, 3), "dense/bias": (3,), "out/kernel": (3, 2), "out/bias": (2,)}
    params = {k: _random(rng, s, dtype) for k, s in shapes.items()}
    opt, reference = make_pair(name, kwargs)
    opt.exclude_from_weight_decay(var_names=["bias"])
    reference.exclude_from_weight_decay(var_names=["bias"])
    reference.build([p.copy() for p in params.values()], names=list(params))
    for step in range(1, STEPS + 1):
        grads = {k: _grad_like(rng, p) for k, p in params.items()}
        opt.apply(grads, params)
        reference.apply(list(grads.values()))
        for (k, p), e in zip(params.items(), reference.params):
            ref.assert_close(p, e, **_budget(name), err_msg=f"step {step}, {k}")
    check_variables(opt, reference, budget=_budget(name))


@pytest.mark.parametrize("name,kwargs", CASE_PARAMS)
def test_build_then_apply_without_variables(name, kwargs):
    rng = _rng("build", name, kwargs)
    params = [_random(rng, s, np.float32) for s in [(10,), (2, 5)]]
    opt, reference = make_pair(name, kwargs)
    opt.build(params)
    reference.build([p.copy() for p in params])
    check_variables(opt, reference, "after build", _budget(name))
    for step in range(1, STEPS + 1):
        grads = [_grad_like(rng, p) for p in params]
        opt.apply(grads)
        reference.apply(grads)
        for i, (p, e) in enumerate(zip(params, reference.params)):
            ref.assert_close(p, e, **_budget(name), err_msg=f"step {step}, param {i}")
    check_variables(opt, reference, budget=_budget(name))


# --- specific behaviours ------------------------------------------------------------------------


def test_float_learning_rate_is_float32_for_float64_parameters():
    # KERAS_SPEC §0.3 rule 2: Keras stores a float lr in a float32 variable.
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
    opt = fo.optimizers.AdamW(learning_rate=0.1, weight_decay=0.5, gradient_accumulation_steps=3,
                              clipnorm=0.1)
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
