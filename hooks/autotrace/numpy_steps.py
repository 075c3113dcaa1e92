"""Arrivals at a NumPy loop's header, turned into steps of a :class:`hooks.numpy.NumpyTracer`.

Why apart from the trace function (:mod:`hooks.autotrace.numpy_session`): this is what
the events *mean*. Each arrival at the header is an iteration boundary: the parameters
the frame holds are "after" for the iteration that just ended and "before" for the
next one, exactly what ``NumpyTracer.range()`` sees from inside a loop. The last
arrival opens an iteration that never runs (the loop then ends), so a step is only
recorded when the next arrival closes it; an iteration left by ``break`` or an
exception is not recorded.

What the script does not name is looked up by documented default names
(:data:`DEFAULTS`); each guess is said in the run's notes. Mini-batch rows are found by
content (:class:`hooks.rows.RowMatcher`) in the variable holding the batch's inputs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field

import numpy as np

from tracer.errors import SteptraceError

from ..numpy.functions import call_model
from ..numpy.numpy_tracer import MISSING, UNKNOWN_ROWS, NumpyTracer, lookup, read_params
from ..rows import RowMatcher
from .numpy_loop import LoopSite

if TYPE_CHECKING:  # pragma: no cover
    from types import FrameType

__all__ = ["NumpyOptions", "LoopSteps", "DEFAULTS"]

#: variable names tried, in order, for what the command line does not name
DEFAULTS = {
    "inputs": ("x", "X", "inputs", "features", "x_train", "X_train"),
    "targets": ("y", "Y", "targets", "labels", "y_train", "Y_train"),
    "predictions": ("outputs", "output", "y_pred", "predictions", "preds", "pred", "y_hat", "yhat", "out", "A"),
    "loss": ("loss", "cost", "J"),
}


@dataclass
class NumpyOptions:
    """What ``steptrace run --numpy-params ...`` was told (names of the script's variables)."""

    params: list
    predictions: str | None = None
    loss: str | None = None
    inputs: str | None = None
    targets: str | None = None
    model: str | None = None          # a function of the script: model(params..., x)
    loss_fn: str | None = None        # a function of the script: loss_fn(y_pred, y)
    recorder: dict = field(default_factory=dict)   # every, capture, max_bytes


class LoopSteps:
    """The steps of one activation of the frame that runs the loop."""

    def __init__(self, site: LoopSite, options: NumpyOptions, on_start=None):
        self.site = site
        self.options = options
        self.tracer: NumpyTracer | None = None
        self.notes: list[str] = []
        self.steps = 0
        self._on_start = on_start
        self._before = None           # parameters at the last arrival (the open iteration's "before")
        self._entries = 0             # arrivals from outside the loop (epochs of a nested loop)
        self._batch = 0
        self._matcher = None
        self._x = None
        self._index_name = None       # the loop's index array its batch is cut with (X[idx] inline)

    # ------------------------------------------------------------ events
    def arrive(self, frame: FrameType, entering: bool) -> None:
        """The loop's header is reached (``entering``: from outside the loop)."""
        current = read_params(frame, self.options.params)
        if entering:
            self._entries += 1
            self._batch = 0
            if self._matcher is not None:
                self._matcher.new_epoch()
        elif self._before is not None:
            self._close(frame, current)
        self._before = current

    def leave(self) -> None:
        """The loop is left: the iteration opened at the last arrival did not run (or was cut short)."""
        self._before = None

    # ------------------------------------------------------------- steps
    def _close(self, frame, after: dict) -> None:
        if self.tracer is None:
            self.tracer = self._make_tracer(frame)
            if self._on_start is not None:
                self._on_start(self.tracer)
        rows = self._rows(frame)
        self.steps += 1
        self._batch += 1
        if self.site.nested:
            epoch, batch = self._entries, self._batch
        elif rows is None:
            epoch, batch = self.steps, 1          # full batch: each iteration is an epoch
        else:
            epoch, batch = 1, self.steps
        self.tracer.open_step(epoch, batch, rows, self._before)
        self.tracer.close_step(frame, after)

    def _rows(self, frame):
        """Batch rows: None for all of them; found by content for a mini-batch."""
        tracer = self.tracer
        n = tracer.recorder.n_rows
        if tracer.pred_name is None or n is None:
            return None
        pred = lookup(frame, tracer.pred_name)
        b = np.shape(pred)[0] if np.ndim(pred) else None
        if b is None or b == n:
            return None
        if self._matcher is None:
            self._matcher = RowMatcher(self._x)
        for name, value in list(frame.f_locals.items()):
            if isinstance(value, np.ndarray) and value.shape[:1] == (b,) and value.shape[1:] == self._x.shape[1:] \
                    and value.dtype.kind in "fiu":
                rows = self._matcher.match(value)
                if rows is not None:
                    return rows
        rows = self._index_rows(frame, b, pred)
        if rows is not None:
            return rows
        self._note(f"batches of {b} rows: no variable of the loop holds rows of the inputs, so the rows "
                   "(and predictions) of those steps are not recorded")
        return UNKNOWN_ROWS

    def _index_rows(self, frame, b: int, pred) -> np.ndarray | None:
        """The rows of a batch cut inline (``model(w, b, X[idx])``): no variable holds the batch,
        only the index array. A candidate (1-D integers, one per batch row, inside the data) is
        taken once the model function, run on the parameters before the step and ``X[idx]``,
        gives the loop's predictions; then that variable is read at every step."""
        n = len(self._x)
        if self._index_name is not None:
            return _row_index(lookup(frame, self._index_name), b, n)
        fn = self.tracer._functions
        if fn is None or self._before is None or pred is None:
            return None
        for name, value in list(frame.f_locals.items()):
            rows = _row_index(value, b, n)
            if rows is None:
                continue
            try:
                with np.errstate(all="ignore"):
                    got = np.asarray(call_model(fn.model, dict(self._before), self._x[rows]), dtype=np.float64)
            except Exception:  # noqa: BLE001 - the user's function on another candidate: not this one
                continue
            if got.shape == np.shape(pred) and np.allclose(got, pred, rtol=1e-9, atol=0.0, equal_nan=True):
                self._index_name = name
                self._note(f"batch rows read from the loop's index array {name!r} (the model on X[{name}] "
                           "gives its predictions)")
                return rows
        return None

    # ------------------------------------------------------------ naming
    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _pick(self, frame, role: str, given: str | None, ok) -> str | None:
        """The variable for ``role``: the given name, else the first default name that fits."""
        if given is not None:
            return given
        for name in DEFAULTS[role]:
            value = lookup(frame, name)
            if value is not MISSING and ok(value):
                self._note(f"{role}: the variable {name!r} (no --{role} given)")
                return name
        return None

    def _data(self, frame):
        o = self.options
        x_name = self._pick(frame, "inputs", o.inputs, lambda v: isinstance(v, np.ndarray) and v.ndim >= 1)
        y_name = self._pick(frame, "targets", o.targets, lambda v: isinstance(v, np.ndarray) and v.ndim >= 1)
        x = None if x_name is None else lookup(frame, x_name)
        y = None if y_name is None else lookup(frame, y_name)
        missing = [f"--{role} ({name or 'none of ' + ', '.join(DEFAULTS[role])})"
                   for role, name, v in (("inputs", x_name, x), ("targets", y_name, y)) if v is None or v is MISSING]
        if missing:
            self._note("no training data, so the model cannot be checked: name it with "
                       + " and ".join(missing))
            return None, None
        return np.asarray(x), np.asarray(y)

    def _function(self, frame, name: str | None, what: str):
        if name is None:
            return None
        fn = lookup(frame, name)
        if fn is MISSING or not callable(fn):
            self._note(f"--numpy-{what} {name}: no function of that name in the script; not used")
            return None
        return fn

    def _make_tracer(self, frame) -> NumpyTracer:
        o = self.options
        x, y = self._data(frame)
        rows = len(x) if x is not None else None
        pred = self._pick(frame, "predictions", o.predictions,
                          lambda v: isinstance(v, np.ndarray) and v.ndim >= 1 and (rows is None or len(v) <= rows))
        loss = self._pick(frame, "loss", o.loss, lambda v: np.size(v) == 1 and np.asarray(v).dtype.kind == "f")
        model = self._function(frame, o.model, "model")
        loss_fn = self._function(frame, o.loss_fn, "loss")
        # no model named: the checker guesses (and says so) rather than a declared linear model
        model = model or ("linear" if loss_fn is not None else None)
        kwargs = dict(o.recorder)
        try:
            tracer = NumpyTracer(o.params, pred, loss, inputs=x, targets=y, model=model, loss_fn=loss_fn, **kwargs)
        except SteptraceError as exc:
            self._note(f"the training data is not used: {exc}")
            tracer = NumpyTracer(o.params, pred, loss, model=None, **kwargs)
            x = None
        self._x = x
        return tracer


def _row_index(value: object, b: int, n: int) -> np.ndarray | None:
    """``value`` as 0-based rows when it is a 1-D integer array of ``b`` positions in ``[-n, n)``."""
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.shape[0] != b or value.dtype.kind not in "iu":
        return None
    if b and (value.min() < -n or value.max() >= n):
        return None
    return np.where(value < 0, value + n, value).astype(np.int64)
