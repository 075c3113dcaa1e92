"""A streaming, crash-safe trace store: completed steps go to disk as they complete.

Why: a run killed half-way (SIGKILL, OOM killer, a power cut) must not lose what it
already did, and a long run must not hold every step in memory. The recorder hands
its buffered steps to a :class:`StreamStore` every ``flush_every`` steps or
``flush_seconds`` seconds (and whenever its memory budget is reached); each flush is a
*chunk* that appears on disk all at once, so a killed run loses at most the steps
since the last flush, and :meth:`tracer.Trace.load` reads the directory up to its last
complete chunk.

Layout of a stream directory::

    run.trace/
      meta.json            {"format": "steptrace-trace", "version": 2, "layout": "stream",
                            "complete": false, "meta": {...}}   (true, final meta, at close)
      data.parquet         the training rows, written once by Recorder.set_data
      chunks/000001/       one flush: steps, samples, params, epochs .parquet + meta.json
      chunks/000002/       (the meta snapshot at that flush: params, capture, notes)
      chunks/.000003.tmp-* a flush in progress: ignored by readers

Every file is written into a fresh temporary name, fsynced, and renamed into place
(:mod:`tracer.atomic`); a chunk directory is renamed as a whole. Nothing is ever
overwritten or deleted: the store refuses a path that exists and is not empty.

Use::

    store = StreamStore("run.trace", flush_every=100, flush_seconds=10)
    rec = Recorder(meta, store=store, max_bytes=200 * 2**20)
    ...  rec.record_step(...) ...
    rec.close()                       # flush and mark the run finished
    trace = Trace.load("run.trace")   # also works on an interrupted run

For the later wiring into the hooks and ``steptrace run``: open one store per run
directory (the store's ``mkdir`` of ``chunks/`` fails for a second writer, which is the
lock), call ``Recorder.flush()`` then ``Recorder.close()`` from a SIGTERM/SIGINT handler
before re-raising the signal, and call ``Recorder.close()`` when the script ends.
``flush_seconds`` is checked when a step is recorded (no thread touches the buffers).
"""
from __future__ import annotations

from typing import Callable

import os
import re
import secrets
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import fsync_dir, make_private_dir, new_file, reason, refuse_link, remove_tree
from .errors import TraceFileError, TraceInputError
from .file_format import STREAM_VERSION, header_bytes, read_header, read_table, release_arrow_memory, write_table
from . import store_slice
from .store_slice import Slice

#: the tables each chunk holds (``data`` is written once, beside the chunks)
CHUNK_TABLES = ("steps", "samples", "params", "epochs")
_CHUNK = re.compile(r"^\d{6,}$")


class StreamStore:
    """Appends flushed steps to a stream directory (see the module docstring).

    ``flush_every``: flush after this many recorded steps (>= 1); ``flush_seconds``:
    also flush when this long has passed since the last flush (None: only by count).
    ``spill``: past the recorder's ``max_bytes``, full capture goes on to disk (True), or
    the budget also counts what was flushed and full capture falls back to summary
    (False: for a store kept for crash safety whose run is read back whole at the end,
    so the budget bounds the trace it reads back). ``readback_bytes``: with ``spill``,
    :meth:`tracer.Recorder.trace` reads the run back within this many bytes
    (``Trace.load(max_bytes=)``, the rest left on disk and named in its notes; None: whole).
    """

    def __init__(self, path, *, flush_every: int = 100, flush_seconds: float | None = 10.0,
                 spill: bool = True, readback_bytes: int | None = None):
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise TraceInputError(f"flush_every: expected a positive integer, got {flush_every!r}")
        if flush_seconds is not None and not (isinstance(flush_seconds, (int, float)) and flush_seconds >= 0):
            raise TraceInputError(f"flush_seconds: expected a non-negative number or None, got {flush_seconds!r}")
        self.path = Path(path)
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.spill = bool(spill)
        self.readback_bytes = readback_bytes
        self.chunks = 0               # chunks written
        self.steps_written = 0        # steps in those chunks
        self._last_flush = time.monotonic()
        self._opened = self._closed = False

    def __repr__(self) -> str:
        return f"<StreamStore {self.path}: {self.chunks} chunks, {self.steps_written} steps>"

    # ------------------------------------------------------------ writing
    def open(self, meta: dict) -> None:
        """Create the directory (it must be missing or empty) and write the header."""
        if self._opened:
            return
        refuse_link(self.path, "a stream store")
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise TraceFileError(f"cannot open a stream store at {self.path}: it exists and is not empty "
                                 f"(a store never writes over earlier results)")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            os.mkdir(self.path / "chunks")
        except FileExistsError:
            raise TraceFileError(f"cannot open a stream store at {self.path}: another writer holds it") from None
        except OSError as exc:
            raise TraceFileError(f"cannot open a stream store at {self.path}: {reason(exc)}") from None
        self._opened = True
        self._write_header(meta, complete=False)

    def due(self, buffered_steps: int, now: float | None = None) -> bool:
        """Whether ``buffered_steps`` held in memory should be flushed now."""
        if buffered_steps <= 0:
            return False
        if buffered_steps >= self.flush_every:
            return True
        now = time.monotonic() if now is None else now
        return self.flush_seconds is not None and now - self._last_flush >= self.flush_seconds

    def write_data(self, frame: pd.DataFrame) -> None:
        """Write the ``data`` table (once; it appears on disk all at once)."""
        self._require_open()
        tmp = self.path / f".data.parquet.tmp-{secrets.token_hex(6)}"
        try:
            write_table(frame, tmp)
            os.replace(tmp, self.path / "data.parquet")
            fsync_dir(self.path)
        except OSError as exc:
            remove_tree(tmp)
            raise TraceFileError(f"cannot write the data of {self.path}: {reason(exc)}") from None

    def write_chunk(self, tables: dict[str, pd.DataFrame], meta: dict) -> int:
        """Write one flush (``steps``, ``samples``, ``params``, ``epochs`` and the meta
        snapshot) as the next chunk directory; returns its number."""
        self._require_open()
        number = self.chunks + 1
        parent = self.path / "chunks"
        tmp = make_private_dir(parent, f"{number:06d}")
        try:
            for name in CHUNK_TABLES:
                write_table(tables[name], tmp / f"{name}.parquet")
            with new_file(tmp / "meta.json") as fh:
                fh.write(header_bytes(meta, version=STREAM_VERSION, layout="stream-chunk"))
            fsync_dir(tmp)
            os.rename(tmp, parent / f"{number:06d}")
            fsync_dir(parent)
        except OSError as exc:
            remove_tree(tmp)
            raise TraceFileError(f"cannot write chunk {number} of {self.path}: {reason(exc)}") from None
        release_arrow_memory()
        self.chunks = number
        self.steps_written += len(tables["steps"])
        self._last_flush = time.monotonic()
        return number

    def close(self, meta: dict) -> None:
        """Mark the run finished, with its final ``meta``. Idempotent."""
        if self._opened and not self._closed:
            self._write_header(meta, complete=True)
            self._closed = True

    def _require_open(self) -> None:
        if not self._opened:
            raise TraceInputError("StreamStore: open() it first (Recorder(store=...) does)")
        if self._closed:
            raise TraceInputError(f"StreamStore {self.path}: closed, the run is finished")

    def _write_header(self, meta: dict, complete: bool) -> None:
        tmp = self.path / f".meta.json.tmp-{secrets.token_hex(6)}"
        try:
            with new_file(tmp) as fh:
                fh.write(header_bytes(meta, version=STREAM_VERSION, layout="stream", complete=complete))
            os.replace(tmp, self.path / "meta.json")
            fsync_dir(self.path)
        except OSError as exc:
            remove_tree(tmp)
            raise TraceFileError(f"cannot write the header of {self.path}: {reason(exc)}") from None


def open_store(store: StreamStore | Callable[[], StreamStore | None] | None) -> StreamStore | None:
    """The store a hook hands its new recorder: ``None``, a :class:`StreamStore`, or a
    callable returning one (a factory: a hook that records several runs, e.g. a
    ``trace_torch`` block running two loops, calls it once per run)."""
    if store is None or isinstance(store, StreamStore):
        return store
    if callable(store):
        made = store()
        if made is not None and not isinstance(made, StreamStore):
            raise TraceInputError(f"store: the factory returned {type(made).__name__}, not a StreamStore")
        return made
    raise TraceInputError(f"store: expected a StreamStore or a function returning one, got {store!r}")


def store_factory(store: StreamStore | Callable[[], StreamStore | None] | None) -> Callable[[], StreamStore | None] | None:
    """A factory of stores from a hook's ``store=`` argument: a factory as it is; one
    :class:`StreamStore` for the first run and siblings ``PATH.2``, ``PATH.3`` ... (same
    settings) for later runs of the same hook; ``None`` stays ``None``."""
    if store is None or callable(store) and not isinstance(store, StreamStore):
        return store
    if not isinstance(store, StreamStore):
        raise TraceInputError(f"store: expected a StreamStore or a function returning one, got {store!r}")
    made = []

    def next_store() -> StreamStore:
        if not made:
            made.append(store)
            return store
        made.append(StreamStore(store.path.with_name(f"{store.path.name}.{len(made) + 1}"),
                                flush_every=store.flush_every, flush_seconds=store.flush_seconds,
                                spill=store.spill, readback_bytes=store.readback_bytes))
        return made[-1]
    return next_store


# ------------------------------------------------------------------- reading
def _chunk_dirs(path: Path) -> list[Path]:
    root = path / "chunks"
    if not root.is_dir():
        return []
    found = [d for d in root.iterdir() if _CHUNK.match(d.name) and d.is_dir() and not d.is_symlink()]
    return sorted(found, key=lambda d: int(d.name))


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate chunk tables; empty ones are left out (their columns have no type)."""
    full = [p for p in parts if len(p)]
    if not full:
        return parts[0] if parts else pd.DataFrame()
    return pd.concat(full, ignore_index=True) if len(full) > 1 else full[0]


def _pad_params(frame: pd.DataFrame, specs: list[dict]) -> pd.DataFrame:
    """Rows of NaN for parameters first seen in a later chunk, so every parameter has a
    row for every step of this chunk (the recorder pads the same way within a chunk)."""
    if not len(frame):
        return frame
    steps = pd.unique(frame["step"].to_numpy())
    have = set(pd.unique(frame["param"].to_numpy(dtype=object)))
    pads = []
    for p in specs:
        if p["name"] in have:
            continue
        size = int(np.prod(p["shape"], dtype=np.int64))
        pads.append(pd.DataFrame({"step": np.repeat(steps, size), "param": p["name"],
                                  "index": np.tile(np.arange(size, dtype=np.int64), len(steps))}))
    return pd.concat([frame, *pads], ignore_index=True) if pads else frame


def _param_codes(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Each row's parameter as its position in ``names`` (unknown names after them)."""
    codes, uniques = pd.factorize(frame["param"], use_na_sentinel=False)   # no Python string per row
    pos = {name: i for i, name in enumerate(names)}
    return np.array([pos.get(u, len(names)) for u in uniques], dtype=np.int64)[codes]


def _ordered(codes: np.ndarray, frame: pd.DataFrame) -> bool:
    """Whether the rows are ordered by parameter, then step, then index."""
    if len(codes) < 2:
        return True
    dk = np.diff(codes)
    ds, di = np.diff(frame["step"].to_numpy()), np.diff(frame["index"].to_numpy())
    return bool(np.all((dk > 0) | ((dk == 0) & ((ds > 0) | ((ds == 0) & (di >= 0))))))


def _in_param_order(parts: list[pd.DataFrame], specs: list[dict]) -> pd.DataFrame:
    """The chunks' ``params`` rows as a trace saved in one piece orders them: by parameter,
    then step, then index.

    Why blocks: each chunk is already in that order (the recorder writes it so), so the
    result is its parameter blocks taken chunk after chunk - one copy of the table (none
    when one chunk holds every row), not a sort of the whole table beside its parts.
    A chunk out of order (a file written otherwise) is sorted as a whole instead."""
    names, given = [p["name"] for p in specs], parts
    parts = [p for p in parts if len(p)]
    blocks = []
    for ci, frame in enumerate(parts):
        codes = _param_codes(frame, names)
        if not _ordered(codes, frame):
            return _sorted(_concat(parts), names)
        starts = np.r_[0, np.flatnonzero(np.diff(codes)) + 1]
        ends = np.r_[starts[1:], len(codes)]
        blocks += [(int(codes[a]), ci, int(a), int(b)) for a, b in zip(starts, ends)]
    if not blocks:
        return _concat(given)
    blocks.sort(key=lambda b: (b[0], b[1]))
    if len(parts) == 1:
        return parts[0]
    frame = pd.concat([parts[ci].iloc[a:b] for _, ci, a, b in blocks], ignore_index=True)
    return frame if _ordered(_param_codes(frame, names), frame) else _sorted(frame, names)


def _sorted(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    order = np.lexsort((frame["index"].to_numpy(), frame["step"].to_numpy(), _param_codes(frame, names)))
    return frame.iloc[order].reset_index(drop=True)


def read_stream(path: Path, header: dict, *, steps: tuple[int, int] | None = None,
                max_bytes: int | None = None) -> tuple[dict, dict[str, pd.DataFrame], Slice | None]:
    """``(meta, tables, part)`` of a stream directory, up to its last complete chunk.

    A finished store (``complete``) must read in full; an interrupted one stops at its
    first unreadable chunk, and ``meta["notes"]`` says how far it got. ``steps`` /
    ``max_bytes`` bound what is read (:mod:`tracer.store_slice`): ``part`` then says which
    steps' parameter rows were read (None: no bound asked).
    """
    complete = header.get("complete") is True
    bounded = steps is not None or max_bytes is not None
    meta, parts, notes = header["meta"], {t: [] for t in CHUNK_TABLES}, []
    chunks = _chunk_dirs(path)
    for i, d in enumerate(chunks):
        try:
            chunk_meta = read_header(path, d / "meta.json")["meta"]
            tables = {t: read_table(d / f"{t}.parquet") for t in CHUNK_TABLES if not (bounded and t == "params")}
            if bounded and not (d / "params.parquet").is_file():
                raise TraceFileError(f"{d} is incomplete: params.parquet is missing")
        except TraceFileError as exc:
            if complete:
                raise
            notes.append(f"stream chunk {d.name} is unreadable ({exc}); {len(chunks) - i} chunk(s) from it on "
                         f"were left out")
            chunks = chunks[:i]
            break
        for t in tables:
            parts[t].append(tables[t])
        if not complete:
            meta = chunk_meta
    part = None
    if bounded:
        part = store_slice.plan(path, parts["steps"], [store_slice.chunk_cost(d / "params.parquet") for d in chunks],
                                steps, max_bytes)
        parts["params"] = _read_params(chunks, parts["steps"], part)
        parts["samples"] = [store_slice.in_slice(f, part) for f in parts["samples"]]
        if steps is not None:       # a slice asked for: its steps and whole epochs only
            parts["epochs"] = [store_slice.whole_epochs(f, parts["steps"], part) for f in parts["epochs"]]
            parts["steps"] = [_in_wanted(f, part) for f in parts["steps"]]
    frames = _frames(path, meta, parts)
    if not complete:
        n = len(frames["steps"])
        last = int(frames["steps"]["step"].iloc[-1]) if n else 0
        notes.insert(0, f"unfinished run (interrupted, or still recording): read {n} recorded steps (up to step "
                        f"{last}) from {len(parts['steps'])} flushed chunk(s); steps after the last flush are not in it")
    if part is not None and not part.whole:
        part.said = part.note(max_bytes=max_bytes)
        notes.append(part.said)
    if notes:
        meta = {**meta, "notes": list(meta.get("notes") or []) + notes}
    return meta, frames, part


def _in_wanted(frame: pd.DataFrame, part: Slice) -> pd.DataFrame:
    """The ``steps`` rows of an asked slice: from the first step read to the last asked."""
    if not len(frame):
        return frame
    s = frame["step"].to_numpy()
    keep = (s >= part.lo) & (s <= part.wanted[1])
    return frame if keep.all() else frame[keep].reset_index(drop=True)


def _read_params(chunks: list[Path], step_parts: list[pd.DataFrame], part: Slice) -> list[pd.DataFrame]:
    """The ``params`` rows of the steps in ``part``, read only from the chunks holding them."""
    out = []
    for d, steps in zip(chunks, step_parts):
        s = steps["step"].to_numpy() if len(steps) else np.zeros(0, np.int64)
        if s.size and s.max() >= part.lo and s.min() <= part.hi:
            out.append(read_table(d / "params.parquet", filters=[("step", ">=", part.lo),
                                                                  ("step", "<=", part.hi)]))
    return out


def _frames(path: Path, meta: dict, parts: dict[str, list[pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """The tables of a stream from its chunks' parts (empty ones typed)."""
    specs = meta.get("params") or []
    frames = {t: _concat(parts[t]) for t in ("steps", "samples", "epochs")}
    frames["params"] = _in_param_order([_pad_params(f, specs) for f in parts["params"]], specs)
    data_file = path / "data.parquet"
    frames["data"] = read_table(data_file) if data_file.exists() else pd.DataFrame({"sample": np.zeros(0, np.int64)})
    for t, empty in (("steps", ("epoch", "batch", "step")), ("samples", ("step", "sample")), ("epochs", ("epoch",))):
        if not len(frames[t].columns):
            frames[t] = pd.DataFrame({c: np.zeros(0, np.int64) for c in empty})
    if not len(frames["params"].columns):
        frames["params"] = pd.DataFrame({"step": np.zeros(0, np.int64), "param": pd.Series([], dtype=object),
                                         "index": np.zeros(0, np.int64), "before": [], "grad": [], "after": []})
    return frames
