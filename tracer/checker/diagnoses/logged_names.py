"""Logged values that are not what their name says.

A value logged as ``rmse`` is matched against the catalogue of computations
(:mod:`tracer.checker.catalogue`): when it does not follow what its name promises
(Keras's own computation: every row of the epoch so far pooled, the weights before
each update) but follows another computation at every logged step, the finding names
that computation, the first step where the two differ, both numbers and a one-line fix.
Keras custom metrics (``meta["metrics"]`` kind ``unsupported``) and the end-of-epoch
``val_*`` values are included; the latter only when the validation rows turn out to be
the training rows (``val_loss`` equals the loss of all training rows after the epoch),
since the trace holds no other rows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...display import num
from ...metric_names import KIND_OF_NAME
from .base import Diagnosis, finding

if TYPE_CHECKING:
    from .base import Context

__all__ = ["LoggedNames", "kind_of"]

RTOL, ATOL = 2e-5, 1e-6

_FIX = {
    "rowrmse": "take the square root after averaging over every row: keras.metrics.RootMeanSquaredError() (a "
               "function metric is averaged per row, so sqrt(mean(square(y - p), axis=-1)) is |y - p| on one output)",
    "batchmean": "accumulate totals and counts over the epoch (a stateful metric) instead of averaging the "
                 "per-batch values",
    "batchweighted": "accumulate the squared errors and the row count over the epoch, then take one square root",
    "batch": "log the running value over the epoch (a stateful metric), or call it the batch's value",
    "after": "compute it from the predictions made before the update, as the loss is (or call it a "
             "validation value)",
    "broadcast": "give the targets the predictions' shape (y.reshape(-1, 1)): a (n,) target against (n, 1) "
                 "predictions compares every prediction with every target",
    "acc05": "threshold the logits at 0 (keras.metrics.BinaryAccuracy(threshold=0.0)) or put the sigmoid in the model",
    "argmax1": "with one output column use binary accuracy (keras.metrics.BinaryAccuracy), not a categorical "
               "accuracy: the argmax of a single column is always 0",
}


def kind_of(name: str) -> str | None:
    """What a logged name promises (``rmse`` in ``my_rmse`` too), or None for other names."""
    key = name.lower().removeprefix("val_")
    if key in KIND_OF_NAME:
        return KIND_OF_NAME[key]
    for word, kind in (("root_mean_squared", "rmse"), ("rmse", "rmse"), ("mean_squared", "mse"), ("mse", "mse"),
                       ("mean_absolute", "mae"), ("mae", "mae"), ("acc", "accuracy"), ("loss", "loss")):
        if word in key:
            return kind
    return None


def _logits(ctx) -> bool:
    """Whether the recorded predictions are logits (the loss applies the sigmoid/softmax itself)."""
    spec = ctx.meta.get("loss") or {}
    if str(spec.get("name", "")).endswith("_logits") or spec.get("from_logits"):
        return True
    prog = ctx.program
    if prog is None or "prediction" not in prog.outputs:
        return False
    return any(n.op in _LOGIT_LOSSES and n.args and _same_values(prog, n.args[0], prog.outputs["prediction"])
               for n in prog.primitive_nodes)


#: losses that take logits: the predictions are logits only when they are such a loss's argument
#: (Keras's sigmoid + binary cross-entropy feeds the sigmoid's *input* to the loss: its
#: predictions are still probabilities)
_LOGIT_LOSSES = ("binary_cross_entropy_with_logits", "bce_logits_term", "cross_entropy")
_SHAPE_ONLY = ("reshape", "squeeze", "unsqueeze", "flatten", "identity", "view")


def _same_values(prog, name: str, prediction: str) -> bool:
    """Whether ``name`` is ``prediction`` or a reshaping of it (same values, other shape)."""
    by_name = {n.name: n for n in prog.primitive_nodes}
    seen = set()
    while name != prediction and name in by_name and name not in seen:
        seen.add(name)
        node = by_name[name]
        if node.op not in _SHAPE_ONLY or not node.args:
            return False
        name = node.args[0]
    return name == prediction


def _agree(a, b) -> np.ndarray:
    return np.abs(a - b) <= ATOL + RTOL * np.maximum(np.abs(a), np.abs(b))


def _fix_for(key) -> str:
    what, how, which = key
    if what.endswith("_bc"):
        return _FIX["broadcast"]
    if which == "after":
        return _FIX["after"]
    if what in ("rowrmse", "mae", "acc05", "argmax1", "argmax1c") and how == "pooled":
        what = "argmax1" if what == "argmax1c" else what
        return _FIX["rowrmse" if what == "mae" else what]
    return _FIX.get(how, _FIX.get(what, "compute it as its name says"))


class LoggedNames(Diagnosis):
    kind = "logged_name"

    def run(self, ctx: Context) -> list[dict]:
        from ..catalogue import promised, step_catalogue
        if not _has_logged(ctx):        # nothing logged to judge: the catalogue is not computed
            return []
        try:
            with np.errstate(all="ignore"):      # a diverged run's values overflow: said by non_finite
                cat = step_catalogue(ctx.trace, ctx.program, ctx.extras.get("loss_by_step") or None)
        except Exception:   # noqa: BLE001 - a diagnosis never stops the check
            return []
        if cat is None:
            return []
        steps, epochs, entries = cat
        out = []
        logits, m = _logits(ctx), _outputs(ctx)
        for name, logged in _logged_series(ctx, steps, epochs).items():
            want = promised(kind_of(name), logits, m) if kind_of(name) else None
            f = _judge(name, logged, steps, {e.key: e for e in entries}, want, "step")
            if f:
                out.append(f)
        with np.errstate(all="ignore"):
            out += _val_findings(ctx, steps, epochs, logits, m)
        return out


def _has_logged(ctx) -> bool:
    """Whether the run logged any value this diagnosis judges (per step or per epoch)."""
    cols = list(ctx.arrays.steps) + list(ctx.trace.epochs.columns)
    return any(c.startswith("logged_") for c in cols)


def _outputs(ctx) -> int:
    pred = ctx.arrays.sample_pred
    return 1 if pred is None else int(pred.shape[1])


def _logged_series(ctx, steps, epochs) -> dict:
    """Per logged name (not val_*): its value after each step, the epoch-end value at each
    epoch's last step where no per-step value was logged."""
    tab = ctx.arrays.steps
    all_steps = np.asarray(tab.get("step", []), dtype=np.int64)
    pos = np.searchsorted(all_steps, steps)
    out = {}
    names = {c[len("logged_"):] for c in tab if c.startswith("logged_")}
    ep = ctx.trace.epochs
    names |= {c[len("logged_"):] for c in ep.columns if c.startswith("logged_")}
    for name in sorted(n for n in names if not n.startswith("val_")):
        vals = np.full(len(steps), np.nan)
        if "logged_" + name in tab:
            vals = np.asarray(tab["logged_" + name], dtype=np.float64)[pos]
        if "logged_" + name in ep.columns:
            for e, v in zip(ep["epoch"], ep["logged_" + name]):
                last = np.flatnonzero(epochs == int(e))
                if last.size and np.isnan(vals[last[-1]]):
                    vals[last[-1]] = float(v)
        if np.isfinite(vals).any():
            out[name] = vals
    return out


def _judge(name, logged, where, entries, want, unit):
    """A finding when ``logged`` misses ``want`` but follows another entry at every point."""
    if want is None or want not in entries:
        return None
    ok = np.isfinite(logged)
    expected = entries[want].values
    if _agree(logged[ok], expected[ok]).all():
        return None
    for key, e in entries.items():
        if key == want or key[0] == "loss" and want[0] != "loss" or not _agree(logged[ok], e.values[ok]).all():
            continue
        first = int(np.flatnonzero(ok & ~_agree(logged, expected))[0])
        at = f"step {int(where[first])}" if unit == "step" else f"the end of the epoch (step {int(where[first])})"
        from ..catalogue import short
        said = short(want) if unit == "step" else entries[want].text
        msg = (f"logged '{name}' equals the {e.text}, not the {said} its name says: at {at} it logged "
               f"{num(logged[first], 7)}; the {said} of the same predictions is {num(expected[first], 7)}")
        return finding("logged_name", msg, _fix_for(key), param=name, step=int(where[first]),
                       logged=float(logged[first]),
                       expected=float(expected[first]), computation=" / ".join(key))
    return None


def _val_findings(ctx, steps, epochs, logits, m) -> list:
    """``val_*`` values, when the validation rows are the training rows (checked on val_loss)."""
    ep = ctx.trace.epochs
    if ctx.program is None or "logged_val_loss" not in ep.columns:
        return []
    from ..catalogue import promised, val_catalogue
    last = np.array([steps[np.flatnonzero(epochs == int(e))[-1]] if (epochs == int(e)).any() else -1
                     for e in ep["epoch"]])
    keep = last > 0
    if not keep.any():
        return []
    try:
        entries = {e.key: e for e in val_catalogue(ctx.trace, ctx.program, last[keep])}
    except Exception:   # noqa: BLE001
        return []
    loss = entries.get(("loss", "pooled", "after"))
    val_loss = ep["logged_val_loss"].to_numpy(float)[keep]
    if loss is None or not _agree(val_loss, loss.values).all():
        return []          # other validation rows: the trace cannot recompute them
    out = []
    for col in [c for c in ep.columns if c.startswith("logged_val_") and c != "logged_val_loss"]:
        name = col[len("logged_"):]
        kind = kind_of(name)
        want = promised(kind, logits, m) if kind else None
        want = None if want is None else (want[0], "pooled", "after")
        f = _judge(name, ep[col].to_numpy(float)[keep], last[keep], entries, want, "epoch")
        if f:
            out.append(f)
    return out
