"""Adafactor's native kernel (`_native.adafactor`): one call per step for every C-contiguous
variable of a dtype group.

- against the independent reference (tests/reference.py) over vectors, matrices, big matrices
  and batches of matrices, float32 and float64, several steps;
- float32 against the class's NumPy path (taken by strided variables), bitwise: with gradients
  and weights of bounded magnitude every float64 sum of float32 values is exact, so the two
  summation orders cannot differ;
- bitwise the same for 1, 2 and 3 threads;
- every bad argument raises before any array changes.
"""

import numpy as np
import pytest

import ferroptim as fo
import reference as ref
from ferroptim import _native

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]

SHAPES = [(1,), (7,), (), (3, 5), (2, 3, 4), (1000, 33), (64, 2048), (4, 50, 300), (3, 1, 70)]


def _bounded(rng, shape, dtype):
    """Magnitudes in [0.5, 1.5) with random signs."""
    values = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    return np.asarray(values, dtype)


@pytest.fixture
def threads():
    """Restores the thread count a test changes."""
    before = fo.get_num_threads()
    yield
    fo.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"learning_rate": 0.5, "clip_threshold": 0.5},
        {
            "learning_rate": 0.02,
            "beta_2_decay": -0.5,
            "epsilon_1": 1e-20,
            "epsilon_2": 0.01,
            "clip_threshold": 100.0,
        },
    ],
    ids=["defaults", "clipped", "other"],
)
def test_matches_reference(dtype, kwargs):
    rng = np.random.default_rng(0)
    params = [np.asarray(rng.standard_normal(s), dtype) for s in SHAPES]
    opt = fo.optimizers.Adafactor(**kwargs)
    reference = ref.make_reference("Adafactor", kwargs)
    reference.build([p.copy() for p in params])
    for step in range(1, 5):
        grads = [np.asarray(rng.standard_normal(p.shape), dtype) for p in params]
        opt.apply_gradients(zip(grads, params))
        reference.apply(grads)
        for p, e in zip(params, reference.params):
            ref.assert_close(p, e, err_msg=f"step {step}, shape {p.shape}")
    for i, (a, e) in enumerate(zip(opt.variables[1:], reference.variables[1:]), start=1):
        ref.assert_close(np.asarray(a), e, err_msg=f"variables[{i}]")


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_as_the_numpy_path(dtype):
    # The same variables twice: C-contiguous (native) and as strided views (the NumPy path).
    rng = np.random.default_rng(1)
    shapes = [(5,), (), (3, 5), (2, 3, 4), (300, 70), (64, 600), (4, 20, 30)]
    native = [_bounded(rng, s, dtype) for s in shapes]
    bases = [np.zeros(s + (2,), dtype) for s in shapes]
    strided = [b[..., 0] for b in bases]
    for s, n in zip(strided, native):
        s[...] = n
    assert all(s.ndim == 0 or not s.flags.c_contiguous for s in strided)
    first = [n.copy() for n in native]
    opts = [fo.optimizers.Adafactor(learning_rate=0.1, clip_threshold=0.5) for _ in range(2)]
    for _ in range(4):
        grads = [_bounded(rng, s, dtype) for s in shapes]
        opts[0].apply_gradients(zip(grads, native))
        opts[1].apply_gradients(zip(grads, strided))
    for a, b, f in zip(native, strided, first):
        assert not np.array_equal(a, f)
        if dtype == np.float32:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)
    for a, b in zip(opts[0].variables, opts[1].variables):
        if dtype == np.float32:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        else:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-14, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_the_same_for_every_thread_count(dtype, threads):
    shapes = [(1000, 33), (64, 2048), (3, 40, 700), (70_000,), (9,), (5, 7)]
    results = []
    for n in (1, 2, 3):
        fo.set_num_threads(n)
        rng = np.random.default_rng(2)
        params = [np.asarray(rng.standard_normal(s), dtype) for s in shapes]
        opt = fo.optimizers.Adafactor(learning_rate=0.1, clip_threshold=0.5)
        for _ in range(3):
            grads = [np.asarray(rng.standard_normal(s), dtype) for s in shapes]
            opt.apply_gradients(zip(grads, params))
        results.append(params + [np.asarray(v) for v in opt.variables[1:]])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a.tobytes() == b.tobytes()


def test_one_call_per_dtype_group(monkeypatch):
    calls = []
    real = _native.adafactor

    def spy(params, *args, **kwargs):
        calls.append([p.dtype for p in params])
        return real(params, *args, **kwargs)

    monkeypatch.setattr(_native, "adafactor", spy)
    monkeypatch.setattr(_native, "sgd", None)  # the NumPy path's last step: must not run
    rng = np.random.default_rng(3)
    params = [
        np.asarray(rng.standard_normal(s), t)
        for s, t in [
            ((4, 5), np.float32),
            ((6,), np.float64),
            ((3, 2, 2), np.float32),
            ((), np.float64),
        ]
    ]
    opt = fo.optimizers.Adafactor()
    opt.apply_gradients([(np.ones_like(p), p) for p in params])
    assert sorted(map(sorted, calls), key=str) == sorted(
        [[np.float32, np.float32], [np.float64, np.float64]], key=str
    )


def test_a_non_finite_weight_multiplies_through():
    # RMS(w) is NaN: alpha_t is NaN and reaches every element, as in Keras.
    w = np.array([[1.0, np.nan], [2.0, 3.0]], np.float32)
    opt = fo.optimizers.Adafactor()
    opt.apply_gradients([(np.ones_like(w), w)])
    assert np.isnan(w).all()


# --- bad input: a ValueError or TypeError, and nothing changes ----------------------------------


def _call_arrays():
    """A valid call over three variables (rank 1, 2 and 3), as lists."""
    rng = np.random.default_rng(4)
    ws = [np.asarray(rng.standard_normal(s), np.float32) for s in [(6,), (3, 4), (2, 3, 5)]]
    gs = [np.asarray(rng.standard_normal(w.shape), np.float32) for w in ws]
    rs = [np.zeros((), np.int32), np.ones((3,), np.float32), np.ones((2, 3), np.float32)]
    cs = [np.zeros((), np.int32), np.ones((4,), np.float32), np.ones((2, 5), np.float32)]
    vs = [np.ones_like(w) for w in ws]
    return {"params": ws, "grads": gs, "r": rs, "c": cs, "velocities": vs}


SCALARS = {
    "rho_t": 0.01,
    "beta_2_t": 0.5,
    "epsilon_1": 1e-30,
    "epsilon_2": 1e-3,
    "clip_threshold": 1.0,
}


def _call(arrays, **scalars):
    kwargs = {**SCALARS, **scalars}
    _native.adafactor(
        arrays["params"],
        arrays["grads"],
        arrays["r"],
        arrays["c"],
        arrays["velocities"],
        kwargs["rho_t"],
        kwargs["beta_2_t"],
        kwargs["epsilon_1"],
        kwargs["epsilon_2"],
        kwargs["clip_threshold"],
    )


def test_valid_call_updates_every_array():
    arrays = _call_arrays()
    before = {k: [np.array(a, copy=True) for a in v] for k, v in arrays.items()}
    _call(arrays)
    for k in ("params", "velocities"):
        for a, b in zip(arrays[k], before[k]):
            assert not np.array_equal(a, b), k
    for k in ("r", "c"):
        for a, b in zip(arrays[k][1:], before[k][1:]):
            assert not np.array_equal(a, b), k


def _f64(a):
    return a.astype(np.float64)


def _read_only(a):
    a.flags.writeable = False
    return a


def _fortran(a):
    return np.asfortranarray(a)


def _strided(a):
    base = np.zeros(a.shape + (2,), a.dtype)
    base[..., 0] = a
    return base[..., 0]


# (list, index, transform or replacement, exception, message fragment)
BAD = [
    ("params", 1, lambda a: a.astype(np.int32), TypeError, "float32 or float64"),
    ("params", 2, _f64, TypeError, "one dtype"),
    ("params", 1, _read_only, ValueError, "read-only"),
    ("params", 1, _fortran, ValueError, "C-contiguous"),
    ("params", 2, _strided, ValueError, "C-contiguous"),
    ("grads", 1, lambda a: a[:2], ValueError, "shape"),
    ("grads", 0, lambda a: a.astype(np.complex64), TypeError, "cannot be cast"),
    ("grads", 2, lambda a: None, TypeError, "None"),
    ("velocities", 1, _f64, TypeError, "velocity"),
    ("velocities", 2, lambda a: a[:1], ValueError, "shape"),
    ("velocities", 0, _read_only, ValueError, "read-only"),
    ("velocities", 1, _fortran, ValueError, "C-contiguous"),
    ("r", 1, _f64, TypeError, "r of parameter"),
    ("r", 2, lambda a: a.reshape(3, 2).copy(), ValueError, "shape"),
    ("r", 1, _read_only, ValueError, "read-only"),
    ("r", 2, _fortran, ValueError, "C-contiguous"),
    ("r", 1, lambda a: [1.0, 1.0, 1.0], TypeError, "r of parameter"),
    ("c", 1, lambda a: np.ones((3,), np.float32), ValueError, "shape"),
    ("c", 2, _read_only, ValueError, "read-only"),
    ("c", 2, _strided, ValueError, "C-contiguous"),
    ("c", 1, lambda a: a.astype(np.int32), TypeError, "c of parameter"),
]


@pytest.mark.parametrize(
    "key,index,change,error,match", BAD, ids=[f"{b[0]}[{b[1]}]-{b[4]}" for b in BAD]
)
def test_bad_array_changes_nothing(key, index, change, error, match):
    arrays = _call_arrays()
    arrays[key][index] = change(arrays[key][index])
    _assert_refused(arrays, error, match)


def _assert_refused(arrays, error, match, **scalars):
    snapshot = [
        (a, np.array(a, copy=True)) for v in arrays.values() for a in v if isinstance(a, np.ndarray)
    ]
    with pytest.raises(error, match=match):
        _call(arrays, **scalars)
    for a, before in snapshot:
        np.testing.assert_array_equal(a, before)


def _same_parameter_twice(a):
    a["params"][2] = a["params"][1]
    a["grads"][2] = a["grads"][1].copy()
    a["velocities"][2] = a["velocities"][1].copy()
    a["r"][2] = a["r"][1].copy()
    a["c"][2] = a["c"][1].copy()


def _flat_view(source, like):
    """A view of `source`'s first elements with the shape of `like`."""
    return source.reshape(-1)[: like.size].reshape(like.shape)


ALIASES = {
    "same parameter twice": _same_parameter_twice,
    "gradient is the parameter": lambda a: a["grads"].__setitem__(1, a["params"][1]),
    "velocity is the parameter": lambda a: a["velocities"].__setitem__(1, a["params"][1]),
    "velocities overlap": lambda a: a["velocities"].__setitem__(
        0, _flat_view(a["velocities"][1], a["velocities"][0])
    ),
    "r inside c": lambda a: a["r"].__setitem__(1, a["c"][1][:3]),
    "c inside another parameter": lambda a: a["c"].__setitem__(
        2, _flat_view(a["params"][1], a["c"][2])
    ),
    "r inside a gradient": lambda a: a["r"].__setitem__(1, _flat_view(a["grads"][2], a["r"][1])),
    "r inside another r": lambda a: a["r"].__setitem__(1, _flat_view(a["r"][2], a["r"][1])),
}


@pytest.mark.parametrize("case", list(ALIASES))
def test_aliasing_changes_nothing(case):
    arrays = _call_arrays()
    ALIASES[case](arrays)
    _assert_refused(arrays, ValueError, "shares memory")


@pytest.mark.parametrize("key", ["grads", "r", "c", "velocities"])
def test_lists_of_other_lengths_change_nothing(key):
    arrays = _call_arrays()
    arrays[key] = arrays[key][:2]
    _assert_refused(arrays, ValueError, "aligned")


@pytest.mark.parametrize("name", ["epsilon_1", "epsilon_2", "clip_threshold"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_hyperparameters_change_nothing(name, value):
    _assert_refused(
        _call_arrays(), ValueError, f"`{name}` must be a finite number", **{name: value}
    )


def test_converted_gradients_and_placeholders():
    # Gradients of another dtype and layout are converted; rank < 2 slots may be None.
    a, b = _call_arrays(), _call_arrays()
    b["grads"] = [np.asfortranarray(g.astype(np.float64)) for g in b["grads"]]
    b["grads"][0] = b["grads"][0].tolist()
    b["r"][0] = b["c"][0] = None
    _call(a)
    _call(b)
    for k in ("params", "velocities", "r", "c"):
        for x, y in zip(a[k], b[k]):
            if isinstance(x, np.ndarray) and x.dtype == np.float32:
                np.testing.assert_array_equal(x, y)


def test_empty_call_and_empty_variables():
    _native.adafactor([], [], [], [], [], 0.1, 0.5, 1e-30, 1e-3, 1.0)
    w = np.zeros((3, 0), np.float32)
    r, c = np.zeros((3,), np.float32), np.zeros((0,), np.float32)
    _native.adafactor([w], [w.copy()], [r], [c], [w.copy()], 0.1, 0.5, 1e-30, 1e-3, 1.0)
    assert np.isnan(r).all()  # the mean over an empty axis, as NumPy and Keras take it
