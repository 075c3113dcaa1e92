"""The recorder's rows a hook may read or fill in place, to spare a copy per step.

Why apart from :class:`tracer.recorder.Recorder`: these are the hot path's shortcuts, not
the recording contract. A hook that keeps what :meth:`~tracer.recorder.Recorder.record_step`
would copy anyway can instead compare against the last recorded row
(:meth:`HotRows.chained_row`) or copy straight into the next one
(:meth:`HotRows.stage_grad`), and hand that very array to ``record_step``, which then
takes it without copying. Values never depend on these: an array that is not the row
itself is copied as before.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import step_block

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .capture import FullBuffers

__all__ = ["HotRows"]


class HotRows:
    """Mixed into :class:`tracer.recorder.Recorder` (which has ``capture`` and ``_full``)."""

    capture: str
    _full: FullBuffers

    def chained_row(self, name: str) -> np.ndarray | None:
        """The last recorded ``after`` of parameter ``name`` (a view: never write into it),
        while full capture stores its steps as one chain; else None. Why: a hook that finds
        the next step's ``before`` equal to it bit for bit may hand this very array back as
        ``params_before[name]`` instead of a copy - the recorder then knows the chain holds
        without comparing again, and the step costs one copy less."""
        return self._full.chained_row(name) if self.capture == "full" else None

    def stage_grad(self, name: str) -> np.ndarray | None:
        """A writable view of the row the next recorded gradient of ``name`` will occupy (full
        capture, once the parameter has a buffer; else None). A hook copies the gradient into
        it and hands that same array to :meth:`record_step` as ``grads[name]``: recorded
        without a second copy. One row per parameter is handed out at a time; a holder that
        will not record it calls :meth:`unstage_grad`."""
        return self._full.stage_grad(name) if self.capture == "full" else None

    def unstage_grad(self, name: str, row: np.ndarray) -> None:
        """Give back a row from :meth:`stage_grad` that was not (or not yet) recorded."""
        self._full.unstage_grad(name, row)

    def record_steps(self, steps: list[dict], before: dict, after: dict, grads: dict,
                     state: dict | None = None) -> list[int]:
        """Record K steps at once (:mod:`tracer.step_block`): ``steps`` the per-step keyword
        arguments of :meth:`record_step` other than the arrays, ``before``/``after``/``grads``
        name -> K rows, ``state`` name -> {slot -> K rows}. Stores what K calls of
        :meth:`record_step` would, bit for bit; returns the steps' global numbers."""
        return step_block.record_steps(self, steps, before, after, grads, state)
