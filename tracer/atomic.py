"""Writing a directory so that readers see the old one or the new one, never a mix.

Why: a trace is a directory of files. Writing them in place means a crash, a full disk
or a SIGKILL half-way leaves a directory that is neither the earlier trace nor the new
one (the issue saw ``params.parquet is corrupt`` after a disk filled during an
overwrite). Here every file is written into a fresh temporary sibling directory, made
durable (``fsync``), and the directory is renamed into place only when complete.

Replacing an existing directory is three renames: the old one aside, the new one in,
then the old one deleted. The old directory is deleted only after the new one is in
place, so at every moment one complete copy exists on disk (after a crash between the
renames it sits beside the target as ``.<name>.old-<token>``; :func:`leftovers` finds it).

Links are never followed: a target that is a symbolic link is refused, every file is
created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` inside a directory this process just
created, and old directories are removed without following links in them.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .errors import TraceFileError

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def reason(exc: OSError) -> str:
    """The short reason of an OS error (``No space left on device``)."""
    return exc.strerror or str(exc) or type(exc).__name__


def refuse_link(path: Path, what: str = "trace") -> None:
    """Raise TraceFileError when ``path`` is a symbolic link (never write through one)."""
    if path.is_symlink():
        raise TraceFileError(f"cannot write {what} to {path}: it is a symbolic link "
                             f"(steptrace never writes through links; remove it or choose another path)")


def make_private_dir(parent: Path, stem: str) -> Path:
    """Create a new, uniquely named directory ``parent/.stem.tmp-<token>`` (never reused)."""
    for _ in range(16):
        tmp = parent / f".{stem}.tmp-{secrets.token_hex(6)}"
        try:
            os.mkdir(tmp, 0o777)
            return tmp
        except FileExistsError:
            continue
    raise TraceFileError(f"cannot create a temporary directory in {parent}")


@contextlib.contextmanager
def new_file(path: Path) -> Iterator[BinaryIO]:
    """Open a file that must not exist yet (no link followed), flush and fsync on close."""
    fd = os.open(path, _FLAGS, 0o666)
    with os.fdopen(fd, "wb") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def probe_dir(directory: Path) -> None:
    """Create and remove a file in ``directory``: an OSError now, before long work, when
    it is not writable."""
    probe = Path(directory) / f".steptrace-probe-{secrets.token_hex(6)}"
    with new_file(probe):
        pass
    probe.unlink()


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new names, renames) durable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Delete a directory written by this module (links inside are unlinked, not followed)."""
    if path.is_symlink() or not path.exists():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    shutil.rmtree(path, ignore_errors=True)


def _is_replaceable(path: Path, is_ours: Callable[[Path], bool]) -> bool:
    if not path.exists():
        return True
    return path.is_dir() and (not any(path.iterdir()) or is_ours(path))


def write_dir(path: Path, fill: Callable[[Path], None], is_ours: Callable[[Path], bool],
              what: str = "trace") -> Path:
    """Write a directory at ``path`` atomically: ``fill(tmp)`` writes the files into a new
    temporary sibling, which then replaces ``path``.

    ``path`` may be missing, an empty directory, or a directory ``is_ours`` recognises
    (an earlier trace); anything else is refused rather than deleted. Any OSError
    (a full disk) removes the temporary directory, leaves ``path`` as it was, and
    raises one TraceFileError line.
    """
    path = Path(path)
    refuse_link(path, what)
    if not _is_replaceable(path, is_ours):
        raise TraceFileError(f"cannot write {what} to {path}: it exists and is not a steptrace {what}; "
                             f"refusing to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TraceFileError(f"cannot write {what} to {path}: {reason(exc)}") from None
    tmp = make_private_dir(path.parent, path.name)
    try:
        fill(tmp)
        fsync_dir(tmp)
        swap_in(tmp, path)
    except OSError as exc:
        remove_tree(tmp)
        raise TraceFileError(f"cannot write {what} to {path}: {reason(exc)}") from None
    except BaseException:  # interrupted or failed: no partial file is left, the error goes on unchanged
        remove_tree(tmp)
        raise
    return path


def swap_in(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; an existing ``path`` is moved aside first and deleted
    only once ``tmp`` is in place (on failure the old one is moved back)."""
    aside = None
    if path.exists() or path.is_symlink():
        aside = path.parent / f".{path.name}.old-{secrets.token_hex(6)}"
        os.rename(path, aside)
    try:
        os.rename(tmp, path)
    except OSError:
        if aside is not None:
            os.rename(aside, path)
        raise
    fsync_dir(path.parent)
    if aside is not None:
        remove_tree(aside)


def leftovers(path: Path) -> list[Path]:
    """Earlier copies of ``path`` left beside it by a save that was interrupted between
    its renames (``.<name>.old-*``), newest first."""
    path = Path(path)
    try:
        found = list(path.parent.glob(f".{path.name}.old-*"))
    except OSError:
        return []
    return sorted(found, key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True)



@contextlib.contextmanager
def replacing_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) to write a file to; it replaces
    ``path`` only if the block ends without an exception, and is removed otherwise.

    Why: an export interrupted by a full disk must leave the earlier file, not a partial
    or empty one. A ``path`` that is a symbolic link is refused.
    """
    path = Path(path)
    refuse_link(path, "a file")
    tmp = path.parent / f".{path.stem}.tmp-{secrets.token_hex(6)}{path.suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
