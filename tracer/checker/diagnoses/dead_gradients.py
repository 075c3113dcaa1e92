"""Dead gradients: a parameter whose gradient is exactly zero at every step learns nothing.

The finding names the parameters and the operation of the step program that zeroes
their gradient: walking the reverse pass of the first steps, the first node (from
the loss back) that receives a non-zero gradient but passes exactly zero to the
argument the parameter flows through (a ReLU dead on every row, a softmax over a
single unit, a ``detach``...). A parameter the loss does not use at all is named too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .base import all_nan_rows, any_in_blocks, Diagnosis, finding

if TYPE_CHECKING:
    from .base import Context

__all__ = ["DeadGradients"]

_WHY = {
    "relu": ("the ReLU is inactive on every row (all its inputs are <= 0): a dead ReLU",
             "re-initialise the layer feeding it, lower the learning rate, or use leaky_relu"),
    "softmax": ("a softmax over a single unit is always 1, so its gradient is 0",
                "use sigmoid for one output unit, or give the softmax one unit per class"),
    "log_softmax": ("log_softmax over a single unit is always 0, so its gradient is 0",
                    "give the layer one unit per class"),
    "detach": ("the value is detached from the loss (no gradient flows through detach)",
               "remove the .detach() (or .data / .numpy() round trip) on the path to the loss"),
    "maximum": ("maximum(...) picks the other argument on every row", "check the clamp/maximum bounds"),
    "clamp": ("the clamp is saturated on every row", "check the clamp bounds"),
    "mul": ("it is multiplied by zero", "check the factor it is multiplied by"),
}


class DeadGradients(Diagnosis):
    kind = "dead_gradient"

    def run(self, ctx: Context) -> list[dict]:
        dead = _dead_params(ctx)
        if not dead:
            return []
        ev = ctx.evaluation
        out = []
        for name in dead:
            op, node, where = _zeroing_node(ev, name) if ev is not None else (None, None, None)
            failed = True
            if ev is not None and name not in _used(ev):
                # possibly on purpose (an unused head): worth saying, not a failure
                why, fix = "the loss does not use it", "use it in the model, or stop training it"
                failed = False
            elif op is not None:
                if op not in _WHY and not _cuts_gradient(op):
                    continue        # a sum that cancels exactly (e.g. balanced residual signs): no bug
                why, fix = _WHY.get(op, (f"the operation {op} passes no gradient to it", "check that operation"))
                why += f" (`{node} = {op}(...)`" + (f" at {where}" if where else "") + ")"
            else:
                continue            # no operation to blame: nothing a user could act on
            out.append(finding(self.kind, (
                f"{name} gets a gradient of exactly 0 at every one of the {len(ctx.steps)} recorded steps, so it "
                f"never learns: {why}."), fix, param=name, step=ctx.first_step, failed=failed))
        return out


def _cuts_gradient(op: str) -> bool:
    """Ops that pass no gradient at all by definition (detach, comparisons, floor...)."""
    from ...program import get_op
    o = get_op(op)
    return o is not None and o.differentiable == ()


def _dead_params(ctx):
    frozen = set((ctx.meta.get("torch") or {}).get("frozen") or [])
    out = []
    for name, p in ctx.arrays.params.items():
        if name in frozen or p.grad.ndim == 2 and p.grad.shape[1] == 0:   # no elements: nothing to learn
            continue
        g = p.grad
        rec = ~all_nan_rows(g)
        if rec.any():
            if not any_in_blocks(lambda x: x != 0, g, rows=None if rec.all() else np.flatnonzero(rec)):
                out.append(name)
            continue
        ev = ctx.evaluation
        if ev is not None and name in ev.program.params:
            if np.all(ev.gradients()[name] == 0) and np.all(p.after == p.before):
                out.append(name)
    return out


def _used(ev):
    return {a for n in ev.program.primitive_nodes if n.name in ev.values for a in n.args if isinstance(a, str)}


def _zero_operand(ev, node, feeders):
    """For a product (mul, matmul) with an operand that is zero everywhere: the node
    that made that operand zero (a dead ReLU upstream), else None."""
    if node.op not in ("mul", "matmul"):
        return None
    by_name = {n.name: n for n in ev.program.primitive_nodes}
    for a in node.args:
        if isinstance(a, str) and a not in feeders and a in ev.values and not np.any(ev.values[a] != 0):
            src = by_name.get(a)
            while src is not None and src.op in ("identity", "transpose", "reshape", "flatten", "squeeze",
                                                 "unsqueeze", "permute"):
                src = by_name.get(src.args[0]) if isinstance(src.args[0], str) else None
            return src
    return None


def _zeroing_node(ev, name):
    """(op, node name, where) of the node closest to the loss that zeroes ``name``'s gradient."""
    _, _, acc, req = ev._grads
    nodes = [n for n in ev.program.primitive_nodes if n.name in ev.values]
    cone = {name}
    for n in nodes:
        if any(isinstance(a, str) and a in cone for a in n.args):
            cone.add(n.name)
    for n in reversed(nodes):
        g = acc.get(n.name)
        if g is None or n.name not in cone or not np.any(g != 0):
            continue
        feeders = [a for a in n.args if isinstance(a, str) and a in cone]
        if feeders and all(not np.any(acc.get(a, 0) != 0) for a in feeders):
            other = _zero_operand(ev, n, feeders)
            if other is not None:             # it multiplies values that are all zero: blame their source
                return other.op, other.group or other.name, other.where
            return n.op, n.group or n.name, n.where
    from ...program import get_op
    for n in nodes:        # a path cut by an op that passes no gradient at all (detach, a comparison)
        op = get_op(n.op)
        if any(isinstance(a, str) and a in cone and not op.can_differentiate(i) for i, a in enumerate(n.args)):
            return n.op, n.group or n.name, n.where
    return None, None, None
