"""What ``steptrace run`` collects: one :class:`FinishedRun` per training run, and how it ended.

Why apart: the Keras and PyTorch sides of autotrace both report finished runs and
warnings in the same words, and the runner (``tracer.app.run``) reads them.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from tracer.trace import Trace

__all__ = ["FinishedRun", "describe_error", "warn"]


@dataclass
class FinishedRun:
    """One training run the script made: its number, framework, a label and the trace.

    ``error`` is set when the run ended with an exception (the trace then holds the
    steps completed before it); ``notes`` holds what went wrong with tracing itself.
    """

    number: int
    framework: str
    label: str
    trace: Trace
    error: str | None = None
    notes: list = field(default_factory=list)


def describe_error(exc: BaseException) -> str:
    """How a run ended, in a few words: ``ValueError: ...`` or ``sys.exit(3)``."""
    if isinstance(exc, SystemExit):
        return f"sys.exit({exc.code!r})" if exc.code is not None else "sys.exit()"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def warn(message: str) -> None:
    """steptrace's own message about tracing, on stderr (never the script's stdout)."""
    print(f"steptrace: {message}", file=sys.stderr, flush=True)
