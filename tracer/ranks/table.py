"""The per-rank table a workbook shows: one row per (rank, step), side by side.

Why a table of its own: the merged trace shows the job as one run; a person chasing a
rank-level bug wants to see the ranks next to each other at each step - which rows each
drew, its own loss, the size of its local and of its reduced gradient, and whether its
parameters still equal rank 0's. Plain pandas, so the workbook writer
(:mod:`reports._xl_ranks`) only lays it out.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..checker.rank_view import LOCAL_GRAD

__all__ = ["rank_table", "findings_table"]

ROWS_SHOWN = 64      # rows listed per (rank, step) cell; more are cut with "..."


def rank_table(traces: dict) -> pd.DataFrame:
    """``rank, step, epoch, batch, batch_size, loss, sampler_epoch, rows, local_grad_norm,
    grad_norm, same_as_rank0`` for ``{rank: trace}``."""
    ranks = sorted(traces)
    ref = traces[ranks[0]].arrays() if ranks else None
    parts = [_one_rank(r, traces[r].arrays(), ref) for r in ranks]
    if not parts:
        return pd.DataFrame(columns=["rank", "step"])
    return pd.concat(parts, ignore_index=True).sort_values(["step", "rank"], kind="stable", ignore_index=True)


def _one_rank(rank: int, a, ref) -> pd.DataFrame:
    steps = np.asarray(a.steps.get("step", []), dtype=np.int64)
    cols = {"rank": np.full(steps.size, rank), "step": steps}
    for c in ("epoch", "batch", "batch_size", "loss", "sampler_epoch"):
        if c in a.steps:
            cols[c] = np.asarray(a.steps[c])
    order = np.argsort(a.sample_step, kind="stable")
    st, rw = a.sample_step[order], a.sample_row[order]
    lo, hi = np.searchsorted(st, steps), np.searchsorted(st, steps, side="right")
    cols["rows"] = [" ".join(map(str, rw[i:min(j, i + ROWS_SHOWN)].tolist())) + (" ..." if j - i > ROWS_SHOWN else "")
                    for i, j in zip(lo, hi)]
    pos = np.searchsorted(a.param_step, steps)
    have = (pos < a.param_step.size) & (a.param_step[np.minimum(pos, max(a.param_step.size - 1, 0))] == steps) \
        if a.param_step.size else np.zeros(steps.size, bool)
    for label, pick in (("local_grad_norm", lambda p: p.slots.get(LOCAL_GRAD)), ("grad_norm", lambda p: p.grad)):
        cols[label] = _norm(a, pick, pos, have)
    cols["same_as_rank0"] = _same(a, ref, steps)
    return pd.DataFrame(cols)


def _norm(a, pick, pos, have) -> np.ndarray:
    total = np.zeros(pos.size)
    found = False
    for p in a.params.values():
        v = pick(p)
        if v is None:
            continue
        found = True
        total[have] += np.square(np.asarray(v, dtype=np.float64)[pos[have]]).sum(axis=1)
    out = np.sqrt(total)
    out[~have] = np.nan
    return out if found else np.full(pos.size, np.nan)


def _same(a, ref, steps) -> list:
    """Whether every parameter after each step equals rank 0's, bit for bit (None: not recorded)."""
    out = []
    for s in steps.tolist():
        i = np.flatnonzero(a.param_step == s)
        j = np.flatnonzero(ref.param_step == s)
        if not i.size or not j.size:
            out.append(None)
            continue
        out.append(all(np.array_equal(p.after[i[0]], ref.params[n].after[j[0]], equal_nan=True)
                       for n, p in a.params.items() if n in ref.params))
    return out


def findings_table(findings: list[dict]) -> pd.DataFrame:
    """The cross-rank findings as a table: kind, step, rank, parameter, failed, message, fix."""
    return pd.DataFrame([{"kind": f["kind"], "step": f.get("step"), "rank": f.get("rank"), "param": f.get("param"),
                          "failed": bool(f.get("failed", True)), "message": f["message"], "fix": f.get("fix")}
                         for f in findings], columns=["kind", "step", "rank", "param", "failed", "message", "fix"])
