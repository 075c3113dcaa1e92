"""SIGTERM during ``steptrace run``: stop the script, keep its runs, exit as the script would have.

Why: ``kill PID`` (a scheduler's timeout, ``docker stop``) used to end the process at
once, leaving an empty output directory. Here SIGTERM becomes an exception raised in
the script's main thread (:class:`Terminated`): the script's ``finally`` blocks run,
the hooks finish and flush their streams, the runs are saved and swapped into place,
and then the process ends by the same signal (:func:`exit_by_signal`), so whoever sent
it sees the status an untraced script would have given.

SIGINT (Ctrl-C) arrives in the script as Python's own ``KeyboardInterrupt``, untouched: a
script that catches it goes on and ends as it chooses (its runs are then checked and
reported as usual); uncaught, its traceback is printed as Python prints it, the runs are
saved (every step up to the interrupt) and the process ends by SIGINT, as an untraced
``python script.py`` does (the shell reports 130). While the runs are saved, SIGTERM
and SIGINT are only noted; during the checks and reports that follow, either stops them
(the runs are safe by then). A script that installs its own SIGTERM handler replaces
ours, and keeps its own behaviour.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator

__all__ = ["Terminated", "terminate_raises", "terminate_deferred", "raise_terminated", "exit_by_signal", "signal_of"]


class Terminated(BaseException):
    """The process was asked to stop by ``signum`` (a BaseException: ``except Exception``
    in the script does not swallow it, as it would not swallow the signal itself)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def _handling(handlers: dict) -> Iterator[None]:
    """``{signum: handler}`` while the block runs, then the previous handlers (only the
    main thread may set handlers; elsewhere the block changes nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, h) for s, h in handlers.items()}
    try:
        yield
    finally:
        for s, before in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(s, before if before is not None else signal.SIG_DFL)


def raise_terminated(signum: int, frame: object) -> None:
    """A signal handler: raise :class:`Terminated` for ``signum``."""
    raise Terminated(signum)


@contextlib.contextmanager
def terminate_raises(*, sigint: Callable | int | None = None) -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` in the main thread; SIGINT
    gets ``sigint`` when given (:func:`raise_terminated`, or the handler the process had
    before steptrace: Python's ``KeyboardInterrupt`` for the script)."""
    handlers = {signal.SIGTERM: raise_terminated}
    if sigint is not None:
        handlers[signal.SIGINT] = sigint
    with _handling(handlers):
        yield


@contextlib.contextmanager
def terminate_deferred() -> Iterator[list]:
    """While the block runs (saving the runs, swapping them into place), SIGTERM and SIGINT
    are only noted: the block yields a list that receives the signal numbers, so the
    caller can finish what keeps the runs safe and then stop (the script, run inside it,
    gets its own SIGINT handler back through :func:`terminate_raises`)."""
    got: list[int] = []

    def note(signum, frame):
        got.append(signum)
    with _handling({signal.SIGTERM: note, signal.SIGINT: note}):
        yield got


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
