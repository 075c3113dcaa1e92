"""Summary capture: per-step value, update and gradient norms instead of the values.

Why apart: a summary step must cost little. The norms of every parameter are computed
on the parameters' device with batched ``torch._foreach_*`` calls, the update is taken
in place in the step's reused before-buffer (no fresh memory), and all the norms cross
to the host in one transfer (one ``tolist`` of one stacked tensor), not parameter by
parameter.
"""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .step import Step

__all__ = ["summary_norms"]


def summary_norms(st: Step, names: dict, columns: list | None = None) -> dict:
    """``value_norm_/update_norm_/grad_norm_<param>`` of a closed step (gradient norms were
    taken at the update). Overwrites the step's before-buffers with ``before - after``.
    No ``no_grad`` needed: detached values and the step's own buffers build no graph.
    ``columns``: each parameter's column names when known already (:mod:`.steady`)."""
    cols = {}
    grads_t = st.grads or {}
    params = st.params
    before = st.before
    ps = [p.detach() for p in params]
    bs = [before[id(p)] for p in params]
    gs = [grads_t.get(id(p)) for p in params]         # gradient norms already
    have = [g for g in gs if g is not None]
    norms = list(st.value_norms) if st.value_norms is not None else list(torch._foreach_norm(bs)) if bs else []
    if bs:
        torch._foreach_sub_(bs, ps)                    # before - after: the update, negated
        norms += list(torch._foreach_norm(bs))
    values = _to_host(norms + have)
    k = len(ps)
    g_iter = iter(values[2 * k:])
    if columns is None:
        columns = [_columns(names[id(p)]) for p in params]
    for i, c in enumerate(columns):
        cols[c[0]] = values[i]
        cols[c[1]] = values[k + i]
        cols[c[2]] = math.nan if gs[i] is None else next(g_iter)
    return cols


@functools.lru_cache(maxsize=4096)
def _columns(name: str) -> tuple[str, str, str]:
    """The three column names of a parameter (made once, not three strings per step)."""
    return "value_norm_" + name, "update_norm_" + name, "grad_norm_" + name


def _to_host(norms: list) -> list[float]:
    """0-d norm tensors as Python floats, in one transfer (widened exactly to float64)."""
    if not norms:
        return []
    device = norms[0].device
    if device.type == "cpu":                     # no transfer to save: a float each (exact widening)
        return [float(v) for v in norms]
    if all(v.dtype == norms[0].dtype and v.device == device for v in norms):
        return torch.stack(norms).double().tolist()
    return torch.stack([v.double().to(norms[0].device) for v in norms]).tolist()
