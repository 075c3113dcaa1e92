"""Writes to a trained tensor between two steps: where they came from, for the continuity check.

Why: a parameter that changes between ``optimizer.step()`` and the next step's
``backward`` (a leftover hand update, ``model.weight.data *= 0.99``, a
re-initialisation) breaks continuity: the checker sees ``after`` of step k differ
from ``before`` of step k+1 (:mod:`tracer.checker.diagnoses.continuity`). The hook's
in-place write patches see such writes; :class:`BetweenSteps` keeps the first one per
parameter with the user's source line (``meta["torch"]["between_steps"]``), so the
finding can say *which line* did it. Writes through an alias of the parameter's
memory (``p.data.mul_(...)``, ``nn.init.normal_(p.data)``) are matched by address,
only while no step is open (so the hot path of a step never pays for it).
"""
from __future__ import annotations

import linecache
from types import FrameType

import torch

__all__ = ["BetweenSteps", "user_frame"]

_SKIP = frozenset(("torch", "hooks", "tracer", "contextlib", "functools", "typing"))


def user_frame(frame: FrameType | None) -> FrameType | None:
    """The innermost frame outside torch and steptrace (``nn.init.normal_`` writes in torch's code)."""
    f = frame
    while f is not None:
        mod = f.f_globals.get("__name__", "") or ""
        if mod.partition(".")[0] not in _SKIP:    # mod is none of them nor inside one (one look-up:
            return f                               # asked a few frames deep at every optimizer step)
        f = f.f_back
    return frame


class BetweenSteps:
    """A run's writes to its parameters between steps (see the module doc)."""

    def __init__(self) -> None:
        self.first: dict[str, dict] = {}            # param name -> the first write between steps
        self.aliases: dict[int, torch.Tensor] = {}  # data_ptr -> parameter, while no step is open
        self.steps = 0                              # steps closed so far

    def closed(self, params: list[torch.Tensor]) -> None:
        """A step closed: until the next opens, writes through an alias of ``params`` count."""
        self.aliases = {p.data_ptr(): p for p in params if p.numel()}

    def opened(self) -> None:
        """A step opened: alias writes are the step's own business again."""
        self.aliases = {}

    def alias_of(self, t: torch.Tensor) -> torch.Tensor | None:
        """The parameter whose memory ``t`` (not itself a parameter) writes, between steps."""
        if not self.aliases or t.requires_grad:
            return None
        return self.aliases.get(t.data_ptr())

    def saw(self, name: str, frame: FrameType | None, after_step: int) -> None:
        """A write to ``name`` after step ``after_step`` (the first per parameter is kept)."""
        if name in self.first or after_step < 1:
            return
        f = user_frame(frame)
        out = {"after_step": int(after_step)}
        if f is not None:
            out.update(file=f.f_code.co_filename, line=f.f_lineno,
                       code=linecache.getline(f.f_code.co_filename, f.f_lineno).strip())
        self.first[name] = out
