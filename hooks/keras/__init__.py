"""Keras hook: trace every iteration of ``model.fit`` with a callback (:class:`TraceCallback`).

Usage::

    cb = hooks.keras.TraceCallback()
    model.fit(x, y, epochs=4, batch_size=4, callbacks=[cb])
    cb.trace.steps            # one row per iteration

Why it works on TensorFlow in compiled mode: a callback normally sees only the logs,
never the batch, the predictions or the gradients. For the duration of ``fit`` the
callback swaps ``model.train_function`` for one built by Keras's own ``_make_function``
around a step that *calls the model's own* ``train_step`` and additionally returns, from
inside the same ``tf.function``, the weights before and after, the predictions and loss
given to ``_compute_loss``, the gradients given to the optimizer, the optimizer slots, the
learning rate, the iteration count and the batch itself. Those calls are intercepted only
while TensorFlow traces the step (Python runs once), so each step costs no extra Python
call inside Keras and the arithmetic is the same graph as without the callback: weights
and logs are bit-identical. On the torch backend (``KERAS_BACKEND=torch``) Keras's train
function is a Python call per batch anyway; the traced one makes the same call with the
same spies and reads the rest around it, inside :func:`hooks._busy.framework_busy` so the
PyTorch hook does not record Keras's own ``backward``. No random numbers are drawn.

After the first step the callback writes the step program of the model and its compiled
loss (``meta["program"]``, :mod:`hooks.keras.program`): what the checker recomputes.

Batch rows are found by content (see :mod:`hooks.rows`); the training
arrays are read from ``fit``'s own frame (after its ``validation_split`` cut) or
given as ``data=(x, y)``. The original ``train_function`` is put back at the end
of ``fit``, when a step raises, and, should ``fit`` be aborted elsewhere, at the
next ``make_train_function`` call (the first thing every later ``fit`` does).

The modules: ``callback`` (:class:`TraceCallback`), ``step_tf`` / ``step_torch`` (the
traced step per backend) with ``spies``, ``meta`` (the neutral description of the compiled
model), ``data`` (the rows ``fit`` was given), ``program`` with ``builder``, ``layers``,
``losses``, ``regularizers`` (the step program). The package is named after the framework
it hooks; ``import keras`` inside it is absolute, so it never shadows Keras. It imports no
backend itself: TensorFlow or torch is loaded by Keras, and the step module of the active
one only when ``fit`` starts.
"""
from .trace_callback import TraceCallback

__all__ = ["TraceCallback"]
