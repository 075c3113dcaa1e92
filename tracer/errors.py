"""Exceptions steptrace raises on purpose: one hierarchy under :class:`SteptraceError`.

Why one hierarchy: the command line tells "bad input" apart from a bug by catching
:class:`SteptraceError` and exiting with its own code instead of printing a traceback
from deep inside, and callers that want to go on past what steptrace cannot check
catch :class:`CannotCheck` alone, whatever part of steptrace found it::

    SteptraceError
    ├── TraceInputError      an argument is not what was expected      (also a ValueError)
    ├── TraceFileError       a trace file cannot be read or written     (also an OSError)
    └── CannotCheck          steptrace cannot check (or show) this; ``.reason`` says why
        ├── UnsupportedError  no formula for a loss, optimizer, activation or metric
        └── UnsupportedModel  a model or loss computation outside the neutral vocabulary

Who raises what: the math (``tracer.math``) raises :class:`UnsupportedError`; the torch
hook's graph reader (``hooks.torch.graph``) raises :class:`UnsupportedModel` and turns
it into ``{"kind": "unsupported", "reason": ...}`` in the meta.

Still outside the hierarchy, in modules being rewritten (they should derive from the
classes here when they are): ``tracer.checker.forward.UnsupportedModel`` (a
``SteptraceError``; use :class:`UnsupportedModel` from here) and
``reports._excel_formulas.NotShown`` (a plain ``Exception``; derive it from
:class:`CannotCheck`: "the live sheet cannot show this trace").
"""
from __future__ import annotations

__all__ = ["SteptraceError", "TraceInputError", "TraceFileError", "CannotCheck", "UnsupportedError",
           "UnsupportedModel"]


class SteptraceError(Exception):
    """Base class of every error steptrace raises on purpose (bad input, bad files,
    what it cannot check), so callers can tell them apart from bugs."""


class TraceInputError(SteptraceError, ValueError):
    """An argument passed to steptrace is not what was expected (the message names it)."""


class TraceFileError(SteptraceError, OSError):
    """A trace file cannot be read or written: missing, corrupt, foreign or unwritable.

    The message is always one line (whitespace runs, newlines included, become one
    space): the command line prints it as its one error line, whatever a library or a
    file name put in it.
    """

    def __init__(self, message: object = ""):
        super().__init__(" ".join(str(message).split()))


class CannotCheck(SteptraceError):
    """Steptrace cannot check (or show) a run or a part of it; ``reason`` says why.

    Why a class and not a guess: a checker that silently used the wrong formula would
    report false disagreements (or hide real ones), so whatever is outside what
    steptrace knows is reported as "cannot check" with the reason in words.
    """

    def __init__(self, reason: str = "", *args: object) -> None:
        super().__init__(reason, *args)
        self.reason = str(reason)


class UnsupportedError(CannotCheck):
    """A loss, optimizer, activation or metric steptrace has no formula for (the message names it).

    Raised instead of guessing: a checker that silently used the wrong formula would
    report false disagreements (or hide real ones).
    """


class UnsupportedModel(CannotCheck):
    """A model, a layer or a loss computation outside the neutral ``dense_stack`` vocabulary
    (for example a convolution, two activations in a row, a loss of a scaled difference)."""
