"""The exit codes of the ``steptrace`` command line, defined once.

Why they matter: scripts and CI tell outcomes apart by the code alone, so
``steptrace check``, ``steptrace run`` and the demo must agree on what each means.
``steptrace run`` otherwise exits with the traced script's own code.
"""
from __future__ import annotations

EXIT_OK = 0
"""Success: every check passed."""
EXIT_FAILED = 1
"""At least one check failed."""
EXIT_BAD_INPUT = 2
"""Bad input: a missing or corrupt trace, a bad argument or option."""
EXIT_INCOMPLETE = 3
"""Nothing failed, but part of the run could not be checked."""
EXIT_INTERRUPTED = 130
"""Interrupted with Ctrl-C (128 + SIGINT), as a shell reports it."""

EXIT_BROKEN_PIPE = 141
"""The reader of stdout went away (``| head -1``): 128 + SIGPIPE, as a shell reports it."""

VERDICT_EXIT = {"passed": EXIT_OK, "failed": EXIT_FAILED, "incomplete": EXIT_INCOMPLETE}
"""A check report's ``verdict`` -> the exit code that says it."""

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INCOMPLETE", "EXIT_INTERRUPTED", "EXIT_BROKEN_PIPE",
           "VERDICT_EXIT"]
