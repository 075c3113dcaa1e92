"""Broadcasting in the loss: predictions ``(N, 1)`` against targets ``(N,)`` become ``(N, N)``.

The loss then compares every prediction with every target; the run converges to the
wrong fit without an error (torch only warns, NumPy says nothing). Found in the step
program: an elementwise operation with one argument coming from the predictions and
the other from the targets, whose result has more elements than either.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .base import Diagnosis, finding

if TYPE_CHECKING:
    from .base import Context

__all__ = ["LossBroadcast"]


class LossBroadcast(Diagnosis):
    kind = "loss_broadcast"

    def run(self, ctx: Context) -> list[dict]:
        prog = ctx.program
        if prog is None or "prediction" not in prog.outputs or "target" not in prog.outputs:
            return []
        # screen on 2 rows (the same dimensions broadcast as with the full batch: shape_probe);
        # the finding's shapes are then read from the whole first step
        probe = ctx.shape_probe
        found = self._scan(prog, probe)
        if not found or probe is ctx.__dict__.get("first_values"):
            return found
        return self._scan(prog, ctx.first_values)

    def _scan(self, prog, ev) -> list[dict]:
        """The finding for the first prediction-target broadcast in ``ev``'s shapes, or []."""
        if ev is None:
            return []
        from_pred = _cone(prog, prog.outputs["prediction"])
        from_target = _cone(prog, prog.outputs["target"])
        for n in prog.primitive_nodes:
            if n.name not in ev.values or len(n.args) != 2:
                continue
            a, b = n.args
            if not (isinstance(a, str) and isinstance(b, str)):
                continue
            if not ((a in from_pred and b in from_target) or (b in from_pred and a in from_target)):
                continue
            sa, sb, so = (ev.values[a].shape[1:], ev.values[b].shape[1:], ev.values[n.name].shape[1:])
            if int(np.prod(so)) > max(int(np.prod(sa)), int(np.prod(sb))):
                p_shape, t_shape = (sa, sb) if a in from_pred else (sb, sa)
                where = f" at {n.where}" if n.where else ""
                return [finding(self.kind, (
                    f"The loss compares predictions of shape {tuple(p_shape)} with targets of shape "
                    f"{tuple(t_shape)}: they broadcast to {tuple(so)}{where}, so every prediction is compared with "
                    f"every target and the model converges to the wrong fit."),
                    "give predictions and targets the same shape (y.view(-1, 1), or pred.squeeze(-1))",
                    step=int(ev.steps[0]), prediction_shape=list(p_shape), target_shape=list(t_shape))]
        return []


def _cone(prog, start):
    """Names computed from ``start`` (including it)."""
    cone = {start}
    for n in prog.primitive_nodes:
        if any(isinstance(a, str) and a in cone for a in n.args):
            cone.add(n.name)
    return cone
