"""Memory: a step allocates nothing in proportion to the model, and 10,000 steps leak nothing.

Three instruments, each for what it can see:
- `tracemalloc` traces every Python object and every NumPy buffer: the peak during one step of
  a model of 1M parameters must stay far below the model's size (64 KiB against 4 MiB).
- Native (Rust) allocations are invisible to it. A child process sets glibc's mmap threshold
  to 64 KiB (so every large block is fresh pages, returned at free), resets its peak resident
  size (`/proc/self/clear_refs`) and steps a 16 MiB model: the peak may not grow by 1 MiB.
- 10,000 steps of a small model, on every path of the step (the fast path, the general one,
  several dtype groups, the error path, the native functions called directly): resident
  memory, traced memory and the reference counts of the arrays involved stay where they were.
"""

import functools
import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _native
from optimizers_under_test import OPTIMIZERS, build

OPT = fo.optimizers
KIB = 1024


def _model(mixed=False, rows=1000, cols=1000, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "dense/kernel": rng.standard_normal((rows, cols)).astype(np.float32),
        "dense/bias": rng.standard_normal(cols).astype(np.float64 if mixed else np.float32),
        "out/kernel": rng.standard_normal((cols, 10)).astype(np.float32),
    }
    grads = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}
    return params, grads


# (optimizer factory, dtype groups, how the step is called): each record's `memory` arguments
# (the list path), then the other paths of the step with Adam, then the wrappers.
STEP_CASES = {
    **{
        case.name: (functools.partial(build, case, case.memory), False, "list")
        for case in OPTIMIZERS
        if case.memory is not None
    },
    "Adam dict": (lambda: OPT.Adam(), False, "dict"),
    "Adam apply_gradients": (lambda: OPT.Adam(), False, "pairs"),
    "Adam every option": (
        lambda: OPT.Adam(
            learning_rate=OPT.schedules.CosineDecay(0.01, 100),
            amsgrad=True,
            use_ema=True,
            ema_overwrite_frequency=3,
            gradient_accumulation_steps=2,
            weight_decay=0.01,
            clipnorm=1.0,
            loss_scale_factor=8.0,
        ),
        False,
        "list",
    ),
    "Adam two dtypes": (lambda: OPT.Adam(weight_decay=0.01, clipvalue=0.5), True, "dict"),
    "LossScaleOptimizer": (lambda: OPT.LossScaleOptimizer(OPT.Adam()), False, "list"),
    # Row-sparse gradients (`sparse`: the kernel's gradient is 20 rows of it).
    "Adam sparse": (lambda: OPT.Adam(global_clipnorm=1.0), True, "sparse"),
    "Adam lazy sparse": (lambda: OPT.Adam(lazy=True, weight_decay=0.01), False, "sparse"),
    "Adafactor sparse": (lambda: OPT.Adafactor(), False, "sparse"),
    "LossScaleOptimizer sparse": (
        lambda: OPT.LossScaleOptimizer(OPT.SGD(momentum=0.9)),
        False,
        "sparse",
    ),
    "MultiOptimizer": (
        lambda: OPT.MultiOptimizer(
            OPT.OptimizerMap(OPT.Adam(), {"dense/bias": OPT.SGD(momentum=0.9)})
        ),
        False,
        "dict",
    ),
}


def _stepper(opt, params, grads, how):
    if how == "sparse":
        table = params["dense/kernel"]
        rng = np.random.default_rng(4)
        grads = dict(grads)
        grads["dense/kernel"] = fo.IndexedSlices(
            grads["dense/kernel"][:20], rng.integers(0, table.shape[0], 20), table.shape
        )
        return lambda: opt.apply(grads, params)
    p, g = list(params.values()), list(grads.values())
    if how == "list":
        return lambda: opt.apply(g, p)
    if how == "dict":
        return lambda: opt.apply(grads, params)
    return lambda: opt.apply_gradients(zip(g, p))


def _traced_peak(step):
    for _ in range(3):  # warm-up: plans, cached options, the native pool
        step()
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", list(STEP_CASES))
def test_a_step_allocates_nothing_in_proportion_to_the_model(case):
    make, mixed, how = STEP_CASES[case]
    params, grads = _model(mixed)
    assert sum(p.size for p in params.values()) > 1_000_000
    peak = _traced_peak(_stepper(make(), params, grads, how))
    assert peak < 64 * KIB, f"{case}: {peak / KIB:.1f} KiB traced during one step"


def test_a_global_clipnorm_over_two_dtypes_allocates_nothing_in_proportion():
    params, grads = _model(mixed=True)
    peak = _traced_peak(_stepper(OPT.Adam(global_clipnorm=1.0), params, grads, "list"))
    assert peak < 64 * KIB, f"{peak / KIB:.1f} KiB traced during one step"


def test_gradients_of_another_dtype_are_cast_without_a_copy():
    params, grads = _model()
    wide = [g.astype(np.float64) for g in grads.values()]
    opt, p = OPT.Adam(), list(params.values())
    peak = _traced_peak(lambda: opt.apply(wide, p))
    assert peak < 64 * KIB, f"{peak / KIB:.1f} KiB traced during one step"


_NATIVE_PEAK = textwrap.dedent(
    """
    import ctypes, ctypes.util, json, sys
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    # Every block of 64 KiB or more is mapped fresh and unmapped at free: a step's native
    # allocations show in the peak resident size, as they would not if glibc reused the heap.
    assert libc.mallopt(-3, 64 * 1024) == 1  # M_MMAP_THRESHOLD
    assert libc.mallopt(-1, 128 * 1024) == 1  # M_TRIM_THRESHOLD
    import numpy as np
    import ferroptim as fo
    OPT = fo.optimizers

    def kib(field):
        with open("/proc/self/status") as f:
            return int(next(l for l in f if l.startswith(field)).split()[1])

    rng = np.random.default_rng(0)
    params = [rng.standard_normal((1024, 1024)).astype(np.float32),
              rng.standard_normal(1024).astype(np.float32)]
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    # A row-sparse gradient of 16 rows (64 KiB of values), repeated rows included.
    rows = fo.IndexedSlices(rng.standard_normal((16, 1024)).astype(np.float32),
                            rng.integers(0, 1024, 16) % 12, (1024, 1024))
    sparse = [rows, grads[1]]
    cases = {
        "Adam": lambda: OPT.Adam(),
        "Adam every option": lambda: OPT.Adam(amsgrad=True, use_ema=True, weight_decay=0.01,
                                            gradient_accumulation_steps=2, clipnorm=1.0,
                                            loss_scale_factor=4.0),
        "SGD global_clipnorm": lambda: OPT.SGD(momentum=0.9, global_clipnorm=1.0),
        "Lamb": lambda: OPT.Lamb(),
        "Nadam": lambda: OPT.Nadam(),
        "Ftrl": lambda: OPT.Ftrl(),
        "LossScaleOptimizer": lambda: OPT.LossScaleOptimizer(OPT.Adam()),
        "Adam sparse": lambda: (OPT.Adam(clipnorm=1.0), sparse),
        "Adam lazy sparse": lambda: (OPT.Adam(lazy=True, use_ema=True), sparse),
        "SGD sparse": lambda: (OPT.SGD(global_clipnorm=1.0), sparse),
    }
    out = {}
    for threads in (1, 2):
        fo.set_num_threads(threads)
        if threads == 2:
            cases["Muon"] = lambda: OPT.Muon()
        for name, make in cases.items():
            opt = make()
            opt, step_grads = opt if isinstance(opt, tuple) else (opt, grads)
            for _ in range(3):
                opt.apply(step_grads, params)
            worst = 0
            for _ in range(3):
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # the peak resident size restarts from the current one
                before = kib("VmRSS:")
                opt.apply(step_grads, params)
                worst = max(worst, kib("VmHWM:") - before)
            out[f"{name}, {threads} threads"] = worst
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and os.access("/proc/self/clear_refs", os.W_OK)),
    reason="needs Linux's /proc/self/clear_refs and glibc's mallopt",
)
def test_native_code_allocates_nothing_in_proportion_to_the_model():
    result = subprocess.run(
        [sys.executable, "-c", _NATIVE_PEAK], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    import json

    peaks = json.loads(result.stdout.strip().splitlines()[-1])
    # The model is 4 MiB. Muon is the exception by design: Newton-Schulz iterates on new
    # matrices the size of each 2-D gradient (Keras does the same); the probe must see them,
    # which shows that native allocations do show.
    muon = [v for k, v in peaks.items() if k.startswith("Muon")]
    assert muon and all(v >= 4 * KIB for v in muon), peaks
    others = {k: v for k, v in peaks.items() if not k.startswith("Muon")}
    assert all(v < 256 for v in others.values()), others


# --- 10,000 steps ------------------------------------------------------------------------------


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _small(mixed=False, seed=1):
    rng = np.random.default_rng(seed)
    shapes = [(64, 32), (32,), (32, 16), (16,), (16, 4), (4,)]
    params = {
        f"layer{i}": rng.standard_normal(s).astype(np.float64 if mixed and i % 2 else np.float32)
        for i, s in enumerate(shapes)
    }
    grads = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}
    return params, grads


def _leak_cases():
    params, grads = _small()
    fast = OPT.Adam()
    p, g = list(params.values()), list(grads.values())
    yield "fast path", (lambda: fast.apply(g, p)), p + g

    params2, grads2 = _small(seed=2)
    varying = OPT.Adam(
        learning_rate=OPT.schedules.CosineDecay(0.01, 100),
        use_ema=True,
        gradient_accumulation_steps=2,
        weight_decay=0.01,
    )
    varying.exclude_from_weight_decay(var_names=["layer1"])
    yield "general path", (lambda: varying.apply(grads2, params2)), list(params2.values())

    params3, grads3 = _small(mixed=True, seed=3)
    mixed = OPT.Nadam(clipvalue=0.5, weight_decay=0.01, loss_scale_factor=4.0)
    yield "two dtypes", (lambda: mixed.apply(grads3, params3)), list(params3.values())

    params4, grads4 = _small(seed=4)
    refused = OPT.Adam()
    refused.build(params4)
    bad = list(grads4.values())
    bad[2] = np.ones(3, np.float32)
    p4 = list(params4.values())

    def error():
        try:
            refused.apply(bad, p4)
        except ValueError:
            return
        raise AssertionError("the bad step was not refused")

    yield "refused step", error, p4 + bad

    params5, grads5 = _small(seed=5)
    p5, g5 = list(params5.values()), list(grads5.values())
    m5, v5, acc, avg = ([np.zeros_like(x) for x in p5] for _ in range(4))
    names = list(params5)

    def native():
        options = _native.StepOptions(
            accumulators=acc,
            accumulation_steps=2,
            averages=avg,
            ema_momentum=0.9,
            clipnorm=1.0,
            weight_decay=0.01,
            weight_decay_mask=[True, False] * 3,
        )
        _native.adam(p5, g5, m5, v5, None, 0.01, 0.9, 0.999, 1e-7, 5, options, names)

    yield "native call", native, p5 + g5 + m5 + v5 + acc + avg

    params6, grads6 = _small(seed=6)
    lso = OPT.LossScaleOptimizer(OPT.Adam())
    p6, g6 = list(params6.values()), list(grads6.values())
    yield "LossScaleOptimizer", (lambda: lso.apply(g6, p6)), p6 + g6


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm")
def test_ten_thousand_steps_leak_nothing():
    report = {}
    for name, step, arrays in _leak_cases():
        for _ in range(1000):
            step()
        gc.collect()
        references = [sys.getrefcount(a) for a in arrays]
        resident = _resident_bytes()
        for _ in range(10_000):
            step()
        gc.collect()
        grown = _resident_bytes() - resident
        # Then 1,000 steps under tracemalloc (which slows every allocation): any Python object
        # kept per step shows in the traced bytes.
        tracemalloc.start()
        try:
            traced = tracemalloc.get_traced_memory()[0]
            for _ in range(1000):
                step()
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0] - traced
        finally:
            tracemalloc.stop()
        assert [sys.getrefcount(a) for a in arrays] == references, f"{name}: a reference leaked"
        report[name] = (grown, traced)
    # 256 KiB of resident memory over 10,000 steps is 26 bytes a step.
    for name, (grown, traced) in report.items():
        assert grown < 256 * KIB, f"{name}: resident memory grew by {grown / KIB:.0f} KiB"
        assert traced < 4 * KIB, f"{name}: {traced} bytes of Python objects kept"
