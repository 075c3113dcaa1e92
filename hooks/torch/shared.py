"""A parameter reached twice by the optimizers of one loop, and optimizers stepped after the step closed.

Why: torch only *warns* when one optimizer lists a tensor twice (``SGD(list(model.
parameters()) + [model.weight])``): the update is then applied twice per step, and
Adam's per-parameter step counter runs at 2t. Two optimizers that share a tensor and
are both stepped in one iteration update it twice too. Both are named with the
parameter, the two places and the consequence (``meta["shared_params"]``, read by
:mod:`tracer.checker.diagnoses.shared_params`).

A second optimizer stepped in the same iteration (a GAN, or one optimizer per part of
the model) runs after the hook closed the step at the first one: the values of its
parameters recorded "after" the step predate its update, and the checker has one
optimizer's rule. Its parameters are therefore "cannot check"
(``meta["optimizer"]["unmodelled"]``) and listed in ``meta["torch"]["late_update"]``,
so continuity and "never updated" do not blame them for what that optimizer did.
"""
from __future__ import annotations

import sys

import torch

from .writes import user_frame

__all__ = ["SharedLog"]

_COUNTERS = ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "Adagrad", "ASGD", "Rprop", "SparseAdam")


def _where() -> str | None:
    f = user_frame(sys._getframe(1))
    if f is None:
        return None
    import os
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"


def _consequence(opt: torch.optim.Optimizer, k: int) -> str:
    cls = type(opt).__name__
    out = f"its update is applied {k} times per step ({k}x what one {cls} step does)"
    if cls in _COUNTERS:
        out += f", and {cls}'s step counter for it runs at {k}t"
    return out


class SharedLog:
    """One run's shared parameters and late optimizers (see the module doc)."""

    def __init__(self) -> None:
        self.entries: dict[str, dict] = {}          # param name -> the shared_params entry
        self.late: dict[str, str] = {}              # param name -> the optimizer stepped after the close
        self.iteration: list[tuple] = []            # (optimizer, where) stepped since the last backward
        self._checked: set[int] = set()             # optimizers already looked at for duplicates

    def new_iteration(self) -> None:
        """A backward opened a step: the optimizers of the next update start afresh."""
        self.iteration = []

    def stepped(self, opt: torch.optim.Optimizer, names: dict[int, str], step: int) -> None:
        """``opt`` closed step ``step``: look (once per optimizer) for a tensor it lists twice."""
        self.iteration.append((opt, _where()))
        if id(opt) in self._checked:
            return
        self._checked.add(id(opt))
        places: dict[int, list[str]] = {}
        for g, group in enumerate(opt.param_groups):
            for i, p in enumerate(group["params"]):
                places.setdefault(id(p), []).append(f"param_groups[{g}]['params'][{i}]")
        cls = type(opt).__name__
        for k, where in places.items():
            if len(where) > 1 and k in names and names[k] not in self.entries:
                self.entries[names[k]] = {
                    "param": names[k], "step": int(step), "optimizer": cls,
                    "places": [f"{cls} {w}" for w in where],
                    "consequence": _consequence(opt, len(where))}

    def late_step(self, opt: torch.optim.Optimizer, names: dict[int, str], step: int) -> None:
        """Another optimizer stepped after the step closed (same iteration, no backward since)."""
        where = _where()
        cls = type(opt).__name__
        mine = {id(p) for g in opt.param_groups for p in g["params"]}
        for earlier, at in self.iteration:
            if earlier is opt:
                self._twice(opt, names, step, at, where)
                continue
            theirs = {id(p) for g in earlier.param_groups for p in g["params"]}
            for k in mine & theirs:
                n = names.get(k)
                if n is not None and n not in self.entries:
                    other = type(earlier).__name__
                    self.entries[n] = {
                        "param": n, "step": int(step), "optimizer": f"{other} and {cls}",
                        "places": [f"{other}.step() at {at or '?'}", f"{cls}.step() at {where or '?'}"],
                        "consequence": "it is updated by both optimizers in every iteration (two updates per "
                                       "step, each with its own state)"}
        for k in mine:
            n = names.get(k)
            if n is not None and n not in self.late:
                self.late[n] = f"{cls}.step() at {where or '?'}"
        self.iteration.append((opt, where))

    def _twice(self, opt, names, step, at, where) -> None:
        """The same optimizer stepped twice with one backward: every parameter moves twice."""
        cls = type(opt).__name__
        for g in opt.param_groups:
            for p in g["params"]:
                n = names.get(id(p))
                if n is not None and n not in self.entries:
                    self.entries[n] = {
                        "param": n, "step": int(step), "optimizer": cls,
                        "places": [f"{cls}.step() at {at or '?'}", f"{cls}.step() again at {where or '?'}"],
                        "consequence": f"{cls}.step() runs twice on one gradient: two updates per step"}

    def finish(self, meta: dict) -> None:
        """``meta["shared_params"]``, ``meta["torch"]["late_update"]`` and the unmodelled updates."""
        if self.entries:
            meta["shared_params"] = list(self.entries.values())
        if not self.late:
            return
        meta.setdefault("torch", {})["late_update"] = dict(self.late)
        opt = meta.get("optimizer")
        if isinstance(opt, dict):
            um = opt.setdefault("unmodelled", {})
            for n, by in self.late.items():
                um.setdefault(n, f"also updated by a second optimizer ({by}) after the step was recorded: "
                                 "the recorded values do not bracket that update")
