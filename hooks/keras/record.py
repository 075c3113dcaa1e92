"""One traced step into the recorder: from the rings the TensorFlow step wrote
(:mod:`hooks.keras.rings`), or from the values an eager step returned (torch backend).

Why apart from the callback: :class:`hooks.keras.trace_callback.TraceCallback` decides *when*
steps are recorded (every K steps, at an epoch's end, the end of ``fit``, a crash); these
functions turn one step's arrays into one :meth:`tracer.Recorder.record_step`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .data import as_numpy

__all__ = ["record_ring_step", "record_ring_block", "record_queue", "record_extras"]


def record_ring_step(cb: Any, epoch: int, batch: int, row: dict | None) -> None:
    """Record the step whose ring rows are ``row`` (NumPy views, copied by the recorder).
    ``row`` None: the step was written over before it was read (never expected; the step
    is counted and a note says so)."""
    rec = cb._recorder
    if row is None:
        rec.note(f"step of epoch {epoch}, batch {batch}: its values were lost (written over before they were read)")
        rec.record_step(epoch=epoch, batch=batch, params_before={}, params_after={})
        return
    kw = _step_kwargs(cb, epoch, batch, row)
    if cb._ring_summary:
        rec.record_step(params_before={}, params_after={}, **kw)
        return
    names = cb._names
    before = {n: row[f"before/{i}"] for i, n in enumerate(names)}
    after = {n: row[f"after/{i}"] for i, n in enumerate(names)}
    grads = {n: row[f"grad/{i}"] for i, n in enumerate(names)}
    state: dict = {}
    for j, (pname, slot, _) in enumerate(cb._seen.get("slots", ())):
        state.setdefault(pname, {})[slot] = row[f"slot/{j}"]
    rec.record_step(params_before=before, params_after=after, grads=grads, state=state, **kw)


def record_queue(cb: Any, queue: list, blocks: list) -> None:
    """Record the queued steps ((epoch, batch, traced) each, in order) from the ring blocks
    of their traced ones (:meth:`hooks.keras.rings.StepRings.read_blocks`): each run of
    traced steps within a block at once, an untraced step between them on its own."""
    run: list = []
    used = 0                  # rows of blocks[0] recorded so far

    def flush_run() -> None:
        nonlocal run, used
        count, block = blocks[0]
        part = None if block is None else {k: v[used:used + len(run)] for k, v in block.items()}
        record_ring_block(cb, run, part)
        used += len(run)
        run = []
        if used == count:
            blocks.pop(0)
            used = 0

    for epoch, batch, traced in queue:
        if traced:
            run.append((epoch, batch))
            if used + len(run) == blocks[0][0]:
                flush_run()
        else:
            if run:
                flush_run()
            cb._recorder.record_step(epoch=epoch, batch=batch, params_before={}, params_after={})


def record_ring_block(cb: Any, steps: list[tuple[int, int]], block: dict | None) -> None:
    """Record the consecutive steps ``steps`` ((epoch, batch) each) whose ring rows are
    ``block`` (views of ``len(steps)`` rows): under full capture with one
    :meth:`tracer.Recorder.record_steps` (one copy per parameter for all of them), else
    step by step."""
    if block is None or cb._ring_summary:
        for i, (epoch, batch) in enumerate(steps):
            record_ring_step(cb, epoch, batch, None if block is None else {k: v[i] for k, v in block.items()})
        return
    matched = _match_block(cb, block, len(steps)) or [None] * len(steps)
    kws = [_step_kwargs(cb, epoch, batch, {k: v[i] for k, v in block.items() if k in _PER_STEP}, matched[i])
           for i, (epoch, batch) in enumerate(steps)]
    names = cb._names
    state: dict = {}
    for j, (pname, slot, _) in enumerate(cb._seen.get("slots", ())):
        state.setdefault(pname, {})[slot] = block[f"slot/{j}"]
    cb._recorder.record_steps(kws, {n: block[f"before/{i}"] for i, n in enumerate(names)},
                              {n: block[f"after/{i}"] for i, n in enumerate(names)},
                              {n: block[f"grad/{i}"] for i, n in enumerate(names)}, state)


def _match_block(cb, block: dict, n: int) -> list | None:
    """The rows of the block's ``n`` batches, matched at once
    (:meth:`hooks.rows.RowMatcher.match_batches`), where every batch's rows are kept whole
    (else None: each step matches its own, with the notes it may leave, as before)."""
    if not cb._recorder.full or cb._matcher is None or "x" not in block or "y" not in block:
        return None
    kept = cb._rings.batch_rows
    sizes = block["scalars"][:n, cb._seen["scalars"].index("batch_size")]
    if kept is None or not np.isfinite(sizes).all() or (sizes > kept).any():
        return None
    return cb._matcher.match_batches([(block["x"][i][:b], block["y"][i][:b])
                                      for i, b in enumerate(sizes.astype(np.int64).tolist())])


#: the rings a step's keyword arguments other than its parameters are made of
_PER_STEP = frozenset({"scalars", "x", "y", "y_pred"})


def _step_kwargs(cb, epoch: int, batch: int, row: dict, matched=None) -> dict:
    """The keyword arguments of the step's :meth:`tracer.Recorder.record_step` other than
    its parameters, gradients and state: scalars, logs, and under full capture its rows and
    predictions (``matched``: its rows, when matched already)."""
    rec = cb._recorder
    sc = dict(zip(cb._seen["scalars"], row["scalars"].tolist()))
    logs = {k[4:]: v for k, v in sc.items() if k.startswith("log/")}
    bs = sc["batch_size"]
    bs = int(bs) if math.isfinite(bs) else None
    loss = None if math.isnan(sc["loss"]) else sc["loss"]
    extra = {"opt_step": int(sc["iterations"])}
    kw = {"epoch": epoch, "batch": batch, "loss": loss, "lr": sc["lr"], "batch_size": bs, "logs": logs,
          "extra": extra}
    if cb._ring_summary:
        for i, name in enumerate(cb._names):
            extra["value_norm_" + name] = sc.get(f"value/{i}")
            extra["update_norm_" + name] = sc.get(f"update/{i}")
            extra["grad_norm_" + name] = sc.get(f"grad/{i}")
        return kw
    kept = cb._rings.batch_rows          # None: the step wrote no samples
    fits = bs is not None and kept is not None and bs <= kept
    samples = {k: row[k][:bs] for k in ("x", "y", "y_pred") if k in row and fits}
    if kept is not None and bs is not None and not fits and not cb._warned_rows:
        cb._warned_rows = True
        rec.note(f"a batch of {bs} rows is larger than the {kept} rows kept per step: "
                 "its rows and predictions are not recorded")
    kw["rows"], kw["y_pred"] = _rows_and_predictions(cb, samples, matched)
    return kw


def _rows_and_predictions(cb, samples: dict, matched=None):
    """The batch's row positions (found by content, or ``matched`` already) and predictions,
    under full capture; after the first step, the step program."""
    rec = cb._recorder
    rows = y_pred = None
    if "x" in samples and "y" in samples and rec.full:
        rows = matched if matched is not None else cb._matcher.match(samples["x"], samples["y"])
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
