"""How much memory one step of a check needs: what sizes the check's chunks of steps.

Why measured: the checker cuts the steps into chunks whose working arrays stay under a
budget (:data:`tracer.checker.core.CHUNK_BYTES`), and every chunk costs the same fixed
work (a walk of the step program, a comparison per quantity: about 2 ms of NumPy calls
on S4, whatever the chunk's length). A formula of the program's size has to be generous,
since it knows the widths of the inputs and parameters but not of the values in between
(S4: 11 MB a step, where a step holds 1.2 MB), and cut S4's 140 steps into 7 chunks. So
the first chunk is sized by the formula and measured: the check's arena
(:mod:`tracer.program.scratch`) knows the blocks it handed out, and every big array of a
chunk is one of them. The chunks after it are sized by that measurement (S4: the other
118 steps in one chunk; a repeated check's CPU time 129-134 -> 119-123 ms, the best of 6
checks in each of 3 processes, interleaved with the 7 chunks' code).

The price is memory: the check's peak is what the budget allows rather than a ninth of
it (``bench/bench_checker.py`` on S4: 168 MB, 1.11x the trace's size, within the 2x the
benchmark holds the checker to; 7 chunks held 29 MB), and the arena keeps as much for the
next check of the trace (166 MB, until the trace goes or
``tracer.program.scratch.drop_kept()``).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..program.scratch import lent_mark, lent_since

if TYPE_CHECKING:
    from .feed import StepGroup

__all__ = ["StepMemory", "MARGIN", "SHRINK"]

#: the measured bytes of a step are taken this many times over: arrays below the arena's
#: size (:data:`tracer.program.scratch.ARENA_MIN`) are not among its blocks
MARGIN = 1.5
#: a measurement may lower the formula's estimate at most this many times (a program whose
#: arrays all stay below the arena's size is measured at next to nothing)
SHRINK = 32


class StepMemory:
    """Bytes of working memory per step, for :func:`tracer.checker.feed.chunks`: the
    ``formula``'s estimate (a generous one) until :meth:`measure` has seen a chunk, then
    the measurement of the longest chunk so far (the one whose fixed part, such as a
    comparison's block buffers, weighs least on a step; the larger one among equals), per
    row of the batch and times :data:`MARGIN`, never above the formula. Call it with a
    chunk's group for that group's estimate."""

    def __init__(self, formula: int) -> None:
        self.formula = max(1, int(formula))
        self.per_row: float | None = None        # measured bytes per step and batch row
        self._steps = 0                          # the length of the chunk it was measured on

    def __call__(self, group: StepGroup) -> int:
        if self.per_row is None:
            return self.formula
        rows = max(1, group.batch_size or 1)
        return max(self.formula // SHRINK, min(self.formula, math.ceil(self.per_row * rows)))

    def start(self) -> int | None:
        """A mark before a chunk's work (see :meth:`measure`)."""
        return lent_mark()

    def measure(self, mark: int | None, group: StepGroup) -> None:
        """Take in what the chunk ``group`` held in the arena since ``mark``."""
        used = lent_since(mark)
        if used <= 0 or not len(group.steps):
            return
        steps = len(group.steps)
        per_row = MARGIN * used / steps / max(1, group.batch_size or 1)
        if self.per_row is None or steps > self._steps or steps == self._steps and per_row > self.per_row:
            self.per_row, self._steps = per_row, steps
