"""Checkpoint and resume: stop a run, restore it, and continue bit for bit.

Every way to stop and resume (pickling the optimizer with its parameters, the checkpoint file
through `Optimizer.load`, `<Class>.load` and `load_state`, Keras's `save_own_variables` /
`load_own_variables`) is checked against the same run left uninterrupted: after the remaining
steps the parameters and every optimizer variable are bitwise equal and `iterations` agrees.
The stop falls mid-way through a gradient-accumulation cycle, with EMA averages, learning-rate
schedules, weight-decay exclusions, a dynamic loss scale and Nadam's momentum-cache product in
play. The file format is then held to its contract: atomic writes (an exception or a SIGKILL
mid-write leaves the previous file whole; fsync comes before the rename) and loads that refuse,
with a ValueError and no change anywhere, anything that does not match or is damaged.
"""

import copy
import functools
import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import zipfile

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.optimizers import _checkpoint_file, checkpoint
from optimizers_under_test import DECAY, OPTIMIZERS, build

OPT = fo.optimizers
STOP = 5  # raw steps before the interruption: mid-cycle for 2 and 3 accumulation steps
STEPS = 11


def _excluding_bias(opt, *inner):
    for o in inner or (opt,):
        o.exclude_from_weight_decay(var_names=["bias"])
    return opt


def _fresh(case):
    return _excluding_bias(build(case, case.checkpoint))


# Each entry makes a fresh optimizer, configured the same way every time (exclusions included):
# each record's `checkpoint` arguments, then the wrappers.
CASES = {
    **{case.name: functools.partial(_fresh, case) for case in OPTIMIZERS},
    "LossScaleOptimizer": lambda: _lso(),
    "MultiOptimizer": lambda: _multi(),
}


def _lso():
    inner = _excluding_bias(OPT.Adam(learning_rate=0.01, weight_decay=0.01))
    return OPT.LossScaleOptimizer(inner, initial_scale=2.0**10, dynamic_growth_steps=2)


def _multi():
    adam = _excluding_bias(OPT.Adam(learning_rate=0.01, weight_decay=0.01, use_ema=True))
    sgd = OPT.SGD(learning_rate=0.05, momentum=0.9)
    return OPT.MultiOptimizer(OPT.OptimizerMap(adam, {"out/.*": sgd}))


def _model():
    """Parameters (a dict: mixed dtypes, a Fortran-ordered matrix) and every step's gradients.

    The third step's gradients are not finite: a LossScaleOptimizer skips that step and halves
    its scale, so the stop falls with a scale that has moved.
    """
    rng = np.random.default_rng(20)
    params = {
        "dense/kernel": np.asfortranarray(rng.standard_normal((6, 4)).astype(np.float32)),
        "dense/bias": rng.standard_normal(4),
        "out/kernel": rng.standard_normal((4, 3)).astype(np.float32),
        "out/bias": rng.standard_normal(3).astype(np.float32),
    }
    grads = []
    for step in range(STEPS):
        g = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}
        if step == 2:
            g["out/bias"][0] = np.inf
        grads.append(g)
    return params, grads


def _run(opt, params, grads):
    for g in grads:
        with np.errstate(all="ignore"):
            opt.apply(g, params)


def _zeros_like(params):
    return {k: np.zeros_like(v, order="K") for k, v in params.items()}


def _resume(method, name, opt, params, tmp_path):
    """(optimizer, parameters) continuing the interrupted run, by `method`."""
    path = tmp_path / "run.ckpt"
    if method == "pickle":
        return pickle.loads(pickle.dumps((opt, params)))
    if method == "Optimizer.load":
        opt.save(path)
        restored = _zeros_like(params)
        return OPT.Optimizer.load(path, restored), restored
    if method == "<Class>.load":
        opt.save(path)
        restored = _zeros_like(params)
        return type(opt).load(path, restored), restored
    if method == "load_state":
        opt.save(path)
        restored = _zeros_like(params)
        fresh = CASES[name]()
        fresh.load_state(path, restored)
        return fresh, restored
    if method == "own_variables":
        store = {}
        opt.save_own_variables(store)
        restored = {k: v.copy(order="K") for k, v in params.items()}
        fresh = CASES[name]()
        fresh.build(restored)
        fresh.load_own_variables(store)
        return fresh, restored
    raise AssertionError(method)


METHODS = ["pickle", "Optimizer.load", "<Class>.load", "load_state", "own_variables"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(CASES))
def test_a_resumed_run_continues_bitwise_like_the_uninterrupted_one(name, method, tmp_path):
    params, grads = _model()
    uninterrupted = CASES[name]()
    expected = {k: v.copy(order="K") for k, v in params.items()}
    _run(uninterrupted, expected, grads)

    opt = CASES[name]()
    _run(opt, params, grads[:STOP])
    resumed, restored = _resume(method, name, opt, params, tmp_path)
    assert resumed is not opt and type(resumed) is type(opt)
    assert resumed.iterations == opt.iterations
    _run(resumed, restored, grads[STOP:])

    assert resumed.iterations == uninterrupted.iterations
    for key in expected:
        np.testing.assert_array_equal(restored[key], expected[key], err_msg=key)
    names = uninterrupted.variable_names
    assert resumed.variable_names == names
    for n, a, b in zip(names, resumed.variables, uninterrupted.variables):
        np.testing.assert_array_equal(a, b, err_msg=n)


def test_the_stop_is_mid_cycle_and_the_state_has_moved():
    # What the resume test depends on: at the stop the accumulators hold a partial sum, the
    # EMA averages differ from the variables, the loss scale was halved and Nadam's product moved.
    params, grads = _model()
    adam = CASES["Adam"]()
    _run(adam, params, grads[:STOP])
    assert adam._iterations % 2 == 1
    assert any(np.any(a != 0) for a in adam._accumulated_gradients)
    lso = CASES["LossScaleOptimizer"]()
    _run(lso, _model()[0], grads[:STOP])
    names = lso.variable_names
    scale = [v for n, v in zip(names, lso.variables) if "scale" in n and np.shape(v) == ()]
    assert scale and float(scale[0]) != 2.0**10
    nadam = CASES["Nadam"]()
    _run(nadam, _model()[0], grads[:STOP])
    assert float(nadam._u_product) != 1.0


# --- the file: contents ---------------------------------------------------------------------


def _trained(name="Adam", seed=1):
    params, grads = _model()
    opt = CASES[name]()
    _run(opt, params, grads[:STOP])
    return opt, params


def test_the_file_is_an_npz_with_a_documented_header(tmp_path):
    opt, params = _trained()
    path = tmp_path / "adam.npz"
    opt.save(path)
    header = checkpoint.read_header(path)
    assert header["format"] == "ferroptim.optimizer" and header["format_version"] == 1
    assert header["class_name"] == "Adam"
    assert header["config"] == json.loads(json.dumps(opt.get_config()))
    assert [v["name"] for v in header["variables"]] == list(params)
    assert [v["name"] for v in header["optimizer_variables"]] == opt.variable_names
    assert header["optimizer_variables"][0] == {"name": "iteration", "shape": [], "dtype": "int64"}
    assert header["exclude_from_weight_decay"] == [{"indices": [], "pattern": "bias"}]
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist()[0] == "header.json"
        assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())
    # A plain NumPy reader sees every array; nothing in it needs pickle.
    with np.load(path, allow_pickle=False) as data:
        assert int(data["optimizer/0"]) == opt._iterations
        for i, v in enumerate(opt.variables):
            np.testing.assert_array_equal(data[f"optimizer/{i}"], v)
        for i, v in enumerate(params.values()):
            np.testing.assert_array_equal(data[f"variables/{i}"], v)


def test_include_variables_false_leaves_the_parameters_alone(tmp_path):
    opt, params = _trained()
    path = tmp_path / "state_only.ckpt"
    opt.save(path, include_variables=False)
    assert not checkpoint.read_header(path)["variables_saved"]
    mine = {k: np.full_like(v, 7.0) for k, v in params.items()}
    restored = OPT.Optimizer.load(path, mine)
    for v in mine.values():
        assert np.all(v == 7.0)
    for a, b in zip(restored.variables, opt.variables):
        np.testing.assert_array_equal(a, b)


def test_an_unbuilt_optimizer_round_trips(tmp_path):
    opt = OPT.SGD(learning_rate=0.25, momentum=0.5)
    path = tmp_path / "unbuilt.ckpt"
    opt.save(path)
    restored = OPT.SGD.load(path)
    assert not restored.built and restored.get_config() == opt.get_config()
    w = np.ones(3, np.float32)
    restored.apply([np.ones(3, np.float32)], [w])
    np.testing.assert_array_equal(w, 0.75)


def test_a_callable_learning_rate_is_restored_with_load_state_only(tmp_path):
    params, grads = _model()
    rate = lambda: 0.01  # noqa: E731
    opt = OPT.Adam(learning_rate=rate)
    _run(opt, params, grads[:STOP])
    path = tmp_path / "callable.ckpt"
    opt.save(path)
    assert checkpoint.read_header(path)["learning_rate_callable"]
    with pytest.raises(ValueError, match="learning rate is a callable.*load_state"):
        OPT.Optimizer.load(path, _zeros_like(params))
    fresh, restored = OPT.Adam(learning_rate=rate), _zeros_like(params)
    fresh.load_state(path, restored)
    _run(fresh, restored, grads[STOP:])
    _run(opt, params, grads[STOP:])
    for k in params:
        np.testing.assert_array_equal(restored[k], params[k])


def test_a_configuration_json_cannot_hold_still_saves_the_state(tmp_path):
    # A MultiOptimizer whose map is a function: its config holds the function.
    params, grads = _model()

    def make():
        adam, sgd = OPT.Adam(learning_rate=0.01), OPT.SGD(learning_rate=0.05, momentum=0.9)
        return OPT.MultiOptimizer(lambda name: sgd if name.endswith("bias") else adam)

    opt = make()
    _run(opt, params, grads[:STOP])
    path = tmp_path / "multi.ckpt"
    opt.save(path)
    header = checkpoint.read_header(path)
    assert header["config"] is None and "function" in header["config_error"]
    with pytest.raises(ValueError, match="holds no configuration.*load_state"):
        OPT.Optimizer.load(path, _zeros_like(params))
    fresh, restored = make(), _zeros_like(params)
    fresh.load_state(path, restored)
    _run(fresh, restored, grads[STOP:])
    _run(opt, params, grads[STOP:])
    for k in params:
        np.testing.assert_array_equal(restored[k], params[k])
    for a, b in zip(fresh.variables, opt.variables):
        np.testing.assert_array_equal(a, b)


def test_save_replaces_an_existing_file(tmp_path):
    opt, params = _trained()
    path = tmp_path / "run.ckpt"
    opt.save(path)
    _run(opt, params, _model()[1][STOP : STOP + 2])
    opt.save(path)
    assert OPT.Optimizer.load(path, _zeros_like(params)).iterations == opt.iterations
    assert os.listdir(tmp_path) == ["run.ckpt"]


# --- the file: atomic writes ----------------------------------------------------------------


def test_an_exception_mid_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    opt, params = _trained()
    path = tmp_path / "run.ckpt"
    opt.save(path)
    before = path.read_bytes()
    _run(opt, params, _model()[1][STOP : STOP + 1])

    written = []
    real = _checkpoint_file._write_array

    def failing(archive, name, value):
        written.append(name)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        real(archive, name, value)

    monkeypatch.setattr(_checkpoint_file, "_write_array", failing)
    with pytest.raises(OSError, match="No space left"):
        opt.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.ckpt"]  # the temporary file is gone too
    monkeypatch.undo()
    OPT.Optimizer.load(path, _zeros_like(params))


def test_the_file_is_fsynced_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    opt, _ = _trained()
    path = tmp_path / "run.ckpt"
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_size, os.path.isdir(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.dirname(src) == str(tmp_path), dst == str(path)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    opt.save(path)
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    # The data was complete when it was synced, the rename stayed in the directory, and the
    # directory entry was synced last.
    assert events[0][1] == path.stat().st_size and events[1][1:] == (True, True)
    if sys.platform.startswith("linux"):
        assert events[0][2] is False and events[2][2] is True


_KILLED_MID_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import ferroptim as fo
    from ferroptim.optimizers import _checkpoint_file

    path = sys.argv[1]
    rng = np.random.default_rng(5)
    params = [rng.standard_normal((512, 256)).astype(np.float32), rng.standard_normal(256)]
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    opt = fo.optimizers.Adam(learning_rate=0.01, use_ema=True)
    for _ in range(3):
        opt.apply_gradients(zip(grads, params))
    opt.save(path)
    opt.apply_gradients(zip(grads, params))
    real, written = _checkpoint_file._write_array, []

    def dying(archive, name, value):
        written.append(name)
        real(archive, name, value)
        if len(written) == 4:
            os.kill(os.getpid(), signal.SIGKILL)

    _checkpoint_file._write_array = dying
    opt.save(path)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")
def test_a_process_killed_mid_write_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "run.ckpt"
    result = subprocess.run([sys.executable, "-c", _KILLED_MID_WRITE, str(path)], timeout=120)
    assert result.returncode == -signal.SIGKILL
    # The file holds the state after 3 steps, complete; the 4th step's save died half-written.
    rng = np.random.default_rng(5)
    params = [rng.standard_normal((512, 256)).astype(np.float32), rng.standard_normal(256)]
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    expected = OPT.Adam(learning_rate=0.01, use_ema=True)
    for _ in range(3):
        expected.apply_gradients(zip(grads, params))
    restored = [np.zeros_like(p) for p in params]
    opt = OPT.Optimizer.load(path, restored)
    assert opt.iterations == 3
    for a, b in zip(restored, params):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(opt.variables, expected.variables):
        np.testing.assert_array_equal(a, b)
    leftovers = [n for n in os.listdir(tmp_path) if n != "run.ckpt"]
    assert all(re.fullmatch(r"\.run\.ckpt\.[0-9a-f]+\.tmp", n) for n in leftovers), leftovers


def test_save_into_a_missing_directory_raises_and_creates_nothing(tmp_path):
    opt, _ = _trained()
    with pytest.raises(FileNotFoundError):
        opt.save(tmp_path / "missing" / "run.ckpt")
    assert os.listdir(tmp_path) == []


# --- the file: refusals -----------------------------------------------------------------------


class Snapshot:
    """Copies of everything a load could change; `check()` asserts nothing did."""

    def __init__(self, opt, params):
        self.opt = opt
        self.params = dict(params)
        self.values = {k: v.copy() for k, v in params.items()}
        self.variables = [np.array(v, copy=True) for v in opt.variables]
        self.iterations = opt.iterations
        self.config = opt.get_config()

    def check(self):
        for k, v in self.params.items():
            np.testing.assert_array_equal(v, self.values[k], err_msg=f"parameter {k} changed")
        now = [np.asarray(v) for v in self.opt.variables]
        assert len(now) == len(self.variables)
        for a, b in zip(now, self.variables):
            np.testing.assert_array_equal(a, b, err_msg="an optimizer variable changed")
        assert self.opt.iterations == self.iterations
        assert self.opt.get_config() == self.config


@pytest.fixture
def saved(tmp_path):
    """A checkpoint of a trained Adam (EMA, accumulation, amsgrad) and its parameters."""
    opt, params = _trained()
    path = tmp_path / "adam.ckpt"
    opt.save(path)
    return path, params


def _target():
    """A built Adam of the saved configuration that has taken steps of its own."""
    params, grads = _model()
    params = {k: v + 1 for k, v in params.items()}
    opt = CASES["Adam"]()
    _run(opt, params, grads[:2])
    return opt, params


def _refused(path, match, params=None, opt=None):
    """Both loaders refuse `path` with a ValueError matching `match` and change nothing."""
    opt, mine = _target() if opt is None else (opt, params)
    params = mine if params is None else params
    snapshot = Snapshot(opt, mine)
    with pytest.raises(ValueError, match=match):
        opt.load_state(path)
    snapshot.check()
    fresh = {k: v.copy(order="K") for k, v in params.items()}
    before = {k: v.copy() for k, v in fresh.items()}
    with pytest.raises(ValueError, match=match):
        OPT.Optimizer.load(path, fresh)
    for k in fresh:
        np.testing.assert_array_equal(fresh[k], before[k])


def test_another_class_is_refused(saved, tmp_path):
    path, params = saved
    with pytest.raises(ValueError, match="holds a 'Adam' optimizer, not a 'SGD'"):
        OPT.SGD.load(path, _zeros_like(params))
    with pytest.raises(ValueError, match="holds a 'Adam' optimizer, not a 'AdamW'"):
        OPT.AdamW.load(path, _zeros_like(params))
    sgd = OPT.SGD(momentum=0.5)
    sgd.build(params)
    snapshot = Snapshot(sgd, params)
    with pytest.raises(ValueError, match="cannot be loaded into a 'SGD'"):
        sgd.load_state(path)
    snapshot.check()


@pytest.mark.parametrize(
    "change,match",
    [
        (
            lambda p: p.update({"out/bias": np.zeros(4, np.float32)}),
            r"'out/bias' with shape \(3,\).*'out/bias' with shape \(4,\)",
        ),
        (
            lambda p: p.update({"out/bias": np.zeros(3, np.float64)}),
            r"'out/bias' with shape \(3,\) and dtype float32, here 'out/bias' .* dtype float64",
        ),
        (
            lambda p: p.update({"out/kernel": np.zeros((3, 4), np.float32)}),
            r"shape \(4, 3\).*shape \(3, 4\)",
        ),
        (lambda p: p.pop("dense/bias"), "holds 4 variables but the optimizer has 3"),
        (
            lambda p: p.update({"extra": np.zeros(2, np.float32)}),
            "holds 4 variables but the optimizer has 5",
        ),
    ],
    ids=["shape", "dtype", "transposed", "fewer", "more"],
)
def test_variables_that_do_not_match_are_refused(saved, change, match):
    path, params = saved
    mine = _zeros_like(params)
    change(mine)
    before = {k: v.copy() for k, v in mine.items()}
    with pytest.raises(ValueError, match=match):
        OPT.Optimizer.load(path, mine)
    for k in mine:
        np.testing.assert_array_equal(mine[k], before[k])
    fresh = CASES["Adam"]()
    with pytest.raises(ValueError, match=match):
        fresh.load_state(path, mine)
    for k in mine:
        np.testing.assert_array_equal(mine[k], before[k])


def test_variables_under_other_names_are_refused(saved):
    path, params = saved
    as_list = [np.zeros_like(v) for v in params.values()]
    with pytest.raises(ValueError, match="saved 'dense/kernel' .* here 'variable_0'"):
        OPT.Optimizer.load(path, as_list)
    renamed = {k.replace("dense", "hidden"): np.zeros_like(v) for k, v in params.items()}
    with pytest.raises(ValueError, match="saved 'dense/kernel' .* here 'hidden/kernel'"):
        OPT.Optimizer.load(path, renamed)


def test_another_configuration_is_refused_by_load_state(saved):
    path, params = saved
    for other in (
        OPT.Adam(amsgrad=False, use_ema=True, gradient_accumulation_steps=2),
        OPT.Adam(
            learning_rate=DECAY.to_fo(), amsgrad=True, use_ema=True, gradient_accumulation_steps=2
        ),
    ):
        mine = _zeros_like(params)
        other.build(mine)
        snapshot = Snapshot(other, mine)
        with pytest.raises(ValueError, match="optimizer variables"):
            other.load_state(path)
        snapshot.check()


def test_a_built_optimizer_refuses_other_variables(saved):
    path, params = saved
    opt, mine = _target()
    snapshot = Snapshot(opt, mine)
    with pytest.raises(ValueError, match="built on other variables"):
        opt.load_state(path, _zeros_like(params))
    snapshot.check()


def test_a_checkpoint_with_variables_needs_them(saved):
    path, _ = saved
    with pytest.raises(ValueError, match="pass them as `var_list`"):
        OPT.Optimizer.load(path)


def _rewrite(source, target, replace=None, drop=(), header=None):
    """A copy of checkpoint `source` with members replaced or dropped, or its header edited."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if info.filename in drop:
                continue
            data = old.read(info)
            if info.filename == "header.json" and header is not None:
                data = json.dumps(header(json.loads(data))).encode()
            if replace and info.filename in replace:
                data = replace[info.filename]
            new.writestr(info, data)
    return target


def _npy(array, **kwargs):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, **kwargs)
    return buffer.getvalue()


def _npy_claiming(shape, dtype="<f4"):
    """An .npy header that declares `shape` and no data after it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def _edit(key, value):
    def edit(h):
        h[key] = value
        return h

    return edit


DAMAGE = {
    "empty file": (lambda src, dst: dst.write_bytes(b""), "not a complete ZIP archive"),
    "not a zip": (
        lambda src, dst: dst.write_bytes(b"PK\x03\x04" + os.urandom(300)),
        "not a complete ZIP archive",
    ),
    "no header": (lambda src, dst: _rewrite(src, dst, drop={"header.json"}), "no 'header.json'"),
    "header not json": (
        lambda src, dst: _rewrite(src, dst, replace={"header.json": b"{oops"}),
        "header cannot be read",
    ),
    "header a list": (
        lambda src, dst: _rewrite(src, dst, replace={"header.json": b"[1, 2]"}),
        "does not declare the format",
    ),
    "other format": (
        lambda src, dst: _rewrite(src, dst, header=_edit("format", "keras")),
        "does not declare the format",
    ),
    "newer version": (
        lambda src, dst: _rewrite(src, dst, header=_edit("format_version", 2)),
        "format version 2.*Upgrade ferroptim",
    ),
    "missing field": (
        lambda src, dst: _rewrite(
            src, dst, header=lambda h: {k: v for k, v in h.items() if k != "variables"}
        ),
        "'variables' is missing",
    ),
    "bad spec": (
        lambda src, dst: _rewrite(
            src,
            dst,
            header=lambda h: dict(
                h, optimizer_variables=[{"name": "x", "shape": [-1], "dtype": "float32"}]
            ),
        ),
        "not a \\{name, shape, dtype\\} record",
    ),
    "object dtype in header": (
        lambda src, dst: _rewrite(
            src,
            dst,
            header=lambda h: dict(
                h, optimizer_variables=[dict(h["optimizer_variables"][0], dtype="object")]
            ),
        ),
        "not a \\{name, shape, dtype\\} record",
    ),
    "bad exclusions": (
        lambda src, dst: _rewrite(
            src, dst, header=_edit("exclude_from_weight_decay", [{"indices": ["a"]}])
        ),
        "'exclude_from_weight_decay' is malformed",
    ),
    "bad regex": (
        lambda src, dst: _rewrite(
            src, dst, header=_edit("exclude_from_weight_decay", [{"indices": [], "pattern": "("}])
        ),
        "exclusion pattern does not compile",
    ),
    "missing member": (
        lambda src, dst: _rewrite(src, dst, drop={"optimizer/4.npy"}),
        "no member 'optimizer/4.npy'",
    ),
    "wrong shape member": (
        lambda src, dst: _rewrite(
            src, dst, replace={"optimizer/4.npy": _npy(np.zeros((6, 5), np.float32))}
        ),
        "holds shape \\(6, 5\\)",
    ),
    "wrong dtype member": (
        lambda src, dst: _rewrite(
            src, dst, replace={"optimizer/4.npy": _npy(np.zeros((6, 4), np.float64, order="F"))}
        ),
        "dtype float64",
    ),
    "pickled member": (
        lambda src, dst: _rewrite(
            src,
            dst,
            replace={
                "optimizer/4.npy": _npy(np.array([object()] * 24).reshape(6, 4), allow_pickle=True)
            },
        ),
        "dtype object",
    ),
    "huge declared shape": (
        lambda src, dst: _rewrite(
            src, dst, replace={"variables/0.npy": _npy_claiming((2**40, 2**20))}
        ),
        "holds shape \\(1099511627776",
    ),
    "member truncated": (
        lambda src, dst: _rewrite(
            src,
            dst,
            replace={"variables/0.npy": _npy(np.zeros((6, 4), np.float32, order="F"))[:-5]},
        ),
        "truncated",
    ),
    "member too long": (
        lambda src, dst: _rewrite(
            src,
            dst,
            replace={"variables/0.npy": _npy(np.zeros((6, 4), np.float32, order="F")) + b"\0"},
        ),
        "data after its array",
    ),
    "negative iteration": (
        lambda src, dst: _rewrite(
            src, dst, replace={"optimizer/0.npy": _npy(np.array(-3, np.int64))}
        ),
        "iteration count is negative",
    ),
    "infinite learning rate": (
        lambda src, dst: _rewrite(
            src, dst, replace={"optimizer/1.npy": _npy(np.array(np.inf, np.float32))}
        ),
        "learning rate is not finite",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_refused_and_changes_nothing(saved, tmp_path, damage):
    path, params = saved
    make, match = DAMAGE[damage]
    bad = tmp_path / "damaged.ckpt"
    make(path, bad)
    _refused(bad, match, params)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999])
def test_a_truncated_checkpoint_is_refused(saved, tmp_path, fraction):
    path, params = saved
    data = path.read_bytes()
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(data[: int(len(data) * fraction)])
    _refused(bad, "not a complete ZIP archive|truncated|cannot be read", params)


def test_a_flipped_bit_in_the_data_is_refused(saved, tmp_path):
    path, params = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("variables/0.npy")
    # The last byte of the member's data (its local header is 30 bytes plus the name).
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size - 1
    data[offset] ^= 0x10
    bad = tmp_path / "flipped.ckpt"
    bad.write_bytes(bytes(data))
    _refused(bad, "Bad CRC-32", params)


def test_filepath_and_arguments_of_the_wrong_type_are_type_errors(saved):
    path, params = saved
    opt, _ = _target()
    for junk in (None, 3, ["a"], object()):
        with pytest.raises(TypeError, match="`filepath` must be a path"):
            opt.save(junk)
        with pytest.raises(TypeError, match="`filepath` must be a path"):
            OPT.Optimizer.load(junk, params)
    with pytest.raises(TypeError, match="`include_variables` must be a bool"):
        opt.save(path, include_variables="yes")
    with pytest.raises(TypeError, match="`var_list` must be a list, tuple or dict"):
        OPT.Optimizer.load(path, 5)
    with pytest.raises(TypeError, match="must be a NumPy array"):
        OPT.Optimizer.load(path, {k: v.tolist() for k, v in params.items()})


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        OPT.Optimizer.load(tmp_path / "nothing.ckpt", [np.ones(2)])


# --- Keras's own-variables store and set_weights: hostile values --------------------------------


@pytest.mark.parametrize(
    "index,value,error,match",
    [
        (0, np.array(-1), ValueError, r"iteration count\) must be in \[0, 2\*\*63 - 1\]"),
        (0, 2**63, ValueError, r"must be in \[0, 2\*\*63 - 1\]"),
        (0, np.array(2.5), TypeError, "must be an integer"),
        (0, "3", TypeError, "must be an integer"),
        (0, np.array(True), TypeError, "must be an integer"),
        (1, np.array(np.nan, np.float32), ValueError, "must be a finite number"),
        (1, 1e300, ValueError, "must be a finite number"),
        (1, "0.1", TypeError, "takes real numbers"),
        (2, np.full((6, 4), "x"), TypeError, "takes real numbers"),
        (2, np.zeros((6, 4), complex), TypeError, "takes real numbers"),
        (2, np.zeros((4, 6)), ValueError, "not compatible with provided weight shape"),
        (-1, np.zeros(7), ValueError, "not compatible with provided weight shape"),
    ],
)
def test_load_own_variables_and_set_weights_refuse_hostile_values(index, value, error, match):
    opt, params = _target()
    store = {}
    opt.save_own_variables(store)
    store[str(index % len(store))] = value
    snapshot = Snapshot(opt, params)
    with pytest.raises(error, match=match):
        opt.load_own_variables(store)
    snapshot.check()
    with pytest.raises(error, match=match):
        opt.set_weights([store[str(i)] for i in range(len(store))])
    snapshot.check()


def test_load_own_variables_of_a_non_mapping_is_a_type_error():
    opt, params = _target()
    snapshot = Snapshot(opt, params)
    for junk in (5, None, [np.array(1)]):
        with pytest.raises(TypeError, match="`store` must be a dict-like object"):
            opt.load_own_variables(junk)
    snapshot.check()


# --- pickling and the step guard --------------------------------------------------------------


def test_a_copy_taken_while_another_thread_is_inside_a_step_waits_for_it_then_steps_freely():
    # copy.deepcopy goes through the pickle protocol (`__getstate__` / `__setstate__`), which
    # takes whole steps only: it waits for the step another thread is inside, then copies the
    # stepped values; the copy has a guard of its own. (The learning-rate closure below could
    # not be pickled by reference.)
    inside, release = threading.Event(), threading.Event()
    holder = []

    def learning_rate():
        if holder and holder[0] is threading.current_thread():
            holder.clear()
            inside.set()
            release.wait(60)
        return 0.5

    w = np.ones(3, np.float32)
    g = np.ones(3, np.float32)
    opt = OPT.SGD(learning_rate=learning_rate)
    opt.build([w])

    def step():
        holder.append(threading.current_thread())
        opt.apply([g], [w])

    thread = threading.Thread(target=step, daemon=True)
    thread.start()
    assert inside.wait(60)
    copies = []
    # The optimizer first: a parameter copied before it would be taken before the step ends.
    copier = threading.Thread(target=lambda: copies.append(copy.deepcopy((opt, w))), daemon=True)
    try:
        copier.start()
        copier.join(0.5)
        # Still inside the step: no copy of a half-made step.
        assert copier.is_alive() and not copies
    finally:
        release.set()
        thread.join(60)
        copier.join(60)
    np.testing.assert_array_equal(w, 0.5)
    [(copy_opt, copy_w)] = copies
    assert copy_opt._trainable_variables[0] is copy_w
    np.testing.assert_array_equal(copy_w, 0.5)
    assert copy_opt.iterations == 1
    # The original is held again by a step: the copy steps while it waits.
    inside.clear()
    release.clear()
    thread = threading.Thread(target=step, daemon=True)
    thread.start()
    assert inside.wait(60)
    try:
        done = []
        stepper = threading.Thread(
            target=lambda: done.append(copy_opt.apply([g], [copy_w])), daemon=True
        )
        stepper.start()
        stepper.join(60)
        assert done and not stepper.is_alive()
        np.testing.assert_array_equal(copy_w, 0.0)
    finally:
        release.set()
        thread.join(60)
    np.testing.assert_array_equal(w, 0.0)
