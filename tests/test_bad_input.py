"""Bad input: a clear exception, raised before anything is modified (docs/design.md §5).

Every test checks the exception's type and a fragment of its message, and that the call changed
nothing: the parameters, every optimizer variable (slots, accumulators, EMA averages, the
iteration counter) and `iterations` equal the copies taken before the call.
"""

import math
import re

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _native
from optimizers_under_test import native_scalars
from snapshot import Snapshot

# A configuration with every kind of state: slots, EMA averages and accumulators.
STATEFUL = {
    "learning_rate": 0.1,
    "amsgrad": True,
    "use_ema": True,
    "ema_momentum": 0.9,
    "gradient_accumulation_steps": 2,
    "weight_decay": 0.01,
    "global_clipnorm": 1.0,
}


def _params(dtype=np.float32):
    rng = np.random.default_rng(7)
    return [np.asarray(rng.standard_normal(s), dtype) for s in [(3, 2), (5,), ()]]


def _grads(params):
    return [np.full(p.shape, 0.5, p.dtype) for p in params]


def _trained(name="Adam", params=None, **kwargs):
    """An optimizer that has taken three steps on `params` (every slot holds non-zero state and,
    with gradient_accumulation_steps=2, the accumulators too)."""
    params = _params() if params is None else params
    opt = getattr(fo.optimizers, name)(**(kwargs or STATEFUL))
    for _ in range(3):
        opt.apply_gradients(zip(_grads(params), params))
    return opt, params


def _shape_pattern(shape):
    """A shape as Python prints it (a tuple), the only spelling a message uses."""
    return re.escape(str(tuple(shape)))


# --- parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [np.int32, np.int64, np.float16, np.complex64, np.complex128, np.bool_]
)
def test_parameter_dtype_is_rejected(dtype):
    good = np.ones(3, np.float32)
    bad = np.ones(3, dtype)
    opt = fo.optimizers.Adam(**STATEFUL)
    snapshot = Snapshot(opt, [good, bad])
    with pytest.raises(TypeError, match="float32|float64"):
        opt.apply_gradients([(np.ones(3, np.float32), good), (np.ones(3, np.float32), bad)])
    snapshot.check()


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex128])
def test_build_rejects_parameter_dtype(dtype):
    opt = fo.optimizers.SGD(momentum=0.9)
    with pytest.raises(TypeError, match="float32|float64"):
        opt.build([np.ones(3, np.float32), np.ones(2, dtype)])
    assert len(opt.variables) == 2  # iteration and learning_rate only: nothing was built


def test_failed_first_call_leaves_the_optimizer_unbuilt():
    opt = fo.optimizers.Adam(learning_rate=0.5)
    good = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    with pytest.raises(TypeError):
        opt.apply_gradients([(np.ones(4, np.float32), good), (np.ones(2), np.ones(2, np.int64))])
    np.testing.assert_array_equal(good, [1.0, 2.0, 3.0, 4.0])
    assert int(opt.iterations) == 0
    # The optimizer still works, as a fresh one would, on other variables.
    opt.apply_gradients([(np.array([1.0, 6.0, 7.0, 2.0], np.float32), good)])
    np.testing.assert_allclose(good, [0.50000495, 1.5000036, 2.5000036, 3.500004], rtol=1e-6)


@pytest.mark.parametrize(
    "grad",
    [
        pytest.param(np.ones((3, 2), np.complex64), id="complex64"),
        pytest.param(np.ones((3, 2), np.complex128), id="complex128"),
        pytest.param(np.ones((3, 2)).astype(object), id="object"),
        pytest.param(np.full((3, 2), "a"), id="str"),
        pytest.param(np.full((3, 2), b"a"), id="bytes"),
        pytest.param([["a", "b"], ["c", "d"], ["e", "f"]], id="list-of-str"),
    ],
)
def test_gradient_dtype_that_cannot_be_cast_is_rejected(grad):
    opt, params = _trained()
    snapshot = Snapshot(opt, params)
    grads = _grads(params)
    grads[0] = grad
    with pytest.raises(TypeError, match="cast"):
        opt.apply_gradients(zip(grads, params))
    snapshot.check()


@pytest.mark.parametrize(
    "grad_shape", [(2, 3), (6,), (3, 2, 1), (1, 2), (3, 1), ()], ids=lambda s: f"grad{s}"
)
def test_shape_mismatch_names_the_variable_and_both_shapes(grad_shape):
    # No broadcasting: a gradient must have the parameter's exact shape.
    opt, params = _trained()
    snapshot = Snapshot(opt, params)
    grads = _grads(params)
    grads[0] = np.ones(grad_shape, np.float32)
    with pytest.raises(ValueError) as info:
        opt.apply_gradients(zip(grads, params))
    message = str(info.value)
    assert re.search(_shape_pattern((3, 2)), message), message
    assert re.search(_shape_pattern(grad_shape), message), message
    assert "0" in message, message
    snapshot.check()


def test_shape_mismatch_in_a_dict_names_the_variable():
    params = {"dense/kernel": np.ones((3, 2), np.float32), "dense/bias": np.ones(2, np.float32)}
    opt = fo.optimizers.SGD(momentum=0.9)
    opt.apply({k: np.ones(p.shape, np.float32) for k, p in params.items()}, params)
    snapshot = Snapshot(opt, params)
    # docs/design.md §5: the message names the variable by its index or its name.
    with pytest.raises(ValueError, match=r"dense/bias|index 1\b") as info:
        opt.apply(
            {"dense/kernel": np.ones((3, 2), np.float32), "dense/bias": np.ones(3, np.float32)},
            params,
        )
    assert re.search(_shape_pattern((2,)), str(info.value))
    assert re.search(_shape_pattern((3,)), str(info.value))
    snapshot.check()


def test_read_only_parameter_is_rejected():
    opt, params = _trained()
    params[2].flags.writeable = False
    snapshot = Snapshot(opt, params)
    with pytest.raises(ValueError, match="read-only|writeable|writable"):
        opt.apply_gradients(zip(_grads(params), params))
    snapshot.check()


def test_read_only_parameter_is_rejected_on_the_first_call():
    p = np.ones(4, np.float32)
    p.flags.writeable = False
    opt = fo.optimizers.SGD()
    with pytest.raises(ValueError, match="read-only|writeable|writable"):
        opt.apply_gradients([(np.ones(4, np.float32), p)])
    assert int(opt.iterations) == 0


def test_same_array_twice_is_rejected():
    p = np.ones(4, np.float32)
    other = np.ones(3, np.float32)
    opt = fo.optimizers.Adam(**STATEFUL)
    snapshot = Snapshot(opt, [p, other])
    with pytest.raises(ValueError, match="twice|shares memory"):
        opt.apply_gradients(
            [
                (np.ones(4, np.float32), p),
                (np.ones(3, np.float32), other),
                (np.ones(4, np.float32), p),
            ]
        )
    snapshot.check()


def test_same_built_array_twice_is_rejected():
    opt, params = _trained()
    snapshot = Snapshot(opt, params)
    with pytest.raises(ValueError, match="twice|shares memory"):
        grads = _grads([params[0], params[1], params[1]])
        opt.apply_gradients(zip(grads, [params[0], params[1], params[1]]))
    snapshot.check()


def test_overlapping_parameter_views_are_rejected():
    base = np.ones(10, np.float32)
    opt = fo.optimizers.SGD(learning_rate=0.1)
    with pytest.raises(ValueError, match="memory|overlap"):
        opt.apply_gradients(
            [(np.ones(6, np.float32), base[:6]), (np.ones(6, np.float32), base[4:])]
        )
    np.testing.assert_array_equal(base, np.ones(10))


def _assert_aliased_gradient_rejected(opt, params, index, grad):
    # `grad`, as gradient `index`, shares memory it must not: the step refuses it and leaves the
    # parameters and the optimizer as they were.
    snapshot = Snapshot(opt, params)
    grads = _grads(params)
    grads[index] = grad
    with pytest.raises(ValueError, match="memory|alias|overlap"):
        opt.apply_gradients(zip(grads, params))
    snapshot.check()


@pytest.mark.parametrize(
    "make_grad",
    [
        pytest.param(lambda p: p, id="the-parameter-itself"),
        pytest.param(lambda p: p[::-1], id="a-reversed-view"),
        pytest.param(lambda p: p[:, ::-1], id="a-strided-view"),
        pytest.param(lambda p: p.reshape(p.shape), id="a-reshaped-view"),
    ],
)
def test_gradient_sharing_memory_with_its_parameter_is_rejected(make_grad):
    opt, params = _trained()
    _assert_aliased_gradient_rejected(opt, params, 0, make_grad(params[0]))


def test_gradient_sharing_memory_with_another_parameter_is_rejected():
    opt, params = _trained()
    _assert_aliased_gradient_rejected(opt, params, 1, params[0].reshape(6)[:5])


def test_gradient_sharing_memory_with_an_optimizer_slot_is_rejected():
    opt, params = _trained("SGD", learning_rate=0.1, momentum=0.9)
    momentum_of_param_0 = opt.variables[2]
    assert np.shape(momentum_of_param_0) == (3, 2)
    _assert_aliased_gradient_rejected(opt, params, 0, momentum_of_param_0)


def test_unknown_variable_is_rejected():
    opt, params = _trained()
    snapshot = Snapshot(opt, params)
    stranger = params[1].copy()  # equal values, another array
    with pytest.raises(
        ValueError, match="can only be called for the variables it was originally built with"
    ):
        opt.apply_gradients(zip(_grads(params), [params[0], stranger, params[2]]))
    snapshot.check()
    np.testing.assert_array_equal(stranger, params[1])


def test_wrong_number_of_gradients_without_variables_is_rejected():
    opt, params = _trained()
    snapshot = Snapshot(opt, params)
    with pytest.raises(ValueError, match="must match `optimizer.variables`"):
        opt.apply(_grads(params)[:2])
    snapshot.check()


def test_apply_without_variables_before_build_is_rejected():
    opt = fo.optimizers.SGD()
    with pytest.raises(ValueError, match="must already be built"):
        opt.apply([np.ones(3, np.float32)])
    assert int(opt.iterations) == 0


def test_all_gradients_none_is_rejected():
    opt, params = _trained()
    snapshot = Snapshot(opt, params)
    with pytest.raises(ValueError, match="No gradients provided for any variable."):
        opt.apply_gradients(zip([None] * len(params), params))
    snapshot.check()


# --- a failure anywhere in a multi-tensor call leaves every tensor unchanged --------------------


def _last_grad_wrong_shape(params, grads):
    grads[-1] = np.ones((7,), params[-1].dtype)
    return ValueError, "shape"


def _last_grad_complex(params, grads):
    grads[-1] = np.ones(params[-1].shape, np.complex128)
    return TypeError, "cast"


def _last_param_read_only(params, grads):
    params[-1].flags.writeable = False
    return ValueError, "read-only|writeable|writable"


def _last_grad_is_its_param(params, grads):
    grads[-1] = params[-1]
    return ValueError, "memory|alias|overlap"


@pytest.mark.parametrize(
    "fault",
    [_last_grad_wrong_shape, _last_grad_complex, _last_param_read_only, _last_grad_is_its_param],
    ids=lambda f: f.__name__.strip("_"),
)
@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
        ("Adam", STATEFUL),
        ("AdamW", {"clipnorm": 1.0, "use_ema": True}),
        (
            "SGD",
            {
                "clipvalue": 0.1,
                "loss_scale_factor": 4.0,
                "use_ema": True,
                "ema_overwrite_frequency": 2,
            },
        ),
    ],
    ids=["SGD-nesterov", "Adam-stateful", "AdamW-clipnorm-ema", "SGD-clipvalue-ema"],
)
def test_failure_in_the_last_tensor_leaves_the_first_ones_unchanged(name, kwargs, fault):
    rng = np.random.default_rng(3)
    # float32 first, a float64 group after: the first dtype group must not be updated either.
    params = [np.asarray(rng.standard_normal(s), np.float32) for s in [(3, 2), (1025,)]]
    params += [np.asarray(rng.standard_normal(s), np.float64) for s in [(4,), (3,)]]
    opt, params = _trained(name, params, **kwargs)
    grads = _grads(params)
    error, fragment = fault(params, grads)
    snapshot = Snapshot(opt, params)
    with pytest.raises(error, match=fragment):
        opt.apply_gradients(zip(grads, params))
    snapshot.check()


# --- hyperparameters (Keras's wording) -----------------------------------------------------------


# Keras's messages that several bad combinations share.
MOMENTUM_RANGE = "`momentum` must be a float between [0, 1]."
ONE_CLIP = "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set."
EMA_FREQUENCY = "`ema_overwrite_frequency` must be an integer >= 1 or None."

BAD_HYPERPARAMETERS = [  # (optimizer, kwargs, Keras's message)
    *(("SGD", {"momentum": momentum}, MOMENTUM_RANGE) for momentum in [1.5, -0.1, 0, 1]),
    (
        "AdamW",
        {"weight_decay": None},
        "Argument `weight_decay` must be a float. Received: weight_decay=None",
    ),
    ("SGD", {"clipnorm": 1.0, "clipvalue": 1.0}, ONE_CLIP),
    ("Adam", {"clipnorm": 1.0, "global_clipnorm": 1.0}, ONE_CLIP),
    ("Adam", {"clipvalue": 1.0, "global_clipnorm": 1.0}, ONE_CLIP),
    ("Adam", {"clipnorm": 0, "clipvalue": 1.0}, ONE_CLIP),
    (
        "Adam",
        {"gradient_accumulation_steps": 1},
        "`gradient_accumulation_steps` must be an integer >= 2.",
    ),
    (
        "SGD",
        {"use_ema": True, "ema_momentum": 2},
        "`ema_momentum` must be in the range [0, 1]. Received: ema_momentum=2",
    ),
    ("SGD", {"use_ema": True, "ema_momentum": -0.5}, "`ema_momentum` must be in the range [0, 1]."),
    ("Adam", {"use_ema": True, "ema_overwrite_frequency": -1}, EMA_FREQUENCY),
    ("Adam", {"use_ema": True, "ema_overwrite_frequency": 2.5}, EMA_FREQUENCY),
    (
        "Adam",
        {"learning_rate": 1},
        "Argument `learning_rate` should be float, or an instance of LearningRateSchedule, "
        "or a callable",
    ),
    ("SGD", {"learning_rate": "0.1"}, "Argument `learning_rate` should be float"),
    ("SGD", {"learning_rate": np.float32(0.1)}, "Argument `learning_rate` should be float"),
    ("Adam", {"foo": 1}, "Argument(s) not recognized: {'foo': 1}"),
]


@pytest.mark.parametrize(
    "name,kwargs,message",
    [pytest.param(*case, id=f"{case[0]}{case[1]}") for case in BAD_HYPERPARAMETERS],
)
def test_bad_hyperparameters_use_keras_wording(name, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(fo.optimizers, name)(**kwargs)


def test_keras_accepts_what_it_accepts():
    # The other side of the checks above, as Keras has it: np.float64 is a float; the EMA
    # arguments are only checked with use_ema; a falsy ema_overwrite_frequency means never.
    fo.optimizers.SGD(learning_rate=np.float64(0.1), momentum=np.float64(0.5))
    fo.optimizers.Adam(ema_momentum=5.0)
    fo.optimizers.Adam(use_ema=True, ema_overwrite_frequency=0)
    fo.optimizers.Adam(gradient_accumulation_steps=0)
    fo.optimizers.SGD(momentum=0.0)
    fo.optimizers.SGD(momentum=1.0)


NON_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    "name,argument,extra",
    [
        *(("SGD", a, {}) for a in "learning_rate momentum weight_decay clipvalue decay".split()),
        *(
            ("Adam", a, {})
            for a in "learning_rate beta_1 beta_2 epsilon clipnorm global_clipnorm".split()
        ),
        ("Adam", "loss_scale_factor", {}),
        ("AdamW", "weight_decay", {}),
        ("SGD", "ema_momentum", {"use_ema": True}),
    ],
)
def test_non_finite_hyperparameters_are_rejected(name, argument, extra, value):
    with pytest.raises(ValueError, match=re.escape(argument)):
        getattr(fo.optimizers, name)(**{argument: value}, **extra)


# --- the native functions, called directly with junk ---------------------------------------------

JUNK_ERRORS = (TypeError, ValueError)


def _f32(*shape):
    return np.ones(shape, np.float32)


# StepOptions arguments an SGD step must refuse, by case id.
SGD_JUNK_OPTIONS = {
    "accumulators-length": dict(accumulators=[_f32(3)], accumulation_steps=2),
    "accumulation-steps-0": dict(accumulators=[_f32(3), _f32(2, 2)], accumulation_steps=0),
    "mask-length": dict(weight_decay=0.1, weight_decay_mask=[True]),
    "two-clips": dict(clipnorm=1.0, clipvalue=1.0),
    "averages-length": dict(averages=[_f32(3)]),
}


def _sgd_with_options(options):
    # The StepOptions are built inside the call: building them may be what raises.
    return lambda p, g, m: _native.sgd(p, g, None, 0.1, 0.0, False, _native.StepOptions(**options))


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda p, g, m: _native.sgd(None, None, None, 0.1, 0.0, False), id="none"),
        pytest.param(lambda p, g, m: _native.sgd(p, None, None, 0.1, 0.0, False), id="grads-none"),
        pytest.param(lambda p, g, m: _native.sgd(p, g + g, None, 0.1, 0.0, False), id="more-grads"),
        pytest.param(
            lambda p, g, m: _native.sgd(p, g[:1], None, 0.1, 0.0, False), id="fewer-grads"
        ),
        pytest.param(
            lambda p, g, m: _native.sgd(p, g, m[:1], 0.1, 0.9, False), id="fewer-momentums"
        ),
        pytest.param(
            lambda p, g, m: _native.sgd(p, g, [_f32(4), _f32(5)], 0.1, 0.9, False),
            id="momentum-shape",
        ),
        pytest.param(
            lambda p, g, m: _native.sgd(p, g, [np.ones(3), np.ones((2, 2))], 0.1, 0.9, False),
            id="momentum-dtype",
        ),
        pytest.param(
            lambda p, g, m: _native.sgd([1.0, 2.0], g, None, 0.1, 0.0, False), id="float-params"
        ),
        pytest.param(
            lambda p, g, m: _native.sgd(
                [[1.0, 2.0, 3.0], [[1.0, 1.0], [1.0, 1.0]]], g, None, 0.1, 0.0, False
            ),
            id="list-params",
        ),
        pytest.param(
            lambda p, g, m: _native.sgd(p, [[[1.0, 2.0], [3.0]], g[1]], None, 0.1, 0.0, False),
            id="ragged-grad",
        ),
        pytest.param(
            lambda p, g, m: _native.sgd(p, ["abc", g[1]], None, 0.1, 0.0, False), id="string-grad"
        ),
        pytest.param(
            lambda p, g, m: _native.sgd(p, [object(), g[1]], None, 0.1, 0.0, False),
            id="object-grad",
        ),
        pytest.param(lambda p, g, m: _native.sgd(p, g, None, "0.1", 0.0, False), id="string-lr"),
        pytest.param(lambda p, g, m: _native.sgd(p, g, None, None, 0.0, False), id="none-lr"),
        pytest.param(
            lambda p, g, m: _native.sgd([p[0], np.ones(4)], g, None, 0.1, 0.0, False),
            id="mixed-dtype-params",
        ),
        pytest.param(
            lambda p, g, m: _native.sgd(p, g, None, 0.1, 0.9, False), id="momentum-without-slots"
        ),
        pytest.param(
            lambda p, g, m: _native.sgd(p, g, None, 0.1, 0.0, False, options=42), id="options-int"
        ),
        *(
            pytest.param(_sgd_with_options(options), id=name)
            for name, options in SGD_JUNK_OPTIONS.items()
        ),
        pytest.param(
            lambda p, g, m: _native.adam(p, g, m, m, None, 0.1, 0.9, 0.999, 1e-7, 0),
            id="adam-same-slot-twice",
        ),
        pytest.param(
            lambda p, g, m: _native.adam(
                p, g, m, [_f32(3), _f32(2, 2)], [_f32(3)], 0.1, 0.9, 0.999, 1e-7, 0
            ),
            id="adam-velocity-hats-length",
        ),
        pytest.param(
            lambda p, g, m: _native.adam(p, g, m, None, None, 0.1, 0.9, 0.999, 1e-7, 0),
            id="adam-velocities-none",
        ),
        pytest.param(
            lambda p, g, m: _native.adam(
                p, g, m, [_f32(3), _f32(2, 2)], None, 0.1, 0.9, 0.999, 1e-7, -1
            ),
            id="adam-negative-iterations",
        ),
        pytest.param(lambda p, g, m: _native.ema(p, [_f32(3)], 0.9, False), id="ema-length"),
        pytest.param(lambda p, g, m: _native.ema(p, p, 0.9, False), id="ema-aliasing"),
        pytest.param(lambda p, g, m: _native.roofline(p, g, [[_f32(3)]]), id="roofline-slots"),
        pytest.param(lambda p, g, m: _native.roofline(p, None, []), id="roofline-none"),
    ],
)
def test_native_functions_reject_junk(call):
    params = [_f32(3), _f32(2, 2)]
    grads = [_f32(3), _f32(2, 2)]
    momentums = [np.zeros(3, np.float32), np.zeros((2, 2), np.float32)]
    with pytest.raises(JUNK_ERRORS):
        call(params, grads, momentums)
    for p in params:
        np.testing.assert_array_equal(p, 1.0)
    for m in momentums:
        np.testing.assert_array_equal(m, 0.0)


def test_native_thread_count_rejects_junk():
    threads = _native.get_num_threads()
    for junk in ("2", None, 1.5):
        with pytest.raises(JUNK_ERRORS):
            _native.set_num_threads(junk)
    with pytest.raises(JUNK_ERRORS + (OverflowError,)):
        _native.set_num_threads(-1)
    assert _native.get_num_threads() == threads


# --- the other optimizers' native functions, called directly with junk ---------------------------

# The native update functions, their slot lists and the place of `iterations` come from the
# native declaration (`_native.rule_signatures()`, see _native.pyi); valid hyperparameters,
# by argument name, from the shared table (`native_scalars`): the call
# `fn(params, grads, *slots, *hyperparameters)` with all its slot lists given is valid.
NATIVE_UPDATES = sorted(_native.rule_signatures())


def _native_update(name):
    """(slot lists, hyperparameters, index of `iterations` among them or None) of `name`."""
    args = _native.rule_signatures()[name]
    slot_lists = sum(a["kind"] in ("slots", "optional_slots") for a in args)
    scalars = [a["name"] for a in args if a["kind"] in ("real", "int", "bool")]
    iterations_index = scalars.index("iterations") if "iterations" in scalars else None
    return slot_lists, native_scalars(name), iterations_index


def test_every_native_update_has_valid_hyperparameters():
    for name in NATIVE_UPDATES:
        scalars = [
            a for a in _native.rule_signatures()[name] if a["kind"] in ("real", "int", "bool")
        ]
        assert len(native_scalars(name)) == len(scalars), name


SLOT_VALUE = 0.25


class NativeCall:
    """A valid call of one native update function, to be spoiled by one junk edit.

    Args:
        name: the function's name in `_native`.
    """

    def __init__(self, name):
        slot_lists, hyperparameters, iterations_index = _native_update(name)
        self.function = getattr(_native, name)
        self.params = [_f32(3), _f32(2, 2)]
        self.grads = [_f32(3), _f32(2, 2)]
        self.slots = [
            [np.full(p.shape, SLOT_VALUE, np.float32) for p in self.params]
            for _ in range(slot_lists)
        ]
        self.hyperparameters = list(hyperparameters)
        self.iterations_index = iterations_index
        self.kwargs = {}
        # What the junk may replace in the call, but what must hold its values afterwards.
        self.arrays = [*self.params, *self.grads]
        self.slot_arrays = [a for kind in self.slots for a in kind]

    def __call__(self):
        return self.function(
            self.params, self.grads, *self.slots, *self.hyperparameters, **self.kwargs
        )

    def check_unchanged(self):
        for a in self.arrays:
            np.testing.assert_array_equal(a, 1.0)
        for a in self.slot_arrays:
            np.testing.assert_array_equal(a, SLOT_VALUE)


def _read_only(array):
    array.flags.writeable = False


# (id, edit of a NativeCall, whether it applies to a call): every edit leaves a call that must
# raise TypeError or ValueError before it modifies anything.
NATIVE_JUNK = [
    ("params-none", lambda c: setattr(c, "params", None), None),
    ("grads-none", lambda c: setattr(c, "grads", None), None),
    ("params-an-array", lambda c: setattr(c, "params", c.params[0]), None),
    ("more-grads", lambda c: setattr(c, "grads", c.grads + c.grads), None),
    ("fewer-grads", lambda c: setattr(c, "grads", c.grads[:1]), None),
    ("fewer-first-slots", lambda c: c.slots.__setitem__(0, c.slots[0][:1]), None),
    ("fewer-last-slots", lambda c: c.slots.__setitem__(-1, c.slots[-1][:1]), None),
    ("first-slots-none", lambda c: c.slots.__setitem__(0, None), None),
    ("float-params", lambda c: setattr(c, "params", [1.0, 2.0]), None),
    (
        "nested-list-params",
        lambda c: setattr(c, "params", [[1.0, 1.0, 1.0], [[1.0, 1.0], [1.0, 1.0]]]),
        None,
    ),
    (
        "int-params",
        lambda c: setattr(c, "params", [np.ones(3, np.int32), np.ones((2, 2), np.int32)]),
        None,
    ),
    ("mixed-dtype-params", lambda c: c.params.__setitem__(1, np.ones((2, 2))), None),
    ("ragged-grad", lambda c: c.grads.__setitem__(0, [[1.0, 2.0], [3.0]]), None),
    ("string-grad", lambda c: c.grads.__setitem__(0, "abc"), None),
    ("object-grad", lambda c: c.grads.__setitem__(0, object()), None),
    ("complex-grad", lambda c: c.grads.__setitem__(0, np.ones(3, np.complex64)), None),
    ("grad-shape", lambda c: c.grads.__setitem__(1, _f32(4)), None),
    ("grad-shape-same-size", lambda c: c.grads.__setitem__(1, _f32(4, 1)), None),
    ("slot-shape", lambda c: c.slots[-1].__setitem__(1, np.zeros(5, np.float32)), None),
    ("slots-float64", lambda c: c.slots.__setitem__(0, [np.zeros(3), np.zeros((2, 2))]), None),
    ("slot-int32", lambda c: c.slots[-1].__setitem__(0, np.zeros(3, np.int32)), None),
    ("slot-a-list", lambda c: c.slots[0].__setitem__(0, [0.0, 0.0, 0.0]), None),
    ("read-only-param", lambda c: _read_only(c.params[1]), None),
    ("read-only-slot", lambda c: _read_only(c.slots[-1][1]), None),
    ("slot-is-its-param", lambda c: c.slots[0].__setitem__(1, c.params[1]), None),
    ("slot-is-a-view-of-its-param", lambda c: c.slots[-1].__setitem__(1, c.params[1][::-1]), None),
    (
        "slot-is-another-param",
        lambda c: c.slots[-1].__setitem__(0, c.params[1].reshape(4)[:3]),
        None,
    ),
    ("grad-is-its-param", lambda c: c.grads.__setitem__(0, c.params[0]), None),
    ("grad-is-a-slot", lambda c: c.grads.__setitem__(1, c.slots[0][1]), None),
    ("same-param-twice", lambda c: setattr(c, "params", [c.params[1], c.params[1]]), None),
    ("same-slots-twice", lambda c: c.slots.__setitem__(-1, c.slots[0]), lambda c: len(c.slots) > 1),
    ("string-learning-rate", lambda c: c.hyperparameters.__setitem__(0, "0.1"), None),
    ("none-learning-rate", lambda c: c.hyperparameters.__setitem__(0, None), None),
    ("string-last-hyperparameter", lambda c: c.hyperparameters.__setitem__(-1, "x"), None),
    (
        "negative-iterations",
        lambda c: c.hyperparameters.__setitem__(c.iterations_index, -1),
        lambda c: c.iterations_index is not None,
    ),
    (
        "float-iterations",
        lambda c: c.hyperparameters.__setitem__(c.iterations_index, 1.5),
        lambda c: c.iterations_index is not None,
    ),
    ("options-int", lambda c: c.kwargs.update(options=42), None),
    (
        "accumulators-length",
        lambda c: c.kwargs.update(
            options=_native.StepOptions(accumulators=[_f32(3)], accumulation_steps=2)
        ),
        None,
    ),
    (
        "averages-length",
        lambda c: c.kwargs.update(options=_native.StepOptions(averages=[_f32(3)])),
        None,
    ),
    (
        "average-is-a-slot",
        lambda c: c.kwargs.update(
            options=_native.StepOptions(averages=[c.slots[-1][0], np.zeros((2, 2), np.float32)])
        ),
        None,
    ),
    (
        "accumulator-is-a-param",
        lambda c: c.kwargs.update(
            options=_native.StepOptions(
                accumulators=[c.params[0], np.zeros((2, 2), np.float32)], accumulation_steps=2
            )
        ),
        None,
    ),
]


@pytest.mark.parametrize("name", NATIVE_UPDATES)
def test_native_update_call_of_the_junk_table_is_valid(name):
    # The junk below fails because of its one edit, not because the call it edits is wrong.
    call = NativeCall(name)
    call()
    assert np.all(np.isfinite(call.params[0])) and np.any(call.params[0] != 1.0)


@pytest.mark.parametrize(
    "name,edit",
    [
        pytest.param(name, edit, id=f"{name}-{junk_id}")
        for name in NATIVE_UPDATES
        for junk_id, edit, applies in NATIVE_JUNK
        if applies is None or applies(NativeCall(name))
    ],
)
def test_native_updates_reject_junk(name, edit):
    call = NativeCall(name)
    edit(call)
    with pytest.raises(JUNK_ERRORS):
        call()
    call.check_unchanged()


def test_all_finite_reads_arrays():
    # The other side of the junk below: lists of arrays of any real dtype are read in place.
    assert _native.all_finite([_f32(3), np.ones((2, 2)), np.ones(2, np.int64)])
    assert _native.all_finite([])
    values = _f32(5)
    values[3] = np.nan
    assert not _native.all_finite([_f32(2), values])
    assert not _native.all_finite([np.array([1.0, -np.inf])[::-1]])


def test_all_finite_reads_a_broadcast_axis_once():
    # 2**40 logical elements in 16 bytes: each broadcast axis is read once, or this would
    # take half an hour.
    row = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    assert _native.all_finite([np.broadcast_to(row, (2**38, 4))])
    row[0, 2] = np.inf
    assert not _native.all_finite([np.broadcast_to(row, (2**38, 4))])
    assert not _native.all_finite([np.broadcast_to(row.T, (4, 2**38))])
    assert _native.all_finite([np.broadcast_to(row, (0, 4))])


@pytest.mark.parametrize(
    "junk",
    [
        pytest.param(None, id="none"),
        pytest.param(42, id="int"),
        pytest.param("abc", id="string"),
        pytest.param(np.ones(3, np.float32), id="an-array"),
        pytest.param([None], id="list-of-none"),
        pytest.param([[[1.0], [1.0, 2.0]]], id="ragged"),
        pytest.param([np.ones(3, np.complex64)], id="complex"),
        pytest.param([np.ones(3).astype(object)], id="object"),
        pytest.param([np.array(["a", "b"])], id="strings"),
        pytest.param([object()], id="an-object"),
    ],
)
def test_all_finite_rejects_junk(junk):
    good = _f32(3)
    # A junk element after a good array: the good one is read, not changed.
    for arrays in [junk] + ([[good, *junk]] if isinstance(junk, list) else []):
        with pytest.raises(JUNK_ERRORS):
            _native.all_finite(arrays)
    np.testing.assert_array_equal(good, 1.0)
