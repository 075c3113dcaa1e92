"""Summary capture: per-step value, update and gradient norms instead of the values.

Why apart: a summary step must cost little, so the norms of every parameter are
computed in one batch of ``torch._foreach_norm`` calls and converted to Python
numbers once, not parameter by parameter.
"""
from __future__ import annotations

import math

import torch

__all__ = ["summary_norms"]


def summary_norms(st, names: dict) -> dict:
    """``value_norm_/update_norm_/grad_norm_<param>`` of a closed step (gradient norms were
    taken at the update)."""
    cols = {}
    grads_t = st.grads or {}
    with torch.no_grad():
        ps = [p.detach() for p in st.params]
        bs = [st.before[id(p)] for p in st.params]
        gs = [grads_t.get(id(p)) for p in st.params]      # gradient norms already
        have = [g for g in gs if g is not None]
        norms = list(torch._foreach_norm(bs)) + list(torch._foreach_norm(torch._foreach_sub(ps, bs))) + have
        values = torch.stack([v.double() for v in norms]).tolist() if len(norms) > 0 else []
        k = len(ps)
        g_iter = iter(values[2 * k:])
        for i, p in enumerate(st.params):
            n = names[id(p)]
            cols["value_norm_" + n] = values[i]
            cols["update_norm_" + n] = values[k + i]
            cols["grad_norm_" + n] = math.nan if gs[i] is None else next(g_iter)
    return cols
