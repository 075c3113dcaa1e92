"""Diagnoses that need every rank of a data-parallel job at once (issue 15).

Why apart from the per-trace diagnoses: each of these compares ranks with each other,
which no single rank's trace can do. They read ``{rank: Trace}`` (the ranks' own traces,
with the ``local_grad`` column the torch hook records under DDP) and return the same
finding dicts as the other diagnoses, each naming the step and the rank:

- ``rank_rows``: two ranks training on the same row in one step, and an epoch whose
  union over ranks is not the whole data set;
- ``set_epoch``: an epoch that draws exactly the rows of the previous one, in the same
  order, on every rank, with a shuffling ``DistributedSampler``: ``set_epoch`` was never
  called, so every epoch reshuffles with the same seed;
- ``allreduce``: a reduced gradient that is not the mean of the ranks' local gradients;
  the rank whose "reduced" gradient is its own local one skipped the all-reduce
  (``no_sync``, or a backward outside the DDP module);
- ``rank_gradient``: a rank handing the all-reduce an all-zero gradient while another rank's
  is not (its rows never reach the update);
- ``rank_divergence``: the first step, parameter and rank where a rank's parameters
  differ from rank 0's (DDP keeps them bit-identical; a difference is a write on one
  rank, or a skipped all-reduce);
- ``rank_loss`` (*note*): the loss rank 0 logs is its shard's, not the global batch's (not
  for Keras replicas, ``meta["distributed"]["logged"] == "global"``: Keras logs the job's loss,
  which the merged trace checks).
"""
from __future__ import annotations

import numpy as np

from ..rank_view import LOCAL_GRAD
from .base import finding

__all__ = ["rank_findings"]

_RTOL = 64 * float(np.finfo(np.float32).eps)     # float32 all-reduce: a sum of W values / W


def rank_findings(traces: dict) -> list[dict]:
    """Cross-rank findings for ``{rank: trace}``, in the order the bugs would show."""
    ranks = sorted(traces)
    if len(ranks) < 2:
        return []
    arrays = {r: traces[r].arrays() for r in ranks}
    steps = _common_steps(arrays)
    out = []
    out += _rows(traces, arrays, ranks, steps)
    out += _allreduce(arrays, ranks, steps)
    out += _silent_rank(arrays, ranks, steps)
    out += _divergence(arrays, ranks, steps)
    if (traces[ranks[0]].meta.get("distributed") or {}).get("logged") != "global":
        out += _loss_note(arrays, ranks, steps)      # Keras under MirroredStrategy logs the job's loss
    for f in out:
        f["rank"] = f["evidence"].get("rank")
    return out


def _common_steps(arrays: dict) -> np.ndarray:
    common = None
    for a in arrays.values():
        s = np.asarray(a.steps.get("step", []), dtype=np.int64)
        common = s if common is None else np.intersect1d(common, s)
    return common


def _rows_by_step(a, steps) -> dict[int, np.ndarray]:
    order = np.argsort(a.sample_step, kind="stable")
    st, rw = a.sample_step[order], a.sample_row[order]
    cut = np.searchsorted(st, steps), np.searchsorted(st, steps, side="right")
    return {int(s): rw[i:j] for s, i, j in zip(steps, *cut)}


def _epochs(a, steps) -> dict[int, list[int]]:
    s = np.asarray(a.steps["step"], dtype=np.int64)
    e = np.asarray(a.steps["epoch"], dtype=np.int64)[np.searchsorted(s, steps)]
    out: dict[int, list[int]] = {}
    for step, epoch in zip(steps.tolist(), e.tolist()):
        out.setdefault(epoch, []).append(step)
    return out


# ------------------------------------------------------------------ rows
def _rows(traces, arrays, ranks, steps) -> list[dict]:
    """Shards overlapping in a step; epochs not covering the data; a forgotten ``set_epoch``."""
    rows = {r: _rows_by_step(arrays[r], steps) for r in ranks}
    if not any(len(v) for d in rows.values() for v in d.values()):
        return []
    out = []
    for s in steps.tolist():
        seen: dict[int, int] = {}
        for r in ranks:
            for row in rows[r][s].tolist():
                if row in seen and seen[row] != r:
                    out.append(finding("rank_rows", f"step {s}: row {row} is in the batch of rank {seen[row]} and "
                                       f"of rank {r}: the ranks do not split the data", "give the DataLoader a "
                                       "DistributedSampler(dataset) (and no shuffle=True of its own)", step=s,
                                       rank=r, row=row))
                    return out
                seen[row] = r
    epochs = _epochs(arrays[ranks[0]], steps)
    n_rows = arrays[ranks[0]].inputs.shape[0] if arrays[ranks[0]].inputs is not None else None
    out += _coverage(rows, ranks, epochs, n_rows, traces[ranks[0]].meta.get("capture") or {})
    out += _set_epoch(traces, rows, ranks, epochs)
    return out


def _coverage(rows, ranks, epochs, n_rows, capture) -> list[dict]:
    """Every complete epoch's union over ranks is the data set (a permutation, padding aside)."""
    if n_rows is None or capture.get("every", 1) != 1:
        return []
    for e, e_steps in sorted(epochs.items())[:-1]:        # the last epoch may be cut short
        drawn = np.concatenate([rows[r][s] for r in ranks for s in e_steps])
        got = np.unique(drawn)
        extra = drawn.size - got.size                    # DistributedSampler pads with < world rows
        if extra >= len(ranks):
            return [finding("rank_rows", f"epoch {e}: {extra} rows were drawn twice over the ranks (padding "
                            f"accounts for at most {len(ranks) - 1})", "use one DistributedSampler per rank "
                            "over the same data set, with the job's world size", step=e_steps[0], epoch=e,
                            repeats=int(extra))]
        if got.size != n_rows:
            return [finding("rank_rows", f"epoch {e}: the ranks together trained on {got.size} of the "
                            f"{n_rows} rows", "use a DistributedSampler over the whole data set on every rank",
                            step=e_steps[0], epoch=e, rows=int(got.size), n_rows=int(n_rows))]
    return []


def _set_epoch(traces, rows, ranks, epochs) -> list[dict]:
    """An epoch repeating the previous one's rows in the same order on every rank."""
    sampler = (traces[ranks[0]].meta.get("distributed") or {}).get("sampler") or {}
    if not sampler.get("shuffle", True):
        return []
    numbers = sorted(epochs)
    for prev, cur in zip(numbers, numbers[1:]):
        a, b = epochs[prev], epochs[cur]
        if len(a) != len(b) or not a:
            continue
        same = all(np.array_equal(rows[r][x], rows[r][y]) for r in ranks for x, y in zip(a, b))
        if same:
            first = rows[ranks[0]][b[0]][:5].tolist()
            seen = _sampler_epochs(traces[ranks[0]], b)
            return [finding(
                "set_epoch", f"epoch {cur} (from step {b[0]}) draws exactly the rows of epoch {prev}, in the same "
                f"order, on every rank (rank {ranks[0]}'s first batch again: rows {first}...{seen}): "
                "DistributedSampler.set_epoch(epoch) is never called, so the sampler shuffles with the same seed "
                "every epoch", "call sampler.set_epoch(epoch) at the start of every epoch, before iterating "
                "the DataLoader", step=b[0], epoch=cur, rank=None, missing_call="DistributedSampler.set_epoch")]
    return []


def _sampler_epochs(trace, steps) -> str:
    """``; the sampler's epoch is still 0`` when the trace recorded it (``sampler_epoch``)."""
    col = trace.steps.get("sampler_epoch") if "sampler_epoch" in trace.steps.columns else None
    if col is None:
        return ""
    at = col[trace.steps["step"].isin(steps)].dropna().unique()
    return f"; the sampler's epoch is still {int(at[0])}" if at.size == 1 else ""


# -------------------------------------------------------------- gradients
def _param_rows(a, steps, name, which):
    p = a.params.get(name)
    if p is None:
        return None
    pos = np.searchsorted(a.param_step, steps)
    ok = (pos < a.param_step.size) & (a.param_step[np.minimum(pos, a.param_step.size - 1)] == steps)
    if not ok.all():
        return None
    src = p.slots.get(which) if which == LOCAL_GRAD else getattr(p, which)
    return None if src is None else np.asarray(src[pos], dtype=np.float64)


def _allreduce(arrays, ranks, steps) -> list[dict]:
    """The reduced gradient of every rank is the mean of the ranks' local gradients."""
    first = None
    for name in arrays[ranks[0]].params:
        local = [_param_rows(arrays[r], steps, name, LOCAL_GRAD) for r in ranks]
        reduced = [_param_rows(arrays[r], steps, name, "grad") for r in ranks]
        if any(x is None for x in local + reduced):
            continue
        mean = np.mean(local, axis=0)
        scale = np.max(np.abs(local), axis=0)
        for k, r in enumerate(ranks):
            bad = np.abs(reduced[k] - mean) > _RTOL * scale + 1e-12
            rows = np.flatnonzero(bad.any(axis=1))
            if rows.size and (first is None or (rows[0], k) < first[:2]):
                first = (rows[0], k, name, reduced, local, mean)
    if first is None:
        return []
    i, k, name, reduced, local, mean = first
    step, worse = int(steps[i]), [r for j, r in enumerate(ranks) if _same(reduced[j][i], local[j][i])]
    if worse:
        r = worse[0]
        msg = (f"step {step}, rank {r}: the gradient the optimizer used is rank {r}'s own local gradient "
               f"(|grad - local| = {np.max(np.abs(reduced[ranks.index(r)][i] - local[ranks.index(r)][i])):.3g}), "
               f"not the mean over the {len(ranks)} ranks ({name} differs by up to "
               f"{np.max(np.abs(reduced[ranks.index(r)][i] - mean[i])):.3g}): rank {r} skipped the all-reduce "
               "(a backward under model.no_sync(), or outside the DDP module), and its parameters drift from "
               "the other ranks'")
        fix = "run the last backward before optimizer.step() outside no_sync() on every rank, the same steps on all"
    else:
        r = ranks[k]
        msg = (f"step {step}, rank {r}: the reduced gradient of {name} is not the mean of the ranks' local "
               f"gradients (differs by up to {np.max(np.abs(reduced[k][i] - mean[i])):.3g}): the ranks' "
               "all-reduces are out of step (one rank ran a different number of synchronised backwards)")
        fix = "every rank must run the same synchronised backwards, in the same order"
    return [finding("allreduce", msg, fix, param=name, step=step, rank=r)]


def _silent_rank(arrays, ranks, steps) -> list[dict]:
    """A rank handing the reduction an all-zero gradient while another rank's is not: its rows
    never reach the update (the gradient zeroed, detached or never computed on that rank).
    A real gradient is never exactly 0 in every element of every parameter (the output
    layer's bias alone would need a residual summing to exactly 0)."""
    names = list(arrays[ranks[0]].params)
    local = {r: [_param_rows(arrays[r], steps, n, LOCAL_GRAD) for n in names] for r in ranks}
    if not names or any(g is None for gs in local.values() for g in gs):
        return []
    zero = {r: np.logical_and.reduce([np.all(g == 0, axis=1) for g in local[r]]) for r in ranks}
    for i, s in enumerate(steps.tolist()):
        silent = [r for r in ranks if zero[r][i]]
        if silent and len(silent) < len(ranks):
            r = silent[0]
            return [finding("rank_gradient", f"step {s}, rank {r}: the gradient rank {r} hands the all-reduce is 0 in "
                            f"every element of every parameter, while rank {[q for q in ranks if q not in silent][0]}'s "
                            f"is not: rank {r}'s rows do not reach the update, which trains on "
                            f"{len(ranks) - len(silent)} of the {len(ranks)} shards", "let every rank's gradient "
                            "reach the optimizer unchanged (no masking or detaching by rank in the train step)",
                            step=s, rank=r)]
    return []


def _same(a, b) -> bool:
    return bool(np.all(np.abs(a - b) <= _RTOL * np.maximum(np.abs(a), np.abs(b)) + 1e-12))


def _divergence(arrays, ranks, steps) -> list[dict]:
    """The first step, parameter and rank where a rank's values differ from rank 0's."""
    best = None
    for name in arrays[ranks[0]].params:
        vals = {r: (_param_rows(arrays[r], steps, name, "before"), _param_rows(arrays[r], steps, name, "after"))
                for r in ranks}
        if any(v[0] is None or v[1] is None for v in vals.values()):
            continue
        for r in ranks[1:]:
            for phase, which in ((0, "before"), (1, "after")):
                diff = np.flatnonzero(~_equal_rows(vals[ranks[0]][phase], vals[r][phase]))
                if diff.size and (best is None or (diff[0], phase) < best[:2]):
                    best = (diff[0], phase, name, r, which, vals)
    if best is None:
        return []
    i, phase, name, r, which, vals = best
    step = int(steps[i])
    gap = float(np.max(np.abs(vals[ranks[0]][phase][i] - vals[r][phase][i])))
    if phase == 0 and i > 0:                  # changed between steps: who wrote outside the update?
        moved = [q for q in ranks if not _equal_rows(vals[q][1][i - 1:i], vals[q][0][i:i + 1]).all()]
        r = moved[0] if moved else r
        msg = (f"step {step}: {name} on rank {r} is not rank {ranks[0] if r != ranks[0] else ranks[1]}'s before "
               f"the step (up to {gap:.3g} apart): rank {r} changed it between steps {step - 1} and {step}, "
               "outside the all-reduced update, and the ranks now train different models")
        fix = f"change parameters on every rank alike (or only through the optimizer); look at what rank {r} runs " \
              f"after step {step - 1}"
    else:
        msg = (f"step {step}: {name} on rank {r} differs from rank {ranks[0]}'s {which} the step (up to {gap:.3g}): "
               "the ranks applied different updates")
        fix = "every rank must apply the same update: the same reduced gradient, optimizer and learning rate"
    return [finding("rank_divergence", msg, fix, param=name, step=step, rank=r, max_difference=gap)]


def _equal_rows(a, b) -> np.ndarray:
    return np.all((a == b) | (np.isnan(a) & np.isnan(b)), axis=1)


def _loss_note(arrays, ranks, steps) -> list[dict]:
    """A note: the loss one rank prints is its shard's; the global batch's differs."""
    def col(a, c):
        s = np.asarray(a.steps["step"], dtype=np.int64)
        return np.asarray(a.steps[c], dtype=np.float64)[np.searchsorted(s, steps)]
    sizes = np.stack([col(arrays[r], "batch_size") for r in ranks])
    losses = np.stack([col(arrays[r], "loss") for r in ranks])
    weights = np.where(np.isfinite(sizes).all(axis=0), sizes, 1.0)     # unknown: equal shards
    glob = (weights * losses).sum(axis=0) / weights.sum(axis=0)
    rel = np.abs(losses[0] - glob) / np.maximum(np.abs(glob), 1e-12)
    if not rel.size or not np.isfinite(rel).any() or np.nanmax(rel) < 1e-6:
        return []
    i = int(np.nanargmax(rel))
    shard = f"{int(sizes[0][i])} rows" if np.isfinite(sizes[:, i]).all() else "its rows"
    whole = f"{int(sizes[:, i].sum())} rows over" if np.isfinite(sizes[:, i]).all() else "the rows of"
    return [finding("rank_loss", f"the loss rank {ranks[0]} computes is its own shard's ({shard}), "
                    f"not the global batch's ({whole} {len(ranks)} ranks): at step "
                    f"{int(steps[i])} rank {ranks[0]} has {losses[0][i]:.6g}, the global batch {glob[i]:.6g} "
                    f"({100 * rel[i]:.3g}% apart); the global-batch loss is the mean of the ranks' losses, "
                    "as an epoch's loss is the mean of its batches'", "to log the global loss, all-reduce it: "
                    "dist.all_reduce(loss_copy); loss_copy /= world_size", step=int(steps[i]), rank=ranks[0],
                    failed=False, rank_loss=float(losses[0][i]), global_loss=float(glob[i]))]
