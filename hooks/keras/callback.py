"""The Keras recording: :class:`TraceRecording` records every iteration of ``model.fit``
(guarded as :class:`hooks.keras.trace_callback.TraceCallback`).

Why a callback that swaps the train function: a callback normally sees only the logs.
For the duration of ``fit`` it swaps ``model.train_function`` for a traced one: on
TensorFlow built by Keras's own ``_make_function`` around
:func:`hooks.keras.step_tf.traced_step`, on torch the eager step of
:mod:`hooks.keras.step_torch`. The original is put back at the end of ``fit``, when a
step raises, and, should ``fit`` be aborted elsewhere, at the next
``make_train_function`` call (the first thing every later ``fit`` does). Each traced
step then becomes one :meth:`tracer.Recorder.record_step` (:mod:`hooks.keras.record`);
after the first, the step program (:mod:`hooks.keras.program`) goes into the trace's
``meta["program"]``.

Why no ``on_train_batch_end``: the traced train function records instead (no Python per
batch beyond a counter; on backends Keras deems thread-safe, torch but not TensorFlow in
Keras 3.15, Keras then keeps dispatching batch ends to a thread). On TensorFlow the step
writes into ring variables (:mod:`hooks.keras.rings`) read every K steps, at an epoch's
end, at the end of ``fit``, when a step raises and when the trace is asked for.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time

import keras

from tracer.arrays import column_names
from tracer.errors import TraceInputError
from tracer.recorder import DEFAULT_MAX_BYTES, Recorder
from tracer.store import store_factory
from tracer.trace import Trace

from .._busy import framework_busy
from ..patch import Patch, set_attr
from ..rows import RowMatcher
from . import meta as km
from . import mirrored
from .data import as_array, as_numpy, fit_frame, user_line
from .program import StepShapes, build_program
from .record import record_extras, record_queue
from .rings import StepRings, new_rings

_BACKENDS = ("tensorflow", "torch")

__all__ = ["TraceRecording"]


class TraceRecording(keras.callbacks.Callback):
    """The recording behind :class:`TraceCallback` (which adds the guard of
    :mod:`hooks.keras.callback_guard`): its hook methods raise what fails."""

    def __init__(self, every: int = 1, capture: str = "full", max_bytes: int | None = DEFAULT_MAX_BYTES,
                 data=None, store=None):
        super().__init__()
        self._opts = dict(every=every, capture=capture, max_bytes=max_bytes)
        self._recorder = Recorder({"framework": "keras"}, **self._opts)   # validates the options
        self._stores = store_factory(store)
        if data is not None:
            if not isinstance(data, (tuple, list)) or len(data) != 2:
                raise TraceInputError("data: expected a pair (x, y) of arrays with the training rows")
            x, y = as_array(data[0]), as_array(data[1])
            if x is None or y is None or x.shape[0] != y.shape[0]:
                raise TraceInputError("data: expected (x, y) arrays with the same number of rows")
            data = (x, y)
        self._data = data
        self._matcher: RowMatcher | None = None
        self._epoch = 0
        self._patch: Patch | None = None    # the traced train function, while installed
        self._warned_rows = False
        self._metrics_described = False
        self._version = 0            # bumped whenever the recording changes (trace cache key)
        self._cache = None
        self._backend = keras.backend.backend()
        self._seen: dict = {}
        self._program_built = False
        self._where: str | None = None
        self._mirror: mirrored.MirroredRecording | None = None     # under MirroredStrategy (issue 15)
        self._rings: StepRings | None = None    # TensorFlow on one device: the step's ring variables
        self._ring_summary, self._ring_rows, self._batch, self._last_read = False, 0, 0, 0.0
        self._queue: list = []       # (epoch, batch, traced) of the steps not yet read from the rings

    # --------------------------------------------------------------- result
    @property
    def recorder(self) -> Recorder:
        """The recorder of the ``fit`` call being traced (a new one per ``fit``)."""
        return self._recorder

    @property
    def replicas(self) -> mirrored.MirroredRecording | None:
        """Under ``tf.distribute.MirroredStrategy``: one trace per replica (``.traces()``,
        ``.save(run_dir)`` writes ``run_dir/rank=R/``); ``trace`` is then the job merged
        over the replicas. None on one device."""
        return self._mirror

    @property
    def traces(self) -> list[Trace]:
        """The one run this callback records, as a list (the :class:`tracer.source.TraceSource` contract)."""
        return [self.trace]

    @property
    def trace(self) -> Trace:
        """The recorded run so far (a :class:`tracer.Trace`); works after ``fit`` raised.

        Built once per change (the snapshot copies every buffer), then reused.
        """
        self._read_rings()
        cached = self._cache
        if cached is not None and cached[0] == self._version:
            return cached[1]
        trace = self._build_trace()
        self._cache = (self._version, trace)
        return trace

    def _build_trace(self):
        if self._mirror is not None:            # MirroredStrategy: the job merged over its replicas
            return self._mirror.merged()
        trace = self._recorder.trace()
        m = self._matcher
        if m is not None and m.growable and self._recorder.n_rows is None:
            seen = m.seen_data()
            if seen is not None:
                arrays = dataclasses.replace(trace.arrays(), inputs=seen[0], targets=seen[1])
                meta = dict(trace.meta)
                meta["data"] = {**meta.get("data", {}), "n_rows": int(seen[0].shape[0]),
                                "inputs": column_names("x", seen[0].shape[1]),
                                "targets": column_names("y", seen[1].shape[1])}
                trace = Trace(arrays=arrays, meta=meta)
        return trace

    # ------------------------------------------------------------ lifecycle
    def on_train_begin(self, logs: dict | None = None) -> None:
        """Describe the compiled model, find the training rows, swap in the traced train function."""
        model = self.model
        if model.optimizer is None:
            raise TraceInputError("model: expected a compiled model (call model.compile first)")
        if getattr(model, "steps_per_execution", 1) != 1:
            raise TraceInputError(
                "model: TraceCallback needs steps_per_execution=1 (Keras then calls back after every step); "
                f"got steps_per_execution={model.steps_per_execution}")
        backend = keras.backend.backend()
        if backend not in _BACKENDS:
            raise TraceInputError(f"model: TraceCallback supports Keras 3 on {' and '.join(_BACKENDS)}; got "
                                  f"backend {backend!r}")
        if backend == "torch" and model.jit_compile is True:
            raise TraceInputError("model: TraceCallback needs jit_compile=False on the torch backend (a "
                                  "torch.compile'd step cannot be traced without changing it)")
        self._backend = backend
        self._restore()
        self._version += 1
        self._recorder = rec = Recorder({"framework": "keras"}, **self._opts, store=self._stores)
        self._epoch = 0
        self._metrics_described = False
        notes: list[str] = []
        opt = model.optimizer
        self._vars = list(model.trainable_variables)
        self._names = km.param_names(model)
        loss = km.describe_loss(model, notes)
        optimizer = km.describe_optimizer(opt, notes)
        unmodelled = km.unmodelled_updates(opt, self._vars, self._names)
        if unmodelled:
            optimizer["unmodelled"] = unmodelled
        self._opt_name = optimizer["name"]
        self._seen = {}             # filled when the step is traced: slots (Keras builds the optimizer
        self._program_built = False  # then), sample weights, the number of add_loss terms
        meta = {"framework": "keras", "versions": km.versions(),
                "model": km.describe_model(model, self._names), "loss": loss, "optimizer": optimizer,
                "metrics": km.describe_metrics(model, loss)}
        self._setup_data(model, rec, meta, notes)
        if model.dtype_policy.name not in ("float32", "float64"):
            notes.append(f"dtype policy {model.dtype_policy.name}: values are recorded as Keras computed them")
        rec.meta.update(meta)
        for n in notes:
            rec.note(n)
        self._mirror = self._distributed(model, rec)
        self._install(model)

    def _setup_data(self, model, rec, meta, notes):
        frame = fit_frame(model)
        self._where = user_line(frame)
        fl = frame.f_locals if frame is not None else {}
        meta["keras_fit"] = {k: km.jsonable(fl.get(k)) for k in
                             ("batch_size", "epochs", "shuffle", "validation_split", "steps_per_epoch")
                             if k in fl}
        x = y = None
        self._xy = None
        if self._data is not None:
            x, y = self._data
        elif frame is not None:
            x, y = as_array(fl.get("x")), as_array(fl.get("y"))
            if fl.get("sample_weight") is not None or fl.get("class_weight") is not None:
                notes.append("sample_weight/class_weight given: the loss and gradients cannot be checked")
            if x is None or y is None:
                kind = type(fl.get("x")).__name__
                notes.append(f"fit got x of type {kind}: rows are numbered in order of first appearance "
                             "(pass TraceCallback(data=(x, y)) to number them by position)")
        else:
            notes.append("fit's arguments were not found: rows are numbered in order of first appearance")
        if x is not None and y is not None:
            if x.shape[0] != y.shape[0]:
                raise TraceInputError(f"data: x has {x.shape[0]} rows but y has {y.shape[0]}")
            rec.set_data(x, y)
            self._xy = (x, y)                      # a store keeps the rows on disk only
            self._matcher = RowMatcher(x, y)
        else:
            self._matcher = RowMatcher()

    def _install(self, model):
        """Swap in the traced train function (undone by :meth:`_restore`)."""
        original_fn = model.train_function
        if original_fn is None:
            model.make_train_function()
            original_fn = model.train_function
        self._rings, self._queue, self._batch = None, [], 0
        self._ring_summary = not self._recorder.full
        compiled, busy = self._traced_step(model)
        cb = self

        def traced_train_function(iterator):
            if not cb._recorder.should_record(cb._recorder.steps_seen + len(cb._queue) + 1):
                with busy("keras") if busy else contextlib.nullcontext():
                    logs = original_fn(iterator)
                cb._after_step(logs, None, traced=False)
                return logs
            try:
                out = compiled(iterator)
            except StopIteration:
                raise
            except BaseException:  # the user's step failed: restore the model, re-raise unchanged
                cb._restore()
                raise
            if cb._rings is not None:
                cb._after_step(out, None, traced=True)
                return out
            cb._after_step(out[0], out[1], traced=True)
            return out[0]

        def restoring_make_train_function(force=False):
            # reached only if a traced fit ended without on_train_end (an exception)
            cb._restore()
            return model.make_train_function(force=force)

        patch = Patch()
        patch.add(set_attr(model, "make_train_function", restoring_make_train_function))
        model.train_function = traced_train_function
        patch.add(lambda: setattr(model, "train_function", original_fn))
        self._patch = patch

    def _traced_step(self, model):
        """The traced step for the backend and strategy, and the guard its calls run under."""
        args = (model, self._vars, self._names, self._opt_name, self._seen)
        if self._backend == "torch":
            from .step_torch import traced_function     # the PyTorch hook must not take Keras's step
            return traced_function(*args, summary=self._ring_summary), framework_busy
        if self._mirror is not None:      # MirroredStrategy: per-replica values (issue 15)
            from .mirrored_step import mirrored_function
            return mirrored_function(*args, summary=self._ring_summary), None
        if mirrored.replica_count(model) > 1:     # several replicas, not modelled: Keras's reduced values
            from .step_tf_outputs import traced_function
            return traced_function(*args, summary=self._ring_summary), None
        from .step_tf import traced_function
        self._rings = new_rings(self._recorder, self._vars, getattr(self, "_xy", None), self._ring_summary)
        self._ring_rows = self._rings.size
        return traced_function(*args, self._rings, summary=self._ring_summary), None

    def _restore(self):
        """Read what the rings hold and put Keras's own train function back (idempotent)."""
        patch, self._patch = self._patch, None
        try:
            self._read_rings()
        finally:
            if patch is not None:
                patch.remove()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Count the epoch; repeated rows are handed out afresh."""
        self._epoch = epoch
        self._batch = 0
        if self._matcher is not None:
            self._matcher.new_epoch()

    def _after_step(self, logs, extras, traced: bool) -> None:
        """After each step of ``fit`` (in place of ``on_train_batch_end``): queue it for the
        rings' next read, or record it now (the torch backend, MirroredStrategy)."""
        batch, self._batch = self._batch, self._batch + 1
        self._version += 1
        if self._rings is not None:
            self._queue.append((self._epoch + 1, batch + 1, traced))
            store = self._recorder.store
            now = time.monotonic()
            # read before a flush falls due (by count or by time), so that a kill loses no more
            # than the steps since the last flush, as with a framework recorded step by step
            queued = len(self._queue)
            if (queued >= self._rings.size or store is not None and (
                    self._recorder.held_steps + queued >= store.flush_every
                    or store.flush_seconds is not None and now - self._last_read >= store.flush_seconds)):
                self._read_rings()
            return
        self._describe_metrics()
        rec = self._recorder
        if self._mirror is not None:
            self._record_replicas(extras if traced else None, batch, logs)
        elif not traced:
            rec.record_step(epoch=self._epoch + 1, batch=batch + 1, params_before={}, params_after={})
        else:
            record_extras(self, extras, self._epoch + 1, batch + 1, logs)

    def _read_rings(self) -> None:
        """Record the queued steps from the rings (one read of each ring for all of them)."""
        queue, self._queue = self._queue, []
        self._last_read = time.monotonic()
        if not queue:
            return
        self._version += 1
        self._describe_metrics()
        record_queue(self, queue, self._rings.read_blocks(sum(1 for q in queue if q[2])))

    def _describe_metrics(self) -> None:
        if not self._metrics_described:
            # Keras builds its compiled metrics while tracing the first step
            self._metrics_described = True
            self._recorder.meta["metrics"] = km.describe_metrics(self.model, self._recorder.meta.get("loss"))

    # ------------------------------------------------- tf.distribute (issue 15)
    def _distributed(self, model, rec) -> mirrored.MirroredRecording | None:
        """Under a ``tf.distribute`` strategy of several replicas: one recorder per replica
        (:mod:`hooks.keras.mirrored`), or, where that is not modelled, "cannot check" with the
        reason (the values Keras hands back are averages over the replicas, never checkable)."""
        if self._backend != "tensorflow" or mirrored.replica_count(model) < 2:
            return None
        reason = mirrored.unmodelled_reason(model, rec.meta, rec.full)
        if reason is not None:
            mirrored.cannot_check(rec, self._names, reason)
            self._program_built = True
            return None
        mirror = mirrored.MirroredRecording(model, rec, self._opts, self._matcher, data=getattr(self, "_xy", None))
        self._recorder = mirror.recorders[0]        # counts the steps (should_record) like one process
        return mirror

    def _record_replicas(self, ex, batch, logs):
        """One step per replica; the first also writes the step program into every replica's meta."""
        mirror = self._mirror
        if ex is None:
            if not self._recorder.should_record():
                mirror.skip(self._epoch + 1, batch + 1)
            return
        if not self._program_built and "y_pred" in ex:
            first = {k: ex[k][0] for k in ("x", "y") if k in ex}
            self._describe_step(first, as_numpy(ex["y_pred"][0]))
            mirror.set_meta("program", self._recorder.meta["program"])
            mirror.set_meta("metrics", self._recorder.meta.get("metrics"))
        mirror.record(ex, self._names, self._seen.get("slots", ()), self._epoch + 1, batch + 1, logs)

    def _describe_step(self, ex, y_pred):
        """After the first traced step: the step program, from the model and what the step showed."""
        self._program_built = True
        if "x" not in ex:
            program = {"format": 1, "unsupported": [{"op": "model inputs", "where": self._where,
                                                     "reason": "the model takes several inputs (or a dict)"}]}
        else:
            shapes = StepShapes(x=tuple(ex["x"].shape), y=tuple(ex["y"].shape), y_pred=tuple(y_pred.shape),
                                y_pred_dtype=str(y_pred.dtype))
            program = build_program(self.model, self._names, shapes, self._seen, self._where)
        self._recorder.meta["program"] = program

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Record the epoch's steps still in the rings, and what Keras logged at its end."""
        self._read_rings()
        self._version += 1
        self._recorder.record_epoch(epoch + 1, logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        """Put Keras's own train function back (and finish the run's stream, if any)."""
        self._version += 1
        self._restore()
        self._rings = None           # the ring variables (up to RING_BYTES) are freed with it
        if self._recorder.store is not None:
            self._recorder.close()
