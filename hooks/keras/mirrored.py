"""``model.fit`` under ``tf.distribute.MirroredStrategy``: one trace per replica (issue 15).

Why replicas as ranks: a MirroredStrategy step is a data-parallel job inside one process.
Each replica trains on its slice of the global batch, computes its own gradient, the
optimizer sums the replicas' gradients (Keras has divided each replica's mean loss by the
number of replicas, so the sum is the global batch's mean) and every replica applies the
same update to its copy of the weights. That is DDP's shape, so each replica is recorded
as a rank (``meta["distributed"]``, ``local_grad``) and :mod:`tracer.ranks` checks the job:
each replica on its own rows, the merged global batch, and the replicas against each other
(the reduced gradient is the mean of the local ones; the copies stay identical).

Without it the hook would record values Keras already averaged over the replicas (no
replica's rows, a gradient the update did not use) and every update check would fail: a
false alarm. So anything this module does not model (another strategy, summary capture,
clipping - applied per replica before the sum -, gradient accumulation, a loss that is not
mean-reduced) is marked "cannot check" with its reason instead (:func:`cannot_check`).

The graph side is :mod:`hooks.keras.mirrored_step`; :class:`MirroredRecording` turns each
step's per-replica values into one :class:`tracer.Recorder` step per replica.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import copy
import dataclasses

import numpy as np

from tracer.recorder import Recorder
from tracer.trace import Trace

from .data import as_numpy

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import keras

__all__ = ["replica_count", "unmodelled_reason", "cannot_check", "MirroredRecording"]

_CLIPPING = ("clipnorm", "clipvalue", "global_clipnorm")


def replica_count(model: keras.Model) -> int:
    """How many replicas train ``model`` in sync (1 outside a ``tf.distribute`` strategy)."""
    strategy = getattr(model, "distribute_strategy", None)
    try:
        return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)
    except (TypeError, ValueError):
        return 1


def unmodelled_reason(model: keras.Model, meta: dict, full: bool) -> str | None:
    """Why this distributed ``fit`` cannot be traced replica by replica (None: it can)."""
    import tensorflow as tf

    strategy = model.distribute_strategy
    n = replica_count(model)
    name = type(strategy).__name__
    if not isinstance(strategy, tf.distribute.MirroredStrategy):
        return f"tf.distribute.{name} over {n} replicas is not traced (only MirroredStrategy is)"
    if not full:
        return f"MirroredStrategy over {n} replicas is traced with capture='full' only"
    opt = meta.get("optimizer") or {}
    clip = [k for k in _CLIPPING if opt.get(k) is not None]
    if clip:
        return (f"MirroredStrategy with {clip[0]}: Keras clips each replica's gradient before the "
                "cross-replica sum, which the checker does not model")
    if opt.get("gradient_accumulation_steps"):
        return "MirroredStrategy with gradient_accumulation_steps is not modelled"
    reduction = (meta.get("loss") or {}).get("reduction")
    if reduction not in (None, "sum_over_batch_size", "mean"):
        return (f"MirroredStrategy with a loss reduced by {reduction!r}: Keras divides only a mean-reduced "
                "loss by the number of replicas, so the replicas' gradients are not modelled")
    return None


def cannot_check(rec: Recorder, names: list[str], reason: str) -> None:
    """Mark the run "cannot check" (program and every update) with ``reason``: what the
    hook recorded are values Keras averaged over the replicas, which no check may read."""
    why = (f"{reason}; the values recorded are Keras's averages over the replicas (no replica's rows, "
           "not the gradient the update used)")
    rec.note(why)
    rec.meta["program"] = {"format": 1, "unsupported": [{"op": "tf.distribute", "where": None,
                                                         "reason": why}]}
    opt = rec.meta.get("optimizer")
    if isinstance(opt, dict):
        opt["unmodelled"] = {**(opt.get("unmodelled") or {}), **{n: why for n in names}}


class MirroredRecording:
    """One :class:`Recorder` per replica of a MirroredStrategy ``fit`` (``recorders[r]``).

    Built from the callback's recorder after its meta and data are set: every replica gets
    a copy of that meta plus ``meta["distributed"]``, the same data, and the callback's
    row matcher (the replicas' slices are located in order, replica 0 first).
    """

    def __init__(self, model: keras.Model, base: Recorder, opts: dict, matcher: object,
                 data: tuple | None = None) -> None:
        n = replica_count(model)
        strategy = model.distribute_strategy
        devices = [str(d) for d in getattr(strategy.extended, "worker_devices", ())]
        self.world_size = n
        self.matcher = matcher
        self.recorders: list[Recorder] = []
        self.logs: dict[int, dict] = {}     # step -> what Keras logged there (the job's values)
        if data is None and base.n_rows is not None:      # the rows as the callback declared them
            arrays = base.trace().arrays()
            data = None if arrays.inputs is None else (arrays.inputs, arrays.targets)
        for r in range(n):
            meta = copy.deepcopy({k: v for k, v in base.meta.items() if k not in ("data", "params", "capture",
                                                                                   "notes")})
            meta["distributed"] = {"rank": r, "world_size": n, "backend": "tf.distribute.MirroredStrategy",
                                   "devices": devices, "local_grads": "local_grad", "replica": True,
                                   "logged": "global", "sampler": {"shuffle": False}}
            rec = Recorder(meta, **opts)
            if data is not None:
                rec.set_data(*data)
            for note in base.meta.get("notes") or []:
                rec.note(note)
            self.recorders.append(rec)

    def set_meta(self, key: str, value: object) -> None:
        """Write ``meta[key]`` into every replica's trace (the program, the metrics)."""
        for rec in self.recorders:
            rec.meta[key] = copy.deepcopy(value)

    def skip(self, epoch: int, batch: int) -> None:
        """Count a step that is not recorded, on every replica alike."""
        for rec in self.recorders:
            rec.record_step(epoch=epoch, batch=batch, params_before={}, params_after={})

    def record(self, ex: dict, names: list[str], slots: list, epoch: int, batch: int,
               logs: dict | None = None) -> None:
        """One step per replica from the per-replica extras of :mod:`hooks.keras.mirrored_step`;
        ``logs`` (Keras's, reduced over the replicas) are kept for the merged trace only."""
        self.logs[self.recorders[0].steps_seen + 1] = {
            k: float(np.asarray(as_numpy(v), dtype=np.float64)) for k, v in (logs or {}).items()
            if np.size(as_numpy(v)) == 1}
        for r, rec in enumerate(self.recorders):
            def at(values):
                return {n: as_numpy(v[r]) for n, v in zip(names, values)}   # values[variable][replica]
            state: dict = {}
            for (pname, slot, _), t in zip(slots, ex["slots"]):     # ex[key][variable][replica]
                state.setdefault(pname, {})[slot] = as_numpy(t[r])
            for n, g in at(ex["local_grads"]).items():
                state.setdefault(n, {})["local_grad"] = g
            rows = y_pred = None
            bs = None
            if "x" in ex:
                bx, by = as_numpy(ex["x"][r]), as_numpy(ex["y"][r])
                bs = bx.shape[0]
                rows = self.matcher.match(bx, by)
                if rows is None and not getattr(self, "_warned", False):
                    self._warned = True
                    for each in self.recorders:
                        each.note("some batch rows were not found in the training data: their rows are unknown")
            if "y_pred" in ex:
                y_pred = as_numpy(ex["y_pred"][r])
                bs = y_pred.shape[0]
            loss = float(as_numpy(ex["loss"][r])) if "loss" in ex else None
            rec.record_step(epoch=epoch, batch=batch, params_before=at(ex["before"]), params_after=at(ex["after"]),
                            grads=at(ex["grads"]), rows=rows, y_pred=y_pred, loss=loss,
                            lr=float(as_numpy(ex["lr"][r])), batch_size=bs, state=state,
                            extra={"opt_step": int(as_numpy(ex["iterations"][r]))})

    def traces(self) -> dict[int, Trace]:
        """``{replica: Trace}``: each replica's trace, as :mod:`tracer.ranks` reads ranks."""
        return {r: rec.trace() for r, rec in enumerate(self.recorders)}

    def merged(self) -> Trace:
        """The job as one run on global batches (:func:`tracer.ranks.merge.merge_ranks`), with
        what Keras logged as ``logged_<name>`` columns: Keras's logs are the job's, reduced over
        the replicas, so they belong to the merged trace, not to a replica's.

        When the merge left steps out (a partial batch split unequally over the replicas),
        Keras's running values cannot be followed through them: the logged values are then
        left out too (a note says so), rather than compared with an epoch missing a step."""
        from tracer.ranks.merge import merge_ranks
        trace = merge_ranks(self.traces())
        arrays = trace.arrays()
        steps = dict(arrays.steps)
        merged = np.asarray(steps.get("step", []), dtype=np.int64)
        recorded = np.asarray(self.recorders[0].trace().arrays().steps.get("step", []), dtype=np.int64)
        meta = dict(trace.meta)
        if merged.size < recorded.size:
            epochs = {k: v for k, v in arrays.epochs.items() if not str(k).startswith("logged_")}
            meta["notes"] = list(meta.get("notes") or []) + [
                "merged: Keras's logged values are not checked (steps were left out of the merged trace)"]
            return Trace(arrays=dataclasses.replace(arrays, epochs=epochs), meta=meta)
        for key in sorted({k for d in self.logs.values() for k in d}):
            steps["logged_" + key] = np.array([self.logs.get(int(s), {}).get(key, np.nan) for s in merged],
                                              dtype=np.float64)
        return Trace(arrays=dataclasses.replace(arrays, steps=steps), meta=meta)

    def save(self, run_dir: str | Path) -> dict:
        """Write ``run_dir/rank=R/`` for every replica (:func:`tracer.ranks.save_rank`)."""
        from tracer.ranks import save_rank
        return {r: save_rank(t, run_dir, r) for r, t in self.traces().items()}
