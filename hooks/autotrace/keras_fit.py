"""The Keras side of autotrace: ``Model.fit`` patched so every call carries a TraceCallback.

Why on the class: when ``keras.src.models.model`` loads, ``Model.fit`` is replaced on
the class, so every Sequential, functional or subclassed model inherits it. Each call is
one run. The callback added is guarded (:func:`guarded_callback_class`): if tracing
fails, the failure is reported and the user's ``fit`` goes on untraced. A ``fit`` that
already has the script's own ``TraceCallback`` keeps it (two would fight over the
train function), and its trace is the run's. Every ``fit`` runs inside
:func:`hooks._busy.framework_busy`, so the PyTorch hook ignores Keras's torch backend.
"""
from __future__ import annotations

from typing import Any, Callable

from .._busy import framework_busy
from ..patch import Patch, set_attr
from .runs import warn

__all__ = ["patch_fit", "add_callback", "users_trace_callback", "guarded_callback_class"]

_FIT_CALLBACKS = 5   # fit(x, y, batch_size, epochs, verbose, callbacks, ...): callbacks' position


def patch_fit(model_cls: type, traced_fit: Callable[[Callable, Any, tuple, dict], Any]) -> Patch:
    """Replace ``model_cls.fit`` by a wrapper calling ``traced_fit(original_fit, model, args,
    kwargs)``; the Patch puts the original back (unless someone replaced the wrapper since)."""
    original_fit = model_cls.fit

    def fit(self, *args, **kwargs):
        # Keras's own training, also when this run is not recorded: on Keras's torch
        # backend the PyTorch hook must not take it for a hand-written torch loop
        with framework_busy("keras"):
            return traced_fit(original_fit, self, args, kwargs)

    fit.__doc__ = getattr(original_fit, "__doc__", None)
    fit.__wrapped__ = original_fit
    fit.__name__ = "fit"
    fit.__qualname__ = getattr(original_fit, "__qualname__", "Model.fit")
    return set_attr(model_cls, "fit", fit, only_if_current=True)


def add_callback(args: tuple, kwargs: dict, cb: Any) -> tuple[tuple, dict]:
    """Append ``cb`` to fit's ``callbacks`` (6th positional or keyword) without
    mutating the user's list."""
    if len(args) > _FIT_CALLBACKS:
        args = list(args)
        args[_FIT_CALLBACKS] = _with(args[_FIT_CALLBACKS], cb)
        return tuple(args), kwargs
    kwargs = dict(kwargs)
    kwargs["callbacks"] = _with(kwargs.get("callbacks"), cb)
    return args, kwargs


def _with(callbacks, cb):
    if callbacks is None:
        return [cb]
    if isinstance(callbacks, (list, tuple)):
        return list(callbacks) + [cb]
    if hasattr(callbacks, "append"):         # a keras CallbackList
        callbacks.append(cb)
        return callbacks
    return [callbacks, cb]


def users_trace_callback(args: tuple, kwargs: dict) -> Any | None:
    """The script's own ``hooks.keras.TraceCallback`` in this fit call, if any."""
    callbacks = args[_FIT_CALLBACKS] if len(args) > _FIT_CALLBACKS else kwargs.get("callbacks")
    if not callbacks or not isinstance(callbacks, (list, tuple)):
        return None
    try:
        from hooks.keras import TraceCallback
    except ImportError:                      # Keras without TensorFlow: the hook cannot load
        return None
    for cb in callbacks:
        if isinstance(cb, TraceCallback):
            return cb
    return None


_GUARDED = None


class _Guarded:
    """The guard of :func:`guarded_callback_class`, kept apart from Keras so this module
    imports no framework: every hook method runs through :meth:`_guard`, and the traced
    train function falls back to Keras's own."""

    failure = None

    def _guard(self, name, *args):
        if self.failure is not None:
            return None
        try:
            return getattr(super(), name)(*args)
        except Exception as exc:  # the boundary with the user's fit: tracing stops, training goes on
            self._fail(name, exc)
            return None

    def _fail(self, where, exc):
        self.failure = f"tracing stopped in {where}: {type(exc).__name__}: {exc}"
        warn(self.failure)
        try:
            self._restore()
        except Exception:  # restoring is best effort here; the failure above is reported
            pass

    def _install(self, model):
        """The traced train function, guarded: if it fails (a layer or input pipeline the
        traced step cannot follow), Keras's own function runs the step instead. Such
        failures come while the step is being traced, before it read a batch, so the
        step is the one Keras would have run."""
        super()._install(model)
        traced = model.train_function

        def guarded_train_function(iterator):
            try:
                return traced(iterator)
            except StopIteration:
                raise
            except Exception as exc:  # the boundary with the user's fit: Keras's own step runs
                if self.failure is not None or model.train_function is traced:
                    raise
                self._fail("the traced train step", exc)
                return model.train_function(iterator)

        model.train_function = guarded_train_function

    def on_train_begin(self, logs=None):
        return self._guard("on_train_begin", logs)

    def on_epoch_begin(self, epoch, logs=None):
        return self._guard("on_epoch_begin", epoch, logs)

    def _after_step(self, logs, extras, traced):
        # the per-step hook of the traced train function (TraceCallback has no
        # on_train_batch_end, which would stop Keras's asynchronous batch ends)
        return self._guard("_after_step", logs, extras, traced)

    def _read_rings(self):
        try:
            return super()._read_rings()
        except Exception as exc:  # the boundary with the user's fit: tracing stops, training goes on
            if self.failure is None:
                self._fail("reading the traced steps", exc)
            return None

    def on_epoch_end(self, epoch, logs=None):
        return self._guard("on_epoch_end", epoch, logs)

    def on_train_end(self, logs=None):
        try:
            return super().on_train_end(logs)
        except Exception as exc:  # the boundary with the user's fit: report, never raise
            warn(f"tracing: on_train_end failed: {exc}")
            return None


def guarded_callback_class() -> type:
    """``TraceCallback`` that never breaks the user's ``fit``: on any error in a hook
    it stops tracing (restoring Keras's own train function), remembers why and lets
    training go on (:class:`_Guarded`)."""
    global _GUARDED
    if _GUARDED is None:
        from hooks.keras import TraceCallback
        _GUARDED = type("GuardedTraceCallback", (_Guarded, TraceCallback), {})
    return _GUARDED
