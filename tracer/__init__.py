"""steptrace core: the Trace, the recorder, the sympy checker and explanations.

Importable without TensorFlow or PyTorch: a trace recorded on a GPU box can be
checked anywhere. Framework hooks live in the separate ``hooks`` package.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .errors import (CannotCheck, SteptraceError, TraceFileError, TraceInputError, UnsupportedError,
                     UnsupportedModel)
from .recorder import Recorder
from .trace import Trace
# Import the submodule before defining the function of the same name, so that the
# package attribute ``tracer.explain`` stays the function (importing a submodule
# later would otherwise rebind it to the module).
from . import explain as _explain_module  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from .checker.report import CheckReport

__version__ = "0.1.0"


def check(trace: Trace | str | os.PathLike, **kwargs: Any) -> CheckReport:
    """Recompute every recorded step by hand and report disagreements (see tracer.checker)."""
    from .checker import check as _check
    return _check(trace, **kwargs)


def explain(trace: Trace | str | os.PathLike, step: int = 1, **kwargs: Any) -> str:
    """Return the hand derivation of ``step`` with the numbers substituted (see tracer/explain.py)."""
    return _explain_module.explain(trace, step=step, **kwargs)


__all__ = ["Trace", "Recorder", "check", "explain", "SteptraceError", "TraceFileError",
           "TraceInputError", "CannotCheck", "UnsupportedError", "UnsupportedModel", "__version__"]
