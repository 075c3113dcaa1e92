"""Loss reductions in the loss itself: averaged twice, or summed where a mean was meant.

- **Averaged twice**: the loss already takes a mean over the batch (``mse_loss`` with
  reduction ``mean``, ``.mean()``) and the program then divides it by the batch size
  again (``loss / len(x)``): every gradient is B times too small. The recorded run
  agrees with its own math, so only the program shows it.
- **Summed where a mean was meant**: the loss sums over the B rows of each batch (no
  mean anywhere) and the run diverges (the loss grows by orders of magnitude or turns
  into NaN): each step is B times a mean step. A sum that trains fine is left alone
  (d2l's ``l.sum()`` with an update divided by the batch size is correct).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .base import Diagnosis, finding

if TYPE_CHECKING:
    from ...program import Node, StepProgram
    from .base import Context

__all__ = ["LossScale", "final_divisor"]


def final_divisor(program: StepProgram) -> tuple[float, Node | None, Node | None]:
    """``(product of the constant divisors applied last to the loss, the node before them,
    the node doing the first division)``."""
    by_name = {n.name: n for n in program.primitive_nodes}
    node = by_name.get(program.outputs["loss"])
    div, where = 1.0, None
    while node is not None:
        nums = [a for a in node.args if not isinstance(a, str)]
        names = [a for a in node.args if isinstance(a, str)]
        if node.op == "div" and len(nums) == 1 and node.args[1] == nums[0]:
            div *= float(nums[0])
            where = where or node
        elif node.op == "mul" and len(nums) == 1 and nums[0]:
            div /= float(nums[0])
            where = where or node
        elif node.op != "identity":
            break
        node = by_name.get(names[0]) if names else None
    return div, node, where


def _reductions(program, start) -> set:
    """The reduction ops below ``start`` (on its way down to the leaves)."""
    by_name = {n.name: n for n in program.primitive_nodes}
    seen, stack, ops = set(), [start.name], set()
    while stack:
        name = stack.pop()
        n = by_name.get(name)
        if n is None or name in seen:
            continue
        seen.add(name)
        if n.op in ("mean", "sum"):
            ops.add(n.op)
        stack += [a for a in n.args if isinstance(a, str)]
    return ops


class LossScale(Diagnosis):
    kind = "loss_scale"

    def run(self, ctx: Context) -> list[dict]:
        prog = ctx.program
        if prog is None or not prog.has_loss:
            return []
        bs = np.asarray(ctx.arrays.steps.get("batch_size", []), dtype=np.float64)
        bs = bs[np.isfinite(bs) & (bs >= 0)]       # a tampered table may hold anything
        if not bs.size or bs.max() < 2:
            return []
        # the most common size (the smallest of equally common ones), without bincount's
        # array as long as the largest size
        sizes, counts = np.unique(bs.astype(np.int64), return_counts=True)
        b = int(sizes[counts.argmax()])
        div, top, first = final_divisor(prog)
        if top is None:
            return []
        below = _reductions(prog, top)
        if "mean" in below and div > 1 and abs(div - b) < 1e-9 * b:
            where = f" at {first.where}" if first is not None and first.where else ""
            return [finding(self.kind, (
                f"The loss already averages over the batch, and it is then divided by the batch size ({b}) "
                f"again{where}: every gradient is {b} times smaller than the mean's (a step {b} times too small)."),
                f"drop the division by the batch size ({b}) after the mean", step=ctx.first_step, factor=b,
                what="averaged twice")]
        if below == {"sum"} and div == 1.0:
            grew = _diverged(ctx)
            if grew:
                return [finding(self.kind, (
                    f"The loss sums over the {b} rows of each batch (no mean), so each step is {b} times a mean "
                    f"step, and the run diverged: {grew}."),
                    f"average the loss over the batch (reduction='mean', or divide it by {b}), or divide the "
                    f"learning rate by {b}", step=ctx.first_step, factor=b, what="summed")]
        return []


def _diverged(ctx) -> str | None:
    loss = np.asarray(ctx.arrays.steps.get("loss", []), dtype=np.float64)
    if loss.size < 2:
        return None
    finite = np.isfinite(loss)
    if not finite.all() and finite.any():
        k = int(np.flatnonzero(~finite)[0])
        return f"the loss went from {loss[0]:.4g} to {loss[k]} at step {int(ctx.steps[k])}"
    if finite.all() and loss[0] > 0 and loss.max() > 100 * loss[0] and loss[-1] > loss[0]:
        return f"the loss grew from {loss[0]:.4g} to {loss.max():.4g}"
    return None
