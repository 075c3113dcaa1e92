"""The Keras side of autotrace: ``Model.fit`` patched so every call carries a TraceCallback.

Why on the class: when ``keras.src.models.model`` loads, ``Model.fit`` is replaced on
the class, so every Sequential, functional or subclassed model inherits it. Each call is
one run. The callback added is ``TraceCallback``, which guards itself
(:mod:`hooks.keras.callback_guard`): if tracing fails, the failure is reported and the
user's ``fit`` goes on untraced. A ``fit`` that
already has the script's own ``TraceCallback`` keeps it (two would fight over the
train function), and its trace is the run's. Every ``fit`` runs inside
:func:`hooks._busy.framework_busy`, so the PyTorch hook ignores Keras's torch backend.
"""
from __future__ import annotations

from typing import Any, Callable

from .._busy import framework_busy
from ..patch import Patch, set_attr

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


def guarded_callback_class() -> type:
    """The callback ``steptrace run`` adds to each ``fit``: ``hooks.keras.TraceCallback``,
    which never breaks the user's ``fit`` (on any error in a hook it stops tracing with one
    warning, puts Keras's own train function back and lets training go on:
    :mod:`hooks.keras.callback_guard`)."""
    from hooks.keras import TraceCallback
    return TraceCallback
