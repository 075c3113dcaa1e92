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

Mini-batches: draw the shuffled rows through the tracer, which records them::

    for epoch in range(10):
        for rows in tracer.batches(batch_size=100, shuffle=True, seed=0):
            xb, yb = x[rows], targets[rows]
            ...

For code where the values live elsewhere, call :meth:`NumpyTracer.record_step`.
"""
from __future__ import annotations

import sys

import numpy as np

from tracer.errors import TraceInputError
from tracer.recorder import Recorder
from tracer.trace import Trace

_MISSING = object()


class NumpyTracer:
    """Records a NumPy training loop step by step (see the module docstring); a
    :class:`tracer.source.TraceSource`.

    Parameters
    ----------
    params:
        Names of the loop's parameter variables, weight first then bias for a linear
        model ``outputs = inputs @ weights + biases``.
    predictions, loss:
        Names of the variables holding the batch predictions and the loss (optional).
    grads:
        Optional mapping parameter name -> name of the variable holding its gradient.
    inputs, targets:
        The full training data (rows are samples); required for checking.
    lr:
        The learning rate, if known; otherwise the checker identifies it.
    loss_spec:
        The loss in neutral form (e.g. ``{"name": "squared_error", "divide_by": [2, "n"]}``);
        otherwise the checker identifies it from the recorded loss values.
    model:
        ``"linear"`` (default: ``inputs @ params[0] + params[1]``) or a neutral model dict.
    every, capture, max_bytes:
        Passed to :class:`tracer.Recorder`.
    """

    def __init__(self, params, predictions: str | None = None, loss: str | None = None, *,
                 grads: dict | None = None, inputs=None, targets=None, lr: float | None = None,
                 loss_spec: dict | None = None, model="linear", every: int = 1,
                 capture: str = "full", max_bytes: int | None = 2 * 1024**3):
        if isinstance(params, str):
            params = [params]
        if not params or not all(isinstance(p, str) and p.isidentifier() for p in params):
            raise TraceInputError(f"params: expected a list of variable names, got {params!r}")
        for arg, value in (("predictions", predictions), ("loss", loss)):
            if value is not None and not (isinstance(value, str) and value.isidentifier()):
                raise TraceInputError(f"{arg}: expected a variable name, got {value!r}")
        if grads is not None and (not isinstance(grads, dict) or not set(grads) <= set(params)):
            raise TraceInputError(f"grads: expected a dict param name -> gradient variable name, got {grads!r}")
        if lr is not None and not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
            raise TraceInputError(f"lr: expected a positive finite number, got {lr!r}")
        self.param_names = list(params)
        self.pred_name = predictions
        self.loss_name = loss
        self.grad_names = dict(grads or {})
        self.recorder = Recorder(meta=self._meta(model, loss_spec, lr), every=every, capture=capture,
                                 max_bytes=max_bytes)
        self._n_rows = None
        if inputs is not None or targets is not None:
            if inputs is None or targets is None:
                raise TraceInputError("inputs and targets: give both or neither")
            x, y = np.asarray(inputs), np.asarray(targets)
            if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
                raise TraceInputError("inputs/targets: expected finite numbers, found NaN or inf")
            self.recorder.set_data(x, y)
            self._n_rows = self.recorder.n_rows
        self._epoch = 0
        self._batch = 0
        self._open = None          # (epoch, batch, rows, params_before) of the running step

    # -------------------------------------------------------------- meta
    def _meta(self, model, loss_spec, lr) -> dict:
        if model == "linear":
            if len(self.param_names) not in (1, 2):
                raise TraceInputError(
                    f"model: 'linear' expects params [weight] or [weight, bias], got {self.param_names}")
            model = {"kind": "dense_stack", "layers": [{
                "type": "dense", "weight": self.param_names[0],
                "bias": self.param_names[1] if len(self.param_names) > 1 else None,
                "transpose": False, "activation": "linear"}]}
        elif model is not None and not isinstance(model, dict):
            raise TraceInputError(f"model: expected 'linear', None or a neutral model dict, got {model!r}")
        return {"framework": "numpy", "versions": {"numpy": np.__version__}, "model": model,
                "loss": loss_spec,
                "optimizer": None if lr is None else {"name": "sgd", "convention": "plain", "lr": float(lr)}}

    # --------------------------------------------------------- iteration
    def range(self, *args) -> "_LoopIterator":
        """Like ``range(...)``; each item is one full-batch iteration (one epoch)."""
        return _LoopIterator(self, iter(range(*args)), full_batch=True)

    def loop(self, iterable) -> "_LoopIterator":
        """Wrap any iterable; each item is one full-batch iteration (one epoch)."""
        return _LoopIterator(self, iter(iterable), full_batch=True)

    def batches(self, batch_size: int, *, shuffle: bool = True, seed=None, n_rows: int | None = None,
                drop_last: bool = False) -> "_LoopIterator":
        """One epoch of mini-batches: yields arrays of 0-based row positions.

        Shuffling uses a private ``numpy.random.default_rng(seed)`` stream (re-seeded
        from ``seed`` plus the epoch number), so the user's global random state is
        never touched and the rows are reproducible.
        """
        n = n_rows if n_rows is not None else self._n_rows
        if n is None:
            raise TraceInputError("n_rows: pass inputs/targets to NumpyTracer or n_rows= to batches()")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise TraceInputError(f"batch_size: expected a positive integer, got {batch_size!r}")
        epoch = self._epoch + 1
        if shuffle:
            rng = np.random.default_rng(None if seed is None else [int(seed), epoch])
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        stop = n - n % batch_size if drop_last else n
        chunks = [order[i:i + batch_size] for i in range(0, stop, batch_size)]
        return _LoopIterator(self, iter(chunks), full_batch=False)

    # ------------------------------------------------------------ frames
    def _lookup(self, frame, name):
        value = frame.f_locals.get(name, _MISSING)
        if value is _MISSING:
            value = frame.f_globals.get(name, _MISSING)
        return value

    def _read_params(self, frame) -> dict:
        values = {}
        for name in self.param_names:
            value = self._lookup(frame, name)
            if value is _MISSING:
                visible = sorted(k for k, v in frame.f_locals.items() if isinstance(v, np.ndarray))
                raise TraceInputError(
                    f"params: no variable named {name!r} in the loop's scope (arrays there: {visible})")
            values[name] = np.array(value, dtype=np.float64 if np.ndim(value) == 0 else None, copy=True)
        return values

    def _begin(self, rows, full_batch, before):
        if full_batch:
            self._epoch += 1
            self._batch = 1
        else:
            self._batch += 1
        self._open = (self._epoch, self._batch, rows, before)

    def _end(self, frame, after):
        """Close the running step; ``after`` is the parameter snapshot read at this boundary,
        which is also the next step's ``before`` (one read and one copy per boundary)."""
        if self._open is None:
            return
        epoch, batch, rows, before = self._open
        self._open = None
        y_pred = loss = None
        if self.pred_name is not None:
            y_pred = self._lookup(frame, self.pred_name)
            if y_pred is _MISSING:
                raise TraceInputError(f"predictions: no variable named {self.pred_name!r} in the loop's scope")
            y_pred = np.asarray(y_pred)
            expected = self._n_rows if rows is None else len(rows)
            if expected is not None and (y_pred.ndim == 0 or y_pred.shape[0] != expected):
                raise TraceInputError(
                    f"predictions: {self.pred_name!r} has shape {y_pred.shape}, expected {expected} rows "
                    f"(one per row of the batch)")
        if self.loss_name is not None:
            loss = self._lookup(frame, self.loss_name)
            if loss is _MISSING:
                raise TraceInputError(f"loss: no variable named {self.loss_name!r} in the loop's scope")
            if np.size(loss) != 1:
                raise TraceInputError(f"loss: {self.loss_name!r} should be one number, has shape {np.shape(loss)}")
        grads = None
        if self.grad_names:
            grads = {}
            for p, gname in self.grad_names.items():
                g = self._lookup(frame, gname)
                if g is _MISSING:
                    raise TraceInputError(f"grads: no variable named {gname!r} in the loop's scope")
                grads[p] = g
        if rows is None and self._n_rows is not None:
            rows = np.arange(self._n_rows)
        lr = self.recorder.meta["optimizer"]["lr"] if self.recorder.meta.get("optimizer") else None
        self.recorder.record_step(epoch=epoch, batch=batch, params_before=before, params_after=after,
                                  grads=grads, rows=rows, y_pred=y_pred, loss=loss, lr=lr)

    # ----------------------------------------------------- explicit call
    def record_step(self, *, params_before: dict, params_after: dict, epoch: int | None = None,
                    batch: int | None = None, **values) -> int:
        """Record one step explicitly (for loops whose values live elsewhere).

        Takes the keyword arguments of :meth:`tracer.Recorder.record_step`; ``epoch``
        and ``batch`` default to a full-batch count (one step per epoch).
        """
        if epoch is None:
            self._epoch += 1
            epoch, batch = self._epoch, 1
        return self.recorder.record_step(epoch=epoch, batch=batch or 1, params_before=params_before,
                                         params_after=params_after, **values)

    @property
    def trace(self) -> Trace:
        """The :class:`tracer.Trace` of every completed step so far."""
        return self.recorder.trace()

    @property
    def traces(self) -> list[Trace]:
        """The one run this tracer records, as a list (the :class:`tracer.source.TraceSource` contract)."""
        return [self.trace]


class _LoopIterator:
    """The iterator handed to the ``for`` statement; each ``next`` closes one step."""

    __slots__ = ("_tracer", "_items", "_full_batch")

    def __init__(self, tracer: NumpyTracer, items, full_batch: bool):
        self._tracer = tracer
        self._items = items
        self._full_batch = full_batch

    def __iter__(self):
        return self

    def __next__(self):
        frame = sys._getframe(1)
        tracer = self._tracer
        try:
            current = tracer._read_params(frame)
            tracer._end(frame, current)
            try:
                item = next(self._items)
            except StopIteration:
                if not self._full_batch:
                    tracer._batch = 0
                raise
            if not self._full_batch and tracer._batch == 0:
                tracer._epoch += 1
            tracer._begin(None if self._full_batch else item, self._full_batch, current)
            return item
        finally:
            del frame
