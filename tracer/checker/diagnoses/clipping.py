"""Gradient clipping that does nothing, or that does something at every step.

Keras ignores ``clipvalue=0`` (and ``clipnorm=0``) silently: the run trains unclipped
while the script says otherwise. A threshold below the gradient's norm at every
step turns clipping into a rescaled learning rate (the direction is kept, the size
is always the threshold): worth knowing, not wrong, so it is a note.
"""
from __future__ import annotations

from .base import Diagnosis, finding

__all__ = ["ClippingEffect"]


class ClippingEffect(Diagnosis):
    kind = "clipping"

    def run(self, ctx):
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
        if info and info["steps"] > 1 and info["active_steps"] == info["steps"]:
            t = info["transforms"][0]
            what = t.get("source") or t["op"]
            out.append(finding(self.kind, (
                f"Clipping ({what}, threshold {t.get('max_norm', t.get('value'))}) changed the gradient at every one "
                f"of the {info['steps']} recorded steps: every update is limited by the threshold."),
                "raise the threshold or lower the learning rate if this is not what you meant",
                step=ctx.first_step, failed=False, active_steps=info["active_steps"]))
        return out
