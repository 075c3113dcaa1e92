"""A cached bound for the recorder's memory-budget check: how many more full steps surely fit.

Why: :meth:`tracer.recorder.Recorder._make_room` asks, before every full step, whether
``kept_bytes + growth * step_growth <= max_bytes``; both sides walk every buffer of every
parameter (~20 us a step at S4's four parameters, a good part of the recorder's share).
Far from the budget the answer is "yes" for hundreds of steps in a row. :class:`Room` takes
one step that passed the full check and remembers what a step of the *same layout* can add
at most (``bound``: the growth the full check computed for it, with the rows a step without
predictions still fills); a later step with that layout then passes on one comparison,
``kept(held_then + j * bound + scalars_now) + factor * bound <= max_bytes``, which implies the
full check's inequality (the ``j`` steps since held at most ``bound`` each, the step itself
grows by at most ``bound``). Near the budget, or when anything else changes - another
layout (a new parameter, slot, prediction or micro-step buffer, a chain that broke, a flush:
:attr:`tracer.capture.FullBuffers.layout`), other names, unknown slots, more rows - the full
check decides, exactly as before: the shortcut never changes a decision (the
budget tests run with it on and off, :data:`ENABLED`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import TraceInputError

__all__ = ["ENABLED", "Room", "check_max_bytes"]

ENABLED = True


def check_max_bytes(max_bytes: int | None) -> int | None:
    """``max_bytes`` as a budget: None (unlimited) or a non-negative integer (0 = zero)."""
    if max_bytes is None:
        return None
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 0:
        raise TraceInputError(f"max_bytes: expected a non-negative integer or None (unlimited), got {max_bytes!r}")
    return int(max_bytes)


class Room:
    """One recorder's cached bound (see the module doc); empty until :meth:`learn`."""

    __slots__ = ("layout", "names", "slots", "rows", "preds", "micro", "steps", "held", "bound")

    def __init__(self) -> None:
        self.layout = -1          # FullBuffers.layout when learnt (-1: nothing learnt)
        self.names: frozenset = frozenset()
        self.slots: dict[str, frozenset] = {}
        self.rows = 0             # the most batch rows a step may have
        self.preds = False        # predictions may be given (their buffer exists)
        self.micro = False        # micro-steps may be given (their buffer exists)
        self.steps = 0            # full steps held when learnt ...
        self.held = 0             # ... and their buffers' bytes
        self.bound = 0            # the most one step of this layout adds to them

    def fits(self, rec: Any, before: dict, state: dict | None, rows: Any, y_pred: Any, micro: Any) -> bool:
        """Whether the full check would pass for this step, decided from the bound alone
        (False: do the full check)."""
        full = rec._full
        if not ENABLED or self.layout != full.layout or before.keys() != self.names:
            return False
        if (y_pred is not None and not self.preds) or (micro is not None and not self.micro):
            return False
        if _rows(rows, y_pred) > self.rows:
            return False
        if state and not all(not d or d.keys() <= self.slots.get(n, frozenset()) for n, d in state.items()):
            return False
        held = self.held + (full.n_steps - self.steps) * self.bound + rec._scalar_bytes()
        return rec._kept(held) + rec.growth_factor * self.bound <= rec.max_bytes

    def learn(self, rec: Any, before: dict, state: dict | None, rows: Any, y_pred: Any, micro: Any,
              growth: int) -> None:
        """Remember the bound of a step that passed the full check (``growth``: what the check
        computed for it); a step whose layout the bound cannot cover leaves the room empty."""
        full = rec._full
        self.layout = -1
        if (not ENABLED or not before or before.keys() != full.params.keys() or len(full.known) != len(full.params)):
            return
        if state and not all(not d or d.keys() <= full.params[n].slots.keys() for n, d in state.items()
                             if n in full.params):
            return
        k = _rows(rows, y_pred)
        pred, micros = full.sample_pred, full.sample_micro
        # what a step fills beyond the growth the check counts: NaN predictions, micro-step rows
        self.bound = growth + (pred.growth(k) if y_pred is None and pred is not None else 0) + (
            0 if micros is None else micros.growth(k))
        self.names = frozenset(before)
        self.slots = {n: frozenset(b.slots) for n, b in full.params.items()}
        self.rows, self.preds, self.micro = k, pred is not None, micros is not None
        self.steps, self.held = full.n_steps, full.nbytes
        self.layout = full.layout


def _rows(rows, y_pred) -> int:
    """The batch rows a step records (as :meth:`tracer.capture.FullBuffers.growth` counts them)."""
    if y_pred is not None and np.ndim(y_pred):
        return int(np.shape(y_pred)[0])
    return 0 if rows is None else int(np.size(rows))
