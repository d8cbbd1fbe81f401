"""The benchmark harness: its NumPy peers do ferroptim's work, and its report has its shape.

Nothing here asserts a speed; the harness runs with tiny sizes and blocks only to check what it
prints and writes.
"""

import argparse
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _bench

SHAPES = [(7, 5), (33,), (1,), (4, 3, 2)]
STEPS = 3


def _arrays(seed):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
    # Gradient magnitudes from 1e-7 to 1: where sqrt(v) is near epsilon, Adam's epsilon
    # placement shows.
    grads = [(rng.standard_normal(shape) * 10.0 ** rng.uniform(-7, 0, shape)).astype(np.float32)
             for shape in SHAPES]
    return params, grads


def _run_ferroptim(spec, params, grads):
    optimizer = getattr(fo.optimizers, spec.keras_name)(**spec.kwargs)
    for _ in range(STEPS):
        optimizer.apply_gradients(zip(grads, params))


def _run_numpy(spec, params, grads):
    slots = spec.make_numpy_state(params)
    for iterations in range(STEPS):
        spec.numpy_step(params, grads, slots, iterations, **spec.kwargs)


def _run_numpy_out(spec, params, grads):
    slots = spec.make_numpy_state(params)
    scratch = _bench.make_scratch(spec, params)
    for iterations in range(STEPS):
        spec.numpy_out_step(params, grads, slots, scratch, iterations, **spec.kwargs)


@pytest.mark.parametrize("name", sorted(_bench.OPTIMIZERS))
@pytest.mark.parametrize("peer", [_run_numpy, _run_numpy_out], ids=["numpy", "numpy_out"])
def test_numpy_peers_do_ferroptims_work(name, peer):
    spec = _bench.OPTIMIZERS[name]
    if peer is _run_numpy_out and spec.numpy_out_step is None:
        pytest.fail(f"{name} has no NumPy out= step")
    initial, grads = _arrays(seed=3)
    ours = [p.copy() for p in initial]
    theirs = [p.copy() for p in initial]
    _run_ferroptim(spec, ours, grads)
    peer(spec, theirs, grads)
    for p0, p_fo, p_np in zip(initial, ours, theirs):
        np.testing.assert_allclose(p_np, p_fo, rtol=1e-5, atol=1e-6)
        # The updates themselves agree, not just parameters that barely moved; the tolerance
        # covers the float32 rounding of p (about 4e-7 at |p| ~ 3).
        np.testing.assert_allclose(p_np - p0, p_fo - p0, rtol=1e-3, atol=1e-6)
        assert np.any(p_fo != p0)


def test_cases_have_the_documented_shapes():
    mlp = _bench.parse_case("mlp")
    assert len(mlp.shapes) == 6
    assert mlp.elements == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    gpt2 = _bench.parse_case("gpt2")
    assert len(gpt2.shapes) == 148
    assert gpt2.elements == 124_439_808  # GPT-2 small's parameter count
    assert _bench.parse_case("32M").shapes == ((32_000_000,),)
    assert _bench.parse_case("100x1k").shapes == ((1000,),) * 100
    with pytest.raises(ValueError, match="Unknown size"):
        _bench.parse_case("0x1K")


def test_bytes_per_element_count_every_stream():
    # float32: Adam reads p, g, m, v and writes p, m, v; SGD with momentum reads p, g, m and
    # writes p, m.
    assert _bench.OPTIMIZERS["adam"].bytes_per_element(4) == 28
    assert _bench.OPTIMIZERS["sgd"].bytes_per_element(4) == 20
    # One slot: 5 streams; two: 7; RMSprop's velocity, momentum and average_gradient: 9.
    # Nadam's u_product is one scalar per step, not a stream.
    for name in ["rmsprop", "adagrad", "lion"]:
        assert _bench.OPTIMIZERS[name].bytes_per_element(4) == 20, name
    for name in ["adadelta", "adamax", "nadam", "ftrl", "lamb", "schedule_free_adamw"]:
        assert _bench.OPTIMIZERS[name].bytes_per_element(4) == 28, name
    assert _bench.OPTIMIZERS["rmsprop_centered"].bytes_per_element(4) == 36
    assert _bench.OPTIMIZERS["adam"].bytes_per_element(8) == 56


def test_every_optimizer_class_is_benchmarked():
    # The element-wise optimizers, whose floor is the roofline of their streams. AdamW is
    # Adam's kernel after the decoupled decay that every optimizer shares; LossScaleOptimizer
    # and MultiOptimizer have no kernel: they run their inner optimizers'. Adafactor (factored
    # second moments) and Muon (Newton-Schulz matrix products) are not element-wise.
    classes = {name for name in fo.optimizers.__all__
               if isinstance(getattr(fo.optimizers, name), type)
               and issubclass(getattr(fo.optimizers, name), fo.optimizers.Optimizer)}
    benchmarked = {spec.keras_name for spec in _bench.OPTIMIZERS.values()}
    not_element_wise = {"Optimizer", "AdamW", "LossScaleOptimizer", "MultiOptimizer",
                        "Adafactor", "Muon"}
    assert classes - not_element_wise <= benchmarked
    assert benchmarked <= classes


def test_slots_start_as_keras_builds_them():
    params = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float32)]
    adagrad = _bench.OPTIMIZERS["adagrad"].make_slots(params)
    assert [a.shape for a in adagrad[0]] == [(2, 3), (4,)]
    assert all(np.all(a == np.float32(0.1)) for a in adagrad[0])
    # ScheduleFreeAdamW's z starts as a copy of the parameter (not a view of it).
    z, v = _bench.OPTIMIZERS["schedule_free_adamw"].make_slots(params)
    for p, z_i, v_i in zip(params, z, v):
        np.testing.assert_array_equal(z_i, p)
        assert not np.shares_memory(z_i, p)
        np.testing.assert_array_equal(v_i, 0.0)
    # Nadam's NumPy steps carry the momentum-cache product, 1.0 in the parameters' dtype.
    *slots, u_product = _bench.OPTIMIZERS["nadam"].make_numpy_state(params)
    assert len(slots) == 2
    assert u_product.shape == () and u_product.dtype == np.float32 and u_product == 1.0


def _settings(*argv):
    parser = argparse.ArgumentParser()
    _bench.add_arguments(parser)
    return _bench.settings_from_args(parser.parse_args(list(argv)))


def test_optimizers_option_selects_a_list_or_all():
    assert _settings().optimizers == ["sgd", "adam"]
    assert _settings("--optimizers", "all").optimizers == list(_bench.OPTIMIZERS)
    assert _settings("--optimizers", "Lion, ftrl").optimizers == ["lion", "ftrl"]
    with pytest.raises(ValueError, match="unknown all;"):
        # `all` stands alone: with other names it is an unknown name.
        _settings("--optimizers", "adam,all")


def test_every_optimizer_but_adam_is_held_to_085_of_its_roofline_at_32m():
    def result(name, ferroptim_s, roofline_s):
        timings = {"ferroptim": _bench.Timing(1, [ferroptim_s]),
                   "roofline": _bench.Timing(1, [roofline_s])}
        spec = _bench.OPTIMIZERS[name]
        return _bench.CaseResult(name, _bench.parse_case("32M"), 2, spec.bytes_per_element(4),
                                 timings, {}, {})

    settings = _settings("--optimizers", "adam,lion,ftrl", "--sizes", "32M")
    report = _bench.Report(settings, {}, [result("adam", 1.0, 0.88), result("lion", 1.0, 0.86),
                                          result("ftrl", 1.0, 0.5)], [])
    rows = {text: (value, met) for text, value, met in _bench.targets(report)}
    assert rows["Adam 32M: >= 0.9 of the roofline"] == ("0.88", False)
    assert rows["lion 32M: >= 0.85 of the roofline"] == ("0.86", True)
    assert rows["ftrl 32M: >= 0.85 of the roofline"] == ("0.50", False)
    assert not any(text.startswith("adam 32M") for text in rows)


def test_unknown_optimizer_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _bench.main(["--optimizers", "adam,nope"])
    assert exit_info.value.code == 2
    assert "unknown nope; known: sgd, adam" in capsys.readouterr().err


def _table(markdown, first_header):
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    assert set(rows[1]) <= {":---", "---:"}
    return rows[0], rows[2:]


def _number(cell):
    return float(cell.replace(",", "").rstrip("x"))


def test_quick_run_prints_the_tables_and_writes_json(tmp_path):
    path = tmp_path / "bench.json"
    command = [sys.executable, "-m", "ferroptim", "bench", "--quick", "--sizes", "1K,100x1K",
               "--scaling-sizes", "1K", "--threads", "1,2", "--repeats", "2",
               "--min-block-ms", "2", "--json", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout

    header, rows = _table(out, "optimizer | case")
    assert header == ["optimizer", "case", "elements", "ferroptim us", "Gelem/s", "GB/s",
                      "roofline us", "roofline GB/s", "of roofline", "NumPy us", "vs NumPy",
                      "NumPy out= us", "vs NumPy out=", "torch us", "vs torch"]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("sgd", "1K", "1,000"), ("sgd", "100x1K", "100,000"),
        ("adam", "1K", "1,000"), ("adam", "100x1K", "100,000")]
    has_torch = importlib.util.find_spec("torch") is not None
    for row in rows:
        cells = dict(zip(header, row))
        for column in ["ferroptim us", "GB/s", "roofline us", "of roofline", "NumPy us",
                       "vs NumPy", "NumPy out= us", "vs NumPy out="]:
            assert _number(cells[column]) > 0, (column, row)
        assert (cells["torch us"] == "n/a") is not has_torch
    if not has_torch:
        assert "torch is not installed" in out

    header, rows = _table(out, "optimizer | peer")
    assert header == ["optimizer", "peer", "1 x 1K us", "100 x 1K us", "us per extra tensor"]
    peers = ["ferroptim", "roofline", "NumPy", "NumPy out="] + (["torch"] if has_torch else [])
    assert [(row[0], row[1]) for row in rows] == [(name, peer) for name in ["sgd", "adam"]
                                                  for peer in peers]

    header, rows = _table(out, "optimizer | case | threads")
    assert header == ["optimizer", "case", "threads", "ferroptim us", "speedup", "roofline us",
                      "roofline speedup"]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("sgd", "1K", "1"), ("sgd", "1K", "2"), ("adam", "1K", "1"), ("adam", "1K", "2")]
    assert rows[0][4] == rows[2][4] == "1.00x"

    data = json.loads(path.read_text())
    assert data["environment"]["simd_level"] in {"baseline", "avx2", "avx512"}
    results = {(case["optimizer"], case["case"]): case for case in data["cases"]}
    adam = results[("adam", "100x1K")]
    assert (adam["elements"], adam["tensors"], adam["bytes_per_element"]) == (100_000, 100, 28)
    best = adam["peers"]["ferroptim"]["best_s"]
    assert best == min(adam["peers"]["ferroptim"]["per_call_s"]) > 0
    # The table's throughput is the JSON's time turned into bytes per second.
    _, rows = _table(out, "optimizer | case")
    cells = dict(zip(["optimizer", "case", "elements", "ferroptim us", "Gelem/s", "GB/s"],
                     rows[3]))
    assert _number(cells["GB/s"]) == pytest.approx(28 * 100_000 / best / 1e9, rel=0.01, abs=0.01)
    assert _number(cells["ferroptim us"]) == pytest.approx(best * 1e6, rel=0.01, abs=0.01)
