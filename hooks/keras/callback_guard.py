"""The guard of :class:`hooks.keras.TraceCallback`: tracing never breaks the user's ``fit``.

Why a mixin of its own: issue 11 asks that every hook entry point catch its own
failures, stop tracing with one warning naming the cause and let the script go on with
results bit-identical to an untraced run. ``trace_torch`` and ``NumpyTracer`` do it in
their entry points; for Keras the entry points are the callback's hook methods and the
train function it swaps in, so this class wraps exactly those around the recording
(:mod:`hooks.keras.callback`) and leaves the recording itself untouched.

On a failure: the warning (a RuntimeWarning, shown even where such warnings are
filtered, as the other hooks do), a note in the trace, Keras's own train function put
back, and the steps recorded before it kept. A failure inside the traced train step
comes while the step is being traced, before it reads a batch, so Keras's own function
then runs that very step. ``strict=True`` raises instead (for tests and debugging).
"""
from __future__ import annotations

from typing import Any

import warnings

__all__ = ["Guarded"]


class Guarded:
    """Every hook method of the callback runs through :meth:`_guard`; the traced train
    function falls back to Keras's own. ``failure`` says why tracing stopped (None while
    it runs)."""

    failure: str | None = None

    def __init__(self, *args: Any, strict: bool = False, **kwargs: Any) -> None:
        self._strict = bool(strict)
        self.failure = None
        super().__init__(*args, **kwargs)

    def _guard(self, name: str, *args: Any) -> Any:
        if self.failure is not None:
            return None
        try:
            return getattr(super(), name)(*args)
        except Exception as exc:  # the boundary with the user's fit: tracing stops, training goes on
            if self._strict:
                raise
            self._fail(name, exc)
            return None

    def _fail(self, where: str, exc: BaseException) -> None:
        self.failure = f"tracing stopped in {where}: {type(exc).__name__}: {exc}"
        msg = f"steptrace: {self.failure}"
        with warnings.catch_warnings():
            warnings.simplefilter("always", RuntimeWarning)
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
        for finish in (lambda: self._recorder.note(msg), self._restore):
            try:
                finish()
            except Exception:  # best effort: the failure above is reported, fit goes on
                pass

    def _install(self, model: Any) -> None:
        """The traced train function, guarded: if it fails (a layer or input pipeline the
        traced step cannot follow), Keras's own function runs the step instead."""
        super()._install(model)
        traced = model.train_function

        def guarded_train_function(iterator):
            try:
                return traced(iterator)
            except StopIteration:
                raise
            except Exception as exc:  # the boundary with the user's fit: Keras's own step runs
                if self._strict or self.failure is not None or model.train_function is traced:
                    raise
                self._fail("the traced train step", exc)
                return model.train_function(iterator)

        model.train_function = guarded_train_function

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Guarded :meth:`hooks.keras.callback.TraceRecording.on_train_begin`."""
        self._guard("on_train_begin", logs)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Guarded :meth:`hooks.keras.callback.TraceRecording.on_epoch_begin`."""
        self._guard("on_epoch_begin", epoch, logs)

    def _after_step(self, logs: Any, extras: Any, traced: bool) -> None:
        # the per-step hook of the traced train function (the recording has no
        # on_train_batch_end, which would stop Keras's asynchronous batch ends)
        self._guard("_after_step", logs, extras, traced)

    def _read_rings(self) -> None:
        try:
            super()._read_rings()
        except Exception as exc:  # the boundary with the user's fit: tracing stops, training goes on
            if self._strict:
                raise
            if self.failure is None:
                self._fail("reading the traced steps", exc)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Guarded :meth:`hooks.keras.callback.TraceRecording.on_epoch_end`."""
        self._guard("on_epoch_end", epoch, logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        """Always puts Keras's train function back and finishes the stream, also after a
        failure; its own failure is reported, never raised (unless ``strict``)."""
        try:
            super().on_train_end(logs)
        except Exception as exc:  # the boundary with the user's fit: report, never raise
            if self._strict:
                raise
            if self.failure is None:
                self._fail("on_train_end", exc)
