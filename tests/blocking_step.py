"""A learning rate that holds a step open, for the tests of what happens while another thread
is inside a step (tests/test_threads.py, tests/test_fork.py)."""

import threading


def blocking_learning_rate(value, timeout):
    """A learning-rate callable that, in the thread it is armed for, stops inside the step until
    released: the step guard is held meanwhile, nothing is written yet.

    Args:
        value: the learning rate it returns.
        timeout: seconds it waits for the release at most (a hang bound, not a test).

    Returns:
        `(learning_rate, armed, inside, release)`: append a thread to the list `armed` to arm
        it for that thread's next step; `inside` is set once that step is held; set `release`
        to let it finish.
    """
    inside = threading.Event()
    release = threading.Event()
    armed = []

    def learning_rate():
        if armed and armed[0] is threading.current_thread():
            armed.clear()
            inside.set()
            release.wait(timeout)
        return value

    return learning_rate, armed, inside, release
