"""The NumPy side of ``steptrace run``: a trace function on the training loop's frame only.

Why ``sys.settrace``: a NumPy script has no framework call to patch and must not be
edited, but Python reports every line a frame runs to a trace function. The loop was
found in the source (:mod:`hooks.autotrace.numpy_loop`); the global trace function,
called once per Python function call, compares the new frame's code object with the
loop's (one identity test) and gives a local trace function to that frame alone. The
local function sees the frame's lines: each arrival at the loop's header is a step
boundary (:mod:`hooks.autotrace.numpy_steps`), where the parameters are copied. No
other frame gets line events, and once a loop at the script's top level has ended the
previous trace function is put back, so the rest of the script runs untraced.

A debugger or coverage tool already tracing (``sys.gettrace()``) keeps working: every
event is passed to its functions first, and ``uninstall`` puts it back. Nothing here
ever raises into the script: an error of steptrace's stops the recording of that run
(kept up to its last step, with a note) and the script goes on.
"""
from __future__ import annotations

import dis
import inspect
import sys
from typing import Callable

from .numpy_loop import LoopSite
from .numpy_steps import LoopSteps, NumpyOptions
from .runs import describe_error

__all__ = ["NumpySession"]


class NumpySession:
    """Records every run of the NumPy loop at ``site`` while installed.

    ``on_start(source)`` is called when a run records its first step (for progress),
    ``on_run(steps, error)`` when a run ends (``steps``: a
    :class:`~hooks.autotrace.numpy_steps.LoopSteps` with its tracer and notes; ``error``:
    how the frame ended, or None).
    """

    def __init__(self, site: LoopSite, options: NumpyOptions, on_run: Callable, on_start: Callable | None = None):
        self.site = site
        self.options = options
        self.on_run = on_run
        self.on_start = on_start
        self.arrivals = 0               # header arrivals seen, over all runs
        self._prev = None
        self._code = None
        self._installed = False
        self._watches: list[_FrameWatch] = []

    # ------------------------------------------------------------ lifecycle
    def install(self) -> NumpySession:
        """Start tracing (chained after any trace function already set)."""
        if not self._installed:
            self._prev = sys.gettrace()
            sys.settrace(self._global)
            self._installed = True
        return self

    def uninstall(self, error: BaseException | None = None) -> None:
        """Finish the runs still open (a script that ended inside the loop) and put back
        the previous trace function."""
        for watch in list(self._watches):
            watch.finish(watch.error or error)
        self.detach()

    def detach(self) -> None:
        """Stop calling the global trace function (the previous one, if any, is restored)."""
        if self._installed and sys.gettrace() == self._global:
            sys.settrace(self._prev)
        self._installed = False

    # ------------------------------------------------------ the trace function
    def _global(self, frame, event, arg):
        local = self._prev(frame, event, arg) if self._prev is not None else None
        code = frame.f_code
        if code is self._code or (self._code is None and self._is_loop_code(code)):
            self._code = code
            for watch in self._watches:          # a generator resumed: the same activation
                if watch.frame is frame:
                    return watch.local
            watch = _FrameWatch(self, frame, local)
            self._watches.append(watch)
            return watch.local
        return local

    def _is_loop_code(self, code) -> bool:
        site = self.site
        if code.co_filename != site.path:
            return False
        if site.function is None:
            return code.co_name == "<module>"
        return code.co_name == site.function and code.co_firstlineno == site.first_line

    def _ended(self, watch: _FrameWatch) -> None:
        if watch in self._watches:
            self._watches.remove(watch)


_SUSPENDING = {dis.opmap[name] for name in ("YIELD_VALUE",) if name in dis.opmap}
_RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def _suspended(frame) -> bool:
    """Whether a 'return' event of ``frame`` is a generator's ``yield`` rather than its end."""
    if not frame.f_code.co_flags & _RESUMABLE:
        return False
    code = frame.f_code.co_code
    return 0 <= frame.f_lasti < len(code) and code[frame.f_lasti] in _SUSPENDING


class _FrameWatch:
    """The local trace function of one activation of the loop's frame."""

    def __init__(self, session: NumpySession, frame, prev_local):
        self.session = session
        self.site = session.site
        self.prev_local = prev_local
        self.steps = LoopSteps(self.site, session.options, session.on_start)
        self.inside = False
        self.in_header = False
        self.error: BaseException | None = None
        self.done = False
        self.frame = frame

    def local(self, frame, event, arg):
        if self.prev_local is not None:
            self.prev_local = self.prev_local(frame, event, arg)
        if self.done:
            frame.f_trace = self.prev_local
            return self.prev_local
        try:
            if event == "line":
                self.error = None
                self._line(frame)
            elif event == "exception":
                self.error = arg[1]
            elif event == "return" and not _suspended(frame):
                self.finish(self.error)
        except Exception as exc:  # steptrace's own failure: keep what was recorded, never break the script
            self.steps.notes.append(f"recording stopped: {type(exc).__name__}: {exc}")
            self.finish(None)
        if self.done:
            frame.f_trace = self.prev_local
            return self.prev_local
        return self.local

    def _line(self, frame) -> None:
        line = frame.f_lineno
        (h0, h1), site = self.site.header, self.site
        if h0 <= line <= h1:
            if not self.in_header:
                self.in_header = True
                self.session.arrivals += 1
                entering, self.inside = not self.inside, True
                self.steps.arrive(frame, entering)
            return
        self.in_header = False
        if self.inside and not h0 <= line <= site.body[1]:
            self.inside = False
            self.steps.leave()
            if not site.nested:          # the loop cannot run again in this call: the run is complete
                self.finish(None)

    def finish(self, error: BaseException | None) -> None:
        """Hand the run over (once) and stop watching this frame."""
        if self.done:
            return
        self.done = True
        self.steps.leave()
        self.session._ended(self)
        if self.site.function is None:   # the script's top level: nothing else to trace
            self.session.detach()
        self.session.on_run(self.steps, None if error is None else describe_error(error))
        self.frame = None
