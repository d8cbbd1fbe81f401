"""`_native.transform_gradients`: the gradients an update rule receives, written out.

Two references: the same call made as an SGD step with learning rate -1 on zeroed arrays (which
adds the rule's gradient to zero, so it must agree bit for bit, accumulators included), and the
gradient transforms computed in float64 with NumPy.
"""

import numpy as np
import pytest

from ferroptim import _native

SHAPES = [(7,), (3, 5)]
ACCUMULATION_STEPS = 3

# (id, StepOptions keyword arguments besides the accumulators)
OPTIONS = [
    ("none", None),
    ("loss-scale", dict(loss_scale=4.0)),
    ("accumulation", dict(accumulation_steps=ACCUMULATION_STEPS)),
    ("accumulation-loss-scale", dict(accumulation_steps=ACCUMULATION_STEPS, loss_scale=0.5)),
    ("clipnorm", dict(clipnorm=0.5)),
    ("global-clipnorm", dict(global_clipnorm=0.5)),
    ("clipvalue", dict(clipvalue=0.1)),
    ("clip-scale", dict(clip_scale=0.25)),
    ("accumulate-only", dict(accumulation_steps=ACCUMULATION_STEPS, accumulate_only=True)),
]


class Case:
    """Gradients (float32, float64 or strided), accumulators, and StepOptions over them."""

    def __init__(self, kwargs, grad_kind="float32", seed=0):
        rng = np.random.default_rng(seed)
        grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
        grads[0][:3] = [0.0, -0.0, 2.5]
        if grad_kind == "float64":
            grads = [g.astype(np.float64) * 1.000001 for g in grads]
        elif grad_kind == "strided":
            grads = [np.repeat(g, 2, axis=-1)[..., ::2] for g in grads]
        self.grads = grads
        self.accumulators = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
        self.kwargs = dict(kwargs or {})
        if "accumulation_steps" in self.kwargs:
            self.kwargs["accumulators"] = self.accumulators

    def options(self):
        return _native.StepOptions(**self.kwargs) if self.kwargs else None


def _bits(arrays):
    return [a.view(np.uint32).copy() for a in arrays]


def _run(case, via_sgd):
    """The call on `case`: its written arrays and how many calls completed."""
    out = [np.zeros(s, np.float32) if via_sgd else np.full(s, 7.0, np.float32) for s in SHAPES]
    before = _native.completed_calls()
    if via_sgd:
        _native.sgd(out, case.grads, None, -1.0, 0.0, False, case.options())
    else:
        _native.transform_gradients(out, case.grads, case.options())
    return out, _native.completed_calls() - before


def _reference(case, accumulators):
    """The transformed gradients in float64 from the call's inputs."""
    kw = case.kwargs
    g = [np.asarray(x, np.float32).astype(np.float64) for x in case.grads]
    if "loss_scale" in kw:
        g = [x / kw["loss_scale"] for x in g]
    if "accumulation_steps" in kw:
        g = [(x + a.astype(np.float64)) / kw["accumulation_steps"] for x, a in zip(g, accumulators)]
    if "clipnorm" in kw:
        c = kw["clipnorm"]
        g = [x * c / max(np.sqrt(np.sum(x * x)), c) for x in g]
    if "global_clipnorm" in kw:
        c = kw["global_clipnorm"]
        norm = np.sqrt(sum(np.sum(x * x) for x in g))
        g = [x * c / max(norm, c) for x in g]
    if "clipvalue" in kw:
        g = [np.clip(x, -kw["clipvalue"], kw["clipvalue"]) for x in g]
    if "clip_scale" in kw:
        g = [x * kw["clip_scale"] for x in g]
    return g


@pytest.mark.parametrize("grad_kind", ["float32", "float64", "strided"])
@pytest.mark.parametrize("kwargs", [k for _, k in OPTIONS], ids=[i for i, _ in OPTIONS])
def test_matches_an_sgd_step_of_minus_one_on_zeros_bit_for_bit(kwargs, grad_kind):
    expected_case, case = Case(kwargs, grad_kind), Case(kwargs, grad_kind)
    expected, expected_calls = _run(expected_case, via_sgd=True)
    got, calls = _run(case, via_sgd=False)
    assert calls == expected_calls == 1
    if case.kwargs.get("accumulate_only"):
        for a in got:
            np.testing.assert_array_equal(a, 7.0)  # not written
    else:
        for a, b in zip(_bits(got), _bits(expected)):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(_bits(case.accumulators), _bits(expected_case.accumulators)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs",
    [k for _, k in OPTIONS if not (k or {}).get("accumulate_only")],
    ids=[i for i, k in OPTIONS if not (k or {}).get("accumulate_only")],
)
def test_matches_the_float64_transforms(kwargs):
    case = Case(kwargs, seed=1)
    accumulators = [a.copy() for a in case.accumulators]
    got, _ = _run(case, via_sgd=False)
    for a, b in zip(got, _reference(case, accumulators)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-30)
    if "accumulation_steps" not in case.kwargs:
        # A zero gradient comes out +0 whatever its sign.
        assert got[0][1] == 0 and not np.signbit(got[0][1])
    else:
        for a in case.accumulators:
            np.testing.assert_array_equal(a, 0.0)


def test_accumulate_only_adds_the_unscaled_gradients():
    case = Case(dict(accumulation_steps=ACCUMULATION_STEPS, accumulate_only=True, loss_scale=2.0))
    expected = [(g.astype(np.float64) / 2.0 + a) for g, a in zip(case.grads, case.accumulators)]
    _run(case, via_sgd=False)
    for a, b in zip(case.accumulators, expected):
        np.testing.assert_allclose(a, b, rtol=2e-7)


def test_a_nan_gradient_poisons_every_gradient_under_global_clipnorm():
    case = Case(dict(global_clipnorm=1.0))
    case.grads[1][2, 3] = np.nan
    got, _ = _run(case, via_sgd=False)
    expected, _ = _run(Case(dict(global_clipnorm=1.0)), via_sgd=True)
    assert all(np.isnan(a).all() for a in got)
    assert not any(np.isnan(a).any() for a in expected)  # the clean call stays finite


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda out, g: out[1].setflags(write=False), id="read-only-out"),
        pytest.param(
            lambda out, g: out.__setitem__(1, np.zeros((5, 3), np.float32)), id="out-shape"
        ),
        pytest.param(lambda out, g: out.__setitem__(1, np.zeros((3, 5))), id="out-dtypes-mixed"),
        pytest.param(lambda out, g: g.__setitem__(0, out[0]), id="grad-is-out"),
        pytest.param(lambda out, g: g.pop(), id="fewer-grads"),
        pytest.param(lambda out, g: g.__setitem__(0, "abc"), id="string-grad"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(spoil):
    case = Case(dict(accumulation_steps=ACCUMULATION_STEPS))
    out = [np.full(s, 7.0, np.float32) for s in SHAPES]
    grads = list(case.grads)
    spoil(out, grads)
    accumulators = [a.copy() for a in case.accumulators]
    before = _native.completed_calls()
    with pytest.raises((TypeError, ValueError)):
        _native.transform_gradients(out, grads, case.options())
    assert _native.completed_calls() == before
    for a in out:
        if a.dtype == np.float32 and a.shape in SHAPES:
            np.testing.assert_array_equal(a, 7.0)
    for a, b in zip(case.accumulators, accumulators):
        np.testing.assert_array_equal(a, b)
