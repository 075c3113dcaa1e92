"""The public Keras callback: the recording of :mod:`hooks.keras.callback` behind the
guard of :mod:`hooks.keras.callback_guard`.

Why a module of its own: the class is only the composition of the two (the guard first,
so every hook method and the swapped train function pass through it), and its docstring
is the user's reference for the callback's options.
"""
from __future__ import annotations

from .callback import TraceRecording
from .callback_guard import Guarded

__all__ = ["TraceCallback"]


class TraceCallback(Guarded, TraceRecording):
    """Record every iteration of ``model.fit`` into a :class:`tracer.Trace` (``.trace``);
    a :class:`tracer.source.TraceSource`.

    Parameters
    ----------
    every:
        Record one step in ``every``; the others run Keras's own compiled step.
    capture:
        ``"full"`` (weights, gradients, predictions, rows) or ``"summary"`` (scalars).
    max_bytes:
        Memory budget; past it the recorder keeps only per-step summaries.
    data:
        ``(x, y)``: the training rows, when ``fit`` gets something other than
        arrays (e.g. a ``tf.data.Dataset``); batch rows are located in them.
        Without it, array inputs are read from ``fit`` itself, and for other
        inputs rows are numbered in order of first appearance.
    store:
        A :class:`tracer.store.StreamStore` (or a function returning one per ``fit``) the
        completed steps stream to, so a killed ``fit`` keeps them.
    strict:
        Raise tracing errors into ``fit`` instead of stopping tracing with one warning
        (a RuntimeWarning naming the cause, also kept as a note) and letting ``fit`` go on
        untraced, bit-identical to a ``fit`` without the callback (as ``trace_torch`` and
        ``NumpyTracer``). Bad arguments to the constructor always raise.
    """

