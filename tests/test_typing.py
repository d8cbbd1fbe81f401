"""The public API as a type checker, `dir()` and `repr()` see it.

`python -m mypy.stubtest ferroptim` (in `.ci/run`) checks that the signatures a type checker
reads are the ones the calls bind; these tests check what it cannot: the namespaces, the types
mypy infers for user code, the class-definition check of Keras's signature, and `repr`.
"""

import subprocess
import sys
import textwrap
import types
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.optimizers import Optimizer

NAMESPACES = ["ferroptim", "ferroptim.optimizers", "ferroptim.optimizers.schedules"]


def test_a_fresh_import_exports_only_its_all():
    # In a new process, so that no other test has imported a submodule (`checkpoint`,
    # `distributed`) meanwhile. Names with a leading underscore are private and hidden from tab
    # completion; every other name is in `__all__` (which also lists `__version__`).
    script = textwrap.dedent(
        f"""
        import importlib
        for name in {NAMESPACES!r}:
            module = importlib.import_module(name)
            public = sorted(n for n in dir(module) if not n.startswith("_"))
            exported = sorted(n for n in module.__all__ if not n.startswith("_"))
            print(name, public == exported, set(public) ^ set(exported))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        assert " True " in line, line


@pytest.mark.parametrize("name", NAMESPACES)
def test_public_names_are_all_or_submodules(name):
    module = sys.modules[name]
    public = {n for n in dir(module) if not n.startswith("_")}
    exported = {n for n in module.__all__ if not n.startswith("_")}
    assert exported <= public
    for extra in public - exported:
        value = getattr(module, extra)
        assert isinstance(value, types.ModuleType), extra
        assert value.__name__ == f"{name}.{extra}", extra


def test_the_modules_of_the_classes_still_import():
    import ferroptim.optimizers.adam as adam_module
    from ferroptim.optimizers import checkpoint

    assert adam_module.Adam is fo.optimizers.Adam
    assert callable(checkpoint.load)


def _reveal(code: str, tmp_path: Any) -> str:
    from mypy import api

    path = tmp_path / "user.py"
    path.write_text(textwrap.dedent(code))
    stdout, stderr, status = api.run(["--strict", "--no-incremental", str(path)])
    assert status == 0 or "Revealed type" in stdout, stdout + stderr
    return stdout


def test_user_code_type_checks_strictly(tmp_path):
    out = _reveal(
        """
        import numpy as np
        import ferroptim as fo

        params = {"w": np.ones((3, 2), np.float32)}
        opt = fo.optimizers.Adam(learning_rate=1e-3, weight_decay=0.01, global_clipnorm=1.0)
        opt.apply({"w": np.ones((3, 2), np.float32)}, params)
        count: int = opt.apply_gradients(zip([np.ones((3, 2), np.float32)], params.values()))
        loaded = fo.optimizers.Adam.load("run.fo", params)
        reveal_type(loaded)
        any_class = fo.optimizers.Optimizer.load("run.fo", params)
        reveal_type(any_class)
        schedule = fo.optimizers.schedules.CosineDecay(0.1, 100, warmup_steps=10)
        reveal_type(fo.optimizers.SGD(schedule, 0.9, True))
        reveal_type(schedule.from_config(schedule.get_config()))
        fo.set_num_threads(2)
        """,
        tmp_path,
    )
    revealed = [
        line.split("Revealed type is ")[1] for line in out.splitlines() if "Revealed" in line
    ]
    assert revealed == [
        '"ferroptim.optimizers.adam.Adam"',
        '"ferroptim.optimizers.optimizer.Optimizer"',
        '"ferroptim.optimizers.sgd.SGD"',
        '"ferroptim.optimizers.schedules.learning_rate_schedule.CosineDecay"',
    ], out
    assert "error" not in out, out


def test_a_class_without_keras_signature_is_refused_when_defined():
    from ferroptim import _native
    from ferroptim.optimizers.optimizer import NativeRule

    with pytest.raises(TypeError, match=r"must declare Keras's signature: `name`$"):

        class Forgetful(Optimizer, name="forgetful"):  # noqa: F841
            _rule = NativeRule(_native.sgd)

            def __init__(self, learning_rate: Any = 0.01, **kwargs: Any):
                super().__init__(learning_rate, **kwargs)

    with pytest.raises(TypeError, match=r"the base class's arguments in its order"):

        class Reordered(Optimizer, name=None):  # noqa: F841
            _rule = NativeRule(_native.sgd)

            def __init__(
                self,
                learning_rate: Any = 0.01,
                clipnorm: Any = None,
                weight_decay: Any = None,
                clipvalue: Any = None,
                global_clipnorm: Any = None,
                use_ema: bool = False,
                ema_momentum: float = 0.99,
                ema_overwrite_frequency: Any = None,
                loss_scale_factor: Any = None,
                gradient_accumulation_steps: Any = None,
                name: Any = None,
                **kwargs: Any,
            ):
                raise AssertionError("never constructed")


# --- repr -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda o: o.Adam(), "Adam()"),
        (lambda o: o.Adam(learning_rate=0.01, beta_1=0.8), "Adam(learning_rate=0.01, beta_1=0.8)"),
        (lambda o: o.Adam(0.001, 0.9, 0.99, name="mine"), "Adam(beta_2=0.99, name='mine')"),
        (
            lambda o: o.SGD(lr=0.1, momentum=0.9, decay=1e-6),
            "SGD(learning_rate=0.1, momentum=0.9, decay=1e-06)",
        ),
        (lambda o: o.AdamW(weight_decay=0.01, lazy=True), "AdamW(weight_decay=0.01, lazy=True)"),
        (lambda o: o.Muon(), "Muon()"),
        (
            lambda o: o.Adam(o.schedules.ExponentialDecay(0.1, 1000, 0.96, staircase=True)),
            "Adam(learning_rate=ExponentialDecay(initial_learning_rate=0.1, decay_steps=1000, "
            "decay_rate=0.96, staircase=True))",
        ),
        (
            lambda o: o.LossScaleOptimizer(o.SGD(momentum=0.5), initial_scale=1024.0),
            "LossScaleOptimizer(inner_optimizer=SGD(momentum=0.5), initial_scale=1024.0)",
        ),
        (
            lambda o: o.MultiOptimizer(o.OptimizerMap(o.Adam(), {"bias": o.SGD()})),
            "MultiOptimizer(optimizer_map=OptimizerMap(Adam(), {'bias': SGD()}))",
        ),
    ],
)
def test_repr_is_the_call_with_the_non_default_arguments(make, expected):
    opt = make(fo.optimizers)
    assert repr(opt) == expected
    # It is that call: evaluated, it makes an optimizer of the same configuration.
    namespace = {**vars(fo.optimizers), **vars(fo.optimizers.schedules)}
    again = eval(repr(opt), namespace)
    assert repr(again) == expected
    assert _without_names(again.get_config()) == _without_names(opt.get_config())


def _without_names(config):
    """A config with every `name` left out, nested ones too (automatic names differ)."""
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    return config


def test_schedule_repr_and_a_custom_schedule():
    schedule = fo.optimizers.schedules.PolynomialDecay(np.float64(0.5), 10, power=2.0)
    assert repr(schedule) == (
        "PolynomialDecay(initial_learning_rate=np.float64(0.5), decay_steps=10, power=2.0)"
        if np.__version__ >= "2"
        else "PolynomialDecay(initial_learning_rate=0.5, decay_steps=10, power=2.0)"
    )

    class Halving(fo.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step: Any) -> Any:
            return 0.5**step

    assert repr(Halving()).startswith("<")
