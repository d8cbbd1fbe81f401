"""Threads: kernels release the GIL, two optimizers step in parallel, one optimizer serializes
the steps of several threads, and a state snapshot never sees half a step.

How "during the native call" is observed without timing anything: a step of SGD with
learning_rate=1 and a gradient of ones moves every element of a parameter that holds one value
to that value minus one, in a single sweep over memory. While the sweep is under way the
parameter holds two values; before and after, one. A Python thread that finds two values was
running while the kernel was inside its call. The kernels release the GIL only for calls of at
least 16384 elements, hence the large tensors.
"""

import threading
import time

import numpy as np
import pytest

import ferroptim as fo
from blocking_step import blocking_learning_rate

N = 1 << 22  # 16 MiB of float32 per array: a sweep long enough to be seen mid-way
PROBES = np.linspace(0, N - 1, 64).astype(np.intp)
TIMEOUT = 120  # seconds a thread may take before the test calls it a hang


@pytest.fixture
def one_kernel_thread():
    """One kernel thread per call, so each sweep is one run over memory and the other core stays
    free for the observing thread."""
    before = fo.get_num_threads()
    fo.set_num_threads(1)
    yield
    fo.set_num_threads(before)


def _mid_step(param):
    """Whether a uniform update of `param` is under way (its probed elements differ)."""
    sample = param[PROBES * (param.size // N)]
    return bool(np.any(sample != sample[0]))


def _sgd(n=N):
    param = np.zeros(n, np.float32)
    grad = np.ones(n, np.float32)
    opt = fo.optimizers.SGD(learning_rate=1.0)
    opt.build([param])
    return opt, param, grad


def _start(target, *args):
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _join(thread):
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "a thread did not finish: hang"


def test_the_gil_is_released_during_a_step(one_kernel_thread):
    opt, param, grad = _sgd()
    counting = threading.Event()
    stop = threading.Event()
    counts_mid_step = set()

    def count():
        # A pure-Python loop: it can only advance while no other thread holds the GIL.
        counter = 0
        counting.set()
        while not stop.is_set():
            counter += 1
            if _mid_step(param):
                counts_mid_step.add(counter)

    counter = _start(count)
    assert counting.wait(TIMEOUT)
    try:
        for step in range(1, 21):
            opt.apply([grad], [param])
            assert param[0] == param[-1] == -step
            if len(counts_mid_step) >= 2:
                break
    finally:
        stop.set()
        _join(counter)
    # The counter advanced (at least two of its values were seen) while a kernel was mid-sweep.
    assert len(counts_mid_step) >= 2, counts_mid_step


def test_two_optimizers_step_in_parallel(one_kernel_thread):
    # Proof of overlap without timing: A is seen mid-step, then B, then A again. A single sweep
    # that is under way at two moments is under way between them, so B's and A's calls ran at
    # the same time; a lock around native calls (or the GIL held by a kernel) makes it impossible.
    # Long sweeps (32 MiB per array), many rounds: on a loaded machine the scheduler may still
    # run two sweeps one after the other now and then.
    a = _sgd(N * 2)
    b = _sgd(N * 2)
    overlaps = 0
    for round_ in range(1, 61):
        start = threading.Barrier(3)
        done = []

        def step(opt, param, grad, start=start, done=done):
            start.wait()
            opt.apply([grad], [param])
            done.append(param)

        threads = [_start(step, *a), _start(step, *b)]
        start.wait()
        while len(done) < 2:
            if _mid_step(a[1]) and _mid_step(b[1]) and _mid_step(a[1]):
                overlaps += 1
            # Give the GIL away between samples: the stepping threads need it to enter and
            # leave their native calls, and an observer that held it would serialize them.
            time.sleep(1e-4)
        for thread in threads:
            _join(thread)
        for _, param, _ in (a, b):
            np.testing.assert_array_equal(param[PROBES], -round_)
        if overlaps:
            break
    assert overlaps > 0


def _serialized_case():
    """Two dtype groups (two native calls per step, each large enough to release the GIL) and
    EMA (the general step path)."""
    rng = np.random.default_rng(11)
    shapes = [((512, 96), np.float32), ((40000,), np.float64), ((5,), np.float32)]
    params = [rng.standard_normal(s).astype(d) for s, d in shapes]
    grads = [rng.standard_normal(s).astype(d) for s, d in shapes]
    kwargs = dict(learning_rate=0.01, use_ema=True, ema_momentum=0.9, weight_decay=0.01)
    return params, grads, kwargs


@pytest.mark.parametrize("threads", [2, 4])
def test_one_optimizer_serializes_the_steps_of_several_threads(threads):
    params, grads, kwargs = _serialized_case()
    expected = [p.copy() for p in params]
    opt = fo.optimizers.Adam(**kwargs)
    reference = fo.optimizers.Adam(**kwargs)
    steps_per_thread = 12

    # Counts the threads inside the optimizer's native calls: more than one at a time would be
    # two steps interleaved.
    inside = []
    overlaps = []
    update_step = opt._update_step

    def probe(*args):
        if inside:
            overlaps.append(len(inside))
        inside.append(1)
        try:
            update_step(*args)
        finally:
            inside.pop()

    opt._update_step = probe
    start = threading.Barrier(threads)
    errors = []

    def run():
        start.wait()
        try:
            for _ in range(steps_per_thread):
                opt.apply_gradients(zip(grads, params))
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    workers = [_start(run) for _ in range(threads)]
    for worker in workers:
        _join(worker)
    assert not errors, errors
    assert not overlaps, f"{len(overlaps)} native calls overlapped another step"

    total = threads * steps_per_thread
    for _ in range(total):
        reference.apply_gradients(zip(grads, expected))
    assert opt.iterations == reference.iterations == total
    for p, e in zip(params, expected):
        np.testing.assert_array_equal(p, e)
    for v, e in zip(opt.variables, reference.variables):
        np.testing.assert_array_equal(v, e)


def test_a_step_waits_for_the_step_in_progress():
    learning_rate, armed, inside, release = blocking_learning_rate(0.5, TIMEOUT)
    w = np.zeros(3, np.float32)
    g = np.ones(3, np.float32)
    opt = fo.optimizers.SGD(learning_rate=learning_rate)
    opt.build([w])

    def first():
        armed.append(threading.current_thread())
        opt.apply([g], [w])

    holder = _start(first)
    assert inside.wait(TIMEOUT)
    second = _start(opt.apply, [g], [w])
    second.join(0.2)
    # The second step cannot have run: the first one has not computed anything yet.
    assert second.is_alive()
    np.testing.assert_array_equal(w, 0.0)
    assert opt.iterations == 0
    release.set()
    _join(holder)
    _join(second)
    np.testing.assert_array_equal(w, -1.0)
    assert opt.iterations == 2


def _run_in_thread(function):
    result = []

    def run():
        try:
            function()
        except BaseException as error:
            result.append(error)
        else:
            result.append(None)

    _join(_start(run))
    return result[0]


def test_a_step_started_inside_a_step_of_the_same_optimizer_raises_instead_of_hanging(tmp_path):
    w = np.ones(3, np.float32)
    g = np.ones(3, np.float32)
    reenter = []

    def learning_rate():
        if reenter:
            reenter.pop()()
        return 0.5

    opt = fo.optimizers.SGD(learning_rate=learning_rate)
    opt.build([w])
    for inner in (
        lambda: opt.apply([g], [w]),
        lambda: opt.save(tmp_path / "inside.ckpt"),
        lambda: opt.set_weights([np.array(3)]),
    ):
        reenter.append(inner)
        error = _run_in_thread(lambda: opt.apply([g], [w]))
        assert isinstance(error, RuntimeError), error
        assert "already running a step on this thread" in str(error)
        np.testing.assert_array_equal(w, 1.0)
        assert opt.iterations == 0
    assert not (tmp_path / "inside.ckpt").exists()
    # The guard was given back: the optimizer steps normally.
    assert _run_in_thread(lambda: opt.apply([g], [w])) is None
    np.testing.assert_array_equal(w, 0.5)


@pytest.mark.parametrize("how", ["save_own_variables", "save"])
def test_a_snapshot_taken_while_another_thread_steps_holds_whole_steps(tmp_path, how):
    # SGD, learning_rate=1, zeros, a gradient of ones, and an EMA with momentum 0 (the average
    # is the parameter after each step): after k steps every element of both is exactly -k. A
    # snapshot that saw part of a step, or a step without its iteration count, holds several
    # values, or values that disagree with its own `iteration`.
    param = np.zeros(1 << 21, np.float32)
    grad = np.ones(1 << 21, np.float32)
    opt = fo.optimizers.SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.0)
    opt.build([param])
    assert opt.variable_names[2] == "variable_0_average"
    stop = threading.Event()

    def train():
        while not stop.is_set():
            opt.apply([grad], [param])

    trainer = _start(train)
    seen = set()
    try:
        for i in range(8):
            if how == "save":
                path = tmp_path / f"snapshot_{i}.ckpt"
                opt.save(path)
                with np.load(path) as f:
                    iteration = int(f["optimizer/0"])
                    arrays = [f["optimizer/2"], f["variables/0"]]
            else:
                store = {}
                opt.save_own_variables(store)
                iteration = int(store["0"])
                arrays = [store["2"]]
            for array in arrays:
                values = np.unique(array)
                assert values.tolist() == [-iteration], (iteration, values[:5])
            seen.add(iteration)
    finally:
        stop.set()
        _join(trainer)
    assert len(seen) > 1, "the trainer never stepped between snapshots"
