"""The check's arena is kept with the trace it checked (tracer.program.scratch): a second
check of the same trace lays its arrays on the first one's blocks (no fresh pages), the
blocks go when the trace goes, when another trace is checked, when the trace's arrays
change shape or on drop_kept(); and a value a caller still holds from the first check is
never written over by the second."""
import gc
import threading
import weakref

import numpy as np
import pytest

import tracer
import tracer.program.scratch as scratch
from tracer.program.scratch import arena, drop_kept, empty, kept_bytes

from test_check_arena import _assert_kept, _held, _trace


@pytest.fixture(autouse=True)
def _nothing_kept():
    drop_kept()
    yield
    drop_kept()


def _kept_blocks():
    """The blocks kept now (a caller's reference makes them busy: drop the list after use)."""
    return [] if scratch._kept is None else list(scratch._kept[2])


def _appends(monkeypatch):
    """Count the blocks the arena allocates (every new block is appended to its pool)."""
    made = []
    append = scratch._Pool.append

    def counting(self, block):
        made.append(block.nbytes)
        append(self, block)
    monkeypatch.setattr(scratch._Pool, "append", counting)
    return made


def test_a_second_check_of_the_same_trace_reuses_the_blocks(monkeypatch):
    monkeypatch.setattr(scratch, "ARENA_MIN", 0)        # the small test trace's arrays in the arena too
    trace = _trace()
    first = tracer.check(trace)
    verdict, table = first.verdict, first.table.copy(deep=True)
    del first           # its context holds engine values (every array is in the arena here)
    blocks = [id(b) for b in _kept_blocks()]           # ids: a reference would keep them busy
    assert blocks and kept_bytes() == sum(b.nbytes for b in _kept_blocks())
    made = _appends(monkeypatch)
    second = tracer.check(trace)
    assert made == []                                   # not one new block
    assert set(id(b) for b in _kept_blocks()) <= set(blocks)     # the second may need fewer
    assert second.verdict == verdict == "passed" and second.table.equals(table)


def test_the_kept_blocks_are_at_most_what_the_check_held(monkeypatch):
    """A block the check did not hand out (left from a larger use) is not kept."""
    monkeypatch.setattr(scratch, "ARENA_MIN", 0)
    trace = _trace()
    tracer.check(trace)
    tracer.check(trace)                                 # the blocks a check of the kept ones needs
    sizes = sorted(b.nbytes for b in _kept_blocks())
    scratch._kept[2].append(np.empty(1 << 22, np.uint8))     # bigger than any block of the check
    assert max(b.nbytes for b in _kept_blocks()) == 1 << 22
    tracer.check(trace)                                 # hands out the check's blocks, not the huge one
    assert sorted(b.nbytes for b in _kept_blocks()) == sizes


def test_the_blocks_go_when_the_trace_goes(monkeypatch):
    monkeypatch.setattr(scratch, "ARENA_MIN", 0)
    trace = _trace()
    tracer.check(trace)
    gone = [weakref.ref(b) for b in _kept_blocks()]
    assert gone and all(r() is not None for r in gone)
    del trace
    gc.collect()
    assert kept_bytes() == 0 and all(r() is None for r in gone)


def test_checking_another_trace_frees_the_first_ones_blocks(monkeypatch):
    monkeypatch.setattr(scratch, "ARENA_MIN", 0)
    first, second = _trace(), _trace(steps=8)
    tracer.check(first)
    gone = [weakref.ref(b) for b in _kept_blocks()]
    tracer.check(second)
    assert all(r() is None for r in gone)               # while the first trace still lives
    assert scratch._kept[0]() is second.arrays()
    made = _appends(monkeypatch)
    tracer.check(first)                                 # its blocks went: new ones
    assert made


def test_arrays_of_another_shape_start_with_fresh_blocks(monkeypatch):
    """The same owner under another key (its arrays changed): the kept blocks are freed."""
    monkeypatch.setattr(scratch, "ARENA_MIN", 0)
    trace = _trace()
    tracer.check(trace)
    gone = [weakref.ref(b) for b in _kept_blocks()]
    with arena(trace.arrays(), "another key"):
        assert all(r() is None for r in gone)


def test_drop_kept_frees_the_blocks(monkeypatch):
    monkeypatch.setattr(scratch, "ARENA_MIN", 0)
    trace = _trace()
    tracer.check(trace)
    held = kept_bytes()
    gone = [weakref.ref(b) for b in _kept_blocks()]
    assert drop_kept() == held > 0
    assert kept_bytes() == 0 and all(r() is None for r in gone)
    assert drop_kept() == 0


def test_an_arena_without_owner_keeps_nothing():
    with arena():
        a = empty((256, 128), np.float64)
        del a
    assert kept_bytes() == 0


def test_a_check_in_progress_takes_its_blocks_out(monkeypatch):
    """Two checks of one trace at once never share blocks: the first takes them out of the
    keeping, so the other (here: another thread) starts with its own."""
    monkeypatch.setattr(scratch, "ARENA_MIN", 0)
    trace = _trace()
    tracer.check(trace)
    key = scratch._kept[1]
    mine = {id(b) for b in _kept_blocks()}
    seen = []

    def other():
        with arena(trace.arrays(), key):
            seen.append(id(scratch._block(1 << 16)))
    with arena(trace.arrays(), key):
        assert kept_bytes() == 0
        assert id(scratch._block(1 << 16)) in mine
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
    assert seen and seen[0] not in mine


@pytest.mark.parametrize("broken", [False, True])
def test_values_held_from_the_first_check_survive_the_second(monkeypatch, broken):
    """What the first check's engine handed out and a caller still holds keeps its blocks
    busy in the next check of the same trace; a planted arena that takes held blocks as
    idle overwrites them, and the assertion sees it.

    The held values are set to a mark first: the next check replays the blocks of the
    last one (each request gets the same block), so an overwrite would otherwise write the
    very numbers the caller holds, and no comparison could see it."""
    trace = _trace()
    clean = tracer.check(trace)
    kept = _held(monkeypatch, small_chunks=3 * 8 * (6 * 2000 + 4 * 8 * 40))
    tracer.check(trace)
    blocks = {id(b) for b in _kept_blocks()}
    held = [(v, c) for v, c in kept if id(v.base) in blocks]   # the first check's, on its blocks
    for v, c in held:
        v[...] = c[...] = 12345.0       # a mark no check computes
    assert len(held) > 50 and _kept_blocks()
    if broken:              # planted: an arena that takes held blocks as idle
        monkeypatch.setattr(scratch, "_IDLE", 1 << 30)
    report = tracer.check(trace)
    _assert_kept(held, broken)
    if not broken:
        assert report.verdict == clean.verdict == "passed"
        assert report.table.equals(clean.table)


def test_steptrace_runs_check_keeps_nothing_for_its_exports(monkeypatch):
    """``steptrace run`` checks its trace once, then writes its reports: the arena's blocks
    are freed before those (they would only add to the run's peak)."""
    from tracer.app.run_reports import check_run
    monkeypatch.setattr(scratch, "ARENA_MIN", 0)
    trace = _trace()
    verdict, _ = check_run(trace, None)
    assert verdict == "passed" and kept_bytes() == 0
    tracer.check(trace)
    assert kept_bytes() > 0             # a plain check keeps them


def test_the_owners_callback_may_run_under_the_lock(monkeypatch):
    """A trace in a reference cycle goes at a garbage collection, which an allocation made
    while the keeping's lock is held may set off, in the same thread: its callback must not
    wait for that lock forever (a plain Lock would deadlock here)."""
    monkeypatch.setattr(scratch, "ARENA_MIN", 0)
    trace = _trace()
    tracer.check(trace)
    ref, done = scratch._kept[0], []

    def collect_under_the_lock():
        with scratch._kept_lock:
            scratch._forget(ref)        # as the owner's weak reference calls it when it goes
        done.append(True)
    worker = threading.Thread(target=collect_under_the_lock, daemon=True)
    worker.start()
    worker.join(10)
    if not done:            # stuck (a plain Lock): free it so that the teardown does not hang
        scratch._kept_lock.release()
    assert done and kept_bytes() == 0
