"""Exceptions steptrace raises on purpose.

Every error a user can cause (bad names, shapes, paths, files) is a subclass of
:class:`SteptraceError`, so the command line can tell "bad input" apart from a bug
and exit with its own code instead of printing a traceback from deep inside.
"""


class SteptraceError(Exception):
    """Base class of every error steptrace raises for bad input or bad files."""


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


class UnsupportedError(SteptraceError):
    """A loss, optimizer, activation or metric steptrace has no formula for (the message names it).

    Raised instead of guessing: a checker that silently used the wrong formula would
    report false disagreements (or hide real ones).
    """
