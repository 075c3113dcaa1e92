"""Gradient accumulation: the backward passes before one update are micro-steps of one step.

Why: a loop that calls ``backward()`` k times per ``optimizer.step()`` (micro-batches
of one effective batch) updates with the *sum* of k gradients. Recording each
backward as a step of its own would give k times too many steps, and checking the
update against the last micro-batch alone would read "gradients are accumulating:
zero_grad was forgotten" - wrong, the accumulation is on purpose. So a backward
with no update before the next one is kept (:func:`keep`), and when the next
backward finds the gradients it left still there (nobody zeroed them), it joins
that step (:func:`join`): the step's rows are every micro-batch's rows with their
micro-step index (the recorder's ``micro=``), its loss the sum of the backpropagated
micro-batch losses, its gradient what ``.grad`` holds at the update. The checker
(:mod:`tracer.checker.accumulated`) recomputes each micro-batch and sums; the
``accumulation`` diagnosis names a micro-batch loss not divided by k.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from . import gradops

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from .plan import Plan
    from .step import Step

__all__ = ["carried", "join", "combined", "covered"]


def carried(params: list[torch.Tensor], nonzero: Callable[[torch.Tensor], bool]) -> bool:
    """Whether an earlier backward's gradients are still in ``.grad`` (not zeroed since)."""
    return any(p.grad is not None and nonzero(p.grad) for p in params)


def join(st: Step, micro: list[Step]) -> None:
    """Make the kept backward passes ``micro`` the first micro-steps of ``st``: the values
    before the step are the first micro-step's, and so is whether its gradients were stale."""
    first = micro[0]
    st.micro = micro
    if st.record:
        st.before = {id(p): first.before[id(p)] if id(p) in first.before else p.detach().clone()
                     for p in st.params}
    for k, stale in first.stale.items():
        st.stale[k] = st.stale.get(k, False) or stale
    for m in micro:
        m.before = {}                   # only the first snapshot is needed, and it moved to st
    gradops.inherit(st, micro)


def parts(st: Step) -> list[Step]:
    """The micro-steps of ``st`` in order, ``st`` itself last."""
    return [*st.micro, st]


def covered(st: Step, plan: Plan | None) -> bool:
    """Whether every micro-step ran ``plan``'s computation with its rows located."""
    if plan is None:
        return False
    return all(plan.covers(m.signature, m.batch_size) and (m.rows is not None or not plan.needs_rows())
               for m in parts(st))


def total_loss(st: Step) -> float:
    """The step's loss: the sum of the micro-batch losses that were backpropagated."""
    return float(sum(m.loss for m in parts(st)))


def combined(st: Step) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """``(rows, predictions, micro-step index per row)`` of a step with micro-steps,
    every micro-batch in order (predictions None when one is missing)."""
    ms = parts(st)
    if any(m.rows is None for m in ms):
        return None, None, None
    rows = [np.asarray(m.rows).reshape(-1) for m in ms]
    index = np.concatenate([np.full(r.size, j, dtype=np.int64) for j, r in enumerate(rows)])
    preds = [m.pred for m in ms]
    pred = None
    if all(p is not None for p in preds) and len({np.shape(p)[1:] for p in preds}) == 1:
        pred = np.concatenate(preds)
    return np.concatenate(rows), pred, index
