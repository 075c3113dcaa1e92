"""Continuity: a parameter's value after step k is its value before step k+1.

Anything that changes a parameter between two recorded steps happened outside the
recorded update: an extra hand update after ``optimizer.step()``, a
re-initialisation, a value tied elsewhere. The check is exact (the hooks read the
same memory twice), nan-aware, and only between consecutive recorded steps.
"""
from __future__ import annotations

import numpy as np

from .base import Diagnosis, finding

__all__ = ["Continuity"]


class Continuity(Diagnosis):
    kind = "continuity"

    def run(self, ctx):
        a = ctx.arrays
        ps = np.asarray(a.param_step)
        if ps.size < 2:
            return []
        pairs = np.flatnonzero(np.diff(ps) == 1)
        if not pairs.size:
            return []
        out = []
        writes = (ctx.meta.get("torch") or {}).get("update_source") or {}
        for name, p in a.params.items():
            after, before = p.after[pairs], p.before[pairs + 1]
            same = (after == before) | (np.isnan(after) & np.isnan(before))
            broken = ~same.all(axis=1)
            if not broken.any():
                continue
            i = int(np.flatnonzero(broken)[0])
            diff = np.abs(after[i].astype(np.float64) - before[i].astype(np.float64))
            j = int(np.nanargmax(np.where(np.isfinite(diff), diff, -1)))
            k = int(ps[pairs[i]])
            src = writes.get(name) or {}
            by = f" A write was seen at {src.get('file', '?')}:{src.get('line', '?')}: `{src.get('code')}`." \
                if src.get("code") else ""
            rel = diff[j] / max(abs(float(after[i][j])), 1e-300)
            out.append(finding(self.kind, (
                f"{name} changed between step {k} and step {k + 1} outside the recorded update: element {j} was "
                f"{float(after[i][j]):.9g} after step {k} but {float(before[i][j]):.9g} before step {k + 1} "
                f"(a change of {diff[j]:.3g}, {rel:.3g} relative; {int(broken.sum())} of {pairs.size} step "
                f"boundaries affected).{by}"),
                "make the optimizer (or your update line) the only place that writes parameters during training",
                param=name, step=k + 1, change=float(diff[j]), boundaries=int(broken.sum())))
        return out
