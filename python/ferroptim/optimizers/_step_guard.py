"""One step at a time: the guard that serializes an optimizer's steps and state access.

The kernels release the GIL, so two threads stepping one optimizer would otherwise run inside
the same step. The guard is a token in a list: `list.pop` and `list.append` are atomic, so an
uncontended step takes it and gives it back for a fraction of a `threading.Lock`'s cost (the
hot path, `Optimizer.apply`, spells those two operations out). A thread that finds it taken
queues up (`StepGuard.wait`) and is handed the token in turn, first come first served, so a
thread stepping in a tight loop cannot starve a thread that saves a checkpoint.

The guard is per process and per object: it is not pickled, and a forked child resets every
guard it inherited (the thread that held one does not exist in the child).
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import weakref
from types import FrameType
from typing import Any, Callable, Deque, Dict, Optional, Set, Tuple, TypeVar

__all__ = ["StepGuard", "SnapshotGuard", "register_holder"]

_R = TypeVar("_R")

# Every live guard, so a forked child can reset them.
_LIVE_GUARDS: "weakref.WeakSet[StepGuard]" = weakref.WeakSet()
# The code objects of the functions that hold a guard while they run (see `held_here`).
_HOLDERS: Set[Any] = set()


def register_holder(function: Any) -> None:
    """Declare that `function` holds a guard while it runs, in a local variable `guard` or as
    `self` (so that a nested attempt to take it on the same thread is refused, not a deadlock).
    """
    _HOLDERS.add(function.__code__)


def _reset_after_fork() -> None:
    # The child has only the thread that forked: a step another thread of the parent was
    # running will never end here, and its guard would block every step of the child forever.
    for guard in list(_LIVE_GUARDS):
        guard.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class StepGuard:
    """The step guard of one optimizer.

    `token` is a list holding True while the guard is free. `waiters` is the number of queued
    threads, read without the lock on the release path; `queue` holds their wake-up locks in
    arrival order, under `queue_lock`.

    Args:
        owner: the optimizer (held weakly), named in the message of a nested step.
    """

    __slots__ = ("token", "waiters", "queue", "queue_lock", "owner", "__weakref__")

    def __init__(self, owner: Any):
        self.owner = weakref.ref(owner)
        self.reset()
        _LIVE_GUARDS.add(self)

    def reset(self) -> None:
        """Free the guard and forget every queued thread (after a fork)."""
        self.token = [True]
        self.waiters = 0
        self.queue: Deque[Any] = collections.deque()
        self.queue_lock = threading.Lock()

    def wait(self) -> None:
        """Take the token once it is handed over (the contended path)."""
        if self.held_here():
            name = getattr(self.owner(), "name", None)
            raise RuntimeError(
                f"Optimizer '{name}' is already running a step on this thread (a "
                "learning-rate callable or a signal handler called into it); a step, `save` or "
                "a state load cannot start inside another step of the same optimizer."
            )
        token = self.token
        with self.queue_lock:
            # Counted before looking at the token: a release that puts the token back after
            # this line sees the count and hands the token over; one before it left the token
            # in the list for the `pop` below.
            self.waiters += 1
            try:
                token.pop()
            except IndexError:
                wake = threading.Lock()
                wake.acquire()
                self.queue.append(wake)
            else:
                self.waiters -= 1
                return
        try:
            wake.acquire()  # released by `hand_over`: the token is ours
        except BaseException:
            # Interrupted (KeyboardInterrupt): leave the queue, or pass on a token that was
            # handed over at the same moment.
            with self.queue_lock:
                if wake in self.queue:
                    self.queue.remove(wake)
                    self.waiters -= 1
                    raise
            self.release()
            raise

    def release(self) -> None:
        """Give the token back (to the first queued thread if any)."""
        # The token goes back first, then the count is read (see `wait`).
        self.token.append(True)
        if self.waiters:
            self.hand_over()

    def hand_over(self) -> None:
        """Pass a released token to the first queued thread."""
        # The token goes to the first queued thread rather than staying in the list, where the
        # thread that just released it, stepping in a loop, would take it again at once.
        token = self.token
        with self.queue_lock:
            if not self.queue:
                return
            try:
                token.pop()
            except IndexError:
                return  # taken by another thread: its release hands it over
            self.waiters -= 1
            self.queue.popleft().release()

    def held_here(self) -> bool:
        """Whether a frame of this thread's stack holds the guard (waiting would never end).

        Only reached when the token is taken; walking the stack here costs nothing on the
        uncontended path. Frames 1 and 2 are `wait` and the call that is about to wait.
        """
        frame: Optional[FrameType] = sys._getframe(3)
        while frame is not None:
            if frame.f_code in _HOLDERS:
                local = frame.f_locals
                if local.get("guard") is self or local.get("self") is self:
                    return True
            frame = frame.f_back
        return False

    def run_exclusive(self, function: Callable[..., _R], *args: Any) -> _R:
        """Call `function(*args)` holding the guard: no step runs meanwhile."""
        token = self.token
        try:
            token.pop()
        except IndexError:
            self.wait()
        try:
            return function(*args)
        finally:
            self.release()


register_holder(StepGuard.run_exclusive)


class SnapshotGuard:
    """Keeps an optimizer's step guard taken from `__getstate__` until pickle or copy has read
    the whole state, so a snapshot holds whole steps while another thread steps.

    It is the state's last entry: pickle and deepcopy reduce it after every array, and that
    releases the guard; it unpickles as None. If the state is dropped unread (a shallow copy,
    a failed pickle), releasing happens when it is freed.
    """

    __slots__ = ("release",)

    def __init__(self, release: Any):
        self.release = release

    def _release(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()

    def __reduce__(self) -> Tuple[Any, Tuple[()]]:
        self._release()
        return (type(None), ())

    def __deepcopy__(self, memo: Dict[int, Any]) -> None:
        self._release()

    def __del__(self) -> None:
        self._release()
