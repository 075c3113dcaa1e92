""":class:`NumpyTracer`: records a hand-written NumPy training loop step by step.

See :mod:`hooks.numpy` for how it reads a loop that rebinds its parameters. This
module holds the tracer itself: what it is told (names of the loop's variables, the
data, the model and loss), how a step is opened and closed from the loop's frame, and
the ``meta`` it gives the recorder. Loops are driven from :mod:`hooks.numpy.loop`
(the iterator a ``for`` statement asks for items) or, in an unedited script, from
:mod:`hooks.autotrace.numpy_session` (a trace function at the loop's header line).
"""
from __future__ import annotations

import warnings
from types import FrameType
from typing import Iterable

import numpy as np

from tracer.errors import TraceInputError
from tracer.recorder import Recorder
from tracer.trace import Trace

from .functions import Functions, build_program, linear
from .loop import LoopIterator, batch_order

__all__ = ["NumpyTracer", "read_params", "lookup", "MISSING", "UNKNOWN_ROWS"]

MISSING = object()
#: ``rows`` of a step whose batch rows are not known (recorded without rows and predictions)
UNKNOWN_ROWS = "unknown"


def lookup(frame: FrameType, name: str) -> object:
    """The value of variable ``name`` in ``frame`` (locals, then globals), or ``MISSING``."""
    value = frame.f_locals.get(name, MISSING)
    if value is MISSING:
        value = frame.f_globals.get(name, MISSING)
    return value


def read_params(frame: FrameType, names: list[str]) -> dict:
    """Copies of the variables ``names`` as ``frame`` holds them now (Python floats as 0-d
    float64 arrays): reading never changes the user's values, and a later in-place
    update cannot change what was read."""
    values = {}
    for name in names:
        value = lookup(frame, name)
        if value is MISSING:
            visible = sorted(k for k, v in frame.f_locals.items() if isinstance(v, np.ndarray))
            raise TraceInputError(
                f"params: no variable named {name!r} in the loop's scope (arrays there: {visible})")
        values[name] = np.array(value, dtype=np.float64 if np.ndim(value) == 0 else None, copy=True)
    return values


class NumpyTracer:
    """Records a NumPy training loop (see :mod:`hooks.numpy`); a :class:`tracer.source.TraceSource`.

    Parameters
    ----------
    params:
        Names of the loop's parameter variables (arrays, or Python floats such as
        ``b = 0.0``, which are parameters of shape ``()``). For the default linear
        model: weight first, then bias.
    predictions, loss:
        Names of the variables holding the batch predictions and the loss (optional).
    grads:
        Optional mapping parameter name -> name of the variable holding its gradient.
    logs:
        Optional mapping logged name -> name of the variable holding what the loop
        reports after each batch, e.g. ``{"loss": "running_loss"}`` for a running mean
        of the epoch's batch losses as Keras logs it; recorded as ``logged_<name>`` and
        checked against the Keras definition.
    inputs, targets:
        The full training data (rows are samples); required for checking.
    lr:
        The learning rate of plain SGD, if known; otherwise the checker identifies it.
    loss_spec:
        The loss in neutral form (e.g. ``{"name": "squared_error", "divide_by": [2, "n"]}``);
        otherwise the checker identifies it from the recorded loss values.
    model:
        ``"linear"`` (default: ``inputs @ params[0] + params[1]``), a neutral model dict,
        None (the checker guesses), or a plain Python function of the parameters and
        the inputs written with NumPy. The function is called by name when its
        parameter names are the tracer's ``params`` plus exactly one other name (the
        inputs: ``def model(x, w, b)``), else positionally with the parameters in
        ``params`` order, then the inputs (``def model(w, b, x)``). It receives one
        batch: ``inputs[rows]`` in the shape you gave. It is traced once, on the
        first step's batch after the loop ran it, into the step program the checker
        evaluates; it should compute, not print or draw random numbers (its output is
        discarded, a random draw is reported as unsupported).
    loss_fn:
        A plain Python loss function ``loss_fn(y_pred, y)`` written with NumPy
        (e.g. ``-np.mean(y*np.log(p) + (1-y)*np.log(1-p))``), traced the same way; the
        checker then recomputes exactly that loss instead of identifying one. (The
        keyword ``loss`` names the loop's loss *variable*.)
    every, capture, max_bytes:
        Passed to :class:`tracer.Recorder`.
    store:
        A :class:`tracer.store.StreamStore` (or a function returning one) the completed
        steps stream to, so a killed loop keeps them; reading ``.trace`` finishes the stream.
    strict:
        Raise tracing errors inside the loop instead of warning once and letting the loop
        go on untraced (as ``trace_torch(strict=True)``).
    """

    def __init__(self, params, predictions: str | None = None, loss: str | None = None, *,
                 grads: dict | None = None, logs: dict | None = None, inputs=None, targets=None,
                 lr: float | None = None,
                 loss_spec: dict | None = None, model="linear", loss_fn=None, every: int = 1,
                 capture: str = "full", max_bytes: int | None = 2 * 1024**3, store=None, strict: bool = False):
        if isinstance(params, str):
            params = [params]
        _check_names(params, predictions, loss, grads, lr)
        if logs is not None and not (isinstance(logs, dict) and all(
                isinstance(k, str) and isinstance(v, str) and v.isidentifier() for k, v in logs.items())):
            raise TraceInputError(f"logs: expected a dict logged name -> variable name, got {logs!r}")
        if loss_fn is not None and not callable(loss_fn):
            raise TraceInputError(f"loss_fn: expected a function loss_fn(y_pred, y), got {loss_fn!r}")
        self.param_names = list(params)
        self.pred_name = predictions
        self.loss_name = loss
        self.grad_names = dict(grads or {})
        self.log_names = dict(logs or {})
        self._functions = self._functions_of(model, loss_fn)
        self.recorder = Recorder(meta=self._meta(model, loss_spec, lr), every=every, capture=capture,
                                 max_bytes=max_bytes, store=store)
        self._n_rows = None
        self._x = self._y = None
        if inputs is not None or targets is not None:
            if inputs is None or targets is None:
                raise TraceInputError("inputs and targets: give both or neither")
            x, y = np.asarray(inputs), np.asarray(targets)
            if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
                raise TraceInputError("inputs/targets: expected finite numbers, found NaN or inf")
            self.recorder.set_data(x, y)
            self._n_rows = self.recorder.n_rows
            if self._functions is not None:
                self._x, self._y = x, y
        self._epoch = 0
        self._batch = 0
        self._open = None          # (epoch, batch, rows, params_before) of the running step
        self._first = None         # (params_before, rows) of the first step: what functions are traced on
        self._sizes: set[int] = set()
        self._program = None       # (sizes it was built for, program)
        self.failed: str | None = None   # why tracing stopped, once it has (the loop goes on)
        self._strict = bool(strict)

    def stop(self, exc: Exception) -> None:
        """Tracing failed inside the loop: stop it with one warning naming the cause and a
        note in the trace; the user's loop goes on untouched (see :mod:`hooks.numpy.loop`)."""
        if self._strict:
            raise exc
        if self.failed is not None:
            return
        self.failed = f"{type(exc).__name__}: {exc}"
        msg = f"steptrace: tracing stopped at step {self.recorder.steps_seen + 1}: {self.failed}"
        with warnings.catch_warnings():
            warnings.simplefilter("always", RuntimeWarning)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
        self.recorder.note(msg)
        self._open = None

    # -------------------------------------------------------------- meta
    def _functions_of(self, model, loss_fn) -> Functions | None:
        """What to trace into a program: a model function, or a loss function (any model)."""
        if callable(model):
            return Functions(model, loss_fn, self.pred_name, self.loss_name)
        if loss_fn is None:
            return None
        if model != "linear":
            raise TraceInputError("loss_fn: give it with model='linear' or a model function")
        fn = linear if len(self.param_names) == 2 else None
        if fn is None:
            raise TraceInputError(f"model: 'linear' expects params [weight, bias] with a loss_fn, got "
                                  f"{self.param_names}")
        return Functions(fn, loss_fn, self.pred_name, self.loss_name)

    def _meta(self, model, loss_spec, lr) -> dict:
        if callable(model):
            model = {"kind": "function", "name": getattr(model, "__qualname__", repr(model))}
        elif model == "linear":
            if len(self.param_names) not in (1, 2):
                raise TraceInputError(
                    f"model: 'linear' expects params [weight] or [weight, bias], got {self.param_names}")
            model = {"kind": "dense_stack", "layers": [{
                "type": "dense", "weight": self.param_names[0],
                "bias": self.param_names[1] if len(self.param_names) > 1 else None,
                "transpose": False, "activation": "linear"}]}
        elif model is not None and not isinstance(model, dict):
            raise TraceInputError(f"model: expected 'linear', None, a neutral model dict or a function, "
                                  f"got {model!r}")
        return {"framework": "numpy", "versions": {"numpy": np.__version__}, "model": model,
                "loss": loss_spec,
                "optimizer": None if lr is None else {"name": "sgd", "convention": "plain", "lr": float(lr)}}

    # --------------------------------------------------------- iteration
    def range(self, *args: int) -> LoopIterator:
        """Like ``range(...)``; each item is one full-batch iteration (one epoch)."""
        return LoopIterator(self, iter(range(*args)), full_batch=True)

    def loop(self, iterable: Iterable) -> LoopIterator:
        """Wrap any iterable; each item is one full-batch iteration (one epoch)."""
        return LoopIterator(self, iter(iterable), full_batch=True)

    def batches(self, batch_size: int, *, shuffle: bool = True, seed: int | None = None, n_rows: int | None = None,
                drop_last: bool = False) -> LoopIterator:
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
        chunks = batch_order(n, int(batch_size), shuffle, seed, self._epoch + 1, drop_last)
        return LoopIterator(self, iter(chunks), full_batch=False)

    # ------------------------------------------------------------ frames
    def read_params(self, frame: FrameType) -> dict:
        """Copies of the parameters as the loop's frame holds them now (see :func:`read_params`)."""
        return read_params(frame, self.param_names)

    def open_step(self, epoch: int, batch: int, rows: np.ndarray, before: dict) -> None:
        """Start a step: its epoch and batch (from 1), rows (None: all; ``UNKNOWN_ROWS``:
        not known), parameters before it."""
        self._epoch, self._batch = epoch, batch
        self._open = (epoch, batch, rows, before)
        if isinstance(rows, str):
            return
        size = self._n_rows if rows is None else len(rows)
        if size is not None:
            self._sizes.add(int(size))
        if self._first is None and self._functions is not None:
            self._first = (before, None if rows is None else np.array(rows, copy=True))

    @property
    def epoch(self) -> int:
        """The epoch of the running (or last) step, from 1; 0 before the first."""
        return self._epoch

    @property
    def batch(self) -> int:
        """The batch of the running (or last) step within its epoch; 0 between epochs."""
        return self._batch

    def end_epoch(self) -> None:
        """The epoch's batches are done: the next mini-batch opens a new epoch."""
        self._batch = 0

    def discard_step(self) -> None:
        """Forget the running step (a loop that ended before its body ran)."""
        self._open = None

    def close_step(self, frame: FrameType, after: dict) -> None:
        """Close the running step; ``after`` is the parameter snapshot read at this boundary,
        which is also the next step's ``before`` (one read and one copy per boundary)."""
        if self._open is None:
            return
        epoch, batch, rows, before = self._open
        self._open = None
        known = not isinstance(rows, str)
        rows = rows if known else None
        y_pred = self._predictions(frame, rows) if known else None
        loss = self._loss(frame)
        grads = None
        if self.grad_names:
            grads = {}
            for p, gname in self.grad_names.items():
                g = lookup(frame, gname)
                if g is MISSING:
                    raise TraceInputError(f"grads: no variable named {gname!r} in the loop's scope")
                grads[p] = g
        if rows is None and self._n_rows is not None and known:
            rows = np.arange(self._n_rows)
        logs = {}
        for name, var in self.log_names.items():
            value = lookup(frame, var)
            if value is not MISSING and np.size(value) == 1:
                logs[name] = float(np.asarray(value).reshape(-1)[0])
        lr = self.recorder.meta["optimizer"]["lr"] if self.recorder.meta.get("optimizer") else None
        self.recorder.record_step(epoch=epoch, batch=batch, params_before=before, params_after=after,
                                  grads=grads, rows=rows, y_pred=y_pred, loss=loss, lr=lr, logs=logs or None)

    def _predictions(self, frame, rows):
        if self.pred_name is None:
            return None
        y_pred = lookup(frame, self.pred_name)
        if y_pred is MISSING:
            raise TraceInputError(f"predictions: no variable named {self.pred_name!r} in the loop's scope")
        y_pred = np.asarray(y_pred)
        expected = self._n_rows if rows is None else len(rows)
        if expected is not None and (y_pred.ndim == 0 or y_pred.shape[0] != expected):
            raise TraceInputError(
                f"predictions: {self.pred_name!r} has shape {y_pred.shape}, expected {expected} rows "
                f"(one per row of the batch)")
        return y_pred

    def _loss(self, frame):
        if self.loss_name is None:
            return None
        loss = lookup(frame, self.loss_name)
        if loss is MISSING:
            raise TraceInputError(f"loss: no variable named {self.loss_name!r} in the loop's scope")
        if np.size(loss) != 1:
            raise TraceInputError(f"loss: {self.loss_name!r} should be one number, has shape {np.shape(loss)}")
        return loss

    # ----------------------------------------------------- explicit call
    def record_step(self, *, params_before: dict, params_after: dict, epoch: int | None = None,
                    batch: int | None = None, **values: object) -> int:
        """Record one step explicitly (for loops whose values live elsewhere).

        Takes the keyword arguments of :meth:`tracer.Recorder.record_step`; ``epoch``
        and ``batch`` default to a full-batch count (one step per epoch).
        """
        if epoch is None:
            self._epoch += 1
            epoch, batch = self._epoch, 1
        rows = values.get("rows")
        if self._first is None and self._functions is not None:
            before = {k: np.array(v, dtype=np.float64 if np.ndim(v) == 0 else None, copy=True)
                      for k, v in params_before.items()}
            self._first = (before, None if rows is None else np.array(rows, copy=True))
        size = self._n_rows if rows is None else np.size(rows)
        if size is not None:
            self._sizes.add(int(size))
        return self.recorder.record_step(epoch=epoch, batch=batch or 1, params_before=params_before,
                                         params_after=params_after, **values)

    # --------------------------------------------------------- the trace
    def step_program(self) -> dict | None:
        """The step program of the model/loss functions (None without functions or steps).

        Built once, after the loop (on the first step's batch), and again only if the
        run has used a new batch size since."""
        if self._functions is None or self._first is None or self._x is None:
            return None
        sizes = frozenset(self._sizes)
        if self._program is not None and self._program[0] == sizes:
            return self._program[1]
        before, rows = self._first
        rows = np.arange(len(self._x)) if rows is None else rows
        other = None
        if len(rows) > 1:
            other = rows[:-1]
        elif len(self._x) > 1:
            other = np.array([rows[0], 1 if rows[0] == 0 else 0])
        batch = (self._x[rows], self._y[rows])
        program = build_program(self._functions, before, batch,
                                None if other is None else (self._x[other], self._y[other]), sizes,
                                len(self._x))
        self._program = (sizes, program)
        return program

    @property
    def trace(self) -> Trace:
        """The :class:`tracer.Trace` of every completed step so far."""
        program = self.step_program()
        if program is not None:
            self.recorder.meta["program"] = program
        if self.recorder.store is not None:
            self.recorder.close()                # the run is over: its stream is finished
        return self.recorder.trace()

    @property
    def traces(self) -> list[Trace]:
        """The one run this tracer records, as a list (the :class:`tracer.source.TraceSource` contract)."""
        return [self.trace]


def _check_names(params, predictions, loss, grads, lr) -> None:
    """Validate the names and numbers a :class:`NumpyTracer` is given (TraceInputError)."""
    if not params or not all(isinstance(p, str) and p.isidentifier() for p in params):
        raise TraceInputError(f"params: expected a list of variable names, got {params!r}")
    for arg, value in (("predictions", predictions), ("loss", loss)):
        if value is not None and not (isinstance(value, str) and value.isidentifier()):
            raise TraceInputError(f"{arg}: expected a variable name, got {value!r}")
    if grads is not None and (not isinstance(grads, dict) or not set(grads) <= set(params)):
        raise TraceInputError(f"grads: expected a dict param name -> gradient variable name, got {grads!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise TraceInputError(f"lr: expected a positive finite number, got {lr!r}")
