"""Fuzzing the native boundary: junk in every argument of every native function.

Every call below gets a valid argument list with one (or, in the random test, several) arguments
replaced by junk: wrong types, None, nested lists, strings, huge and negative numbers, NaN,
arrays of the wrong dtype, shape, length or layout, read-only and misaligned arrays, and arrays
that alias each other in part. Whatever the call does, it must be one of:

- a TypeError or ValueError, with every array the call could write (parameters, slots,
  accumulators, averages) and every gradient unchanged, bit for bit;
- a success, where the junk is a value the function accepts (an int for a float, None for an
  optional list).

Anything else (another exception, a Rust panic, which pyo3 raises as `PanicException`, a crash
of the interpreter) fails the test.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ferroptim as fo
from ferroptim import _native
from optimizers_under_test import native_scalars

F32 = np.float32

# Argument kinds: the update-rule functions' are those of `_native.rule_signatures()`.
PARAMS, GRADS, SLOTS, OPT_SLOTS, SLOT_LISTS = (
    "params",
    "grads",
    "slots",
    "optional_slots",
    "slot_lists",
)
FLOAT, INT, BOOL, OPTIONS, NAMES, MATRIX = "real", "int", "bool", "options", "names", "matrix"
SCALAR_KINDS = (FLOAT, INT, BOOL)

# The update-rule functions as the native module declares them, then the other functions.
RULE_SIGNATURES = _native.rule_signatures()
SIGNATURES = {
    **{name: [arg["kind"] for arg in args] for name, args in RULE_SIGNATURES.items()},
    "ema": [PARAMS, SLOTS, FLOAT, BOOL, NAMES],
    "transform_gradients": [PARAMS, GRADS, OPTIONS, NAMES],
    "gradient_sum_squares": [PARAMS, GRADS, OPTIONS, NAMES],
    "roofline": [PARAMS, GRADS, SLOT_LISTS],
    "all_finite": [GRADS],
    "check_disjoint": [GRADS, SLOTS, NAMES],
    "newton_schulz": [MATRIX, INT, FLOAT, FLOAT, FLOAT],
}
# Optional slot lists that the valid call gives (its momentum is > 0); None elsewhere.
GIVEN_OPTIONAL_SLOTS = {("sgd", "momentums"), ("rmsprop", "momentums")}
# Valid scalar values, per function: the update rules' from the shared table, by argument name.
SCALARS = {
    **{name: native_scalars(name) for name in RULE_SIGNATURES},
    "ema": [0.9, False],
    "newton_schulz": [2, 3.4445, -4.775, 2.0315],
}
SHAPES = [(5,), (2, 3)]


class Env:
    """Fresh arrays for one call: two float32 parameters, their gradients and slots of ones."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.params = [rng.standard_normal(s).astype(F32) for s in SHAPES]
        self.grads = [rng.standard_normal(s).astype(F32) for s in SHAPES]
        self.slots = [[np.ones(s, F32) for s in SHAPES] for _ in range(3)]
        self.accumulators = [np.zeros(s, F32) for s in SHAPES]
        self.averages = [np.zeros(s, F32) for s in SHAPES]
        self.matrix = rng.standard_normal((4, 3)).astype(F32)
        self.extra = []  # arrays that junk values bring in (their own memory)

    def arrays(self):
        return (
            self.params
            + self.grads
            + [a for s in self.slots for a in s]
            + self.accumulators
            + self.averages
            + [self.matrix]
            + self.extra
        )

    def valid(self, name):
        """The valid argument list of function `name`."""
        out, slots, scalars = [], iter(self.slots), iter(SCALARS.get(name, []))
        for kind in SIGNATURES[name]:
            if kind == PARAMS:
                out.append(list(self.params))
            elif kind == GRADS:
                out.append(list(self.grads))
            elif kind in (SLOTS, OPT_SLOTS):
                given = kind == SLOTS or (name, _argument_name(name, len(out))) in (
                    GIVEN_OPTIONAL_SLOTS
                )
                out.append(list(next(slots)) if given else None)
            elif kind == SLOT_LISTS:
                out.append([list(s) for s in self.slots])
            elif kind == OPTIONS:
                out.append(None)
            elif kind == NAMES:
                out.append(None)
            elif kind == MATRIX:
                out.append(self.matrix)
            else:
                out.append(next(scalars))
        return out


def _argument_name(name, position):
    args = RULE_SIGNATURES.get(name)
    return args[position]["name"] if args else None


def _overlapping_views(env, start, stop):
    base = np.arange(12, dtype=F32)
    env.extra.append(base)
    return base[start:stop]


def _aliases(kind):
    """Junk for an array-list argument: lists whose arrays alias another argument's arrays, in
    part or whole, or each other."""

    def alias_param(env):
        return [env.params[0], env.params[1]]  # the parameters themselves

    def part_of_param(env):
        return [env.params[0][1:4].reshape(3), env.params[1]]

    def overlapping_each_other(env):
        a, b = _overlapping_views(env, 0, 5), None
        b = a.base[3:9].reshape(2, 3)
        return [a, b]

    def same_array_twice(env):
        a = np.ones((5,), F32)
        env.extra.append(a)
        return [a, a[:6].reshape(5)] + [] if False else [a, np.ones((2, 3), F32)][:1] * 2

    def self_overlapping(env):
        a = np.lib.stride_tricks.as_strided(np.ones(3, F32), (5,), (4,), writeable=True)
        return [
            np.lib.stride_tricks.as_strided(a, (5,), (0,), writeable=True),
            np.ones((2, 3), F32),
        ]

    def misaligned(env):
        raw = np.zeros(4 * 5 + 1, np.uint8)
        env.extra.append(raw)
        return [np.frombuffer(raw.data, F32, 5, 1), np.ones((2, 3), F32)]

    def read_only(env):
        return [np.broadcast_to(F32(1), (5,)), np.ones((2, 3), F32)]

    out = [
        alias_param,
        part_of_param,
        overlapping_each_other,
        same_array_twice,
        self_overlapping,
        misaligned,
        read_only,
    ]
    return out if kind != GRADS else [alias_param, part_of_param]


def _generic():
    return [
        None,
        "x",
        b"x",
        3,
        -1,
        2.5,
        object(),
        {},
        {"a": 1},
        (),
        [],
        [[]],
        [None],
        [None, None],
        ["a", "b"],
        [3, 4],
        [[1.0, 2.0], [3.0]],
        [object(), object()],
        (x for x in range(2)),
        np.ones(3, F32),
        np.float32(1.0),
    ]


# 2**40 elements of one float32 in memory: a valid array whose size any check that computes sizes
# in 32 bits, or allocates in proportion, would get wrong. `all_finite` accepts it (and reads
# its one element once).
HUGE_VIEW = [np.broadcast_to(F32(1), (2**40,)), np.ones((2, 3), F32)]


def _skip(name, junk):
    if name == "newton_schulz" and isinstance(junk, (int, np.integer)) and junk > 10**6:
        return True  # a valid iteration count: 2**62 matrix products would never end
    return False


def _array_lists():
    """Junk for a list of arrays aligned with the two parameters."""
    return [
        [np.ones((5,), F32)],  # one too few
        [np.ones((5,), F32), np.ones((2, 3), F32), np.ones((2,), F32)],  # one too many
        [np.ones((5,), np.float64), np.ones((2, 3), np.float64)],
        [np.ones((5,), np.int32), np.ones((2, 3), np.int32)],
        [np.ones((5,), np.complex64), np.ones((2, 3), np.complex64)],
        [np.ones((5,), bool), np.ones((2, 3), bool)],
        [np.ones((5,), ">f4"), np.ones((2, 3), ">f4")],
        [np.ones((6,), F32), np.ones((3, 2), F32)],
        [np.ones((5, 1), F32), np.ones((2, 3, 1), F32)],
        [np.float32(1), np.float32(1)],
        [np.ones((5,), F32), None],
        [[1.0] * 5, [[1.0] * 3] * 2],
        [np.array(["a"] * 5), np.array([["a"] * 3] * 2)],
        [np.zeros((5,), [("a", F32)]), np.zeros((2, 3), [("a", F32)])],
        [np.empty((5,), object), np.empty((2, 3), object)],
        [np.ones((5,), F32)[::-1], np.ones((3, 2), F32).T],  # valid layouts
        [np.broadcast_to(F32(1), (5,)), np.broadcast_to(F32(1), (2, 3))],
        HUGE_VIEW,
        [np.ones((5,), np.float16), np.ones((2, 3), np.float16)],
        [np.ma.ones((5,), F32), np.ma.ones((2, 3), F32)],
    ]


JUNK = {
    PARAMS: _generic() + _array_lists() + _aliases(PARAMS),
    GRADS: _generic() + _array_lists() + _aliases(GRADS),
    SLOTS: _generic() + _array_lists() + _aliases(SLOTS),
    OPT_SLOTS: _generic() + _array_lists() + _aliases(OPT_SLOTS),
    SLOT_LISTS: _generic() + [[_array_lists()[0]], [[np.ones(5, F32)]] * 3, [None], [["x"]]],
    FLOAT: _generic()
    + [
        math.nan,
        math.inf,
        -math.inf,
        1e308,
        -1e308,
        0.0,
        -0.0,
        5e-324,
        2**53 + 1,
        np.float64(0.5),
        np.int64(2),
        complex(1, 1),
        "0.1",
        True,
    ],
    INT: _generic()
    + [0, 2**62, 2**63 - 1, -(2**63), np.int64(5), np.uint8(3), 1.0, math.nan, "1", True],
    BOOL: _generic() + [0, 1, np.bool_(True), "True", math.nan],
    OPTIONS: _generic(),
    NAMES: _generic() + [["p"], ["p", "q", "r"], [1, 2], "pq"],
    MATRIX: _generic()
    + [
        np.ones((2, 3, 4), F32),
        np.ones(5, F32),
        np.ones((0, 3), F32),
        np.ones((3, 0), F32),
        np.ones((4, 3), np.int64),
        np.ones((2, 2), ">f8"),
        np.ones((9, 7), F32)[::2, ::3],
        np.broadcast_to(F32(2), (3, 4)),
    ],
}
# Integers beyond the native argument types (i64 / u32 / f64): the bindings raise OverflowError
# for these where the contract is a ValueError (see test_out_of_range_integers_are_value_errors).
OUT_OF_RANGE_INTS = [2**63, 2**64 + 1, -(2**63) - 1, 10**400]


def _materialize(value, env):
    return (
        value(env) if callable(value) and getattr(value, "__name__", "") in ALIAS_NAMES else value
    )


ALIAS_NAMES = {f.__name__ for k in (PARAMS, GRADS) for f in _aliases(k)}


def _call(name, args, env):
    """Call `name(*args)`; an error must be a TypeError or ValueError that changed nothing."""
    before = [(a, a.copy()) for a in env.arrays()]
    try:
        result = getattr(_native, name)(*args)
    except (TypeError, ValueError):
        for array, copy in before:
            np.testing.assert_array_equal(array, copy, err_msg=f"{name}: an array changed")
        return "error"
    if name == "newton_schulz":
        assert isinstance(result, np.ndarray)
    return "ok"


@pytest.fixture(autouse=True)
def keep_threads():
    threads = _native.get_num_threads()
    yield
    _native.set_num_threads(threads)


def _cases():
    for name, kinds in SIGNATURES.items():
        for position, kind in enumerate(kinds):
            yield pytest.param(name, position, id=f"{name}-{position}-{kind}")


@pytest.mark.parametrize("name,position", list(_cases()))
def test_junk_in_one_argument_is_a_clean_error(name, position):
    kind = SIGNATURES[name][position]
    outcomes = []
    for junk in JUNK[kind]:
        if _skip(name, junk):
            continue
        env = Env()
        args = env.valid(name)
        args[position] = _materialize(junk, env)
        with np.errstate(all="ignore"):
            outcomes.append(_call(name, args, env))
    # The valid call itself succeeds, and most junk is refused.
    env = Env()
    with np.errstate(all="ignore"):
        assert _call(name, env.valid(name), env) == "ok"
    if kind != NAMES:
        assert outcomes.count("error") >= len(outcomes) // 2, outcomes
        return
    # Names are read only to word an error: junk names must not spoil one.
    for junk in JUNK[NAMES]:
        env = Env()
        args = env.valid(name)
        args[position] = junk
        if name == "check_disjoint":
            args[0] = [args[1][1], np.ones(4, F32)]  # a read-only array that is a writable one
        else:
            args[1] = [np.ones(4, F32), np.ones((2, 3), F32)]  # a gradient of the wrong shape
        assert _call(name, args, env) == "error"


def test_every_rule_function_is_declared_and_fuzzed():
    # A rule function the declaration does not list would escape every table-driven test here
    # and in test_bad_input.py: each `_native` function with a rule's calling convention must
    # be declared, with the arguments its signature really has, and have valid scalars here.
    import inspect

    for name in dir(_native):
        text = getattr(getattr(_native, name), "__text_signature__", None) or ""
        reads_gradients_only = text == "(params, grads, options=None, names=None)"
        if (
            text.startswith("(params, grads,")
            and text.endswith("options=None, names=None)")
            and not reads_gradients_only
        ):
            assert name in RULE_SIGNATURES, name
    for name, args in RULE_SIGNATURES.items():
        parameters = inspect.signature(getattr(_native, name)).parameters
        assert [a["name"] for a in args] == list(parameters), name
        for arg in args:
            default = parameters[arg["name"]].default
            assert arg.get("default", inspect.Parameter.empty) == default, (name, arg)
            assert ("slot" in arg) == (arg["kind"] in (SLOTS, OPT_SLOTS)), (name, arg)
        assert len(SCALARS[name]) == sum(a["kind"] in SCALAR_KINDS for a in args), name


def _options_junk(env):
    """StepOptions built from junk, or valid StepOptions whose arrays clash with the call's."""
    acc, avg = env.accumulators, env.averages
    other = [np.zeros(s, np.float64) for s in SHAPES]
    return [
        dict(accumulators=acc, accumulation_steps=0),
        dict(accumulators=acc[:1], accumulation_steps=2),
        dict(accumulators=other, accumulation_steps=2),
        dict(accumulators=[env.params[0], acc[1]], accumulation_steps=2),
        dict(accumulators=[env.grads[0], acc[1]], accumulation_steps=2),
        dict(accumulators=acc, accumulation_steps=2, averages=acc),
        dict(averages=[avg[0]]),
        dict(averages=[env.params[0], avg[1]]),
        dict(averages=[env.grads[0][1:], avg[1]]),
        dict(averages=other),
        dict(averages=[np.ones(4, F32), avg[1]]),
        dict(averages=avg, ema_momentum=math.nan),
        dict(weight_decay=0.1, weight_decay_mask=[True]),
        dict(weight_decay=0.1, weight_decay_mask=[True, False, True]),
        dict(weight_decay=0.1, weight_decay_mask="ab"),
        dict(weight_decay=0.1, weight_decay_mask=[None, 1]),
        dict(weight_decay=math.nan),
        dict(weight_decay=0.1, weight_decay_learning_rate=math.inf),
        dict(clipnorm=1.0, clipvalue=1.0),
        dict(clipnorm=1.0, global_clipnorm=1.0),
        dict(clipnorm=math.nan),
        dict(global_clipnorm=-math.inf),
        dict(clipvalue="1"),
        dict(loss_scale=math.inf),
        dict(loss_scale=None, accumulators="x", accumulation_steps=2),
        dict(accumulate_only="yes"),
        dict(ema_overwrite=None),
        dict(unknown=1),
    ]


@pytest.mark.parametrize("name", [n for n, k in SIGNATURES.items() if OPTIONS in k])
def test_junk_step_options_are_clean_errors(name):
    position = SIGNATURES[name].index(OPTIONS)
    count = len(_options_junk(Env()))
    for i in range(count):
        env = Env()
        kwargs = _options_junk(env)[i]
        try:
            options = _native.StepOptions(**kwargs)
        except (TypeError, ValueError):
            continue
        args = env.valid(name)
        args[position] = options
        with np.errstate(all="ignore"):
            assert _call(name, args, env) == "error", kwargs


def test_interleaved_or_overlapping_views_in_one_call_are_refused_or_updated_exactly():
    # Two parameters that overlap in part are refused; a parameter and its slot that overlap
    # too. Nothing outside the views is touched either way.
    base = np.arange(16, dtype=F32)
    before = base.copy()
    g = np.ones(6, F32)
    with pytest.raises(ValueError, match="shares memory"):
        _native.sgd([base[0:6], base[4:10]], [g, g], None, 0.5, 0.0, False)
    with pytest.raises(ValueError, match="shares memory"):
        _native.sgd([base[0:6]], [g], [base[5:11]], 0.5, 0.9, False)
    with pytest.raises(ValueError, match="shares memory"):
        _native.sgd([base[0:6]], [base[3:9]], None, 0.5, 0.0, False)
    np.testing.assert_array_equal(base, before)


@pytest.mark.parametrize(
    "call",
    [
        lambda e: _native.adam(e.params, e.grads, *e.slots[:2], None, 0.1, 0.9, 0.999, 1e-7, 2**63),
        lambda e: _native.adamax(e.params, e.grads, *e.slots[:2], 0.1, 0.9, 0.999, 1e-7, 2**64),
        lambda e: _native.sgd(e.params, e.grads, None, 10**400, 0.0, False),
        lambda e: _native.StepOptions(accumulators=e.accumulators, accumulation_steps=-1),
        lambda e: _native.StepOptions(accumulators=e.accumulators, accumulation_steps=2**32),
        lambda e: _native.newton_schulz(e.matrix, 2**64, 3.4445, -4.775, 2.0315),
    ],
    ids=[
        "iterations=2**63",
        "iterations=2**64",
        "learning_rate=10**400",
        "accumulation_steps=-1",
        "accumulation_steps=2**32",
        "ns_steps=2**64",
    ],
)
def test_out_of_range_integers_are_value_errors(call):
    env = Env()
    before = [a.copy() for a in env.arrays()]
    with pytest.raises(ValueError):
        call(env)
    for a, b in zip(env.arrays(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [2**31, 10**6, 10**4])
def test_a_thread_count_no_machine_can_run_is_refused(n):
    before = fo.get_num_threads()
    try:
        with pytest.raises(ValueError):
            fo.set_num_threads(n)
    finally:
        fo.set_num_threads(before)
    assert fo.get_num_threads() == before


def test_thread_count_and_simd_level_junk():
    threads = _native.get_num_threads()
    level = _native.simd_level()
    for junk in [None, "2", 2.5, [2], 0, -1, -(2**63)]:
        with pytest.raises((TypeError, ValueError)):
            _native.set_num_threads(junk)
    for junk in [None, 3, "", "AVX2 ", "sse", "auto\0", b"avx2"]:
        with pytest.raises((TypeError, ValueError)):
            _native.set_simd_level(junk)
    assert _native.get_num_threads() == threads and _native.simd_level() == level


# --- random combinations ------------------------------------------------------------------------

ALL_JUNK = [j for kind in JUNK for j in JUNK[kind] if not callable(j)]


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    name=st.sampled_from(sorted(SIGNATURES)),
    replacements=st.lists(
        st.tuples(st.integers(0, 12), st.integers(0, len(ALL_JUNK) - 1)), min_size=1, max_size=3
    ),
)
def test_random_junk_in_several_arguments_is_a_clean_error(name, replacements):
    env = Env()
    args = env.valid(name)
    for position, junk in replacements:
        if _skip(name, ALL_JUNK[junk]):
            continue
        args[position % len(args)] = ALL_JUNK[junk]
    with np.errstate(all="ignore"):
        _call(name, args, env)
