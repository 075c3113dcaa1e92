"""K recorded steps at once: what K calls of :meth:`tracer.Recorder.record_step` store,
stored by array operations over the K rows.

Why: a hook that reads its steps in blocks (the Keras rings hand K steps per read,
:mod:`hooks.keras.rings`) paid, per step, one Python walk of the recorder's step path and,
per parameter, one row copy and one comparison of the step's ``before`` with the previous
``after``. Here each parameter's K ``after`` rows (and gradients, state slots) go into its
buffer in one copy, and the chain (every ``before`` equal, bit for bit, to the ``after``
before it) is checked with one comparison of the K befores against the previous afters.

The shortcut is taken only where its result is the per-step one by construction: full
capture of every step, every parameter already recorded (and, while chained, each ``before``
the previous ``after``), the same names,
slots and dtypes, no budget, flush or spill decision falling inside the K steps. Anything
else (the first steps of a run, a broken chain, a step near the budget) goes through
:meth:`~tracer.Recorder.record_step` once per step, as before.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import as_2d
from .buffers import scalar_value as _scalar
from .errors import TraceInputError
from .param_buffers import same_bytes

__all__ = ["record_steps"]

#: bytes counted per steps-table row on top of its values when checking the budget for K steps
ROW_MARGIN = 1024


def record_steps(rec: Any, steps: list[dict], before: dict, after: dict, grads: dict,
                 state: dict | None = None) -> list[int]:
    """Record K steps: ``steps`` holds, per step, the other keyword arguments of
    :meth:`~tracer.Recorder.record_step` (epoch, batch, rows, y_pred, loss, ...);
    ``before``/``after``/``grads`` map each parameter name to its K rows (an array whose
    first axis is the step), ``state`` each name to {slot: K rows}. Returns the global
    step numbers."""
    k = len(steps)
    if k == 0:
        return []
    if not _block_fits(rec, steps, before, after, grads, state or {}):
        return [rec.record_step(params_before={n: v[i] for n, v in before.items()},
                                params_after={n: v[i] for n, v in after.items()},
                                grads={n: v[i] for n, v in grads.items()},
                                state={n: {s: v[i] for s, v in d.items()} for n, d in (state or {}).items()},
                                **kw) for i, kw in enumerate(steps)]
    checked = [rec._check_step({}, {}, kw.get("rows"), kw.get("extra")) for kw in steps]
    first = rec.steps_seen + 1
    numbers = np.arange(first, first + k, dtype=np.int64)
    full = rec._full
    full.layout += 1              # rows added past the budget check's cached bound (:mod:`.budget_room`)
    full.param_step.extend(numbers)
    for name, buf in full.params.items():
        if buf.values is None:                 # unchained for good: both, as ParamBuffers.add
            buf.before.extend(before[name].reshape(k, -1))
            buf.after.extend(after[name].reshape(k, -1))
        else:
            buf.values.extend(after[name].reshape(k, -1))
        buf.grad.extend(grads[name].reshape(k, -1))
        for slot, sbuf in buf.slots.items():
            sbuf.extend(state[name][slot].reshape(k, -1))
        buf.n += k
    joined = _record_samples(full, numbers, checked, [kw.get("y_pred") for kw in steps])
    for i, kw in enumerate(steps):
        rec.steps_seen += 1
        rows = checked[i]
        _count(rec, kw, grads)
        if not joined:
            full._record_samples(int(numbers[i]), rows, kw.get("y_pred"))
        rec._steps.add_row(_steps_row(rec, kw, int(numbers[i]), rows))
        rec._last_epoch = int(kw["epoch"])
    if rec.store is not None and (rec.store.due(rec._steps.n) or rec._over_budget()):
        rec.flush()
    return numbers.tolist()


def _record_samples(full, numbers: np.ndarray, rows: list, preds: list) -> bool:
    """Every step's predictions, rows and step numbers with one copy into each sample
    buffer, where every step has predictions of one dtype (else False: the caller records
    them step by step). The same rows as :meth:`~tracer.capture.FullBuffers._record_samples`
    per step: predictions as rows, row -1 where a step's rows are unknown."""
    if any(p is None for p in preds):
        return False
    preds = [as_2d("y_pred", p) for p in preds]
    if len({p.dtype for p in preds}) != 1:
        return False
    ks = [p.shape[0] for p in preds]
    full.sample_pred.extend(np.concatenate(preds))
    full.sample_step.extend(np.repeat(numbers, ks))
    full.sample_row.extend(np.concatenate([np.full(k, -1, dtype=np.int64) if r is None else r
                                           for r, k in zip(rows, ks)]))
    return True


def _steps_row(rec, kw: dict, step: int, rows) -> dict:
    """The steps-table row :meth:`~tracer.Recorder.record_step` builds for the step."""
    bs = kw.get("batch_size")
    y_pred = kw.get("y_pred")
    if bs is None:
        bs = rows.size if rows is not None else (np.shape(y_pred)[0] if y_pred is not None and np.ndim(y_pred)
                                                 else np.nan)
    loss, lr = kw.get("loss"), kw.get("lr")
    row = {"epoch": int(kw["epoch"]), "batch": int(kw["batch"]), "step": step, "batch_size": bs,
           "loss": np.nan if loss is None else float(loss), "lr": np.nan if lr is None else float(lr)}
    for key, value in (kw.get("logs") or {}).items():
        row["logged_" + key] = _scalar(value)
    if kw.get("extra"):
        row.update({key: _scalar(v) for key, v in kw["extra"].items()})
    return row


def _count(rec, kw: dict, grads: dict) -> None:
    """What :meth:`~tracer.Recorder._count_given` counts for one step of the block."""
    given = rec._given
    given["loss"] += kw.get("loss") is not None
    given["y_pred"] += kw.get("y_pred") is not None
    for name in grads:
        given["grads"][name] = given["grads"].get(name, 0) + 1


def _block_fits(rec, steps, before, after, grads, state) -> bool:
    """Whether the K steps can be stored at once with the per-step result (module docstring)."""
    full = rec._full
    if (rec._closed or rec.capture != "full" or rec.every != 1 or full.sample_micro is not None
            or any("micro" in kw or "params_before" in kw for kw in steps)):
        return False
    names = list(full.params)
    if not names or list(before) != names or set(after) != set(names) or set(grads) != set(names):
        return False
    if list(full.known) != names or not _chains(full, before, after, grads, state, len(steps)):
        return False
    if any(kw.get("y_pred") is not None for kw in steps) and full.sample_pred is None:
        return False
    store = rec.store
    if store is not None and (store.flush_seconds is not None or store.due(rec._steps.n + len(steps) - 1)):
        return False
    return _valid(rec, steps) and _budget_fits(rec, steps, before, state)


def _valid(rec, steps) -> bool:
    """Whether no step would raise (the per-step path then raises at the right step,
    after storing the steps before it)."""
    for kw in steps:
        try:
            rows = rec._check_step({}, {}, kw.get("rows"), kw.get("extra"))
        except TraceInputError:
            return False
        y_pred = kw.get("y_pred")
        if y_pred is None:
            continue
        pred = np.asarray(y_pred)
        if (pred.ndim == 0 or not np.issubdtype(pred.dtype, np.number) or rows is not None
                and rows.size != pred.shape[0] or pred.size != pred.shape[0] * rec._full.sample_pred.width):
            return False
    return True


def _chains(full, before, after, grads, state, k: int) -> bool:
    """Every parameter's buffer holding steps, its K rows of its dtype and size, the same
    slots, and while it chains every ``before`` the previous ``after`` bit for bit (one
    comparison per parameter; a break is left to the step path, which unchains)."""
    for name, buf in full.params.items():
        b, a, g = before[name], after[name], grads[name]
        slots = state.get(name) or {}
        if buf.n == 0 or set(slots) != set(buf.slots):
            return False
        arrays = (b, a, g, *slots.values())
        if any(not isinstance(x, np.ndarray) or x.dtype != buf.dtype or x.shape[0] != k
               or x.size != k * buf.size or not x.flags.c_contiguous for x in arrays):
            return False
        if buf.values is None:                 # separate before/after buffers: nothing to compare
            continue
        if not same_bytes(b[0].reshape(-1), np.ascontiguousarray(buf.values.last())):
            return False
        if k > 1 and not same_bytes(b[1:], a[:-1]):
            return False
    return True


def _budget_fits(rec, steps, before, state) -> bool:
    """Whether the K steps, with a margin for their steps-table rows, stay within the
    budget: then no step among them would flush, spill or fall back to summary."""
    if rec.max_bytes is None:
        return True
    first = {n: v[0] for n, v in before.items()}
    first_state = {n: {s: v[0] for s, v in d.items()} for n, d in state.items()}
    total = len(steps) * (rec._full.growth(first, first_state, None, None) + ROW_MARGIN)
    for kw in steps:
        y_pred, rows = kw.get("y_pred"), kw.get("rows")
        n = int(np.size(y_pred)) if y_pred is not None else 0
        total += 16 * (np.shape(y_pred)[0] if n and np.ndim(y_pred) else int(np.size(rows) if rows is not None
                                                                                 else 0)) + 8 * n
        total += 64 * (len(kw.get("logs") or {}) + len(kw.get("extra") or {}))
    return rec.kept_bytes + rec.growth_factor * total <= rec.max_bytes
