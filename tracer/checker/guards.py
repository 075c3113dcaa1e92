"""Numerical guards in a hand-written loss: ``np.log(p + 1e-12)``, ``np.clip(p, 1e-7, 1 - 1e-7)``.

Why: a NumPy run records no gradients, so its updates are checked against the gradient
of the traced loss, guard included. The user's hand-written backward pass is the
gradient of the loss *without* its guard (``d = (p - y) / n``), which differs from the
guarded one by about ``guard / p`` relative: ``1e-12`` moves a float64 update by about
1e-14 relative, ``1e-8`` by 1e-10, both far above float64's tolerance (7e-15), so a
correct loop read FAILED. The guard is there to keep ``log(0)`` away, not to be
differentiated, so both gradients are right: the update check allows the difference
between the two, computed by evaluating the program once more with every guard removed
(:func:`guard_free`), and never more (a wrong factor, sign or learning rate is an error
of the order of the gradient itself).

A guard is an ``add``/``sub`` of a plain number ``0 < |c| <= GUARD`` whose result is read
only by ``log``, ``div`` (as the denominator), ``reciprocal``, ``sqrt`` or ``rsqrt``, or a
``clamp`` whose bounds are within ``GUARD`` of 0 or 1 (a probability kept inside (0, 1)).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..program import Evaluation, StepProgram
from .tolerance import FACTOR

if TYPE_CHECKING:
    from .quantities import ChunkResult

__all__ = ["GUARD", "guard_free", "widen_for_guards"]

GUARD = 1e-6
"""The largest constant taken for a numerical guard rather than part of the model."""

_GUARDED_READERS = {"log", "reciprocal", "sqrt", "rsqrt"}


def _is_guard_number(a: object) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool) and 0 < abs(a) <= GUARD


def _readers(nodes) -> dict[str, list]:
    out: dict[str, list] = {}
    for n in nodes:
        for i, a in enumerate(n.args):
            if isinstance(a, str):
                out.setdefault(a, []).append((n, i))
    return out


def _guarded_add(node, readers) -> bool:
    if node.op not in ("add", "sub") or len(node.args) != 2 or not any(_is_guard_number(a) for a in node.args):
        return False
    uses = readers.get(node.name, [])
    return bool(uses) and all(n.op in _GUARDED_READERS or (n.op == "div" and i == 1) for n, i in uses)


def _guard_clamp(node) -> bool:
    if node.op != "clamp":
        return False
    lo, hi = node.attrs.get("min"), node.attrs.get("max")
    near = [b for b in (lo, hi) if b is not None]
    return bool(near) and all(isinstance(b, (int, float)) and (abs(b) <= GUARD or abs(1 - b) <= GUARD) for b in near)


def guard_free(program: StepProgram, outputs: dict | None = None) -> StepProgram | None:
    """``program`` with every numerical guard taken out (the guard's number set to 0, a
    guarding clamp made the identity), or None when it has none."""
    d = program.to_dict()
    nodes = program.nodes
    readers = _readers(nodes)
    changed = False
    for nd, node in zip(d["nodes"], nodes):
        if _guarded_add(node, readers):
            nd["args"] = [0.0 if _is_guard_number(a) else a for a in nd["args"]]
            changed = True
        elif _guard_clamp(node):
            nd["op"], nd["attrs"] = "identity", {}
            changed = True
    return StepProgram.from_dict(d) if changed else None


def widen_for_guards(res: ChunkResult, variant: StepProgram | None, leaves: dict, dtype: type, eps: float) -> None:
    """Add to the magnitudes of the chunk's recomputed gradients (``res.grad_mags``) the
    difference the guards make to them, in the units the update check multiplies by
    ``FACTOR * eps`` (twice over: the difference itself is computed with rounding)."""
    if variant is None or not res.grads:
        return
    free = Evaluation(variant, leaves, dtype).gradients()
    for name, g in res.grads.items():
        g0 = free.get(name)
        if g0 is None or name not in res.grad_mags:
            continue
        delta = np.abs(g - np.asarray(g0, dtype=np.float64).reshape(g.shape))
        res.grad_mags[name] = res.grad_mags[name] + np.where(np.isfinite(delta), delta, 0.0) * (2.0 / (FACTOR * eps))
