"""CSV export: one plain file per table, readable by any spreadsheet or script.

Why CSV beside Parquet: a learner opens CSV in whatever they have, and CSV is the
lowest common denominator for diffing two runs. Named ``csv_export`` so it never
shadows the standard library's ``csv`` module.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tracer.atomic import replacing_file
from tracer.errors import TraceFileError, TraceInputError

if TYPE_CHECKING:
    import os

    import pandas as pd

    from tracer.trace import Trace


def to_csv(trace: Trace, directory: str | os.PathLike) -> list[Path]:
    """Write ``data.csv``, ``steps.csv``, ``samples.csv``, ``params.csv``, ``epochs.csv``
    (and ``meta.json``) into ``directory``; returns the CSV paths in that order.

    Floats are written with full precision (``repr``), so reading them back gives the
    recorded numbers bit for bit. Text cells and column names that a spreadsheet would
    evaluate (starting with ``= + - @``, tab or CR) get a leading ``'`` (OWASP CSV
    injection guidance); numbers are never changed. An unwritable directory raises
    TraceFileError.
    """
    import json

    from tracer.trace import _json_default

    if not hasattr(trace, "tables"):
        raise TraceInputError(f"trace: expected a tracer.Trace, got {type(trace).__name__}")
    directory = Path(directory)
    paths = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, frame in trace.tables().items():
            path = directory / f"{name}.csv"
            with replacing_file(path) as tmp:     # each file complete or not written
                # CRLF ends rows (RFC 4180), so a CR inside a name is quoted, not a row break
                defused(frame).to_csv(tmp, index=False, float_format=None, lineterminator="\r\n")
            paths.append(path)
        with replacing_file(directory / "meta.json") as tmp:
            tmp.write_text(json.dumps(trace.meta, indent=1, default=_json_default))
    except OSError as exc:
        raise TraceFileError(f"cannot write CSV files to {directory}: {exc.strerror or exc}") from None
    return paths


def defused(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every formula-like text cell and column name prefixed by ``'``.

    Why per unique value: a params table has millions of rows but a handful of names, so
    the check runs once per distinct string. Numeric columns are returned untouched.
    """
    import pandas as pd

    from ._safe import csv_text, formula_like

    out = frame
    renamed = {c: csv_text(c) for c in frame.columns if formula_like(c)}
    for col in frame.columns:
        if frame[col].dtype.kind in "biufcmM":
            continue
        uniques = pd.unique(frame[col].to_numpy(dtype=object))
        bad = {v: csv_text(v) for v in uniques if formula_like(v)}
        if bad:
            if out is frame:
                out = frame.copy()
            out[col] = frame[col].map(lambda v: bad.get(v, v) if isinstance(v, str) else v)
    return out.rename(columns=renamed) if renamed else out
