"""How a loop without an optimizer updates: the line that writes each parameter, and the rule.

Why: a hand-written update (``w -= lr * w.grad``, S1/S3/S4) leaves no optimizer to
describe, so the checker is told what the recorded numbers and the source show:
``meta["update_rule"]`` holds, per parameter, the plain-SGD factor that explains every
recorded step (or why none does), and ``meta["torch"]["update_source"]`` the line that
wrote it - which is how "divides by the batch size again" rests on evidence.
"""
from __future__ import annotations

import ast
import linecache
import math
from types import FrameType

import numpy as np
import torch

from tracer.trace import Trace


def source_of(frame: FrameType, batch_size: int | None) -> dict:
    """The line that wrote a parameter, and whether it divides by the batch size."""
    try:
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    except Exception:  # pragma: no cover
        return {}
    out = {"file": frame.f_code.co_filename, "line": frame.f_lineno, "code": line}
    if batch_size:
        try:
            tree = ast.parse(line)
        except SyntaxError:
            return out
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                r = node.right
                value = None
                if isinstance(r, ast.Constant) and isinstance(r.value, (int, float)):
                    value, label = r.value, repr(r.value)
                elif isinstance(r, ast.Name):
                    v = frame.f_locals.get(r.id, frame.f_globals.get(r.id))
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        value, label = v, r.id
                if value is not None and value == batch_size:
                    out["divides_by_batch"] = label
                    out["batch_size"] = int(batch_size)
    return out


def identify_rules(trace: Trace, names: dict[int, str], params: list[torch.Tensor],
                   frozen: list[str]) -> dict[str, dict]:
    """Per parameter, the plain-SGD factor ``-update / grad`` that explains every recorded step."""
    rules = {}
    arrays = trace.arrays()
    steps = arrays.steps
    for p in params:
        n = names[id(p)]
        if n in frozen:
            rules[n] = {"kind": "frozen", "text": f"{n} does not require grad: it is never updated"}
            continue
        if n in arrays.params:
            rec = arrays.params[n]
            cols = slice(0, min(rec.before.shape[1], 2048))   # a sample of elements is plenty
            up = rec.after[:, cols].astype(np.float64) - rec.before[:, cols].astype(np.float64)
            g = rec.grad[:, cols].astype(np.float64)
            ok = np.isfinite(g) & np.isfinite(up)
            up, g = up[ok], g[ok]
        elif "update_norm_" + n in steps:
            up = np.asarray(steps["update_norm_" + n], dtype=np.float64)
            g = -np.asarray(steps["grad_norm_" + n], dtype=np.float64)
            ok = np.isfinite(g) & np.isfinite(up)
            up, g = up[ok], g[ok]
        else:
            continue
        gg = _dot(g, g)
        if not gg:
            rules[n] = {"kind": "unknown", "text": f"{n}: no gradient recorded"}
            continue
        if not np.any(up):
            rules[n] = {"kind": "none", "lr": 0.0, "text": f"{n} is never updated"}
            continue
        lr = -_dot(up, g) / gg
        rest = up + lr * g
        resid = math.sqrt(_dot(rest, rest)) / max(math.sqrt(_dot(up, up)), 1e-300)
        nice = float(f"{lr:.4g}")
        if abs(nice - lr) <= 1e-3 * abs(lr):
            lr = nice
        if resid < 1e-2:
            rules[n] = {"kind": "sgd", "lr": lr, "text": f"{n} -= {lr:g} * grad"}
        else:
            rules[n] = {"kind": "unknown", "lr": lr,
                        "text": f"{n}: updates are not a fixed multiple of the gradient"}
    return rules


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` for 1-D float64 arrays without BLAS. Why: NumPy's ``dot`` and ``linalg.norm``
    hand a long vector to OpenBLAS, whose helper threads then spin for tens of milliseconds
    (44 ms of CPU for one dot of 82k values, measured) - on the user's cores, at the end
    of every traced loop, for a product that takes 0.2 ms."""
    return float(np.einsum("i,i->", a, b))
