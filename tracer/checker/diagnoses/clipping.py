"""Gradient clipping that does nothing, or that does something at every step.

Keras ignores ``clipvalue=0`` (and ``clipnorm=0``) silently: the run trains unclipped
while the script says otherwise. A threshold below the gradient's norm at every
step turns clipping into a rescaled learning rate (the direction is kept, the size
is always the threshold): worth knowing, not wrong, so it is a note. So is a threshold
above every gradient seen (torch's ``clip_grad_norm_(params, 1e6)``): the clipping
never changed anything, which is worth knowing when it was meant to guard the run.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Diagnosis, finding

if TYPE_CHECKING:
    from .base import Context

__all__ = ["ClippingEffect"]


class ClippingEffect(Diagnosis):
    kind = "clipping"

    def run(self, ctx: Context) -> list[dict]:
        out = []
        spec = ctx.meta.get("optimizer") or {}
        if spec.get("convention") == "keras":
            for key in ("clipnorm", "global_clipnorm", "clipvalue"):
                v = spec.get(key)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
                    out.append(finding(self.kind, (
                        f"The optimizer is configured with {key}={v!r}, which Keras ignores: no gradient was "
                        "clipped."), f"set {key} to a positive threshold, or remove it", step=ctx.first_step,
                        option=key, value=v))
        info = (ctx.extras or {}).get("clipping")
        if info and info["steps"] > 1 and info["active_steps"] in (0, info["steps"]):
            out += self._every_or_never(ctx, info)
        return out

    def _every_or_never(self, ctx, info) -> list[dict]:
        """A note for clipping that fired at every recorded step, or at none."""
        t = info["transforms"][0]
        what = t.get("source") or t["op"]
        c = t.get("max_norm", t.get("value"))
        largest = (info.get("largest") or [None])[0]
        size = "norm" if t["op"] == "clip_norm" else "absolute value"
        seen = f" (the largest gradient {size} was {largest:.4g}, {largest / c:.3g}x the threshold)" \
            if largest is not None and c else ""
        if info["active_steps"] == info["steps"]:
            return [finding(self.kind, (
                f"Clipping ({what}, threshold {c}) changed the gradient at every one of the {info['steps']} "
                f"recorded steps{seen}: every update is limited by the threshold."),
                "raise the threshold or lower the learning rate if this is not what you meant",
                step=ctx.first_step, failed=False, active_steps=info["active_steps"], largest=largest)]
        return [finding(self.kind, (
            f"Clipping ({what}, threshold {c}) never changed the gradient in the {info['steps']} recorded "
            f"steps{seen}: it has no effect on this run."),
            "lower the threshold below the gradient sizes you want to cut, or remove the clipping call",
            step=ctx.first_step, failed=False, active_steps=0, largest=largest)]
