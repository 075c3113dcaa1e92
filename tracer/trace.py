"""The Trace: a recorded training run as pandas tables plus a neutral description.

Tables (built on demand from columnar arrays and cached):

- ``data``: the training rows once: ``sample`` (0-based row), ``x``/``x0..``, ``y``/``y0..``.
- ``steps``: one row per iteration: ``epoch``, ``batch``, ``step`` (all from 1),
  ``batch_size``, ``loss``, ``lr``, ``logged_<name>`` for values the framework logged,
  and any extra per-step scalars.
- ``samples``: one row per (step, sample): ``step``, ``sample``, ``y_pred``/``y_pred0..``
  made with the parameters before that step's update.
- ``params``: one row per (step, parameter, element): ``step``, ``param``, ``index``
  (flat, C order), ``before``, ``grad``, ``after``, ``update`` and optimizer state slots.
- ``epochs``: one row per epoch with the values logged at its end.

``meta`` is a JSON-able dict: model, loss, optimizer, metrics, data, params, versions.

Traces are saved as a directory of Parquet files plus ``meta.json``; loading
reads only Parquet and JSON, so it never executes code (the file format, atomic saving
and validation on load are in :mod:`tracer.trace_files`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .arrays import TraceArrays, column_names
from .errors import TraceInputError
from .trace_files import FORMAT, FORMAT_VERSION, TABLES, json_default, read_trace, write_trace

__all__ = ["Trace", "TraceArrays", "FORMAT", "FORMAT_VERSION", "TABLES"]


class Trace:
    """A recorded training run: tables (``data``, ``steps``, ``samples``, ``params``,
    ``epochs``) and ``meta``. Build one with a hook or :class:`tracer.Recorder`;
    save with :meth:`save`, read back with :meth:`Trace.load`."""

    def __init__(self, arrays: TraceArrays | None = None, meta: dict | None = None,
                 frames: dict | None = None):
        self._arrays = arrays
        self.meta: dict = dict(meta or {})
        self._frames: dict[str, pd.DataFrame] = dict(frames or {})
        self.part = None        # a trace loaded in part: which steps (Trace.load's steps=/max_bytes=)

    def __repr__(self) -> str:
        from .display import count
        return (f"<Trace {self.meta.get('framework', '?')}: {count(self.n_steps, 'step')}, "
                f"params {self.param_names}>")

    # ---------------------------------------------------------------- sizes
    @property
    def n_steps(self) -> int:
        """Number of recorded iterations."""
        if self._arrays is not None:
            col = self._arrays.steps.get("step")
            return 0 if col is None else len(col)
        return len(self.steps)

    @property
    def param_names(self) -> list[str]:
        """Names of the recorded parameters, in recording order."""
        return [p["name"] for p in self.meta.get("params", [])]

    def param_shape(self, name: str) -> tuple:
        """Shape of parameter ``name``."""
        for p in self.meta.get("params", []):
            if p["name"] == name:
                return tuple(p["shape"])
        raise TraceInputError(f"param: expected one of {self.param_names}, got {name!r}")

    @property
    def input_columns(self) -> list[str]:
        """Names of the input columns of ``data``."""
        return list(self.meta.get("data", {}).get("inputs", []))

    @property
    def target_columns(self) -> list[str]:
        """Names of the target columns of ``data``."""
        return list(self.meta.get("data", {}).get("targets", []))

    # ---------------------------------------------------------- array access
    def arrays(self) -> TraceArrays:
        """The columnar arrays (rebuilt from the tables for a loaded trace)."""
        if self._arrays is None:
            self._arrays = _arrays_from_frames(self._frames, self.meta)
        return self._arrays

    def param_values(self, name: str, which: str = "before") -> np.ndarray:
        """Array ``(steps, *shape)`` of ``which`` in before/grad/after/update or a state slot."""
        arr = self.arrays()
        if name not in arr.params:
            raise TraceInputError(f"param: expected one of {list(arr.params)}, got {name!r}")
        p = arr.params[name]
        if which == "update":
            flat = p.after - p.before
        elif which in ("before", "grad", "after"):
            flat = p[which]
        elif which in p.slots:
            flat = p.slots[which]
        else:
            raise TraceInputError(
                f"which: expected before, grad, after, update or one of {list(p.slots)}, got {which!r}")
        return flat.reshape((flat.shape[0],) + tuple(p.shape))

    def state_slots(self, name: str) -> list[str]:
        """Optimizer state slots recorded for parameter ``name``."""
        return list(self.arrays().params[name].slots)

    # ---------------------------------------------------------------- tables
    def _frame(self, name: str) -> pd.DataFrame:
        if name not in self._frames:
            self._frames[name] = _BUILDERS[name](self.arrays(), self.meta)
        return self._frames[name]

    @property
    def data(self) -> pd.DataFrame:
        """The training rows: ``sample``, inputs, targets."""
        return self._frame("data")

    @property
    def steps(self) -> pd.DataFrame:
        """One row per iteration."""
        return self._frame("steps")

    @property
    def samples(self) -> pd.DataFrame:
        """One row per (step, sample) with the pre-update predictions."""
        return self._frame("samples")

    @property
    def params(self) -> pd.DataFrame:
        """One row per (step, parameter, element)."""
        return self._frame("params")

    @property
    def epochs(self) -> pd.DataFrame:
        """One row per epoch with the values logged at its end."""
        return self._frame("epochs")

    def add_step_columns(self, columns: dict[str, np.ndarray]) -> None:
        """Add per-step columns (one value per recorded step) to the ``steps`` table.

        Why a method: a hook's own columns computed after recording must reach both the
        arrays and a ``steps`` table already built (a trace read back from a stream store
        has its tables first).
        """
        columns = {key: np.asarray(values, dtype=np.float64) for key, values in columns.items()}
        if self._arrays is not None:
            self._arrays.steps.update(columns)
            self._frames.pop("steps", None)
        if "steps" in self._frames:     # a loaded trace: its arrays (a copy of every table) are not built for this
            self._frames["steps"] = self._frames["steps"].assign(**columns)

    def tables(self) -> dict[str, pd.DataFrame]:
        """All tables by name."""
        return {name: self._frame(name) for name in TABLES}

    # ------------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike) -> Path:
        """Save as a directory of Parquet files plus ``meta.json``; returns the path.

        Atomic (see :mod:`tracer.atomic`): the files are written into a temporary sibling
        directory that replaces ``path`` only when complete, so a full disk or a crash
        leaves an earlier trace at ``path`` intact and no partial files. ``path`` may be
        missing, an empty directory or an earlier trace; a symbolic link or any other
        existing directory is refused (TraceFileError), never written through or deleted.
        """
        return write_trace(self.tables(), self.meta, Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike, *, steps: tuple[int, int] | None = None,
             max_bytes: int | None = None) -> "Trace":
        """Read a trace saved by :meth:`save` or written by :class:`tracer.store.StreamStore`
        (finished or interrupted: up to its last flushed chunk).

        Never executes code from the file. ``meta.json`` and the tables are validated
        (:mod:`tracer.meta`, :mod:`tracer.tablecheck`); anything malformed raises one
        TraceFileError line naming the file and the field.

        ``steps=(A, B)``: only steps ``A .. B`` (and ``A-1``, whose optimizer state step
        ``A`` starts from); ``max_bytes``: of a streamed run, only as many steps' parameter
        rows as fit in that memory when checked, the rest left on disk with a note in
        ``meta["notes"]`` naming the command that checks them. ``trace.part`` then says
        which steps were read (:class:`tracer.store_slice.Slice`; None when no bound was asked).
        """
        meta, frames, part = read_trace(Path(path), steps=steps, max_bytes=max_bytes)
        trace = cls(arrays=None, meta=meta, frames=frames)
        trace.part = part
        return trace


_json_default = json_default   # the name reports.csv_export imports


# ------------------------------------------------------------- table builders
def _data_frame(a: TraceArrays, meta) -> pd.DataFrame:
    if a.inputs is None:
        return pd.DataFrame({"sample": np.zeros(0, np.int64)})
    cols = {"sample": np.arange(a.inputs.shape[0], dtype=np.int64)}
    for i, name in enumerate(column_names("x", a.inputs.shape[1])):
        cols[name] = a.inputs[:, i]
    for i, name in enumerate(column_names("y", a.targets.shape[1])):
        cols[name] = a.targets[:, i]
    return pd.DataFrame(cols)


def _steps_frame(a: TraceArrays, meta) -> pd.DataFrame:
    cols = dict(a.steps)
    if not cols:
        return pd.DataFrame({k: np.zeros(0, np.int64) for k in ("epoch", "batch", "step")})
    for key in ("epoch", "batch", "step"):
        cols[key] = np.asarray(cols[key], dtype=np.int64)
    bs = np.asarray(cols.get("batch_size", []), dtype=np.float64)
    if bs.size and np.all(np.isfinite(bs)):
        cols["batch_size"] = bs.astype(np.int64)
    return pd.DataFrame(cols)


def _epochs_frame(a: TraceArrays, meta) -> pd.DataFrame:
    cols = dict(a.epochs)
    if not cols:
        return pd.DataFrame({"epoch": np.zeros(0, np.int64)})
    cols["epoch"] = np.asarray(cols["epoch"], dtype=np.int64)
    return pd.DataFrame(cols)


def _samples_frame(a: TraceArrays, meta) -> pd.DataFrame:
    cols = {"step": a.sample_step.astype(np.int64), "sample": a.sample_row.astype(np.int64)}
    if a.sample_micro is not None:
        cols["micro"] = a.sample_micro.astype(np.int64)
    if a.sample_pred is not None:
        for i, name in enumerate(column_names("y_pred", a.sample_pred.shape[1])):
            cols[name] = a.sample_pred[:, i]
    return pd.DataFrame(cols)


def _params_frame(a: TraceArrays, meta) -> pd.DataFrame:
    parts = []
    slot_names = []
    for p in a.params.values():
        for s in p.slots:
            if s not in slot_names:
                slot_names.append(s)
    for name, p in a.params.items():
        n_steps, size = p.before.shape
        cols = {
            "step": np.repeat(a.param_step[:n_steps], size),
            "param": np.full(n_steps * size, name, dtype=object),
            "index": np.tile(np.arange(size, dtype=np.int64), n_steps),
            "before": p.before.reshape(-1),
            "grad": p.grad.reshape(-1),
            "after": p.after.reshape(-1),
            "update": (p.after - p.before).reshape(-1),
        }
        for s in slot_names:
            cols[s] = p.slots[s].reshape(-1) if s in p.slots else np.full(n_steps * size, np.nan)
        parts.append(pd.DataFrame(cols))
    if not parts:
        return pd.DataFrame({"step": np.zeros(0, np.int64), "param": pd.Series([], dtype=object),
                             "index": np.zeros(0, np.int64), "before": [], "grad": [], "after": [],
                             "update": []})
    frame = pd.concat(parts, ignore_index=True)
    frame["param"] = frame["param"].astype(str)
    return frame


_BUILDERS = {"data": _data_frame, "steps": _steps_frame, "samples": _samples_frame,
             "params": _params_frame, "epochs": _epochs_frame}


def _arrays_from_frames(frames: dict, meta: dict) -> TraceArrays:
    """Rebuild the columnar arrays from loaded tables (the inverse of the builders)."""
    data = frames["data"]
    inputs = targets = None
    d = meta.get("data", {})
    if len(data.columns) > 1 and d.get("inputs"):
        inputs = data[d["inputs"]].to_numpy()
        targets = data[d["targets"]].to_numpy()
    steps = {c: frames["steps"][c].to_numpy() for c in frames["steps"].columns}
    epochs = {c: frames["epochs"][c].to_numpy() for c in frames["epochs"].columns}
    samples = frames["samples"]
    pred_cols = [c for c in samples.columns if c.startswith("y_pred")]
    params_frame = frames["params"]
    params = {}
    base_cols = {"step", "param", "index", "before", "grad", "after", "update"}
    # the recorded steps, from any parameter with elements (a zero-size one has no rows)
    sized = [p for p in meta.get("params", []) if int(np.prod(p["shape"], dtype=np.int64))]
    param_step = np.zeros(0, np.int64)
    if sized:
        first = params_frame[params_frame["param"] == sized[0]["name"]]
        param_step = first["step"].to_numpy()[::int(np.prod(sized[0]["shape"], dtype=np.int64))]
    for p in meta.get("params", []):
        name, shape = p["name"], tuple(p["shape"])
        size = int(np.prod(shape, dtype=np.int64))
        sub = params_frame[params_frame["param"] == name]
        n = len(sub) // size if size else len(param_step)

        def grab(col, sub=sub, n=n, size=size):
            return sub[col].to_numpy().reshape(n, size) if size else np.zeros((n, 0))
        slots = {c: grab(c) for c in params_frame.columns if c not in base_cols}
        slots = {k: v for k, v in slots.items() if not np.all(np.isnan(v))}
        params[name] = {"shape": shape, "before": grab("before"), "grad": grab("grad"),
                        "after": grab("after"), "slots": slots}
    return TraceArrays(inputs=inputs, targets=targets, steps=steps, epochs=epochs,
                       sample_step=samples["step"].to_numpy(), sample_row=samples["sample"].to_numpy(),
                       sample_pred=samples[pred_cols].to_numpy() if pred_cols else None,
                       sample_micro=samples["micro"].to_numpy() if "micro" in samples.columns else None,
                       param_step=param_step, params=params)
