"""``Trace.save`` is atomic and never writes through a link.

Planted failures: a disk that fills half-way through the tables, a rename that fails
while swapping, a symbolic link as the target or inside it, a foreign directory as the
target. Each must leave the earlier files exactly as they were and no partial files; the
clean twin (saving over an earlier trace) must replace it.
"""
from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pandas.testing as pdt
import pytest

import tracer.atomic
import tracer.trace_files
from tracer import Trace
from tracer.errors import TraceFileError

from _hostile import clean_trace
from _trace_factories import s0_trace


def _digest(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_full_disk_leaves_the_earlier_trace_intact_and_no_partial_files(tmp_path, monkeypatch):
    old = s0_trace(iterations=3).save(tmp_path / "run.trace")
    before = _digest(old)
    calls = []
    real = tracer.file_format.write_table

    def filling_disk(frame, file):
        calls.append(file.name)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        real(frame, file)
    monkeypatch.setattr(tracer.trace_files, "write_table", filling_disk)
    with pytest.raises(TraceFileError) as err:
        clean_trace().save(old)
    assert str(err.value) == f"cannot write trace to {old}: No space left on device"
    assert _digest(old) == before
    assert _siblings(old) == ["run.trace"]                       # no temporary directory left
    assert Trace.load(old).n_steps == 3


def test_a_failed_swap_puts_the_earlier_trace_back(tmp_path, monkeypatch):
    old = s0_trace(iterations=3).save(tmp_path / "run.trace")
    before = _digest(old)
    real = os.rename
    seen = []

    def flaky(src, dst):
        seen.append((Path(src).name, Path(dst).name))
        if len(seen) == 2:                        # old aside worked, new in fails
            raise OSError(errno.EIO, "I/O error")
        return real(src, dst)
    monkeypatch.setattr(tracer.atomic.os, "rename", flaky)
    with pytest.raises(TraceFileError, match="I/O error"):
        clean_trace().save(old)
    monkeypatch.undo()
    assert _digest(old) == before and _siblings(old) == ["run.trace"]


def test_saving_over_an_earlier_trace_replaces_it(tmp_path):
    path = s0_trace(iterations=3).save(tmp_path / "run.trace")
    new = clean_trace()
    assert new.save(path) == path
    back = Trace.load(path)
    pdt.assert_frame_equal(back.params, new.params)
    assert _siblings(path) == ["run.trace"]
    (tmp_path / "empty").mkdir()
    assert Trace.load(new.save(tmp_path / "empty")).n_steps == 4      # an empty directory is fine too


def test_symlink_as_the_target_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    link = tmp_path / "run.trace"
    link.symlink_to(victim, target_is_directory=True)
    with pytest.raises(TraceFileError, match="symbolic link"):
        clean_trace().save(link)
    assert link.is_symlink() and sorted(os.listdir(victim)) == ["keep.txt"]


def test_symlink_planted_inside_the_trace_is_never_written_through(tmp_path):
    path = s0_trace(iterations=2).save(tmp_path / "run.trace")
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch")
    (path / "steps.parquet").unlink()
    (path / "steps.parquet").symlink_to(victim)
    (path / "params.parquet").unlink()
    (path / "params.parquet").symlink_to(tmp_path / "created-through-link")
    clean_trace().save(path)
    assert victim.read_text() == "do not touch"
    assert not (tmp_path / "created-through-link").exists()
    assert not (path / "steps.parquet").is_symlink() and Trace.load(path).n_steps == 4


def test_a_foreign_directory_is_refused_not_deleted(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(TraceFileError, match="exists and is not a steptrace trace; refusing to replace it"):
        clean_trace().save(home)
    assert (home / "thesis.tex").read_text() == "years of work"


def test_load_points_at_a_copy_left_by_an_interrupted_swap(tmp_path):
    path = s0_trace(iterations=2).save(tmp_path / "run.trace")
    aside = tmp_path / ".run.trace.old-0123456789ab"
    os.rename(path, aside)                     # a crash between "old aside" and "new in"
    with pytest.raises(TraceFileError, match=r"the path does not exist \(an interrupted save left the previous "
                                             r"trace at .*\.run\.trace\.old-0123456789ab\)"):
        Trace.load(path)
    assert Trace.load(aside).n_steps == 2


def test_a_meta_that_could_not_be_read_back_is_refused_before_writing(tmp_path):
    trace = clean_trace()
    trace.meta["hook_extra"] = {"count": 10**30}          # beyond 64 bits: load would refuse it
    with pytest.raises(TraceFileError, match=r'^meta to save: meta.hook_extra.count: expected an integer within 64 bits'):
        trace.save(tmp_path / "run.trace")
    assert list(tmp_path.iterdir()) == []
    trace.meta["hook_extra"] = {"count": 10**12}          # the clean twin
    assert Trace.load(trace.save(tmp_path / "run.trace")).meta["hook_extra"] == {"count": 10**12}
