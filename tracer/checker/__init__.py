"""The hand checker: recompute every recorded step from sympy-derived formulas.

``check(trace)`` returns a :class:`CheckReport` (``.ok``, ``.table``, ``.summary()``,
``.first_failing_step``). The checker never imports a framework, so a trace saved
anywhere can be checked anywhere.
"""
from .core import check
from .report import CheckReport, Finding

__all__ = ["check", "CheckReport", "Finding"]
