"""SIGTERM during ``steptrace run``: stop the script, keep its runs, exit as the script would have.

Why: ``kill PID`` (a scheduler's timeout, ``docker stop``) used to end the process at
once, leaving an empty output directory. Here SIGTERM becomes an exception raised in
the script's main thread (:class:`Terminated`): the script's ``finally`` blocks run,
the hooks finish and flush their streams, the runs are saved and swapped into place,
and then the process ends by the same signal (:func:`exit_by_signal`), so whoever sent
it sees the status an untraced script would have given. SIGINT already arrives as
``KeyboardInterrupt``; it ends the same way. A script that installs its own SIGTERM
handler replaces ours, and keeps its own behaviour.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

__all__ = ["Terminated", "terminate_raises", "terminate_deferred", "exit_by_signal", "signal_of"]


class Terminated(BaseException):
    """The process was asked to stop by ``signum`` (a BaseException: ``except Exception``
    in the script does not swallow it, as it would not swallow the signal itself)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _raise(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` in the main thread (only
    the main thread may set handlers; elsewhere the block changes nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def terminate_deferred() -> Iterator[list]:
    """While the block runs (saving the runs, swapping them into place), SIGTERM is only
    noted: the block yields a list that receives the signal number, so the caller can
    finish what keeps the runs safe and then stop."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def signal_of(error: BaseException | None) -> int | None:
    """The signal a script's ending stands for: SIGTERM for :class:`Terminated`, SIGINT for
    ``KeyboardInterrupt``; None otherwise."""
    if isinstance(error, Terminated):
        return error.signum
    if isinstance(error, KeyboardInterrupt):
        return signal.SIGINT
    return None


def exit_by_signal(signum: int) -> int:
    """End the process by ``signum`` with its default action (the status an untraced script
    killed by it has); returns ``128 + signum`` where that is not possible."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
    return 128 + signum
