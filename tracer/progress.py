"""Progress displays on a terminal: one line redrawn in place, never in logs or pipes.

Why here: ``steptrace report`` shows a bar while it writes reports
(:class:`ProgressBar`, used by :mod:`reports.build`) and ``steptrace run`` a status
line while the script trains (:class:`LiveProgress`, used by :mod:`tracer.app.run`).
Both draw on the same kind of line (:class:`TerminalLine`), and both must import no
framework and no report writer, so the shared code lives in the library core.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, TextIO

__all__ = ["TerminalLine", "ProgressBar", "LiveProgress", "ClearingStream", "format_progress", "is_tty"]

ERASE = "\r\x1b[K"
"""Carriage return, then erase to the end of the line."""


def is_tty(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (False for pipes, files and streams that cannot say)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):   # no isatty, or a closed stream
        return False


class TerminalLine:
    """One line of ``stream`` redrawn in place: the part every progress display shares.

    ``enabled`` False (or, with ``tty_only``, a stream that is not a terminal) makes
    every call a no-op, so callers need not check.
    """

    def __init__(self, stream: TextIO | None = None, enabled: bool = True, tty_only: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = bool(enabled) and (not tty_only or is_tty(self.stream))
        self.shown = False

    def draw(self, text: str, erase: bool = True) -> None:
        """Replace the line with ``text`` (``erase``: clear what was there first)."""
        if not self.enabled:
            return
        self.stream.write((ERASE if erase else "\r") + text)
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erase the line if something is drawn on it."""
        if self.shown:
            self.shown = False
            self.stream.write(ERASE)
            self.stream.flush()

    def end(self) -> None:
        """Leave the line as it is and move to the next one."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class ProgressBar(TerminalLine):
    """A one-line text progress bar on stderr (silent unless enabled and stderr is a TTY)."""

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None, width: int = 28) -> None:
        super().__init__(stream, enabled)
        self.total = max(int(total), 1)
        self.done = 0
        self.width = width
        self.t0 = time.perf_counter()

    def step(self, what: str, amount: int = 1) -> None:
        """Advance by ``amount`` units and show ``what`` is being worked on."""
        self.done = min(self.total, self.done + amount)
        if not self.enabled:
            return
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.t0
        self.draw(f"[{bar}] {self.done}/{self.total} {elapsed:5.1f}s {what[:40]:<40}", erase=False)

    def close(self) -> None:
        """End the line of the bar."""
        self.end()


def format_progress(info: dict | None, elapsed: float | None = None) -> str | None:
    """The status line for ``AutoTrace.progress()``'s dict (None: nothing to show yet)."""
    if not info or not info.get("steps"):
        return None
    parts = [f"steptrace: {info['framework']}"]
    if info.get("run"):
        parts[0] += f" run {info['run']}"
    if info.get("epoch") is not None:
        parts.append(f"epoch {info['epoch']}")
    if info.get("steps") is not None:
        parts.append(f"{info['steps']} step{'' if info['steps'] == 1 else 's'} recorded")
    if elapsed is not None:
        parts.append(f"{elapsed:.0f}s")
    return " | ".join(parts)


class LiveProgress:
    """A status line on a terminal's stderr, redrawn twice a second while a script trains.

    Runs in a daemon thread that only reads counters (``source()``, e.g.
    ``AutoTrace.progress``), so training steps pay nothing. The script's own writes go
    through :class:`ClearingStream`, which erases the line first; the line is drawn only
    while the script's output ends with a newline, so it never splits or hides a line
    the script is writing (nor a Keras progress bar).
    """

    def __init__(self, source: Callable[[], dict | None], stream: TextIO, interval: float = 0.5) -> None:
        self.source = source
        self.line = TerminalLine(stream, tty_only=False)
        self.interval = float(os.environ.get("STEPTRACE_PROGRESS_INTERVAL", interval))
        self.at_line_start = True
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="steptrace-progress", daemon=True)
        self._started = time.monotonic()

    @property
    def shown(self) -> bool:
        """Whether the status line is on the screen now."""
        return self.line.shown

    def start(self) -> LiveProgress:
        """Start redrawing (returns self)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop redrawing and erase the line."""
        self._stop.set()
        self._thread.join(timeout=2)
        self.clear()

    def clear(self) -> None:
        """Erase the line (before the script writes)."""
        with self.lock:
            try:
                self.line.clear()
            except (OSError, ValueError):   # the terminal went away: nothing left to erase
                pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            text = format_progress(self.source(), time.monotonic() - self._started)
            if text is None:
                continue
            with self.lock:
                if not self.at_line_start:
                    continue
                try:
                    self.line.draw(text)
                except (OSError, ValueError):   # the terminal went away: stop drawing
                    return


class ClearingStream:
    """Wraps sys.stdout/sys.stderr while a status line may be shown: erase it before
    the script writes, and note whether the script's output ends a line. Everything
    else is delegated to the real stream."""

    def __init__(self, stream: TextIO, progress: LiveProgress) -> None:
        self._stream = stream
        self._progress = progress

    def write(self, text: str) -> int:
        """Erase the status line, then write ``text`` to the real stream."""
        progress = self._progress
        with progress.lock:
            if progress.shown:
                progress.clear()
            n = self._stream.write(text)
            if text:
                progress.at_line_start = text.endswith("\n")
        return n

    def writelines(self, lines: list[str]) -> None:
        """Write each line through :meth:`write`."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
