"""Gradient accumulation without dividing the loss by the number of micro-steps.

Accumulating k backward passes before one optimizer step sums k gradients. When each
micro-batch loss is a mean, that sum is k times the gradient of the mean over the whole
effective batch, unless the loss was divided by k (the usual ``loss = loss / k``).
The recorded run is checked exactly as it ran (every number agrees); this finding says
that the step is k times larger than the mean over the effective batch, which is
almost never meant. It is never called a forgotten ``zero_grad``: the hook records
these backward passes as micro-steps of one step.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .base import Diagnosis, finding

if TYPE_CHECKING:
    from .base import Context

__all__ = ["Accumulation"]


class Accumulation(Diagnosis):
    kind = "accumulation"

    def run(self, ctx: Context) -> list[dict]:
        micro = ctx.arrays.sample_micro
        if micro is None or ctx.program is None or not ctx.program.has_loss or not micro.size:
            return []
        k = _usual_k(ctx.arrays.sample_step, micro)
        div = _constant_divisor(ctx.program)
        if k < 2 or abs(div % k) < 1e-9 and div >= k:
            return []
        step = int(ctx.arrays.sample_step[np.flatnonzero(micro > 0)[0]])
        where = next((n.where for n in reversed(ctx.program.nodes) if n.where), None)
        at = f" (the loss at {where})" if where else ""
        return [finding(self.kind, (
            f"Each optimizer step accumulates the gradients of {k} backward passes, and the micro-batch loss"
            f"{at} is not divided by {k}: gradients are {k}x the mean: the loss was not divided by the accumulation "
            f"steps, so every step is {k} times larger than the mean over the effective batch (from step {step} on)."),
            f"divide each micro-batch loss by the number of accumulation steps (loss = loss / {k}), or lower "
            f"the learning rate by {k}", step=step, factor=k)]


def _usual_k(sample_step, micro) -> int:
    """The number of micro-steps most steps have: an epoch whose batch count is not a multiple
    of k leaves a few backward passes that join the next epoch's first step, which must not
    make k look larger than the loop's accumulation steps."""
    steps = np.asarray(sample_step, dtype=np.int64)
    order = np.lexsort((micro, steps))
    last = np.r_[steps[order][1:] != steps[order][:-1], True]
    per_step = micro[order][last] + 1                     # micro-steps of each step
    values, counts = np.unique(per_step, return_counts=True)
    return int(values[np.argmax(counts)])


def _constant_divisor(program) -> float:
    """The product of the constant divisors applied to the loss at its very end (1 if none)."""
    from .loss_scale import final_divisor
    return final_divisor(program)[0]
