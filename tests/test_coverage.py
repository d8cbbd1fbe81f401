"""The table of optimizers under test (optimizers_under_test.py) against the registry.

Every per-optimizer test draws its cases from that table, so an optimizer without a record
would be tested nowhere and nothing would fail: these tests fail instead. Every class registered
in `ferroptim.optimizers._BUILTINS` has a record, except the classes listed below with their
reasons; every record names a registered class; every element-wise record has its reference rule
in reference.py, and each record's fields agree with what the class is.
"""

import pytest

import ferroptim as fo
import reference as ref
from ferroptim.optimizers import _BUILTINS
from ferroptim.optimizers._unfused import Unfused
from optimizers_under_test import OPTIMIZERS, build, label

# Registered classes without a record, each with its reason.
NOT_UNDER_TEST_HERE = {
    # The base class: it has no update rule of its own.
    fo.optimizers.Optimizer: "base class",
    # Not an optimizer: the routing table a serialized MultiOptimizer is rebuilt from.
    fo.optimizers.OptimizerMap: "not an optimizer",
    # Wrappers step the optimizers they hold and have no rule of their own; their own modules
    # test them (test_loss_scale.py, test_multi_optimizer.py) over inner optimizers.
    fo.optimizers.LossScaleOptimizer: "wrapper: test_loss_scale.py",
    fo.optimizers.MultiOptimizer: "wrapper: test_multi_optimizer.py",
}

# The fields holding tuples of constructor arguments, and those holding one set (or None).
ARGUMENT_TUPLES = ("numerics", "round_trip", "invariance", "cross_dispatch")
ARGUMENT_SETS = ("mixed_dtypes", "checkpoint", "memory")


def test_every_registered_optimizer_has_a_record():
    registered = set(_BUILTINS.values())
    recorded = {case.cls for case in OPTIMIZERS}
    missing = registered - recorded - set(NOT_UNDER_TEST_HERE)
    assert not missing, (
        f"registered but not in optimizers_under_test.OPTIMIZERS: "
        f"{sorted(cls.__name__ for cls in missing)}"
    )


def test_every_record_is_a_registered_optimizer():
    for case in OPTIMIZERS:
        assert _BUILTINS.get(case.name.lower()) is case.cls, f"{case.name} is not registered"
        assert issubclass(case.cls, fo.optimizers.Optimizer) and case.cls not in NOT_UNDER_TEST_HERE
    # The exclusions name registered classes: a renamed or removed one is noticed here.
    assert set(NOT_UNDER_TEST_HERE) <= set(_BUILTINS.values())


def test_one_record_per_optimizer():
    names = [case.name for case in OPTIMIZERS]
    assert len(names) == len(set(names)), f"duplicate records: {names}"


def test_every_reference_rule_has_a_record():
    # Every rule reference.py defines is some record's reference (none left untested).
    rules = {value for name, value in vars(ref).items() if name.endswith("Rule")}
    rules.discard(ref.Rule)
    assert rules == {case.reference for case in OPTIMIZERS if case.reference is not None}


@pytest.mark.parametrize("case", [case for case in OPTIMIZERS if case.elementwise], ids=repr)
def test_every_elementwise_record_has_a_reference(case):
    assert case.reference is not None, f"{case.name}: an element-wise rule needs its reference"
    assert case.numerics, f"{case.name}: no arguments compared with the reference"


@pytest.mark.parametrize("case", OPTIMIZERS, ids=repr)
def test_record_agrees_with_its_class(case):
    if case.reference is not None:
        assert ref.make_reference(case.name).rule.__class__ is case.reference
    # Unfused classes run their rule in NumPy around native calls; the others in one call.
    assert case.fused is not issubclass(case.cls, Unfused)
    if case.own_defaults is not None:
        assert set(case.own_defaults) <= set(case.cls().get_config())
    assert case.cls().get_config()["learning_rate"] == pytest.approx(
        case.default_learning_rate, rel=1e-7
    )


@pytest.mark.parametrize("case", OPTIMIZERS, ids=repr)
def test_every_argument_set_of_a_record_builds_its_optimizer(case):
    # A misspelt argument fails here, with the record's name, not deep inside another test.
    sets = [kwargs for field in ARGUMENT_TUPLES for kwargs in getattr(case, field)]
    sets += [getattr(case, field) for field in ARGUMENT_SETS if getattr(case, field) is not None]
    sets += [kwargs for kwargs, _ in case.slots]
    for kwargs in sets:
        assert isinstance(build(case, kwargs), case.cls), label(case, kwargs)


def test_the_class_declares_whether_its_rule_is_element_wise():
    # A distributed optimizer splits the variables of an element-wise class anywhere.
    for case in OPTIMIZERS:
        assert case.cls._elementwise is case.elementwise, case.name
