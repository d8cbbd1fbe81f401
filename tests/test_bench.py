"""The benchmark harness: its NumPy peers do ferroptim's work, and its report has its shape.

Nothing here asserts a speed; the harness runs with tiny sizes and blocks only to check what it
prints and writes.
"""

import argparse
import dataclasses
import importlib.util
import io
import json
import pathlib
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
from markdown_it import MarkdownIt

import ferroptim as fo
from ferroptim import _bench

BENCHES = pathlib.Path(__file__).resolve().parent.parent / "benches"
SHAPES = [(7, 5), (33,), (1,), (4, 3, 2)]
STEPS = 3


def _arrays(seed):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
    # Gradient magnitudes from 1e-7 to 1: where sqrt(v) is near epsilon, Adam's epsilon
    # placement shows.
    grads = [
        (rng.standard_normal(shape) * 10.0 ** rng.uniform(-7, 0, shape)).astype(np.float32)
        for shape in SHAPES
    ]
    return params, grads


def _run_ferroptim(spec, params, grads, names=None):
    optimizer = getattr(fo.optimizers, spec.keras_name)(**spec.kwargs)
    if names is not None:
        optimizer.build(dict(zip(names, params)))
    for _ in range(STEPS):
        optimizer.apply_gradients(zip(grads, params))


def _run_numpy(spec, params, grads, names=None):
    slots = spec.make_numpy_state(params, names)
    for iterations in range(STEPS):
        spec.numpy_step(params, grads, slots, iterations, **spec.kwargs)


def _run_numpy_out(spec, params, grads, names=None):
    slots = spec.make_numpy_state(params, names)
    scratch = _bench.make_scratch(spec, params)
    for iterations in range(STEPS):
        spec.numpy_out_step(params, grads, slots, scratch, iterations, **spec.kwargs)


@pytest.mark.parametrize(
    "name", sorted(name for name, spec in _bench.OPTIMIZERS.items() if spec.numpy_step)
)
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


# Keras's names decide Muon's routing: the embedding (by name) and the bias (by rank) take the
# AdamW path, the two kernels (one tall, one wide) Newton-Schulz.
NAMED_SHAPES = {
    "token_embedding/embeddings": (11, 6),
    "dense/kernel": (6, 9),
    "dense/bias": (9,),
    "dense_1/kernel": (9, 4),
}


@pytest.mark.parametrize("name", ["adafactor", "muon"])
@pytest.mark.parametrize("peer", [_run_numpy, _run_numpy_out], ids=["numpy", "numpy_out"])
def test_numpy_peers_of_matrix_optimizers_follow_variable_names(name, peer):
    spec = _bench.OPTIMIZERS[name]
    names = list(NAMED_SHAPES)
    rng = np.random.default_rng(5)
    initial = [rng.standard_normal(shape).astype(np.float32) for shape in NAMED_SHAPES.values()]
    grads = [rng.standard_normal(p.shape).astype(np.float32) * 0.1 for p in initial]
    ours = [p.copy() for p in initial]
    theirs = [p.copy() for p in initial]
    _run_ferroptim(spec, ours, grads, names)
    peer(spec, theirs, grads, names)
    for p0, p_fo, p_np in zip(initial, ours, theirs):
        np.testing.assert_allclose(p_np, p_fo, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(p_np - p0, p_fo - p0, rtol=1e-3, atol=1e-6)
        assert np.any(p_fo != p0)


def test_muon_numpy_state_routes_as_keras():
    params = [np.zeros(shape, np.float32) for shape in NAMED_SHAPES.values()]
    momentums, velocities = _bench.OPTIMIZERS["muon"].make_numpy_state(params, list(NAMED_SHAPES))
    assert [m.shape for m in momentums] == list(NAMED_SHAPES.values())
    assert [v is not None for v in velocities] == [True, False, True, False]
    # Without names (a list: variable_0, ...) only the rank routes.
    _, velocities = _bench.OPTIMIZERS["muon"].make_numpy_state(params)
    assert [v is not None for v in velocities] == [False, False, True, False]


def test_adafactor_numpy_state_factors_matrices():
    params = [np.zeros((4, 3, 2), np.float32), np.zeros(5, np.float32)]
    rs, cs, vs = _bench.OPTIMIZERS["adafactor"].make_numpy_state(params)
    assert rs[0].shape == (4, 3) and cs[0].shape == (4, 2) and vs[0].shape == (4, 3, 2)
    assert rs[1] is None and cs[1] is None and vs[1].shape == (5,)


def test_cases_have_the_documented_shapes():
    mlp = _bench.parse_case("mlp")
    assert len(mlp.shapes) == 6
    assert mlp.elements == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    gpt2 = _bench.parse_case("gpt2")
    assert len(gpt2.shapes) == 148
    assert gpt2.elements == 124_439_808  # GPT-2 small's parameter count
    assert _bench.parse_case("32M").shapes == ((32_000_000,),)
    assert _bench.parse_case("100x1k").shapes == ((1000,),) * 100
    assert _bench.parse_case("768*3072").shapes == ((768, 3072),)
    assert _bench.parse_case("3x4*5").shapes == ((4, 5),) * 3
    for bad in ["0x1K", "0*5", "4*0", "4*5*6", "4*"]:
        with pytest.raises(ValueError, match="Unknown size"):
            _bench.parse_case(bad)
    # Named cases carry Keras-style variable names, one per tensor: Muon routes GPT-2's two
    # embeddings (wte, wpe) to its AdamW path by name.
    assert mlp.names == (
        "dense/kernel",
        "dense/bias",
        "dense_1/kernel",
        "dense_1/bias",
        "dense_2/kernel",
        "dense_2/bias",
    )
    assert len(set(gpt2.names)) == 148
    embeddings = [
        (name, shape) for name, shape in zip(gpt2.names, gpt2.shapes) if "embedding" in name
    ]
    assert embeddings == [
        ("token_embedding/embeddings", (50257, 768)),
        ("position_embedding/embeddings", (1024, 768)),
    ]
    assert sum(len(shape) == 2 for shape in gpt2.shapes) == 2 + 12 * 4
    assert _bench.parse_case("1K").names is None


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
    # Not element-wise: no bytes per element, no roofline.
    for name in ["adafactor", "muon"]:
        assert _bench.OPTIMIZERS[name].bytes_per_element(4) is None, name


def test_every_optimizer_class_is_benchmarked():
    # AdamW is Adam's kernel after the decoupled decay that every optimizer shares;
    # LossScaleOptimizer and MultiOptimizer have no kernel: they run their inner optimizers'.
    classes = {
        name
        for name in fo.optimizers.__all__
        if isinstance(getattr(fo.optimizers, name), type)
        and issubclass(getattr(fo.optimizers, name), fo.optimizers.Optimizer)
    }
    benchmarked = {spec.keras_name for spec in _bench.OPTIMIZERS.values()}
    without_own_entry = {"Optimizer", "AdamW", "LossScaleOptimizer", "MultiOptimizer"}
    assert classes - without_own_entry <= benchmarked
    assert benchmarked <= classes
    # Adafactor (factored second moments) and Muon (Newton-Schulz matrix products) are the
    # ones that are not element-wise.
    assert {spec.keras_name for spec in _bench.OPTIMIZERS.values() if not spec.element_wise} == {
        "Adafactor",
        "Muon",
    }


@pytest.mark.parametrize(
    "name", ["adam", "rmsprop", "adagrad", "adadelta", "ftrl", "lion", "nadam"]
)
def test_a_record_derived_from_the_class_matches_the_written_one(name):
    # What a registered optimizer without a record is benchmarked with: its Keras defaults and
    # its slots' starting values, read from the class. These records are written with the
    # defaults (and leave out flags that are off).
    written = _bench.OPTIMIZERS[name]
    derived = _bench.registry._from_class(getattr(fo.optimizers, written.keras_name))
    assert (derived.name, derived.keras_name) == (written.name, written.keras_name)
    for key, value in written.kwargs.items():
        assert derived.kwargs[key] == pytest.approx(value, rel=1e-7), key
    assert set(derived.kwargs) - set(written.kwargs) <= {"amsgrad", "centered", "nesterov"}
    assert derived.slot_inits == pytest.approx(written.slot_inits)
    assert derived.numpy_step is None


def test_a_slot_that_starts_as_the_parameter_is_derived_as_a_copy():
    derived = _bench.registry._from_class(fo.optimizers.ScheduleFreeAdamW)
    assert derived.slot_inits == (_bench.registry.PARAMETER_COPY, 0.0)


def test_every_registered_optimizer_is_benchmarked():
    # The registry's classes but those the benchmark cannot time on their own: the base
    # Optimizer has no update rule; OptimizerMap is not an optimizer (it routes variables to
    # MultiOptimizer's inner ones); LossScaleOptimizer and MultiOptimizer are wrappers with no
    # kernel, whose steps are their inner optimizers' (benchmarked themselves); AdamW is Adam's
    # kernel after the decoupled weight decay that every optimizer shares.
    not_benchmarked = {"Optimizer", "OptimizerMap", "LossScaleOptimizer", "MultiOptimizer", "AdamW"}
    registered = {cls.__name__ for cls in fo.optimizers._BUILTINS.values()}
    benchmarked = [spec.keras_name for spec in _bench.registry.OPTIMIZERS.values()]
    assert not_benchmarked <= registered
    assert set(benchmarked) == registered - not_benchmarked
    # Each record is registered under its own name, which `--optimizers` spells.
    assert all(name == spec.name for name, spec in _bench.registry.OPTIMIZERS.items())
    # RMSprop is benchmarked twice (plain, and centered with momentum: every stream at once).
    assert sorted(benchmarked) == sorted([*(registered - not_benchmarked), "RMSprop"])


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
    assert {"adafactor", "muon"} <= set(_settings("--optimizers", "all").optimizers)
    assert _settings("--optimizers", "Lion, ftrl").optimizers == ["lion", "ftrl"]
    with pytest.raises(ValueError, match="unknown all;"):
        # `all` stands alone: with other names it is an unknown name.
        _settings("--optimizers", "adam,all")


def _bench_script():
    # benches/bench.py, the team's door to the harness, which holds the performance targets.
    spec = importlib.util.spec_from_file_location("bench_script", BENCHES / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_optimizer_but_adam_is_held_to_085_of_its_roofline_at_32m():
    def result(name, ferroptim_s, roofline_s):
        timings = {
            "ferroptim": _bench.Timing(1, [ferroptim_s]),
            "roofline": _bench.Timing(1, [roofline_s]),
        }
        spec = _bench.OPTIMIZERS[name]
        return _bench.CaseResult(
            name, _bench.parse_case("32M"), 2, spec.bytes_per_element(4), timings, {}, {}
        )

    settings = _settings("--optimizers", "adam,lion,ftrl", "--sizes", "32M")
    report = _bench.Report(
        settings,
        {},
        [result("adam", 1.0, 0.88), result("lion", 1.0, 0.86), result("ftrl", 1.0, 0.5)],
        [],
    )
    rows = {text: (value, met) for text, value, met in _bench_script().targets(report)}
    assert rows["Adam 32M: >= 0.9 of the roofline"] == ("0.88", False)
    assert rows["lion 32M: >= 0.85 of the roofline"] == ("0.86", True)
    assert rows["ftrl 32M: >= 0.85 of the roofline"] == ("0.50", False)
    assert not any(text.startswith("adam 32M") for text in rows)


def test_bench_script_reports_the_targets_after_the_measurements():
    command = [
        sys.executable,
        str(BENCHES / "bench.py"),
        "--optimizers",
        "adam",
        "--sizes",
        "1K,100x1K",
        "--scaling-sizes",
        "",
        "--repeats",
        "1",
        "--min-block-ms",
        "1",
        "--markdown",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.index("Microseconds per step") < out.index("### Targets")
    header, rows = _table(out, "target")
    assert header == ["target", "measured", "met"]
    # The targets of Adam's 1K and 100x1K cases; those of cases that did not run are left out.
    assert [row[0] for row in rows] == [
        "Adam 1K, one tensor: <= 3 us per call",
        "Adam: one more 1K tensor in a call <= 1 us",
    ]
    assert all(row[1].endswith(" us") and row[2] in {"yes", "**no**"} for row in rows)


def _case_names(cases):
    return [case.name for case in cases]


def test_matrix_optimizers_default_to_matrix_cases_unless_sizes_are_given():
    adam, muon, adafactor = (_bench.OPTIMIZERS[name] for name in ["adam", "muon", "adafactor"])
    settings = _settings("--optimizers", "all")
    assert _case_names(settings.cases(adam)) == _bench.DEFAULT_SIZES.split(",")
    for spec in [muon, adafactor]:
        assert _case_names(settings.cases(spec)) == ["mlp", "768*768", "768*3072"]
        assert _case_names(settings.scaling_cases(spec)) == ["768*768"]
    quick = _settings("--quick", "--optimizers", "muon")
    assert _case_names(quick.cases(muon)) == _bench.QUICK_MATRIX_SIZES.split(",")
    assert _case_names(quick.scaling_cases(muon)) == _bench.QUICK_MATRIX_SCALING_SIZES.split(",")
    # A list given applies to every optimizer.
    given = _settings("--optimizers", "adam,muon", "--sizes", "1K,4*5", "--scaling-sizes", "")
    for spec in [adam, muon]:
        assert _case_names(given.cases(spec)) == ["1K", "4*5"]
        assert given.scaling_cases(spec) == []


def test_settle_sleeps_before_each_calibration_and_timed_block(monkeypatch):
    events = []
    monkeypatch.setattr(_bench.timing.time, "sleep", lambda seconds: events.append(seconds))
    peers = [_bench.Peer(name, lambda name=name: events.append(name)) for name in ["a", "b"]]
    settings = _settings("--repeats", "2", "--min-block-ms", "0.001")
    _bench.time_peers(peers, settings, settle=0.2)
    # Two calibrations, then 2 rounds of 2 blocks: each starts right after a sleep and holds one
    # peer's steps only.
    assert events.count(0.2) == 6
    starts = [i for i, event in enumerate(events) if event == 0.2]
    blocks = [events[i + 1 : j] for i, j in zip(starts, starts[1:] + [len(events)])]
    assert [block[0] for block in blocks] == ["a", "b", "a", "b", "a", "b"]
    assert all(len(set(block)) == 1 for block in blocks)
    # Muon's NumPy peers multiply matrices on OpenBLAS's threads: its cases settle.
    assert _bench.OPTIMIZERS["muon"].settle > 0
    assert all(spec.settle == 0 for spec in _bench.OPTIMIZERS.values() if spec.element_wise)
    events.clear()
    _bench.time_peers(peers, settings)
    assert 0.2 not in events and all(isinstance(event, str) for event in events)


def test_unknown_optimizer_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _bench.main(["--optimizers", "adam,nope"])
    assert exit_info.value.code == 2
    assert "unknown nope; known: sgd, adam" in capsys.readouterr().err


def _markdown_tables(markdown):
    """Every table of `markdown` as CommonMark with tables (GitHub's) parses it: a list of
    rows, the header first, each a list of cells."""
    tables, row = [], None
    for token in MarkdownIt("commonmark").enable("table").parse(markdown):
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append(token.content)
        elif token.type == "tr_close":
            tables[-1].append(row)
            row = None
    return tables


def _table(markdown, first_header):
    """The header and body of the Markdown table whose header starts with the cells of
    `first_header` ("optimizer | case")."""
    wanted = [cell.strip() for cell in first_header.split("|")]
    for rows in _markdown_tables(markdown):
        if rows[0][: len(wanted)] == wanted:
            return rows[0], rows[1:]
    raise AssertionError(f"no table starting with {first_header!r} in:\n{markdown}")


def _number(cell):
    return float(cell.replace(",", "").rstrip("x"))


def _run_bench(tmp_path, *arguments):
    """`python -m ferroptim bench` with `arguments`, short timings on 1 and 2 threads, and a
    JSON report: its standard output and the report's path."""
    path = tmp_path / "bench.json"
    timings = ["--threads", "1,2", "--repeats", "2", "--min-block-ms", "2"]
    command = [sys.executable, "-m", "ferroptim", "bench", "--markdown", *arguments, *timings]
    done = subprocess.run(
        command + ["--json", str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, path


def test_quick_run_prints_the_tables_and_writes_json(tmp_path):
    plot = tmp_path / "bench.png"
    out, path = _run_bench(
        tmp_path, "--quick", "--sizes", "1K,100x1K", "--scaling-sizes", "1K", "--plot", str(plot)
    )
    has_torch = importlib.util.find_spec("torch") is not None
    peers = ["ferroptim", "roofline", "NumPy", "NumPy out="] + (["torch"] if has_torch else [])
    rivals = [peer for peer in peers if peer not in ("ferroptim", "roofline")]
    cases = [("sgd", "1K"), ("sgd", "100x1K"), ("adam", "1K"), ("adam", "100x1K")]

    # Three narrow tables rather than one wide one; a peer that did not run has no column.
    header, times = _table(out, "optimizer | case | elements")
    assert header == ["optimizer", "case", "elements", *peers]
    assert [(row[0], row[1]) for row in times] == cases
    assert [row[2] for row in times] == ["1,000", "100,000"] * 2
    header, traffic = _table(out, "optimizer | case | GB/s")
    assert header == ["optimizer", "case", "GB/s", "roofline GB/s", "of roofline"]
    header, speed = _table(out, "optimizer | case | Gelem/s")
    assert header == ["optimizer", "case", "Gelem/s", *(f"vs {peer}" for peer in rivals)]
    for rows in (times, traffic, speed):
        assert [(row[0], row[1]) for row in rows] == cases
        assert all(_number(cell) > 0 for row in rows for cell in row[2:]), rows
    assert "n/a" not in out
    if not has_torch:
        # Said once, with what to do.
        assert out.count("torch: not installed, `pip install torch` to compare") == 1
        assert len([line for line in out.splitlines() if "torch" in line]) == 1

    header, rows = _table(out, "optimizer | peer")
    assert header == ["optimizer", "peer", "1 x 1K us", "100 x 1K us", "us per extra tensor"]
    assert [(row[0], row[1]) for row in rows] == [
        (name, peer) for name in ["sgd", "adam"] for peer in peers
    ]

    header, rows = _table(out, "optimizer | case | threads")
    assert " | ".join(header) == (
        "optimizer | case | threads | ferroptim us | speedup | roofline us | roofline speedup"
    )
    assert [(row[0], row[1], row[2]) for row in rows] == [
        (name, "1K", threads) for name in ["sgd", "adam"] for threads in ["1", "2"]
    ]
    assert rows[0][4] == rows[2][4] == "1.00x"
    # The user's report holds measurements and ratios; the targets are benches/bench.py's.
    assert "Targets" not in out and "DESIGN" not in out

    data = json.loads(path.read_text())
    assert data["environment"]["simd_level"] in {"baseline", "avx2", "avx512"}
    assert data["peak_rss_bytes"] > 10**7
    results = {(case["optimizer"], case["case"]): case for case in data["cases"]}
    adam = results[("adam", "100x1K")]
    assert (adam["elements"], adam["tensors"], adam["bytes_per_element"]) == (100_000, 100, 28)
    best = adam["peers"]["ferroptim"]["best_s"]
    assert best == min(adam["peers"]["ferroptim"]["per_call_s"]) > 0
    # The tables' numbers are the JSON's time: as microseconds, bytes and elements per second.
    assert _number(times[3][3]) == pytest.approx(best * 1e6, rel=0.01, abs=0.01)
    assert _number(traffic[3][2]) == pytest.approx(28 * 100_000 / best / 1e9, rel=0.01, abs=0.01)
    assert _number(speed[3][2]) == pytest.approx(100_000 / best / 1e9, rel=0.01, abs=0.01)
    numpy = adam["peers"]["numpy"]["best_s"]
    assert _number(speed[3][3]) == pytest.approx(numpy / best, rel=0.01, abs=0.01)

    # The plot: a PNG with a bar per peer that ran and case, in a panel per optimizer.
    image = matplotlib.image.imread(plot)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_matrix_optimizers_report_ms_and_no_roofline(tmp_path):
    out, path = _run_bench(
        tmp_path,
        "--optimizers",
        "adafactor,muon",
        "--sizes",
        "24*40,2x40*24",
        "--scaling-sizes",
        "24*40",
    )

    # Only the tables of the optimizers that are not element-wise: no roofline.
    assert not any(rows[0][:3] == ["optimizer", "case", "GB/s"] for rows in _markdown_tables(out))
    has_torch = importlib.util.find_spec("torch") is not None
    header, times = _table(out, "optimizer | case | elements | tensors")
    assert header == [
        "optimizer",
        "case",
        "elements",
        "tensors",
        "ferroptim",
        "NumPy",
        "NumPy out=",
    ]
    assert [row[:4] for row in times] == [
        ["adafactor", "24*40", "960", "1"],
        ["adafactor", "2x40*24", "1,920", "2"],
        ["muon", "24*40", "960", "1"],
        ["muon", "2x40*24", "1,920", "2"],
    ]
    header, speed = _table(out, "optimizer | case | Melem/s")
    assert header == ["optimizer", "case", "Melem/s", "vs NumPy", "vs NumPy out="]
    for row in times + speed:
        assert all(_number(cell) > 0 for cell in row[2:]), row
    # Their missing roofline is the section's paragraph, not a note per optimizer.
    assert "no roofline" in out and "roofline (" not in out
    assert ("torch: not installed" in out) is not has_torch

    header, rows = _table(out, "optimizer | case | threads")
    assert header == ["optimizer", "case", "threads", "ferroptim us", "speedup"]
    assert [row[:3] for row in rows] == [
        ["adafactor", "24*40", "1"],
        ["adafactor", "24*40", "2"],
        ["muon", "24*40", "1"],
        ["muon", "24*40", "2"],
    ]
    assert "Targets" not in out

    data = json.loads(path.read_text())
    muon = {case["case"]: case for case in data["cases"] if case["optimizer"] == "muon"}
    assert muon["2x40*24"]["bytes_per_element"] is None
    assert "roofline" in muon["2x40*24"]["unavailable"]
    assert set(muon["2x40*24"]["peers"]) == {"ferroptim", "numpy", "numpy_out"}
    # The table's milliseconds are the JSON's best time.
    best = muon["2x40*24"]["peers"]["ferroptim"]["best_s"]
    assert _number(times[3][4]) == pytest.approx(best * 1e3, rel=0.01, abs=0.001)
    assert data["settings"]["matrix_sizes"] is None


def test_a_derived_record_runs_with_ferroptim_and_the_roofline_only():
    # An optimizer without NumPy steps is timed against the roofline; the NumPy peers are
    # reported missing, by name, not timed.
    spec = _bench.registry._from_class(fo.optimizers.Adamax)
    settings = _settings("--quick", "--repeats", "2", "--min-block-ms", "1")
    result = _bench.runner.run_case(spec, _bench.cases.parse_case("1K"), settings)
    assert {"ferroptim", "roofline"} <= set(result.timings)
    assert not {"numpy", "numpy_out"} & set(result.timings)
    assert "no NumPy step" in result.unavailable["numpy"]


# The sparse benchmark (`--sparse`): an embedding table whose gradient is a few rows.


@pytest.mark.parametrize("name", list(_bench.sparse.SPARSE_OPTIMIZERS))
def test_sparse_numpy_peers_do_ferroptims_work(name):
    spec = _bench.sparse.SPARSE_OPTIMIZERS[name]
    # The check's batches repeat rows, so the peers sum them as ferroptim does.
    case = _bench.sparse.CHECK_CASE
    for indices, _ in _bench.sparse.make_batches(case, 1, _bench.sparse.CHECK_STEPS):
        assert len(np.unique(indices)) < len(indices)
    differences = _bench.sparse.check_peers(spec)
    assert differences["numpy"] <= _bench.sparse.CHECK_TOLERANCE
    if name in {"sgd", "adagrad"}:
        # No per-step scalar: the same float32 operations in the same order.
        assert differences["numpy"] == 0.0


def test_sparse_check_tells_lazy_adam_from_keras_adam():
    sparse = _bench.sparse
    lazy_step = sparse.SPARSE_OPTIMIZERS["adam_lazy"].numpy_step
    wrong = dataclasses.replace(sparse.SPARSE_OPTIMIZERS["adam"], numpy_step=lazy_step)
    with pytest.raises(RuntimeError, match="not the same algorithm"):
        sparse.check_peers(wrong)


def _sparse_step(step, table, batches, slots, scratch):
    for iterations, (indices, values) in enumerate(batches):
        step(table, indices, values, slots, scratch, iterations, **_bench.sparse._ADAM_KWARGS)


def test_keras_adam_numpy_peer_is_the_dense_step_on_the_dense_gradient():
    # Keras's numbers: what NumPy's dense Adam computes on `to_dense()`, bit for bit, and not
    # what the lazy step computes.
    case = _bench.sparse.CHECK_CASE
    batches = _bench.sparse.make_batches(case, 1, 3)
    start = np.random.default_rng(0).standard_normal((case.rows, case.columns), np.float32)
    dense = start.copy()
    slots = [[np.zeros_like(start)], [np.zeros_like(start)]]
    for iterations, (indices, values) in enumerate(batches):
        grad = fo.IndexedSlices(values, indices, start.shape).to_dense()
        _bench.OPTIMIZERS["adam"].numpy_step(
            [dense], [grad], slots, iterations, **_bench.sparse._ADAM_KWARGS
        )
    keras, lazy = start.copy(), start.copy()
    _sparse_step(
        _bench.numpy_sparse_steps.adam_sparse_numpy,
        keras,
        batches,
        [np.zeros_like(start), np.zeros_like(start)],
        [np.empty_like(start), np.empty_like(start)],
    )
    _sparse_step(
        _bench.numpy_sparse_steps.adam_lazy_sparse_numpy,
        lazy,
        batches,
        [np.zeros_like(start), np.zeros_like(start)],
        [],
    )
    np.testing.assert_array_equal(keras, dense)
    assert np.any(lazy != keras)


def test_sparse_batches_draw_rows_with_replacement_from_a_fixed_seed():
    case = _bench.SparseCase(rows=100, columns=3, rows_per_step=50)
    batches = _bench.sparse.make_batches(case, 7, 20)
    again = _bench.sparse.make_batches(case, 7, 20)
    for (indices, values), (indices_again, values_again) in zip(batches, again):
        np.testing.assert_array_equal(indices, indices_again)
        np.testing.assert_array_equal(values, values_again)
        assert indices.shape == (50,) and values.shape == (50, 3)
        assert values.dtype == np.float32 and indices.min() >= 0 and indices.max() < 100
    # 50 draws from 100 rows repeat some (the chance that none does is about 1e-6 per batch).
    assert all(len(np.unique(indices)) < 50 for indices, _ in batches)
    assert len({indices.tobytes() for indices, _ in batches}) == 20


def test_sparse_options():
    settings = _settings("--sparse")
    assert settings.optimizers == ["sgd", "adagrad", "adam_lazy", "adam"]
    assert settings.sparse == _bench.SparseCase(1_000_000, 64, 512)
    assert settings.sizes == [] and settings.scaling_sizes == []
    assert settings.matrix_sizes is None and settings.matrix_scaling_sizes is None
    quick = _settings("--sparse", "--quick", "--optimizers", "adam_lazy,SGD")
    assert quick.optimizers == ["adam_lazy", "sgd"]
    assert quick.sparse == _bench.SparseCase(10_000, 64, 512)
    given = _settings("--sparse", "--table", "300*8", "--rows-per-step", "20")
    assert given.sparse == _bench.SparseCase(300, 8, 20)
    for argv, message in [
        (["--table", "300*8"], "apply with --sparse only"),
        (["--rows-per-step", "4"], "apply with --sparse only"),
        (["--sparse", "--sizes", "1K"], "do not apply with --sparse"),
        (["--sparse", "--scaling-sizes", ""], "do not apply with --sparse"),
        (["--sparse", "--table", "300"], "expected <rows>\\*<cols>"),
        (["--sparse", "--table", "2x3*4"], "expected <rows>\\*<cols>"),
        (["--sparse", "--rows-per-step", "0"], "positive integer"),
        (["--sparse", "--optimizers", "adamw"], "known with --sparse: sgd, adagrad"),
    ]:
        with pytest.raises(ValueError, match=message):
            _settings(*argv)


def test_sparse_table_shows_ratios_to_the_dense_step():
    # Made-up timings: the table's ratios are the dense step's time over each peer's, and each
    # peer's over ferroptim's sparse step.
    timings = {
        "ferroptim": _bench.Timing(1, [20e-6, 10e-6]),
        "dense": _bench.Timing(1, [0.02]),
        "numpy": _bench.Timing(1, [200e-6]),
    }
    result = _bench.sparse.SparseResult("sgd", timings, {"torch": "no torch here"}, {}, {})
    settings = _settings("--sparse", "--table", "1000*64", "--optimizers", "sgd")
    report = _bench.sparse.SparseReport(settings, _ENV, 500.0, [result])
    header, rows = _table(_bench.sparse.render_markdown(report), "optimizer | peer")
    assert header == list(_bench.sparse.SPARSE_COLUMNS)
    assert rows == [
        ["sgd", "ferroptim sparse", "10.0", "51.2", "2,000x", "1.00x"],
        ["sgd", "ferroptim dense", "20,000", "0.05", "1.00x", "2,000x"],
        ["sgd", "NumPy sparse", "200", "2.56", "100x", "20.0x"],
    ]


_ENV = {
    "ferroptim": "0",
    "simd_level": "avx2",
    "cores": 2,
    "cpu": "cpu",
    "numpy": "2",
    "torch_note": "torch is not installed",
    "python": "3",
    "load_average": None,
}


def test_sparse_quick_run_prints_its_table_and_writes_json(tmp_path):
    out, path = _run_bench(tmp_path, "--sparse", "--quick", "--table", "2000*16")
    header, rows = _table(out, "optimizer | peer")
    assert " | ".join(header) == (
        "optimizer | peer | us per step | Mrows/s | dense step / step | vs ferroptim sparse"
    )
    has_torch = importlib.util.find_spec("torch") is not None
    peers = ["ferroptim sparse", "ferroptim dense", "NumPy sparse"]
    expected = [
        (name, peer)
        for name in ["sgd", "adagrad", "adam_lazy", "adam"]
        for peer in peers + (["torch sparse"] if has_torch and name != "adam" else [])
    ]
    assert [(row[0], row[1]) for row in rows] == expected
    for row in rows:
        assert all(_number(cell) > 0 for cell in row[2:]), row
        if row[1] == "ferroptim sparse":
            assert row[5] == "1.00x"
        if row[1] == "ferroptim dense":
            assert row[4] == "1.00x"
    assert "2,000 x 16 float32" in out and "512 rows per step" in out
    assert "torch has no Adam for sparse gradients" in out or not has_torch
    assert "Checked before timing" in out

    data = json.loads(path.read_text())
    assert data["settings"]["sparse"] == {"rows": 2000, "columns": 16, "rows_per_step": 512}
    results = {result["optimizer"]: result for result in data["results"]}
    assert list(results) == ["sgd", "adagrad", "adam_lazy", "adam"]
    assert set(results["adam"]["peers"]) == {"ferroptim", "dense", "numpy"}
    assert results["sgd"]["check"]["numpy"] == 0.0
    assert 0 < data["distinct_rows_per_step"] <= 512


def test_distributed_options():
    settings = _settings("--distributed")
    assert settings.optimizers == ["adam"]
    assert [case.name for case in settings.sizes] == ["4M", "32M", "gpt2"]
    assert settings.scaling_sizes == [] and settings.sparse is None
    run = settings.distributed
    assert run.ranks == (1, 2, 4) and run.bucket_size == 64 * 2**20
    assert run.mpiexec == ()
    assert _bench.distributed.launcher(run) == [_bench.distributed.default_mpiexec()]
    quick = _settings("--distributed", "--quick")
    assert quick.distributed.ranks == (1, 2) and quick.repeats == 3
    assert [case.name for case in quick.sizes] == ["100K", "mlp"]
    given = _settings(
        "--distributed",
        "--ranks",
        "3",
        "--bucket-size",
        "256K",
        "--sizes",
        "1K",
        "--optimizers",
        "sgd",
        "--mpiexec",
        "mpirun --oversubscribe",
    )
    assert given.distributed == _bench.DistributedRun(
        (3,), 256 * 2**10, ("mpirun", "--oversubscribe")
    )
    assert given.optimizers == ["sgd"] and [case.name for case in given.sizes] == ["1K"]
    assert _settings("--distributed", "--bucket-size", "4096").distributed.bucket_size == 4096
    assert _settings("--distributed", "--bucket-size", "1GiB").distributed.bucket_size == 2**30
    for argv, message in [
        (["--ranks", "2"], "apply with --distributed only"),
        (["--bucket-size", "1M"], "apply with --distributed only"),
        (["--sparse", "--distributed"], "give one"),
        (["--distributed", "--scaling-sizes", "1K"], "does not apply with --distributed"),
        (["--distributed", "--ranks", "0,2"], "--ranks: expected positive integers"),
        (["--distributed", "--ranks", "two"], "--ranks: expected positive integers"),
        (["--distributed", "--bucket-size", "4"], "--bucket-size: expected at least 8 bytes"),
        (["--distributed", "--bucket-size", "1T"], "--bucket-size: expected at least 8 bytes"),
    ]:
        with pytest.raises(ValueError, match=message):
            _settings(*argv)


def test_distributed_table_shows_ratios_to_allreduce():
    # Made-up measurements: step / allreduce is the median step's ratio, memory / allreduce
    # that of state + buffers on the rank holding the most.
    settings = _settings("--distributed", "--sizes", "1K", "--ranks", "2")
    case = settings.sizes[0]

    def result(mode, steps, state, buffers):
        seconds = {"step": steps, "exchange": [1e-3] * 3, "rule": [2e-3] * 3, "gather": [3e-3] * 3}
        memory = {"state": state, "buffers": buffers, "temporaries": [10**6, 2 * 10**6]}
        return _bench.DistributedResult("adam", case, mode, 2, seconds, memory)

    report = _bench.DistributedReport(
        settings,
        _ENV,
        [{"ranks": 2, "threads_per_rank": 1, "mpi4py": "4", "mpi_library": "MPI 5"}],
        [
            result("allreduce", [0.02, 0.01, 0.03], [8 * 10**6] * 2, [6 * 10**6] * 2),
            result("zero1", [0.005, 0.5, 0.004], [4 * 10**6, 5 * 10**6], [2 * 10**6] * 2),
        ],
    )
    text = _bench.distributed.render_markdown(report)
    header, rows = _table(text, "optimizer | ranks")
    assert header == list(_bench.distributed.DISTRIBUTED_COLUMNS)
    assert rows == [
        [
            "adam",
            "2",
            "1K",
            "allreduce",
            "20.0",
            "1.00",
            "2.00",
            "3.00",
            "8.00",
            "6.00",
            "2.00",
            "1.00x",
            "1.00x",
        ],
        [
            "adam",
            "2",
            "1K",
            "zero1",
            "5.00",
            "1.00",
            "2.00",
            "3.00",
            "5.00",
            "2.00",
            "2.00",
            "0.25x",
            "0.50x",
        ],
    ]
    assert "MPI 5, mpi4py 4" in text and "bucket_size 64M" in text
    assert "oversubscribe" not in text
    crowded = dataclasses.replace(
        settings, distributed=dataclasses.replace(settings.distributed, ranks=(4,))
    )
    report.settings = crowded
    assert "4 ranks oversubscribe the 2 cores" in _bench.distributed.render_markdown(report)


def test_distributed_quick_run_prints_its_table_and_writes_json(tmp_path):
    path = tmp_path / "bench.json"
    command = [sys.executable, "-m", "ferroptim", "bench", "--distributed", "--quick", "--markdown"]
    command += ["--repeats", "2", "--json", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    header, rows = _table(done.stdout, "optimizer | ranks")
    assert header == list(_bench.distributed.DISTRIBUTED_COLUMNS)
    assert [tuple(row[:4]) for row in rows] == [
        ("adam", str(n), case, mode)
        for n in (1, 2)
        for case in ("100K", "mlp")
        for mode in ("allreduce", "zero1")
    ]
    for row in rows:
        assert all(_number(cell) > 0 for cell in row[4:]), row
    assert "median over 2 timed steps" in done.stdout

    data = json.loads(path.read_text())
    assert data["settings"]["distributed"]["ranks"] == [1, 2]
    assert [launch["ranks"] for launch in data["launches"]] == [1, 2]
    results = {(r["ranks"], r["case"], r["mode"]): r for r in data["results"]}
    for case, elements in [("100K", 100_000), ("mlp", 235_146)]:
        # Adam's two float32 slots (and a few scalars); at two ranks zero1 holds half of them
        # on each rank.
        whole = results[(2, case, "allreduce")]["bytes"]["state"]
        shard = results[(2, case, "zero1")]["bytes"]["state"]
        assert all(0 <= weight - 2 * 4 * elements < 100 for weight in whole)
        assert max(shard) == pytest.approx(max(whole) / 2, rel=0.01)
        # Buffers: the rank's range of the averaged gradient, with allreduce the whole, and the
        # exchange's send and receive buffers of one bucket each (here one bucket: the model).
        exchange = 2 * 4 * elements
        assert (
            results[(2, case, "allreduce")]["bytes"]["buffers"]
            == [4 * elements * 3 // 2 + exchange] * 2
        )
        assert sum(results[(2, case, "zero1")]["bytes"]["buffers"]) == 4 * elements + 2 * exchange
        for n in (1, 2):
            for mode in ("allreduce", "zero1"):
                seconds = results[(n, case, mode)]["seconds"]
                assert len(seconds["step"]) == 2
                assert all(s > 0 for part in seconds.values() for s in part)


# What a user reads: tables that fit, missing peers named once, the plot, the progress.


def _timing(seconds):
    return _bench.Timing(1, [seconds])


def _report(torch_everywhere=False):
    """A made-up run of three optimizers (the longest names of the registry among them) on
    four cases, torch missing from all of them but, with `torch_everywhere`, the ones torch
    has."""
    settings = _settings(
        "--optimizers", "adam,rmsprop_centered,schedule_free_adamw", "--sizes", "1K,32M,gpt2,100x1K"
    )
    cases = []
    for name in settings.optimizers:
        spec = _bench.OPTIMIZERS[name]
        for k, case in enumerate(settings.sizes):
            seconds = case.elements * 4e-9 + 3e-6 * (k + 1)
            timings = {
                "ferroptim": _timing(seconds),
                "roofline": _timing(seconds * 0.8),
                "numpy": _timing(seconds * 9.5),
                "numpy_out": _timing(seconds * 6.25),
            }
            unavailable = {"torch": "not installed, `pip install torch` to compare"}
            if torch_everywhere and spec.torch_optimizer is not None:
                timings["torch"] = _timing(seconds * 1.5)
                unavailable = {}
            elif torch_everywhere:
                unavailable = {"torch": f"torch has no fused CPU {spec.keras_name}"}
            cases.append(
                _bench.CaseResult(
                    name, case, 2, spec.bytes_per_element(4), timings, unavailable, {}
                )
            )
    return _bench.Report(settings, {**_ENV, "load_average": (0.1, 0.1, 0.1)}, cases, [])


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_terminal_tables_fit_the_width(width):
    stream = io.StringIO()
    blocks = _bench.report.report_blocks(_report(torch_everywhere=True))
    _bench.tables.render_terminal(blocks, stream, width=width)
    lines = stream.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    text = stream.getvalue()
    # No cell folds over two lines: a table too wide is split, its name columns repeated.
    assert "497,768" in text and "4,728,798" in text and "schedule_free_adamw" in text
    for name in ["adam", "rmsprop_centered", "schedule_free_adamw"]:
        rows = sum(line.startswith(name + " ") for line in lines)
        # Four cases in each of the three tables (and in more parts when narrow).
        assert rows >= 3 * 4, name
    # Three tables for the 15 columns of old, and the marginal cost's: whole at 120 columns
    # (seven-digit times and torch's column take the time table to 90), split below.
    headers = sum(line.startswith("optimizer ") for line in lines)
    assert (headers == 4) is (width == 120)


def test_missing_peers_are_named_once_without_columns():
    text = _bench.render_markdown(_report())
    assert text.count("torch: not installed, `pip install torch` to compare") == 1
    assert len([line for line in text.splitlines() if "torch" in line]) == 1
    assert "n/a" not in text
    tables = _markdown_tables(text)
    # Time, traffic, speed-ups and the marginal cost of a tensor (1K and 100x1K ran).
    assert len(tables) == 4
    assert all("torch" not in " ".join(rows[0]) for rows in tables)
    # A peer missing for some optimizers only: its column stays, the others' cells are n/a,
    # and each reason is said once, with the optimizers it holds for.
    text = _bench.render_markdown(_report(torch_everywhere=True))
    header, rows = _table(text, "optimizer | case | elements")
    assert header[-1] == "torch"
    assert [row[-1] != "n/a" for row in rows] == [True] * 4 + [False] * 8
    assert "- torch (rmsprop_centered): torch has no fused CPU RMSprop" in text
    assert "- torch (schedule_free_adamw): torch has no fused CPU ScheduleFreeAdamW" in text
    notes = _bench.report.missing_notes(
        [("torch", "sgd", "gone"), ("torch", "adam", "gone"), ("torch", "sgd", "gone")],
        ["sgd", "adam"],
    )
    assert notes == ["torch: gone"]


def test_markdown_output_is_markdown_tables():
    text = _bench.render_markdown(_report(torch_everywhere=True))
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    tables = _markdown_tables(text)
    # Every line that looks like a table row is one: a header, a rule, and the body.
    assert sum(len(rows) + 1 for rows in tables) == len(table_lines)
    for rows in tables:
        assert len({len(row) for row in rows}) == 1
    # Columns are padded so the text reads as a table too: the pipes line up.
    header = next(i for i, line in enumerate(text.splitlines()) if line.startswith("| optimizer"))
    block = text.splitlines()[header : header + 14]
    assert len({tuple(i for i, c in enumerate(line) if c == "|") for line in block}) == 1
    assert text.startswith("## ferroptim benchmark\n")


def test_plot_draws_a_bar_per_peer_and_case(tmp_path):
    report = _report(torch_everywhere=True)
    path = tmp_path / "bench.png"
    figure = _bench.plot.plot_report(report, str(path))
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4) and image.shape[0] > 300
    # One panel per optimizer; a bar per case and peer that ran: adam has torch's too.
    assert [ax.get_title(loc="left") for ax in figure.axes] == [
        "adam",
        "rmsprop_centered",
        "schedule_free_adamw",
    ]
    bars = [sum(len(container) for container in ax.containers) for ax in figure.axes]
    assert bars == [4 * 5, 4 * 4, 4 * 4]
    assert sum(len(result.timings) for result in report.cases) == sum(bars)
    # Their heights are the Gelem/s of the peers: elements over the best time.
    adam = figure.axes[0]
    ferroptim = adam.containers[0]
    for patch, result in zip(ferroptim, report.cases[:4]):
        expected = result.case.elements / result.best("ferroptim") / 1e9
        assert patch.get_height() == pytest.approx(expected)


def test_plot_of_the_sparse_benchmark(tmp_path):
    timings = {"ferroptim": _timing(10e-6), "dense": _timing(0.02), "numpy": _timing(2e-4)}
    results = [_bench.sparse.SparseResult(name, timings, {}, {}, {}) for name in ["sgd", "adagrad"]]
    settings = _settings("--sparse", "--table", "1000*64", "--optimizers", "sgd,adagrad")
    report = _bench.sparse.SparseReport(settings, _ENV, 500.0, results)
    figure = _bench.plot.plot_report(report, str(tmp_path / "sparse.svg"))
    assert (tmp_path / "sparse.svg").read_text().lstrip().startswith("<?xml")
    (ax,) = figure.axes
    assert [len(container) for container in ax.containers] == [2, 2, 2]
    # Steps per second: the sparse step's 10 us, the dense step's 20 ms.
    assert ax.containers[0][0].get_height() == pytest.approx(1e5)
    assert ax.containers[1][0].get_height() == pytest.approx(50)


def test_plot_without_matplotlib_is_a_usage_error_before_the_run(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(SystemExit) as exit_info:
        _bench.main(["--plot", "out.png", "--sizes", "1K"])
    assert exit_info.value.code == 2
    assert '--plot needs matplotlib: pip install "ferroptim[bench]"' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _bench.main(["--distributed", "--plot", "out.png"])
    assert "not --distributed" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_lines_when_not_a_terminal(monkeypatch):
    clock = iter([0.0, 0.0, 0.0, 2.0, 9.0])
    monkeypatch.setattr(_bench.progress.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    with _bench.progress.Progress([1.0, 3.0], stream) as progress:
        progress.begin("adam 1K", "1,000 elements, 1 tensor")
        progress.part(0.5, "numpy, block 1 of 7")
        progress.begin("adam 32M")
    assert progress.rich is None
    # The time left: the estimates, scaled by the rate of the cases done so far blended with
    # the estimates' own (as if they had held for a quarter of the run): 3 * (2 + 1) / (1 + 1).
    assert stream.getvalue().splitlines() == [
        "[1/2] adam 1K (1,000 elements, 1 tensor): 0:00 elapsed, about 0:04 left",
        "[2/2] adam 32M: 0:02 elapsed, about 0:04 left",
        "done: 2 cases in 0:09",
    ]


def test_progress_bar_on_a_terminal_unless_rich_is_missing(monkeypatch):
    stream = _Terminal()
    with _bench.progress.Progress([1.0, 1.0], stream) as progress:
        progress.begin("adam 1K")
        progress.part(0.5, "numpy, block 1 of 7")
        progress.begin("adam 32M")
    assert progress.rich is not None
    assert "2/2 cases" in stream.getvalue() and "[1/2]" not in stream.getvalue()
    monkeypatch.setitem(sys.modules, "rich.progress", None)
    stream = _Terminal()
    with _bench.progress.Progress([1.0], stream) as progress:
        progress.begin("adam 1K")
    assert progress.rich is None
    assert stream.getvalue().startswith("[1/1] adam 1K: ")


def test_timing_reports_how_far_a_case_is():
    parts = []
    peers = [_bench.Peer(name, lambda: None) for name in ["ferroptim", "numpy"]]
    settings = _settings("--repeats", "3", "--min-block-ms", "0.01")
    _bench.time_peers(peers, settings, on_block=lambda share, what: parts.append((share, what)))
    assert parts[:2] == [(0.0, "ferroptim, warm-up"), (0.125, "numpy, warm-up")]
    assert parts[2] == (0.25, "ferroptim, block 1 of 3")
    assert parts[-1] == (0.875, "numpy, block 3 of 3")
    assert [share for share, _ in parts] == sorted(share for share, _ in parts)


def test_a_busy_machine_is_said():
    assert _bench.machine.busy_warning((0.4, 0.3, 0.2), 2) is None
    assert _bench.machine.busy_warning(None, 2) is None
    warning = _bench.machine.busy_warning((1.5, 1.0, 1.0), 2)
    assert "load average 1.50 on 2 cores" in warning and "noisy" in warning
    settings = _settings()
    assert "(busy: noisy times)" in _bench.report.environment_line(
        {**_ENV, "load_average": (3.0, 2.0, 1.0)}, settings
    )
    assert "busy" not in _bench.report.environment_line(
        {**_ENV, "load_average": (0.1, 0.1, 0.1)}, settings
    )


def test_help_states_the_memory_a_run_needs():
    parser = argparse.ArgumentParser(description=_bench.DESCRIPTION)
    _bench.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "peaks at 5.7 GB of RAM" in text and "--quick: seconds and 60 MB" in text
    assert "--markdown" in text and "--plot FILE" in text


def test_the_memory_said_before_a_run_is_the_peak_it_reaches(tmp_path):
    # Adam on 8M elements: parameters, gradients and two slots for each of four peers, 320 MB,
    # and NumPy's temporaries. The estimate said on stderr against the measured peak.
    out, path = _run_bench(tmp_path, "--optimizers", "adam", "--sizes", "8M", "--scaling-sizes=")
    del out
    data = json.loads(path.read_text())
    spec, case = _bench.OPTIMIZERS["adam"], _bench.parse_case("8M")
    estimate = _bench.machine.case_bytes(spec, case, torch=data["environment"]["torch"] is not None)
    assert estimate >= 4 * 8_000_000 * 10
    peak = data["peak_rss_bytes"]
    assert 0.8 * estimate < peak < 1.2 * estimate + 150e6


def test_import_ferroptim_imports_no_plotting_or_table_library():
    code = (
        "import sys, ferroptim, ferroptim._bench; "
        "print(sorted(m for m in ('rich', 'matplotlib', 'tabulate') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_the_bench_extra_the_output_is_plain(tmp_path):
    # rich and matplotlib blocked: Markdown on stdout, plain progress lines, one line saying
    # how to get the rest.
    code = (
        "import sys; sys.modules['rich'] = None; sys.modules['matplotlib'] = None; "
        "from ferroptim.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    command = [sys.executable, "-c", code, "bench", "--quick", "--sizes", "1K", "--scaling-sizes="]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count('pip install "ferroptim[bench]"') == 1
    assert "[1/2] sgd 1K" in done.stderr and "done: 2 cases in" in done.stderr
    header, rows = _table(done.stdout, "optimizer | case | elements")
    assert [row[:2] for row in rows] == [["sgd", "1K"], ["adam", "1K"]]
