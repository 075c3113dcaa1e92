"""One traced step into the recorder: from the rings the TensorFlow step wrote
(:mod:`hooks.keras.rings`), or from the values an eager step returned (torch backend).

Why apart from the callback: :class:`hooks.keras.trace_callback.TraceCallback` decides *when*
steps are recorded (every K steps, at an epoch's end, the end of ``fit``, a crash); these
functions turn one step's arrays into one :meth:`tracer.Recorder.record_step`.
"""
from __future__ import annotations

import math
from typing import Any

from .data import as_numpy

__all__ = ["record_ring_step", "record_extras"]


def record_ring_step(cb: Any, epoch: int, batch: int, row: dict | None) -> None:
    """Record the step whose ring rows are ``row`` (NumPy views, copied by the recorder).
    ``row`` None: the step was written over before it was read (never expected; the step
    is counted and a note says so)."""
    rec = cb._recorder
    if row is None:
        rec.note(f"step of epoch {epoch}, batch {batch}: its values were lost (written over before they were read)")
        rec.record_step(epoch=epoch, batch=batch, params_before={}, params_after={})
        return
    sc = dict(zip(cb._seen["scalars"], row["scalars"].tolist()))
    logs = {k[4:]: v for k, v in sc.items() if k.startswith("log/")}
    bs = sc["batch_size"]
    bs = int(bs) if math.isfinite(bs) else None
    loss = None if math.isnan(sc["loss"]) else sc["loss"]
    extra = {"opt_step": int(sc["iterations"])}
    names = cb._names
    if cb._ring_summary:
        for i, name in enumerate(names):
            extra["value_norm_" + name] = sc.get(f"value/{i}")
            extra["update_norm_" + name] = sc.get(f"update/{i}")
            extra["grad_norm_" + name] = sc.get(f"grad/{i}")
        rec.record_step(epoch=epoch, batch=batch, params_before={}, params_after={}, loss=loss, lr=sc["lr"],
                        batch_size=bs, logs=logs, extra=extra)
        return
    before = {n: row[f"before/{i}"] for i, n in enumerate(names)}
    after = {n: row[f"after/{i}"] for i, n in enumerate(names)}
    grads = {n: row[f"grad/{i}"] for i, n in enumerate(names)}
    state: dict = {}
    for j, (pname, slot, _) in enumerate(cb._seen.get("slots", ())):
        state.setdefault(pname, {})[slot] = row[f"slot/{j}"]
    kept = cb._rings.batch_rows          # None: the step wrote no samples
    fits = bs is not None and kept is not None and bs <= kept
    samples = {k: row[k][:bs] for k in ("x", "y", "y_pred") if k in row and fits}
    if kept is not None and bs is not None and not fits and not cb._warned_rows:
        cb._warned_rows = True
        rec.note(f"a batch of {bs} rows is larger than the {kept} rows kept per step: "
                 "its rows and predictions are not recorded")
    rows, y_pred = _rows_and_predictions(cb, samples)
    rec.record_step(epoch=epoch, batch=batch, params_before=before, params_after=after, grads=grads, rows=rows,
                    y_pred=y_pred, loss=loss, lr=sc["lr"], batch_size=bs, state=state, logs=logs, extra=extra)


def _rows_and_predictions(cb, samples: dict):
    """The batch's row positions (found by content) and predictions, under full capture;
    after the first step, the step program."""
    rec = cb._recorder
    rows = y_pred = None
    if "x" in samples and "y" in samples and rec.full:
        rows = cb._matcher.match(samples["x"], samples["y"])
        if rows is None and not cb._warned_rows:
            cb._warned_rows = True
            rec.note("some batch rows were not found in the training data: their rows are unknown")
    if "y_pred" in samples and rec.full:
        y_pred = samples["y_pred"]
        if not cb._program_built:
            cb._describe_step(samples, y_pred)
    return rows, y_pred


def record_extras(cb: Any, ex: dict, epoch: int, batch: int, logs: dict | None) -> None:
    """Record a step from the values the (eager, torch backend) traced step returned."""
    rec = cb._recorder
    if "norms" in ex:
        _record_summary(cb, ex, epoch, batch, logs)
        return
    names = cb._names
    before = {n: as_numpy(t) for n, t in zip(names, ex["before"])}
    after = {n: as_numpy(t) for n, t in zip(names, ex["after"])}
    grads = {n: as_numpy(t) for n, t in zip(names, ex["grads"])}
    state: dict = {}
    for (pname, slot, _), t in zip(cb._seen.get("slots", ()), ex["slots"]):
        state.setdefault(pname, {})[slot] = as_numpy(t)
    samples = {k: as_numpy(ex[k]) for k in ("x", "y", "y_pred") if k in ex}
    bs = None
    if "x" in samples:
        bs = samples["x"].shape[0]
    if "y_pred" in samples and rec.full:
        bs = samples["y_pred"].shape[0]
    rows, y_pred = _rows_and_predictions(cb, samples)
    loss = float(as_numpy(ex["loss"])) if "loss" in ex else None
    rec.record_step(epoch=epoch, batch=batch, params_before=before, params_after=after,
                    grads=grads, rows=rows, y_pred=y_pred, loss=loss, lr=float(as_numpy(ex["lr"])),
                    batch_size=bs, state=state, logs=logs,
                    extra={"opt_step": int(as_numpy(ex["iterations"]))})


def _record_summary(cb, ex, epoch, batch, logs):
    """Summary capture: the norms came out of the step as columns of the steps table."""
    extra = {"opt_step": int(as_numpy(ex["iterations"]))}
    for name, (value, update, grad) in zip(cb._names, as_numpy(ex["norms"]).reshape(-1, 3).tolist()):
        extra["value_norm_" + name] = value
        extra["update_norm_" + name] = update
        extra["grad_norm_" + name] = grad
    bs = int(as_numpy(ex["batch_size"])) if "batch_size" in ex else None
    loss = float(as_numpy(ex["loss"])) if "loss" in ex else None
    cb._recorder.record_step(epoch=epoch, batch=batch, params_before={}, params_after={},
                             loss=loss, lr=float(as_numpy(ex["lr"])), batch_size=bs, logs=logs, extra=extra)
