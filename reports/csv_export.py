"""CSV export: one plain file per table, readable by any spreadsheet or script.

Why CSV beside Parquet: a learner opens CSV in whatever they have, and CSV is the
lowest common denominator for diffing two runs. Named ``csv_export`` so it never
shadows the standard library's ``csv`` module.
"""
from __future__ import annotations

from pathlib import Path

from tracer.errors import TraceFileError, TraceInputError


def to_csv(trace, directory) -> list[Path]:
    """Write ``data.csv``, ``steps.csv``, ``samples.csv``, ``params.csv``, ``epochs.csv``
    (and ``meta.json``) into ``directory``; returns the CSV paths in that order.

    Floats are written with full precision (``repr``), so reading them back gives the
    recorded numbers bit for bit. An unwritable directory raises TraceFileError.
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
            frame.to_csv(path, index=False, float_format=None)
            paths.append(path)
        (directory / "meta.json").write_text(json.dumps(trace.meta, indent=1, default=_json_default))
    except OSError as exc:
        raise TraceFileError(f"cannot write CSV files to {directory}: {exc.strerror or exc}") from None
    return paths
