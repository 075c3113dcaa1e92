"""Checks of the tables read from a trace file, before anything computes with them.

Why: the checker and the reports index the tables by column name and reshape the
``params`` rows by each parameter's shape. A Parquet file with a column missing, a
column of the wrong type, or rows that do not match ``meta.params`` would otherwise end
in a KeyError or a reshape error deep inside them. :func:`validate_tables` raises one
:class:`tracer.errors.TraceFileError` line naming the file and the column instead.

The rules are what the readers rely on (see ``tracer/trace.py``): required columns and
their kinds (integer, number, text), step numbers strictly increasing in ``steps`` and
known there for every ``samples`` and ``params`` row, sample positions inside ``data``,
one prediction column per target, and for each parameter of ``meta.params`` rows laid
out as ``step`` repeated over its elements and ``index`` counting ``0..size-1``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .arrays import column_names
from .errors import TraceFileError

_INT, _NUM, _TEXT = "integers", "numbers", "text"

#: required columns of each table and their kind
REQUIRED = {
    "data": {"sample": _INT},
    "steps": {"epoch": _INT, "batch": _INT, "step": _INT},
    "samples": {"step": _INT, "sample": _INT},
    "params": {"step": _INT, "param": _TEXT, "index": _INT, "before": _NUM, "grad": _NUM, "after": _NUM},
    "epochs": {"epoch": _INT},
}
#: optional columns that must be numbers when present
NUMERIC = {"steps": ("batch_size", "loss", "lr"), "params": ("update",)}


class _Bad(Exception):
    pass


def _kind_ok(series: pd.Series, kind: str) -> bool:
    k = series.dtype.kind
    if len(series) == 0 and k == "O":
        return True                      # an empty column read back from Parquet has no type
    if kind == _INT:
        return k in "iu"
    if kind == _NUM:
        return k in "iufb"
    return k == "O" or isinstance(series.dtype, pd.StringDtype) or str(series.dtype) == "str"


def _columns(name: str, frame: pd.DataFrame, meta: dict) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise _Bad(f"{name}: expected a table")
    if len(set(map(str, frame.columns))) != len(frame.columns):
        raise _Bad(f"{name}: column names repeat")
    need = dict(REQUIRED[name])
    if name == "data" and len(frame.columns) > 1:
        data = meta.get("data") or {}
        need.update({c: _NUM for c in list(data.get("inputs") or []) + list(data.get("targets") or [])})
    for col in NUMERIC.get(name, ()):
        if col in frame.columns:
            need[col] = _NUM
    if name in ("samples", "params"):
        skip = set(REQUIRED[name]) | {"param"}
        need.update({c: _NUM for c in frame.columns if c not in skip})
    for col, kind in need.items():
        if col not in frame.columns:
            raise _Bad(f"{name}: column {col!r} is missing")
        if not _kind_ok(frame[col], kind):
            raise _Bad(f"{name}: column {col!r}: expected {kind}, got {frame[col].dtype}")
    for col in frame.columns:
        if col not in need and not (_kind_ok(frame[col], _NUM) or _kind_ok(frame[col], _TEXT)):
            raise _Bad(f"{name}: column {col!r}: expected numbers or text, got {frame[col].dtype}")


def _steps_and_rows(frames: dict, meta: dict) -> None:
    step = frames["steps"]["step"].to_numpy()
    if step.size and (step[0] < 1 or np.any(np.diff(step) <= 0)):
        raise _Bad("steps: column 'step': expected step numbers from 1, strictly increasing")
    for name in ("samples", "params"):
        s = frames[name]["step"].to_numpy()
        if s.size and not np.isin(s, step).all():
            bad = s[~np.isin(s, step)][0]
            raise _Bad(f"{name}: column 'step': step {int(bad)} is not in the steps table")
    data, samples = frames["data"], frames["samples"]
    n_rows = len(data)
    if not np.array_equal(data["sample"].to_numpy(), np.arange(n_rows)):
        raise _Bad("data: column 'sample': expected 0, 1, 2, ... in order")
    declared = (meta.get("data") or {}).get("n_rows")
    if len(data.columns) > 1 and declared is not None and declared != n_rows:
        raise _Bad(f"data: {n_rows} rows, but meta.data.n_rows says {declared}")
    rows = samples["sample"].to_numpy()
    high = n_rows - 1 if len(data.columns) > 1 else np.iinfo(np.int64).max
    if rows.size and (rows.min() < -1 or rows.max() > high):
        raise _Bad(f"samples: column 'sample': expected data rows 0..{high} (or -1), "
                   f"got {int(rows.min())}..{int(rows.max())}")
    targets = (meta.get("data") or {}).get("targets") or []
    # predictions may be wider than the targets (class scores against class numbers), but
    # their columns follow the naming rule of every table: y_pred, or y_pred0..y_pred{k-1}
    preds = [str(c) for c in samples.columns if str(c).startswith("y_pred")]
    if preds and preds != column_names("y_pred", len(preds)):
        raise _Bad(f"samples: prediction columns {preds[:4]} do not follow y_pred / y_pred0, y_pred1, ...")
    if len(data.columns) > 1 and (meta.get("data") or {}).get("inputs") and not targets:
        raise _Bad("data: inputs are declared in meta.data but no targets")


def _params(frame: pd.DataFrame, meta: dict) -> None:
    specs = meta.get("params") or []
    # codes, not a Python string per row: a loaded table's names are Arrow strings, and
    # turning a run's millions of them into objects cost more memory than the table
    codes, uniques = pd.factorize(frame["param"], use_na_sentinel=False)
    try:                # Arrow decodes the names only here: damaged bytes show as bad UTF-8
        code_of = {name: k for k, name in enumerate(uniques)}
    except UnicodeDecodeError as exc:
        raise _Bad(f"params: column 'param': a name is not UTF-8 text ({exc.reason})") from None
    known = {p["name"] for p in specs}
    unknown = set(code_of) - known
    if unknown:
        raise _Bad(f"params: parameter {sorted(map(str, unknown))[0]!r} is not in meta.params")
    steps_of_first = None
    for p in specs:
        size = int(np.prod(p["shape"], dtype=np.int64))
        sel = codes == code_of.get(p["name"], -1)
        sub_step = frame["step"].to_numpy()[sel]
        sub_index = frame["index"].to_numpy()[sel]
        if size == 0 or sub_step.size % size:
            if sub_step.size:
                raise _Bad(f"params: {sub_step.size} rows for parameter {p['name']!r} of shape "
                           f"{p['shape']}, not a whole number of steps")
            continue
        n = sub_step.size // size
        steps = sub_step[::size]
        if not (np.array_equal(sub_index, np.tile(np.arange(size), n))
                and np.array_equal(sub_step, np.repeat(steps, size))):
            raise _Bad(f"params: rows of parameter {p['name']!r} are not laid out as step x index 0..{size - 1}")
        if steps_of_first is None:
            steps_of_first = steps
        elif not np.array_equal(steps, steps_of_first):
            raise _Bad(f"params: parameter {p['name']!r} is recorded at other steps than the first parameter")


def validate_tables(frames: dict, meta: dict, where: str) -> None:
    """Check the loaded tables against each other and ``meta``; raise one TraceFileError line.

    ``where`` names the trace (the message reads ``where/params.parquet: ...``).
    """
    try:
        for name in REQUIRED:
            _columns(name, frames[name], meta)
        _steps_and_rows(frames, meta)
        _params(frames["params"], meta)
    except _Bad as bad:
        table, rest = str(bad).split(": ", 1)
        raise TraceFileError(f"{where}/{table}.parquet: {rest}") from None
