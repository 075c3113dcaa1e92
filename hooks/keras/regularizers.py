"""Keras regularisers as step-program nodes: the terms Keras adds to the compiled loss.

Why: Keras's ``compute_loss`` returns the compiled loss *plus* every term in
``model.losses`` - a weight regulariser ``l2 * sum(square(kernel))`` for each
variable that has one, and each layer's activity regulariser on its output, divided
by the batch size (Keras 3.15 ``Layer.__call__``). The logged loss and every gradient
include them, so a program without them reads "logged_loss: expected 2.47, got 119"
(issue 16). ``L1``, ``L2`` and ``L1L2`` are modelled with Keras's formulas
(``keras/src/regularizers/regularizers.py``; coefficients cast to the variable's
dtype, as Keras does); any other regulariser raises :class:`Unsupported`.
"""
from __future__ import annotations

import keras

from .builder import ProgramBuilder, Unsupported
from .layers import source_line

__all__ = ["regularizer_term"]


def _coefficients(reg) -> tuple[float, float]:
    """``(l1, l2)`` of a Keras L1, L2 or L1L2 regulariser."""
    kind = type(reg)
    if kind is keras.regularizers.L1:
        return float(reg.l1), 0.0
    if kind is keras.regularizers.L2:
        return 0.0, float(reg.l2)
    if kind is keras.regularizers.L1L2:
        return float(reg.l1), float(reg.l2)
    raise Unsupported(f"regularizer {kind.__name__}", "only L1, L2 and L1L2 are modelled", source_line(reg))


def regularizer_term(b: ProgramBuilder, reg: keras.regularizers.Regularizer, x: str, base: str, label: str,
                     per_row: bool = False) -> str | None:
    """The nodes of ``reg(x)`` (``per_row``: an activity regulariser, divided by the batch
    size); None when the term is a constant 0 (both coefficients zero)."""
    l1, l2 = _coefficients(reg)
    parts = []
    for coef, op in ((l1, "abs"), (l2, "square")):
        if coef == 0.0:
            continue
        elementwise = b.add(f"{base}/{op}", op, [x], label=label)
        if per_row:       # sum(f(x)) / batch size == sum over the rest of the mean over rows
            elementwise = b.add(f"{base}/{op}/mean_over_rows", "mean", [elementwise], label=label, dims=[0])
        total = b.add(f"{base}/{op}/sum", "sum", [elementwise], label=label)
        parts.append(b.add(f"{base}/{'l1' if op == 'abs' else 'l2'}", "mul", [b.num(coef), total], label=label))
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return b.add(base, "add", parts, label=label)
