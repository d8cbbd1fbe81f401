"""Row-sparse gradients (`ferroptim.IndexedSlices`).

- By default a step with one equals the dense step on its scatter (`to_dense()`), bit for bit,
  for every optimizer and every variant its record runs against the reference (the base
  features included), float32 and float64 tables next to dense gradients in one step.
- `lazy=True` equals a reference that applies Keras's rule (reference.py) to the given rows only
  and leaves every other row, and its slots, as they are.
- Bad input raises before anything changes, in one native call or across several.
- Repeated rows are summed in order of appearance, the same bits for any thread count.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
import pytest

import ferroptim as fo
import reference as ref
from optimizers_under_test import OPTIMIZERS, build, label, reference_kwargs

SPARSE_CASES = [(case, kwargs) for case in OPTIMIZERS for kwargs in case.numerics]
LAZY_CASES = [
    (case, kwargs)
    for case in OPTIMIZERS
    if case.lazy
    for kwargs in case.numerics
    if not kwargs.get("gradient_accumulation_steps")
]


def _model() -> Dict[str, np.ndarray]:
    """Two tables of different dtypes (each takes row-sparse gradients) and a dense bias."""
    rng = np.random.default_rng(5)
    return {
        "emb": rng.standard_normal((30, 5)).astype(np.float32),
        "bias": rng.standard_normal(5).astype(np.float32),
        "wide": rng.standard_normal((12, 3)).astype(np.float64),
    }


def _sparse(rng: np.random.Generator, table: np.ndarray, n: int) -> fo.IndexedSlices:
    """`n` rows of `table` drawn with repeats (and one row given three times)."""
    indices = rng.integers(0, table.shape[0], n)
    indices[-3:] = indices[0]
    values = (rng.standard_normal((n,) + table.shape[1:]) * 2).astype(table.dtype)
    return fo.IndexedSlices(values, indices, table.shape)


def _batches(steps: int) -> List[Dict[str, Any]]:
    rng = np.random.default_rng(17)
    model = _model()
    return [
        {
            "emb": _sparse(rng, model["emb"], 9),
            "bias": rng.standard_normal(5).astype(np.float32),
            "wide": _sparse(rng, model["wide"], 6),
        }
        for _ in range(steps)
    ]


def _dense(grads: Dict[str, Any]) -> Dict[str, Any]:
    return {key: g.to_dense() if isinstance(g, fo.IndexedSlices) else g for key, g in grads.items()}


def _assert_same_bits(a: Sequence[np.ndarray], b: Sequence[np.ndarray], what: str) -> None:
    assert len(a) == len(b), what
    for k, (x, y) in enumerate(zip(a, b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, f"{what} #{k}"
        assert x.tobytes() == y.tobytes(), f"{what} #{k}: {x} != {y}"


# --- Keras's numbers: the dense step on the scatter --------------------------------------------


@pytest.mark.parametrize("case, kwargs", SPARSE_CASES, ids=[label(c, k) for c, k in SPARSE_CASES])
def test_equals_the_dense_step_on_the_scatter(case, kwargs):
    sparse_model, dense_model = _model(), _model()
    sparse_opt, dense_opt = build(case, kwargs), build(case, kwargs)
    with np.errstate(all="ignore"):
        for grads in _batches(4):
            sparse_opt.apply(grads, sparse_model)
            dense_opt.apply(_dense(grads), dense_model)
    what = label(case, kwargs)
    _assert_same_bits(list(sparse_model.values()), list(dense_model.values()), what)
    _assert_same_bits(sparse_opt.variables, dense_opt.variables, what + " variables")


@pytest.mark.parametrize(
    "layout",
    ["fortran", "strided", "values_strided", "values_float64", "values_int", "indices_small"],
)
def test_layouts_and_dtypes_of_the_arrays(layout):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 6)).astype(np.float32)
    if layout == "fortran":
        table = np.asfortranarray(base)
    elif layout == "strided":
        table = np.zeros((40, 12), np.float32)[:, ::2]
        table[...] = base
    else:
        table = base.copy()
    dense_table = base.copy()
    indices = np.array([3, 39, 3, 0, 17, 3])
    values: Any = rng.standard_normal((6, 6)).astype(np.float32)
    if layout == "values_strided":
        values = np.repeat(values, 2, axis=1)[:, ::2]
    elif layout == "values_float64":
        values = values.astype(np.float64) / 3
    elif layout == "values_int":
        values = rng.integers(-5, 5, (6, 6)).astype(np.int16)
    elif layout == "indices_small":
        indices = indices.astype(np.uint8)
    g = fo.IndexedSlices(values, indices, table.shape)
    # The dense equivalent: scattered in the values' dtype (integers as float64), then the step
    # casts it to the table's dtype as it casts any gradient.
    scattered = g.to_dense().astype(np.float64) if layout == "values_int" else g.to_dense()
    sparse_opt = fo.optimizers.Adam(learning_rate=0.1, clipnorm=0.5)
    dense_opt = fo.optimizers.Adam(learning_rate=0.1, clipnorm=0.5)
    for _ in range(2):
        sparse_opt.apply([g], [table])
        dense_opt.apply([scattered], [dense_table])
    _assert_same_bits([np.ascontiguousarray(table)], [dense_table], layout)
    _assert_same_bits(sparse_opt.variables, dense_opt.variables, layout)


def test_rows_only_rules_leave_the_other_rows_bit_for_bit():
    # SGD without momentum and Adagrad (Keras's scatter updates): the rows not given are not
    # even rewritten, so their bits stay (a NaN payload, a negative zero).
    for opt in (fo.optimizers.SGD(learning_rate=-0.5), fo.optimizers.Adagrad(epsilon=0.0)):
        table = np.ones((6, 2), np.float32)
        table[1] = -0.0
        table[2] = np.frombuffer(np.uint32(0x7FC00123).tobytes(), np.float32)[0]
        before = table.copy()
        opt.apply([fo.IndexedSlices(np.ones((2, 2), np.float32), [4, 4], table.shape)], [table])
        assert table[[0, 1, 2, 3, 5]].tobytes() == before[[0, 1, 2, 3, 5]].tobytes()
        assert not np.array_equal(table[4], before[4])


def test_wrappers_take_row_sparse_gradients():
    def loss_scale():
        return fo.optimizers.LossScaleOptimizer(fo.optimizers.Adam(learning_rate=0.1))

    def multi():
        return fo.optimizers.MultiOptimizer(
            fo.optimizers.OptimizerMap(
                fo.optimizers.Adam(learning_rate=0.1),
                {"bias": fo.optimizers.SGD(learning_rate=0.1, momentum=0.5)},
            )
        )

    for make in (loss_scale, multi):
        sparse_model, dense_model = _model(), _model()
        sparse_opt, dense_opt = make(), make()
        batches = _batches(3)
        # A step with an infinite value: LossScaleOptimizer skips it, whatever the form.
        batches[1]["emb"].values[2, 1] = np.inf
        for grads in batches:
            sparse_opt.apply(grads, sparse_model)
            dense_opt.apply(_dense(grads), dense_model)
        _assert_same_bits(list(sparse_model.values()), list(dense_model.values()), make.__name__)
        _assert_same_bits(sparse_opt.variables, dense_opt.variables, make.__name__)


# --- lazy updates --------------------------------------------------------------------------------


class _LazyReference(ref.ReferenceOptimizer):
    """Keras's pipeline where the rule (and the weight decay) of each variable runs on the rows
    its gradient gives only: the reference's rule is handed those rows of the variable and of
    every slot, and they are written back; the clipping norms and the EMA are the dense
    pipeline's (the norms of a gradient that is zero elsewhere)."""

    rows: Dict[int, np.ndarray] = {}

    def _update(self, gs, present, lr, it):  # noqa: ANN001 (the reference's signature)
        self._clip(gs, present)
        begin_step = getattr(self.rule, "begin_step", None)
        if begin_step is not None:
            begin_step(it)
        slot_lists = [
            value
            for value in vars(self.rule).values()
            if isinstance(value, list)
            and len(value) == len(self.params)
            and all(isinstance(x, np.ndarray) for x in value)
        ]
        for i in present:
            rows = self.rows.get(i, slice(None))
            w = self.params[i]
            part = w[rows]
            if self.weight_decay is not None and self.uses_weight_decay(i):
                T = w.dtype.type
                part = part - part * T(self.weight_decay) * T(lr)
            saved = [slots[i] for slots in slot_lists]
            for slots in slot_lists:
                slots[i] = slots[i][rows]
            self.rule.update(i, gs[i][rows], part, lr, it)
            for slots, full in zip(slot_lists, saved):
                full[rows] = slots[i]
                slots[i] = full
            w[rows] = part


@pytest.mark.parametrize("case, kwargs", LAZY_CASES, ids=[label(c, k) for c, k in LAZY_CASES])
def test_lazy_matches_the_rows_only_reference(case, kwargs):
    model = _model()
    names = list(model)
    opt = build(case, {**kwargs, "lazy": True})
    reference = ref.make_reference(case.name, reference_kwargs(kwargs))
    reference.__class__ = _LazyReference
    reference.build([p.copy() for p in model.values()], names)
    assert opt.get_config()["lazy"] is True
    untouched = {}
    with np.errstate(all="ignore"):
        for step, grads in enumerate(_batches(4)):
            reference.rows = {
                names.index(key): np.unique(g.indices)
                for key, g in grads.items()
                if isinstance(g, fo.IndexedSlices)
            }
            if step == 0:
                untouched = {
                    key: (np.setdiff1d(np.arange(model[key].shape[0]), reference.rows[i]))
                    for i, key in enumerate(names)
                    if i in reference.rows
                }
            opt.apply(grads, model)
            reference.apply(list(_dense(grads).values()))
    what = label(case, kwargs)
    for (key, actual), expected in zip(model.items(), reference.params):
        ref.assert_close(actual, expected, err_msg=f"{what} {key}", **case.tolerance)
    for actual, expected in zip(opt.variables, reference.variables):
        ref.assert_close(actual, expected, err_msg=f"{what} variables", **case.tolerance)
    # A row no step gave kept its initial value (unless the EMA overwrote the variable).
    if not kwargs.get("ema_overwrite_frequency"):
        initial = _model()
        for key, rows in untouched.items():
            for grads in _batches(4):
                rows = np.setdiff1d(rows, grads[key].indices)
            assert np.array_equal(model[key][rows], initial[key][rows]), what


def test_lazy_is_refused_with_gradient_accumulation_and_kept_by_the_config():
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        fo.optimizers.Adam(lazy=True, gradient_accumulation_steps=2)
    with pytest.raises(TypeError, match="lazy"):
        fo.optimizers.SGD(lazy="yes")
    opt = fo.optimizers.RMSprop(lazy=True)
    config = opt.get_config()
    assert config["lazy"] is True and list(config)[-1] == "lazy"
    assert fo.optimizers.RMSprop.from_config(config).lazy is True
    assert "lazy" not in fo.optimizers.RMSprop().get_config()
    assert not fo.optimizers.Adagrad().lazy


# --- summing repeated rows ---------------------------------------------------------------------


def test_repeated_rows_sum_in_order_the_same_for_any_thread_count():
    rng = np.random.default_rng(8)
    table0 = rng.standard_normal((20_000, 64)).astype(np.float32)
    indices = rng.integers(0, 20_000, 40_000)  # many repeats, and a call large enough for threads
    values = (rng.standard_normal((40_000, 64)) * 1e4).astype(np.float32)
    g = fo.IndexedSlices(values, indices, table0.shape)
    before = fo.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            fo.set_num_threads(threads)
            for lazy in (False, True):
                table = table0.copy()
                fo.optimizers.Adam(learning_rate=0.1, lazy=lazy).apply([g], [table])
                results.append(table)
    finally:
        fo.set_num_threads(before)
    dense = table0.copy()
    fo.optimizers.Adam(learning_rate=0.1).apply([g.to_dense()], [dense])
    assert results[0].tobytes() == dense.tobytes()
    for k in range(2, len(results)):
        assert results[k].tobytes() == results[k % 2].tobytes()


def test_indexed_slices_object():
    g = fo.IndexedSlices([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [2, 0, 2], (3, 2))
    assert g.values.dtype == np.float64 and g.indices.dtype.kind == "i"
    assert g.dense_shape == (3, 2) and g.shape == (3, 2) and g.dtype == np.float64
    np.testing.assert_array_equal(g.to_dense(), [[3.0, 4.0], [0.0, 0.0], [6.0, 8.0]])
    assert repr(g) == "IndexedSlices(rows=3, dense_shape=(3, 2), dtype=float64)"
    for bad, error in [
        (lambda: fo.IndexedSlices(np.ones((2, 2)), [0.0, 1.0], (3, 2)), TypeError),
        (lambda: fo.IndexedSlices(np.ones((2, 2)), [[0, 1]], (3, 2)), ValueError),
        (lambda: fo.IndexedSlices(np.ones((2, 3)), [0, 1], (3, 2)), ValueError),
        (lambda: fo.IndexedSlices(np.ones((3, 2)), [0, 1], (3, 2)), ValueError),
        (lambda: fo.IndexedSlices(np.ones((2, 2)), [0, 1], (3.0, 2)), TypeError),
        (lambda: fo.IndexedSlices(np.ones(2), [0, 1], ()), ValueError),
        (lambda: fo.IndexedSlices(np.array([["a", "b"]] * 2), [0, 1], (3, 2)), TypeError),
    ]:
        with pytest.raises(error):
            bad()


# --- bad input: nothing changes ------------------------------------------------------------------


def _broken(kind: str, table: np.ndarray) -> fo.IndexedSlices:
    """An IndexedSlices gradient of `table` made bad after construction (the step reads its
    arrays afresh and checks them again)."""
    g = fo.IndexedSlices(np.ones((3,) + table.shape[1:], table.dtype), [0, 1, 2], table.shape)
    if kind == "out_of_range":
        g.indices[1] = table.shape[0]
    elif kind == "negative":
        g.indices[2] = -1
    elif kind == "float_indices":
        g.indices = np.array([0.0, 1.0, 2.0])
    elif kind == "indices_2d":
        g.indices = np.array([[0, 1, 2]])
    elif kind == "values_shape":
        g.values = np.ones((3, table.shape[1] + 1), table.dtype)
    elif kind == "values_rows":
        g.values = np.ones((2,) + table.shape[1:], table.dtype)
    elif kind == "empty":
        g.indices = np.zeros(0, np.int64)
        g.values = np.zeros((0,) + table.shape[1:], table.dtype)
    elif kind == "dense_shape":
        g.dense_shape = (table.shape[0] + 1,) + table.shape[1:]
    elif kind == "values_alias_table":
        g.values = table[:3]
    elif kind == "values_complex":
        g.values = np.ones((3,) + table.shape[1:], np.complex64)
    return g


BAD = {
    "out_of_range": (ValueError, "out of range"),
    "negative": (ValueError, "negative"),
    "float_indices": (TypeError, "integers"),
    "indices_2d": (ValueError, "1-D"),
    "values_shape": (ValueError, "shape"),
    "values_rows": (ValueError, "shape"),
    "empty": (ValueError, "no rows"),
    "dense_shape": (ValueError, "dense_shape"),
    "values_alias_table": (ValueError, "shares memory"),
    "values_complex": (TypeError, "dtype"),
}


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("setup", ["one_call", "two_dtypes", "loss_scale", "adafactor"])
def test_bad_input_raises_before_anything_changes(kind, setup):
    error, match = BAD[kind]
    model = _model()
    if setup == "one_call":
        del model["wide"]
    if setup == "loss_scale":
        opt: Any = fo.optimizers.LossScaleOptimizer(fo.optimizers.Adam(learning_rate=0.1))
    elif setup == "adafactor":
        opt = fo.optimizers.Adafactor(learning_rate=0.1)
    else:
        opt = fo.optimizers.Adam(learning_rate=0.1, use_ema=True)
    good = {key: _dense(b)[key] for key, b in zip(model, [_batches(1)[0]] * len(model))}
    opt.apply(good, model)
    params = {key: p.copy() for key, p in model.items()}
    state = [np.array(v, copy=True) for v in opt.variables]
    grads = dict(good)
    # The bad gradient is the last table's: in a step of two calls, the first call is valid.
    key = "wide" if "wide" in model else "emb"
    grads[key] = _broken(kind, model[key])
    with pytest.raises(error, match=match) as info:
        opt.apply(grads, model)
    assert f"'{key}'" in str(info.value)
    _assert_same_bits(list(model.values()), list(params.values()), f"{setup} {kind}")
    _assert_same_bits(opt.variables, state, f"{setup} {kind} variables")


def test_a_scalar_variable_takes_no_row_sparse_gradient():
    w = np.ones((), np.float32)
    g = fo.IndexedSlices(np.ones((1, 1), np.float32), [0], (1, 1))
    g.dense_shape = ()
    with pytest.raises(ValueError):
        fo.optimizers.SGD().apply([g], [w])
    assert w == 1
