"""Trace a hand-written NumPy training loop without editing its body.

A NumPy loop has no framework to hook: parameters are plain variables that the loop
often *rebinds* (``weights = weights - lr * grad``) and gradients may never be stored.
So the tracer wraps the loop's iterator. Each time the ``for`` statement asks for the
next item, the tracer looks at the loop's own variables (by name, in the calling
frame): what the parameters are now is "after" for the iteration that just ended
and "before" for the next one; the predictions and loss the body left behind belong
to the iteration that just ended.

Full-batch gradient descent (scenario S0), two added lines::

    tracer = NumpyTracer(params=["weights", "biases"], predictions="outputs",
                         loss="loss", inputs=x, targets=targets, lr=0.02)
    for i in tracer.range(100):
        ...                                   # the loop body, unchanged
    trace = tracer.trace

Any model and loss written as plain NumPy functions (traced once into the step
program the checker evaluates, :mod:`hooks.numpy.functions`)::

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    def model(w, b, x):                       # parameters in `params` order, then the inputs
        return sigmoid(x @ w + b)

    def bce(p, y):
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    tracer = NumpyTracer(params=["w", "b"], predictions="p", loss="cost",
                         inputs=X, targets=y, lr=0.1, model=model, loss_fn=bce)

Mini-batches: draw the shuffled rows through the tracer, which records them::

    for epoch in range(10):
        for rows in tracer.batches(batch_size=100, shuffle=True, seed=0):
            xb, yb = x[rows], targets[rows]
            ...

For code where the values live elsewhere, call :meth:`NumpyTracer.record_step`. To
trace a script with no edit at all: ``steptrace run --numpy-params weights,biases
script.py`` (:mod:`hooks.autotrace.numpy_session`).
"""
from .numpy_tracer import NumpyTracer

__all__ = ["NumpyTracer"]
