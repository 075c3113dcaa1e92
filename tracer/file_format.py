"""The trace file format's pieces: the header, Parquet tables, one-line errors.

Shared by :mod:`tracer.trace_files` (a finished trace directory) and
:mod:`tracer.store` (a streamed one), so both read and write exactly the same header
and tables; neither imports the other's module for it (imports run one way:
``trace_files -> store -> file_format``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import new_file
from .errors import TraceFileError
from .meta import validate_meta

__all__ = ["FORMAT", "FORMAT_VERSION", "STREAM_VERSION", "TABLES", "MAX_META_BYTES", "one_line",
           "json_default", "header_bytes", "write_table", "read_json", "read_header", "read_table"]

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


def release_arrow_memory() -> None:
    """Hand the memory Arrow's pool keeps after reading or writing tables back to the system.

    Why: the default pool (mimalloc) keeps freed blocks for reuse, so a process that read a
    100 MB table held about 100 MB more until it exited, and the next phase (the check)
    started from there: the peak of ``steptrace run`` grew with each table it touched."""
    try:
        import pyarrow
        pyarrow.default_memory_pool().release_unused()
    except (ImportError, AttributeError):   # an older pyarrow: nothing to release
        pass
    _malloc_trim()


def _malloc_trim() -> None:
    """glibc keeps the freed heap of pandas' and NumPy's small blocks: give it back too
    (a no-op where the C library has no ``malloc_trim``)."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes
            _TRIM = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM = None


def write_table(frame: pd.DataFrame, file: Path) -> None:
    """Write one table as Parquet into a file that must not exist yet (fsynced)."""
    with new_file(file) as fh:
        frame.to_parquet(fh, index=False)


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


def read_table(file: Path, filters: list | None = None) -> pd.DataFrame:
    """One Parquet table; a missing, foreign, truncated or non-regular file -> TraceFileError.
    ``filters``: only the rows they keep (pyarrow's ``filters``, e.g. a range of steps)."""
    if not file.exists():
        raise TraceFileError(f"{file.parent} is incomplete: {file.name} is missing")
    if not file.is_file():
        raise TraceFileError(f"{file}: not a regular file")
    try:
        frame = pd.read_parquet(file, filters=filters) if filters else pd.read_parquet(file)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise TraceFileError(f"{file} is corrupt or not Parquet: {one_line(exc, 160)}") from None
    if not all(isinstance(c, str) for c in frame.columns):
        raise TraceFileError(f"{file}: column names must be text")
    return frame
