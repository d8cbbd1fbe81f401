"""Fork: a process forked after steps (multiprocessing's "fork" start method) steps optimizers
in the child without a hang.

A forked child has only the thread that forked. Two things of the parent must not follow it:
the native thread pool's workers (the child builds its own pool) and a step guard that another
thread of the parent held at the moment of the fork (the child gets free guards). Every child
runs under a timeout, reports its results through a pipe and must exit with code 0.
"""

import multiprocessing
import os
import threading
import traceback
import warnings

import numpy as np
import pytest

import ferroptim as fo
from blocking_step import blocking_learning_rate

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() exists on POSIX only")

TIMEOUT = 60


@pytest.fixture
def two_kernel_threads():
    """Two kernel threads, so that the parent's steps start the native pool's workers."""
    before = fo.get_num_threads()
    fo.set_num_threads(2)
    yield
    fo.set_num_threads(before)


def _child(connection, target, args):
    try:
        result = ("ok", target(*args))
    except BaseException:
        result = ("error", traceback.format_exc())
    connection.send(result)
    connection.close()


def _in_forked_child(target, *args):
    """target(*args) in a child forked now; its return value, or a test failure on an error,
    a hang or an exit code other than 0."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, target, args), daemon=True)
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads may deadlock the child: that is
        # the situation under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        process.start()
    sender.close()
    try:
        if not receiver.poll(TIMEOUT):
            pytest.fail(f"the forked child sent nothing in {TIMEOUT} s: it hangs")
        status, result = receiver.recv()
    finally:
        process.join(TIMEOUT)
        if process.is_alive():
            process.kill()
            process.join()
            pytest.fail(f"the forked child did not exit in {TIMEOUT} s")
    assert process.exitcode == 0
    assert status == "ok", result
    return result


def _model(seed):
    rng = np.random.default_rng(seed)
    shapes = [((1024, 512), np.float32), ((200000,), np.float64), ((7,), np.float32)]
    params = [rng.standard_normal(s).astype(d) for s, d in shapes]
    grads = [[rng.standard_normal(s).astype(d) for s, d in shapes] for _ in range(6)]
    return params, grads


def _steps(opt, params, grads):
    for g in grads:
        opt.apply_gradients(zip(g, params))
    return [p.copy() for p in params], [np.array(v, copy=True) for v in opt.variables]


def _assert_same(child, parent):
    for a, b in zip(child[0] + child[1], parent[0] + parent[1]):
        np.testing.assert_array_equal(a, b)


def test_a_child_forked_after_multithreaded_steps_continues_exactly(two_kernel_threads):
    params, grads = _model(1)
    opt = fo.optimizers.Adam(learning_rate=0.01, use_ema=True, global_clipnorm=5.0)
    _steps(opt, params, grads[:3])  # the native pool has worked before the fork
    from_child = _in_forked_child(_steps, opt, params, grads[3:])
    from_parent = _steps(opt, params, grads[3:])  # the parent's pool still works too
    assert opt.iterations == 6
    _assert_same(from_child, from_parent)


def test_a_child_forked_while_another_thread_is_inside_a_step_can_step():
    params, grads = _model(2)
    # Blocks the holder thread inside its step (the guard taken, nothing written yet).
    learning_rate, holder, inside, release = blocking_learning_rate(0.01, TIMEOUT)
    opt = fo.optimizers.Adam(learning_rate=learning_rate)
    _steps(opt, params, grads[:2])

    def step():
        holder.append(threading.current_thread())
        opt.apply_gradients(zip(grads[2], params))

    thread = threading.Thread(target=step, daemon=True)
    thread.start()
    assert inside.wait(TIMEOUT)
    try:
        from_child = _in_forked_child(_steps, opt, params, grads[2:3])
    finally:
        release.set()
        thread.join(TIMEOUT)
    assert not thread.is_alive()
    # The parent's blocked step, now finished, is the step the child took.
    assert opt.iterations == 3
    _assert_same(from_child, ([p.copy() for p in params], list(opt.variables)))


def _fresh_sgd_steps(n, steps):
    fo.set_num_threads(2)
    param = np.zeros(n, np.float32)
    grad = np.ones(n, np.float32)
    opt = fo.optimizers.SGD(learning_rate=1.0)
    for _ in range(steps):
        opt.apply([grad], [param])
    return np.unique(param).tolist()


def test_children_forked_while_the_parent_runs_kernels_can_step(two_kernel_threads):
    params, grads = _model(3)
    opt = fo.optimizers.Adam(learning_rate=0.01)
    stop = threading.Event()

    def train():
        while not stop.is_set():
            opt.apply_gradients(zip(grads[0], params))

    trainer = threading.Thread(target=train, daemon=True)
    trainer.start()
    try:
        for _ in range(4):
            # A step of 2**21 elements on two threads, in a child forked at any point of the
            # parent's steps (native pool busy, its lock possibly taken).
            assert _in_forked_child(_fresh_sgd_steps, 1 << 21, 3) == [-3.0]
    finally:
        stop.set()
        trainer.join(TIMEOUT)
    assert not trainer.is_alive()
    assert opt.iterations > 0
