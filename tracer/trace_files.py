"""The trace directory on disk: writing it atomically, reading and checking it.

Why a module of its own: ``Trace`` is the in-memory object; this is the file format and
the guarantees around it. A trace directory holds ``meta.json`` (a header
``{"format": "steptrace-trace", "version": 1, "meta": {...}}``) and one Parquet file per
table (``data``, ``steps``, ``samples``, ``params``, ``epochs``). A directory written by
:class:`tracer.store.StreamStore` has ``"layout": "stream"`` (format version 2) and its
tables in flushed chunks; :func:`read_trace` opens both, finished or interrupted.

Writing (:func:`write_trace`) goes through :func:`tracer.atomic.write_dir`: a full disk
or a crash leaves the earlier trace as it was. Reading never executes code (Parquet and
JSON only), refuses anything that is not a regular file, limits ``meta.json`` to
:data:`MAX_META_BYTES`, validates ``meta`` (:mod:`tracer.meta`) and the tables
(:mod:`tracer.tablecheck`), and turns every problem into one
:class:`tracer.errors.TraceFileError` line that names the file.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .atomic import leftovers, new_file, write_dir
from .errors import TraceFileError
from .file_format import (FORMAT, FORMAT_VERSION, STREAM_VERSION, TABLES, header_bytes, json_default,  # noqa: F401
                          one_line, read_header, read_json, read_table, release_arrow_memory, write_table)
from .store import read_stream
from .store_slice import Slice, plan, whole_epochs
from .tablecheck import validate_tables

def is_trace_dir(path: Path) -> bool:
    """True when ``path`` holds a steptrace ``meta.json`` header (an earlier trace)."""
    try:
        head = (Path(path) / "meta.json").open("rb").read(4096)
    except OSError:
        return False
    return b'"format": "steptrace-trace"' in head or b'"format":"steptrace-trace"' in head


def write_trace(tables: dict[str, pd.DataFrame], meta: dict, path: Path) -> Path:
    """Write ``tables`` and ``meta`` as a trace directory at ``path``, atomically."""
    header = header_bytes(meta)       # refused before anything is written

    def fill(tmp: Path) -> None:
        for name in TABLES:
            write_table(tables[name], tmp / f"{name}.parquet")
        with new_file(tmp / "meta.json") as fh:
            fh.write(header)
    try:
        return write_dir(Path(path), fill, is_trace_dir, what="trace")
    finally:
        release_arrow_memory()


def read_trace(path: Path, *, steps: tuple[int, int] | None = None,
               max_bytes: int | None = None) -> tuple[dict, dict[str, pd.DataFrame], Slice | None]:
    """``(meta, tables, part)`` of the trace directory at ``path``, validated (either layout).

    ``steps=(A, B)`` / ``max_bytes``: read only a bounded slice of the parameter rows
    (:mod:`tracer.store_slice`; a saved ``tables`` trace is read whole, then cut to the
    steps asked); ``part`` says which (None when no bound was asked).
    """
    path = Path(path)
    if not path.exists():
        old = leftovers(path)
        hint = f" (an interrupted save left the previous trace at {old[0]})" if old else ""
        raise TraceFileError(f"no trace at {path}: the path does not exist{hint}")
    if not path.is_dir() or not (path / "meta.json").is_file():
        raise TraceFileError(f"{path} is not a steptrace trace (expected a directory with meta.json)")
    header = read_header(path)
    part = None
    if header.get("layout", "tables") == "stream":
        meta, frames, part = read_stream(path, header, steps=steps, max_bytes=max_bytes)
    elif header.get("layout", "tables") == "tables":
        meta, frames = header["meta"], {name: read_table(path / f"{name}.parquet") for name in TABLES}
        if steps is not None:
            frames, part = cut_tables(path, frames, steps)
    else:
        raise TraceFileError(f"{path}/meta.json: layout: expected \"tables\" or \"stream\", "
                             f"got {json.dumps(header.get('layout'))[:40]}")
    release_arrow_memory()
    validate_tables(frames, meta, where=str(path))
    return meta, frames, part


def cut_tables(path: Path, frames: dict[str, pd.DataFrame],
               steps: tuple[int, int]) -> tuple[dict[str, pd.DataFrame], Slice]:
    """A whole trace's tables cut to steps ``A-1 .. B`` (see :func:`tracer.store_slice.plan`)."""
    part = plan(path, [frames["steps"]], [0], steps, None)
    out = dict(frames)
    out["epochs"] = whole_epochs(frames["epochs"], [frames["steps"]], part)
    for name in ("steps", "samples", "params"):
        s = frames[name]["step"].to_numpy() if len(frames[name]) else None
        if s is not None:
            keep = (s >= part.lo) & (s <= part.hi)
            out[name] = frames[name][keep].reset_index(drop=True)
    return out, part
