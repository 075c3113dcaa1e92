"""Continuity: a parameter's value after step k is its value before step k+1.

Anything that changes a parameter between two recorded steps happened outside the
recorded update: an extra hand update after ``optimizer.step()``, a
re-initialisation, a value tied elsewhere. The check is exact (the hooks read the
same memory twice), nan-aware, and only between consecutive recorded steps. The
evidence: the largest element change, the size of the whole change next to the
step's own update (an extra update of 0.2x the optimizer's is a hand update with
lr/5; a change far larger than any update is a re-initialisation), and the line that
wrote the parameter between the steps when a hook saw it (torch:
``meta["torch"]["between_steps"]``, else the first write outside the optimizer).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from .base import Diagnosis, finding

if TYPE_CHECKING:
    from .base import Context

__all__ = ["Continuity"]


class Continuity(Diagnosis):
    kind = "continuity"

    def run(self, ctx: Context) -> list[dict]:
        a = ctx.arrays
        ps = np.asarray(a.param_step)
        if ps.size < 2:
            return []
        pairs = np.flatnonzero(np.diff(ps) == 1)
        if not pairs.size:
            return []
        out = []
        tmeta = ctx.meta.get("torch") or {}
        writes, between = tmeta.get("update_source") or {}, tmeta.get("between_steps") or {}
        late = tmeta.get("late_update") or {}       # stepped by a second optimizer: cannot check
        for name, p in a.params.items():
            if name in late:
                continue
            broken = _broken(p, pairs)
            if not broken.any():
                continue
            first = int(pairs[broken][0])
            broken_rows = int(broken.sum())
            after_i, before_i = p.after[first], p.before[first + 1]
            diff = np.abs(after_i.astype(np.float64) - before_i.astype(np.float64))
            j = int(np.nanargmax(np.where(np.isfinite(diff), diff, -1)))
            k = int(ps[first])
            src = between.get(name) or writes.get(name) or {}
            when = f" after step {src['after_step']}" if "after_step" in src else ""
            by = f" The hook saw {name} written{when} at {src.get('file', '?')}:{src.get('line', '?')}: " \
                 f"`{src.get('code')}`." if src.get("code") else ""
            rel = diff[j] / max(abs(float(after_i[j])), 1e-300)
            ratio = _update_ratio(p, first, after_i, before_i)
            out.append(finding(self.kind, (
                f"{name} changed between step {k} and step {k + 1} outside the recorded update: element {j} was "
                f"{float(after_i[j]):.9g} after step {k} but {float(before_i[j]):.9g} before step {k + 1} "
                f"(a change of {diff[j]:.3g}, {rel:.3g} relative{ratio}; {broken_rows} of {pairs.size} step "
                f"boundaries affected).{by}"),
                (f"remove the write at {os.path.basename(str(src['file']))}:{src['line']} (or move it into the "
                 "update the optimizer makes)" if src.get("code") else
                 "make the optimizer (or your update line) the only place that writes parameters during training"),
                param=name, step=k + 1, change=float(diff[j]), boundaries=broken_rows,
                source=src or None))
        return out


def _broken(p, pairs) -> np.ndarray:
    """Per pair ``(k, k + 1)`` of ``pairs``: whether ``after[k]`` differs from ``before[k + 1]``.

    A recording that keeps one copy per step (after of step k *is* before of step k+1)
    needs no comparison; otherwise rows are compared a block at a time (no copy of the
    whole trace)."""
    n = p.before.shape[0]
    out = np.zeros(pairs.size, dtype=bool)
    k0, k1 = int(pairs[0]), int(pairs[-1])
    if k1 - k0 == pairs.size - 1 and k1 + 1 < n and _same_memory(p.after[k0:k1 + 1], p.before[k0 + 1:k1 + 2]):
        return out              # every pair at once (one question, not one per block of rows)
    per = max(1, (1 << 16) // max(1, p.before.shape[1]))
    for i in range(0, pairs.size, per):
        k = pairs[i:i + per]
        if k[-1] - k[0] == k.size - 1:          # consecutive: views, maybe the same memory
            after, before = p.after[k[0]:k[-1] + 1], p.before[k[0] + 1:min(n, k[-1] + 2)]
            if _same_memory(after, before):
                continue
        else:
            after, before = p.after[k], p.before[k + 1]
        same = (after == before) | (np.isnan(after) & np.isnan(before))
        out[i:i + per] = ~same.all(axis=1)
    return out


def _same_memory(x, y) -> bool:
    ix, iy = x.__array_interface__, y.__array_interface__
    return ix["data"][0] == iy["data"][0] and x.strides == y.strides and x.shape == y.shape and x.dtype == y.dtype


def _update_ratio(p, i, after, before) -> str:
    """`` ; the whole change is 0.2x the update of step k`` (norms), or empty when unknown."""
    upd = np.asarray(p.after[i], np.float64) - np.asarray(p.before[i], np.float64)
    chg = np.asarray(before, np.float64) - np.asarray(after, np.float64)
    nu, nc = float(np.linalg.norm(upd)), float(np.linalg.norm(chg))
    if not (np.isfinite(nu) and np.isfinite(nc)) or nu == 0:
        return ""
    return f"; the whole change has norm {nc:.3g}, {nc / nu:.3g}x the norm of that step's update"
