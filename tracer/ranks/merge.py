"""The ranks of a data-parallel job merged into one trace: the job as one global run.

Why a merged trace: under DDP every rank trains on its own shard of each global batch,
the all-reduce averages their gradients, and all ranks apply the same update. So the
job *is* one run whose step ``s`` trains on the union of the ranks' rows at step ``s``
(the global batch) with the reduced gradient. Building that run as an ordinary
:class:`tracer.Trace` lets the ordinary checker recompute it: the step program on the
global batch gives the global-batch loss and gradient, which for a mean loss over equal
shards (what ``DistributedSampler`` hands out) is exactly the mean of the local ones.

What the merged trace holds: ``data`` (rank 0's, every rank loads the same data set);
``samples``: every rank's rows and predictions at each step, rank by rank; ``params``:
rank 0's values and reduced gradient (all ranks hold the same, which
:mod:`tracer.checker.diagnoses.ranks` checks); ``steps``: ``batch_size`` the global one,
``loss`` the global-batch loss (the batch-size-weighted mean of the ranks' losses) and
``loss_rank<r>`` each rank's own (the number a script printing ``loss.item()`` on rank
``r`` shows). ``meta["distributed"]`` says ``merged`` and which ranks.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import TraceInputError
from ..trace import Trace
from ..checker.rank_view import LOCAL_GRAD

__all__ = ["merge_ranks"]


def merge_ranks(traces: dict[int, Trace]) -> Trace:
    """One trace of the job from ``{rank: trace}`` (steps every rank recorded)."""
    if not traces:
        raise TraceInputError("merge_ranks: expected at least one rank's trace")
    ranks = sorted(traces)
    base = traces[ranks[0]]
    arrays = {r: traces[r].arrays() for r in ranks}
    steps = _common_steps(arrays)
    common = steps.size
    steps, uneven = _weighable_steps(traces, arrays, ranks, steps)
    a0 = arrays[ranks[0]]
    step_cols = _merged_steps(arrays, ranks, steps)
    rows, sample_step, preds, micro = _merged_samples(arrays, ranks, steps)
    pos = np.flatnonzero(np.isin(a0.param_step, steps))
    params = {}
    for name, p in a0.params.items():
        slots = {k: v[pos] for k, v in p.slots.items() if k != LOCAL_GRAD}
        params[name] = dataclasses.replace(p, before=p.before[pos], grad=p.grad[pos], after=p.after[pos],
                                           slots=slots)
    merged = dataclasses.replace(a0, steps=step_cols, sample_step=sample_step, sample_row=rows,
                                 sample_pred=preds, sample_micro=micro, param_step=a0.param_step[pos],
                                 params=params)
    meta = dict(base.meta)
    meta["distributed"] = {**(base.meta.get("distributed") or {}), "merged": True, "ranks": ranks,
                           "rank": None, "world_size": len(ranks)}
    notes = list(meta.get("notes") or [])
    dropped = max(len(np.asarray(a.steps.get("step", []))) for a in arrays.values()) - common
    if dropped:
        notes.append(f"merged: {dropped} step(s) not recorded on every rank were left out")
    if uneven:
        notes.append(f"merged: step(s) {', '.join(map(str, uneven))} left out: the replicas' slices of the batch "
                     "are unequal, and Keras weighs each replica's mean gradient equally (each replica divides its "
                     "mean loss by the number of replicas), so the update is not the global batch's; those steps "
                     "are checked on each replica and across replicas")
    meta["notes"] = notes
    return Trace(arrays=merged, meta=meta)


def _weighable_steps(traces: dict, arrays: dict, ranks: list[int], steps: np.ndarray):
    """``(steps, left_out)``: for Keras replicas (``meta["distributed"]["replica"]``), the steps
    whose replicas trained on slices of one size. Keras's update at a step of unequal slices
    (the last, partial batch of an epoch) is the mean of the replicas' mean gradients, not the
    global batch's mean gradient the merged check recomputes; DDP's sampler pads to equal shards."""
    if not (traces[ranks[0]].meta.get("distributed") or {}).get("replica") or not steps.size:
        return steps, []
    sizes = []
    for r in ranks:
        s = np.asarray(arrays[r].steps["step"], dtype=np.int64)
        sizes.append(np.asarray(arrays[r].steps["batch_size"], dtype=np.float64)[np.searchsorted(s, steps)])
    sizes = np.stack(sizes)
    even = np.all(sizes == sizes[0], axis=0) | ~np.isfinite(sizes).all(axis=0)
    return steps[even], steps[~even].tolist()


def _common_steps(arrays: dict) -> np.ndarray:
    """The step numbers every rank recorded, in order."""
    common = None
    for a in arrays.values():
        s = np.asarray(a.steps.get("step", []), dtype=np.int64)
        common = s if common is None else np.intersect1d(common, s)
    return np.asarray(common, dtype=np.int64)


def _merged_steps(arrays: dict, ranks: list[int], steps: np.ndarray) -> dict:
    """Rank 0's steps columns at ``steps``, with the global batch size and loss."""
    def at(a, col):
        s = np.asarray(a.steps["step"], dtype=np.int64)
        idx = np.searchsorted(s, steps)
        return np.asarray(a.steps[col])[idx] if col in a.steps else np.full(steps.size, np.nan)
    a0 = arrays[ranks[0]]
    cols = {k: at(a0, k) for k in a0.steps}
    sizes = np.stack([at(arrays[r], "batch_size").astype(np.float64) for r in ranks])
    losses = np.stack([at(arrays[r], "loss").astype(np.float64) for r in ranks])
    cols["batch_size"] = sizes.sum(axis=0)
    known = np.isfinite(sizes).all(axis=0)            # unknown sizes: the shards are equal (DistributedSampler)
    weights = np.where(known, sizes, 1.0)
    cols["loss"] = (weights * losses).sum(axis=0) / weights.sum(axis=0)
    for r, row in zip(ranks, losses):
        cols[f"loss_rank{r}"] = row
    return cols


def _merged_samples(arrays: dict, ranks: list[int], steps: np.ndarray):
    """Every rank's (step, row, prediction) at ``steps``, grouped by step, rank by rank."""
    parts = []
    for k, r in enumerate(ranks):
        a = arrays[r]
        keep = np.isin(a.sample_step, steps)
        parts.append((a.sample_step[keep], a.sample_row[keep],
                      None if a.sample_pred is None else a.sample_pred[keep],
                      None if a.sample_micro is None else a.sample_micro[keep], np.full(keep.sum(), k)))
    step = np.concatenate([p[0] for p in parts]).astype(np.int64)
    rows = np.concatenate([p[1] for p in parts]).astype(np.int64)
    order = np.lexsort((np.concatenate([p[4] for p in parts]), step))   # by step, then rank (stable)
    preds = None
    if all(p[2] is not None for p in parts):
        preds = np.concatenate([p[2] for p in parts])[order]
    micro = None
    if all(p[3] is not None for p in parts):
        micro = np.concatenate([p[3] for p in parts])[order]
    return rows[order], step[order], preds, micro
