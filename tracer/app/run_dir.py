"""Where ``steptrace run`` writes: one locked output directory; each session is staged apart
and swapped in only when it is complete.

Why: a second run into the same directory used to delete the earlier results at the
start, so a SIGTERM then lost both; three concurrent runs clobbered each other; a killed
run left nothing. Now::

    OUT/
      .steptrace.lock             held (flock) by the session writing OUT; the kernel
                                  releases it when that process dies, even by SIGKILL
      index.json  run_1/ ...      the last complete session, untouched until the next one
                                  is complete
      unfinished-STAMP-PID/       the session in progress, or one that was killed:
          stream_1/ ...           each run's steps, streamed as they complete, in full
                                  past the memory budget too (Trace.load reads one up
                                  to its last flush); a run too large to read back
                                  whole for its check is saved as its stream (renamed)
          run_1/ ...              each finished run, saved

A second ``steptrace run`` into OUT while one runs gets a clear lock error. When the
session ends its runs and ``index.json`` replace the earlier ones (moved aside first,
deleted last), and the session directory, with its streams, is removed. A killed
session's directory stays, and the next session into OUT names it.

Under ``torchrun`` every rank runs its own session into the same OUT: each has its own
lock (``.steptrace-rank=R.lock``) and index (``index-rank=R.json``) and writes only its
partitions ``run_N/rank=R`` (:mod:`tracer.app.ranks_run`), so the ranks never wait for or
replace each other.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import time
from pathlib import Path

import pandas as pd

from ..atomic import remove_tree
from ..errors import TraceInputError
from ..file_format import STREAM_VERSION, header_bytes, read_header, read_table, write_table
from ..store import StreamStore
from . import ranks_run

__all__ = ["OutputDir", "INDEX", "LOCK", "FLUSH_EVERY", "FLUSH_SECONDS"]

INDEX = "index.json"
LOCK = ".steptrace.lock"
UNFINISHED = "unfinished-"
#: how often a run's steps go to disk: every 50 steps or 2 seconds, whichever comes first
FLUSH_EVERY = 50
FLUSH_SECONDS = 2.0
_RUN = re.compile(r"run_\d+(/rank=\d+)?")


class OutputDir:
    """The output directory of one ``steptrace run`` session (see the module docstring)."""

    def __init__(self, out: Path, *, flush_every: int = FLUSH_EVERY, flush_seconds: float = FLUSH_SECONDS,
                 readback_bytes: int | None = None):
        self.out = Path(out)
        self.readback_bytes = readback_bytes      # a run's check reads back at most this (None: whole)
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self.created = False              # OUT did not exist before this session
        self.session: Path | None = None
        self.leftovers: list[Path] = []   # sessions killed earlier, found at open
        self._lock_fd: int | None = None
        self._streams = 0

    # ------------------------------------------------------------ start
    def open(self) -> OutputDir:
        """Create OUT, take its lock (or raise a one-line error) and start the session."""
        self.created = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock()
            self.leftovers = sorted(p for p in self.out.glob(UNFINISHED + "*") if p.is_dir())
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            self.session = self.out / f"{UNFINISHED}{stamp}-{os.getpid()}"
            self.session.mkdir()
        except OSError as exc:
            self.release()
            raise TraceInputError(f"--out: cannot write to the output directory {self.out}: "
                                  f"{exc.strerror or exc}") from None
        return self

    def _lock(self) -> None:
        fd = os.open(self.out / ranks_run.index_name(LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise TraceInputError(f"--out: {self.out} is being written by another steptrace run (pid {holder}); "
                                  f"wait for it to finish or give another directory with -o") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def release(self) -> None:
        """Let the next session in (the kernel also does at exit, however the process ends)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------ during
    def new_stream(self) -> StreamStore:
        """A stream for the next run to record into (``unfinished-.../stream_K``).

        ``spill=True``: past the memory budget every step still goes to disk in full; the
        run is read back for its check within ``readback_bytes`` (the rest stays on disk,
        and :meth:`keep_stream` makes the stream itself the saved run).
        """
        self._streams += 1
        return StreamStore(self.session / f"stream_{self._streams}", flush_every=self.flush_every,
                           flush_seconds=self.flush_seconds, spill=True, readback_bytes=self.readback_bytes)

    def keep_stream(self, stream: Path, number: int, meta: dict, steps: pd.DataFrame) -> Path:
        """Make a finished run's stream its saved run ``run_N`` (a rename, the parameter
        rows not copied: a run read back in part is saved whole), its header holding the
        run's ``meta`` and its chunks the run's ``steps`` (with the columns the hook added
        when the run ended)."""
        stream, path = Path(stream), self.run_path(number)
        if stream.parent != self.session or not stream.name.startswith("stream_"):
            raise OSError(f"{stream} is not a stream of this session")
        _rewrite_steps(stream, steps)
        header = read_header(stream)
        if header.get("complete") is True:
            tmp = stream / f".meta.json.tmp-{secrets.token_hex(6)}"
            tmp.write_bytes(header_bytes(meta, version=STREAM_VERSION, layout="stream", complete=True))
            os.replace(tmp, stream / "meta.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.rename(stream, path)
        return path

    def run_path(self, number: int) -> Path:
        """Where finished run ``number`` is saved until the session is committed
        (``run_N``, or this rank's ``run_N/rank=R`` in a job)."""
        return ranks_run.run_path(self.session, number)

    # ------------------------------------------------------------ end
    def commit(self, names: list[str], index: dict) -> None:
        """Swap the session's runs and ``index`` in for the earlier session's, then remove
        the session directory (its streams). Earlier results are moved aside first and
        deleted only once the new ones are in place."""
        earlier = self._earlier_runs()
        aside = self.out / f".replaced-{secrets.token_hex(6)}"
        aside.mkdir()
        index_name = ranks_run.index_name(INDEX)
        for name in earlier + [index_name]:
            if (self.out / name).exists():
                (aside / name).parent.mkdir(parents=True, exist_ok=True)
                os.rename(self.out / name, aside / name)
        for name in names:                      # ``run_N`` or, in a job, ``run_N/rank=R``
            (self.out / name).parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.session / name, self.out / name)
        tmp = self.out / f".{index_name}.tmp-{secrets.token_hex(6)}"
        tmp.write_text(json.dumps(index, indent=1, default=str))
        os.replace(tmp, self.out / index_name)
        remove_tree(aside)
        self.abandon()

    def abandon(self) -> None:
        """Remove the session directory (nothing of it is kept); OUT itself too when this
        session created it and it holds nothing else."""
        if self.session is not None:
            remove_tree(self.session)
            self.session = None
        lock = ranks_run.index_name(LOCK)
        if self.created and {p.name for p in self.out.iterdir()} <= {lock}:
            (self.out / lock).unlink(missing_ok=True)
            self.release()
            try:
                self.out.rmdir()
            except OSError:
                pass

    def _earlier_runs(self) -> list[str]:
        """The run directories the earlier session's ``index.json`` lists (only ours:
        ``run_N`` holding a trace), so nothing else in OUT is ever touched."""
        try:
            old = json.loads((self.out / ranks_run.index_name(INDEX)).read_text())
            names = [str(r["dir"]) for r in old.get("runs", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return []
        return [n for n in names if _RUN.fullmatch(n) and (self.out / n / "meta.json").exists()]


def _rewrite_steps(stream: Path, steps: pd.DataFrame) -> None:
    """Each chunk's ``steps`` rows from ``steps`` (the whole run's table), when it has
    columns the chunks lack; each file replaced atomically."""
    for chunk in sorted(p for p in (stream / "chunks").iterdir() if p.is_dir() and p.name.isdigit()):
        own = read_table(chunk / "steps.parquet")
        if set(steps.columns) <= set(own.columns):
            continue
        rows = steps[steps["step"].isin(own["step"].to_numpy())].reset_index(drop=True)
        if len(rows) != len(own):
            raise OSError(f"{chunk}: the run's steps table does not hold this chunk's steps")
        tmp = chunk / f".steps.parquet.tmp-{secrets.token_hex(6)}"
        write_table(rows, tmp)
        os.replace(tmp, chunk / "steps.parquet")
