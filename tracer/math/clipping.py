"""Gradient clipping as the frameworks do it, between backward and the optimizer's rule.

Why: clipping changes the gradient an update uses without changing what backward
computed, so the checker must apply it, exactly as the framework does, to the
recorded (or recomputed) gradient before the optimizer's equations. Otherwise a
clipped run would read "update 0.3 x the expected one".

Transforms (a list, applied in order) come from the optimizer's Keras options
(``clipnorm``, ``global_clipnorm``, ``clipvalue``: Keras 3.15
``base_optimizer._clip_gradients``, applied before weight decay) or from what a hook
saw the loop call (``meta["grad_transform"]``: torch's ``clip_grad_norm_`` /
``clip_grad_value_``). Each is ``{"op": "clip_norm" | "clip_value", ...}``:

- ``clip_norm``: ``scope`` ``"param"`` (each tensor's own L2 norm, Keras ``clipnorm``)
  or ``"global"`` (all listed parameters together); ``convention`` ``"keras"``
  (``g * c / max(norm, c)``) or ``"torch"`` (``g * min(1, c / (norm + 1e-6))``, with
  ``norm_type``); ``params`` (default: all).
- ``clip_value``: ``g`` limited to ``[-value, value]``.

Norms are reductions over whole tensors (not elementwise), so they are NumPy, computed
per step in a first pass; applying a transform is then a per-step factor or a clamp.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import TraceInputError

__all__ = ["transforms_of", "Clipping"]

TORCH_CLIP_EPS = 1e-6


def transforms_of(opt_spec: dict | None, meta: dict) -> list[dict]:
    """The gradient transforms of a run: Keras optimizer options, then what the hook recorded."""
    out = []
    spec = opt_spec or {}
    if spec.get("convention") == "keras":
        if _positive(spec.get("clipnorm")):
            out.append({"op": "clip_norm", "scope": "param", "max_norm": float(spec["clipnorm"]),
                        "convention": "keras", "source": "optimizer clipnorm"})
        elif _positive(spec.get("global_clipnorm")):
            out.append({"op": "clip_norm", "scope": "global", "max_norm": float(spec["global_clipnorm"]),
                        "convention": "keras", "source": "optimizer global_clipnorm"})
        elif _positive(spec.get("clipvalue")):
            out.append({"op": "clip_value", "value": float(spec["clipvalue"]), "source": "optimizer clipvalue"})
    for t in meta.get("grad_transform") or []:
        if not isinstance(t, dict) or t.get("op") not in ("clip_norm", "clip_value"):
            raise TraceInputError(f"grad_transform: expected clip_norm or clip_value entries, got {t!r}")
        out.append(dict(t))
    return out


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


class Clipping:
    """The transforms planned for a trace: per-step factors from a first pass over the norms."""

    def __init__(self, transforms: list[dict], params: dict, n_steps: int, grad_of):
        """``grad_of(name, i0, i1)`` returns the float64 gradient rows ``i0:i1`` of a parameter."""
        self.transforms = transforms
        self.names = list(params)
        self.sizes = {n: p.before.shape[1] for n, p in params.items()}
        self.factors = []              # per transform: name -> (n_steps,) factor, or None for clip_value
        self.active = np.zeros(n_steps, dtype=bool)
        self.largest: list[float | None] = []   # per transform: the largest norm (or |g|) it saw
        for t in transforms:
            if t["op"] == "clip_value":
                self.factors.append(None)
                self.largest.append(None)       # filled as the values are clipped
                continue
            self.factors.append(self._norm_factors(t, n_steps, grad_of))

    def _norm_factors(self, t, n, grad_of):
        names = t.get("params") or self.names
        p = float(t.get("norm_type", 2.0))
        per = {}
        for name in names:
            acc = np.zeros(n)
            step = max(1, (4 << 20) // max(1, self.sizes[name]))
            for i0 in range(0, n, step):
                g = np.abs(grad_of(name, i0, min(n, i0 + step)))
                acc[i0:i0 + len(g)] = np.max(g, axis=1) if math.isinf(p) else np.sum(g ** p, axis=1)
            per[name] = acc
        c = float(t["max_norm"])
        out = {}
        if t.get("scope", "global") == "global":
            stacked = np.stack([per[k] for k in names])
            total = stacked.max(axis=0) if math.isinf(p) else stacked.sum(axis=0) ** (1 / p)
            f = self._factor(total, c, t.get("convention", "torch"))
            out = {k: f for k in names}
            self.largest.append(_nanmax(total))
        else:
            norms = []
            for k in names:
                norm = per[k] if math.isinf(p) else per[k] ** (1 / p)
                out[k] = self._factor(norm, c, t.get("convention", "keras"))
                norms.append(_nanmax(norm))
            self.largest.append(max((v for v in norms if v is not None), default=None))
        for f in out.values():
            self.active |= f < 1
        return out

    @staticmethod
    def _factor(norm, c, convention):
        with np.errstate(divide="ignore", invalid="ignore"):
            if convention == "keras":
                return np.where(norm > 0, c * np.minimum(1 / norm, 1 / c), 1.0)
            return np.minimum(1.0, c / (norm + TORCH_CLIP_EPS))

    def apply(self, name: str, i0: int, i1: int, g: np.ndarray) -> np.ndarray:
        """The gradient rows ``i0:i1`` of ``name`` after every transform."""
        for i, (t, f) in enumerate(zip(self.transforms, self.factors)):
            names = t.get("params") or self.names
            if name not in names:
                continue
            if f is None:
                v = float(t["value"])
                top = _nanmax(np.abs(g))
                if top is not None:
                    self.largest[i] = max(top, self.largest[i] or 0.0)
                clipped = np.clip(g, -v, v)
                self.active[i0:i1] |= (clipped != g).any(axis=1)
                g = clipped
            else:
                g = g * f[name][i0:i1, None]
        return g


def _nanmax(a) -> float | None:
    """The largest finite value of ``a`` (None when it has none)."""
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else None
