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

import numpy as np
import pandas as pd

from .atomic import leftovers, new_file, write_dir
from .errors import TraceFileError
from .meta import validate_meta
from .tablecheck import validate_tables

FORMAT = "steptrace-trace"
FORMAT_VERSION = 1          # the tables layout
STREAM_VERSION = 2          # the stream layout (tracer.store)
TABLES = ("data", "steps", "samples", "params", "epochs")
#: largest meta.json read (the step program may make it large, never this large)
MAX_META_BYTES = 256 * 1024**2


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters (library messages span lines)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def json_default(obj: object) -> object:
    """JSON for the NumPy scalars and arrays a hook may leave in meta."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)


def header_bytes(meta: dict, **fields: object) -> bytes:
    """The ``meta.json`` text: the steptrace header, ``fields`` and ``meta``.

    ``meta`` is validated as :func:`read_header` will validate it, so nothing is written
    that could not be read back (TraceFileError naming the field otherwise).
    """
    header = {"format": FORMAT, "version": FORMAT_VERSION, **fields, "meta": meta}
    try:
        text = json.dumps(header, indent=1, default=json_default)
    except (ValueError, RecursionError) as exc:
        raise TraceFileError(f"cannot save meta: {one_line(exc, 160)}") from None
    validate_meta(json.loads(text)["meta"], where="meta to save")
    return text.encode("utf-8")


def write_table(frame: pd.DataFrame, file: Path) -> None:
    """Write one table as Parquet into a file that must not exist yet (fsynced)."""
    with new_file(file) as fh:
        frame.to_parquet(fh, index=False)


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
    return write_dir(Path(path), fill, is_trace_dir, what="trace")


# ------------------------------------------------------------------- reading
def read_json(file: Path, where: str) -> object:
    """Parse a JSON file of at most MAX_META_BYTES; one TraceFileError line on any problem."""
    try:
        if not file.is_file():
            raise TraceFileError(f"{where}: not a regular file")
        if file.stat().st_size > MAX_META_BYTES:
            raise TraceFileError(f"{where}: larger than {MAX_META_BYTES} bytes")
        return json.loads(file.read_bytes().decode("utf-8"))
    except TraceFileError:
        raise
    except RecursionError:
        raise TraceFileError(f"{where}: nested too deeply to be a steptrace meta.json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise TraceFileError(f"{where} is corrupt: {one_line(exc, 160)}") from None
    except OSError as exc:
        raise TraceFileError(f"{where}: cannot read: {exc.strerror or exc}") from None


def read_header(path: Path, file: Path | None = None) -> dict:
    """The validated header of the trace at ``path`` (``meta.json``, or ``file``)."""
    file = file or path / "meta.json"
    where = str(file)
    header = read_json(file, where)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TraceFileError(f"{path} is not a steptrace trace (meta.json has no steptrace header)")
    version = header.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise TraceFileError(f"{where}: version: expected an integer, got {json.dumps(version)[:40]}")
    if version > STREAM_VERSION:
        raise TraceFileError(f"{path} was written by a newer steptrace (format {version})")
    if "meta" not in header:
        raise TraceFileError(f"{where}: meta: expected an object, got nothing")
    validate_meta(header["meta"], where=where)
    return header


def read_table(file: Path) -> pd.DataFrame:
    """One Parquet table; a missing, foreign, truncated or non-regular file -> TraceFileError."""
    if not file.exists():
        raise TraceFileError(f"{file.parent} is incomplete: {file.name} is missing")
    if not file.is_file():
        raise TraceFileError(f"{file}: not a regular file")
    try:
        frame = pd.read_parquet(file)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise TraceFileError(f"{file} is corrupt or not Parquet: {one_line(exc, 160)}") from None
    if not all(isinstance(c, str) for c in frame.columns):
        raise TraceFileError(f"{file}: column names must be text")
    return frame


def read_trace(path: Path) -> tuple[dict, dict[str, pd.DataFrame]]:
    """``(meta, tables)`` of the trace directory at ``path``, validated (either layout)."""
    path = Path(path)
    if not path.exists():
        old = leftovers(path)
        hint = f" (an interrupted save left the previous trace at {old[0]})" if old else ""
        raise TraceFileError(f"no trace at {path}: the path does not exist{hint}")
    if not path.is_dir() or not (path / "meta.json").is_file():
        raise TraceFileError(f"{path} is not a steptrace trace (expected a directory with meta.json)")
    header = read_header(path)
    if header.get("layout", "tables") == "stream":
        from .store import read_stream
        meta, frames = read_stream(path, header)
    elif header.get("layout", "tables") == "tables":
        meta, frames = header["meta"], {name: read_table(path / f"{name}.parquet") for name in TABLES}
    else:
        raise TraceFileError(f"{path}/meta.json: layout: expected \"tables\" or \"stream\", "
                             f"got {json.dumps(header.get('layout'))[:40]}")
    validate_tables(frames, meta, where=str(path))
    return meta, frames
