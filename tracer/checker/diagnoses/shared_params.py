"""A parameter reached twice by the optimizers of one loop: updated twice per step.

One optimizer listing a tensor twice (two entries of a parameter list, which torch
only warns about) or two optimizers that share a tensor and are both stepped in
every iteration apply two updates per step to it; a per-parameter step counter (Adam)
then runs at 2t. The hook records each case in ``meta["shared_params"]`` (``param``,
``step``, ``places``: the two places that reach it, ``consequence``); this diagnosis
turns them into findings. Framework-neutral: any hook may fill the list.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Diagnosis, finding

if TYPE_CHECKING:
    from .base import Context

__all__ = ["SharedParams"]


class SharedParams(Diagnosis):
    kind = "shared_param"

    def run(self, ctx: Context) -> list[dict]:
        out = []
        for e in ctx.meta.get("shared_params") or []:
            if not isinstance(e, dict) or not e.get("param"):
                continue
            places = " and ".join(str(p) for p in e.get("places") or []) or "two places"
            out.append(finding(self.kind, (
                f"{e['param']} is reached twice by the optimizers from step {e.get('step', '?')} on: {places}. "
                f"Consequence: {e.get('consequence', 'it is updated twice per step')}."),
                "give each parameter to exactly one optimizer and list it once (deduplicate the parameter "
                "list, e.g. build it from model.parameters() alone)",
                param=e["param"], step=e.get("step"), places=list(e.get("places") or [])))
        return out
