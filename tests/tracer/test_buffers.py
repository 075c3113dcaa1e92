"""tracer.buffers: the recorder's columnar storage (exact values, growth without copies)."""
from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import pytest

from tracer import chunk_pool
from tracer.buffers import RowBuffer, ScalarColumns


@pytest.fixture(autouse=True)
def _own_pool(monkeypatch):
    """Each test starts from an empty chunk pool: the pool is per process, and blocks that
    earlier tests' traces still hold (until the garbage collector frees them) could fill
    it, so that a test's block came from outside the pool depending on the suite's order."""
    monkeypatch.setattr(chunk_pool, "_blocks", [])
    monkeypatch.setattr(chunk_pool, "_populated", {})


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_values_round_trip_exactly(dtype):
    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(50, 3)) * 1e6).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        rows[0] = [np.nan, np.inf, -0.0]
    buf = RowBuffer(3, dtype, capacity=8)
    for row in rows[:20]:
        buf.append(row)
    buf.extend(rows[20:])
    out = buf.to_array()
    assert out.dtype == dtype and out.shape == (50, 3) and buf.n == 50 and buf.width == 3
    assert out.tobytes() == rows.tobytes()            # bit for bit, NaN and -0.0 included


def test_growth_keeps_earlier_chunks_in_place():
    buf = RowBuffer(2, np.float64, capacity=4)
    first_chunk = buf._cur                            # the block the first rows are copied into
    for i in range(4):
        buf.append([i, i])
    buf.append([4, 4])                                # a full chunk is kept, a new one allocated
    buf.extend(np.arange(20, dtype=np.float64).reshape(10, 2))
    assert buf._chunks[0] is first_chunk              # never copied nor moved
    assert first_chunk[:, 0].tolist() == [0, 1, 2, 3]
    assert all(c.shape[0] >= 4 for c in buf._chunks)
    assert buf.to_array()[:, 0].tolist() == [0, 1, 2, 3, 4] + list(range(0, 20, 2))


def test_later_chunks_grow_but_stay_under_the_chunk_size():
    buf = RowBuffer(1024, np.float64, capacity=64)   # 8 KiB rows: 1024 rows per 8 MiB chunk at most
    for _ in range(3):
        buf._next_chunk()
    sizes = [c.shape[0] for c in buf._chunks] + [buf._cur.shape[0]]
    assert sizes == [64, 128, 256, 512]
    assert buf._cur.nbytes <= RowBuffer.CHUNK_BYTES


def test_to_array_is_a_snapshot_view_and_append_fill_pads():
    buf = RowBuffer(2, np.float32, capacity=2)
    buf.append([1, 2])
    snapshot = buf.to_array()
    buf.append_fill(np.nan)                           # later rows do not show in the snapshot
    out = buf.to_array()
    assert out[0].tolist() == [1, 2] and np.isnan(out[1]).all() and snapshot.shape == (1, 2)
    assert np.shares_memory(snapshot, out)            # no copy: one chunk, viewed
    assert buf.nbytes == out.nbytes                   # the filled rows


def test_big_rows_get_one_chunk_and_to_array_does_not_copy():
    buf = RowBuffer(128_000, np.float32)              # S4's W1: 512 KB rows
    for i in range(20):
        buf.append(np.full(128_000, i, np.float32))
    out = buf.to_array()
    assert not buf._chunks and np.shares_memory(out, buf._cur)
    assert out[:, 0].tolist() == list(range(20)) and buf.nbytes == 20 * 512_000


def test_reset_reuses_the_touched_chunk_unless_a_view_is_alive():
    buf = RowBuffer(100_000, np.float32)
    buf.append(np.ones(100_000, np.float32))
    chunk = weakref.ref(buf._cur)                     # no reference of its own
    buf.reset()
    assert buf._cur is chunk() and buf.n == 0 and buf.nbytes == 0
    buf.append(np.zeros(100_000, np.float32))
    view = buf.to_array()
    buf.reset()                                       # a view is alive: its rows are not overwritten
    buf.append(np.full(100_000, 7, np.float32))
    assert buf._cur is not chunk() and view[0, 0] == 0 and buf.to_array()[0, 0] == 7


def test_scalar_columns_back_fill_late_and_missing_columns():
    cols = ScalarColumns()
    cols.add_row({"step": 1, "loss": 0.5})
    cols.add_row({"step": 2, "extra": 7.0})
    cols.add_row({"step": 3, "loss": 0.25})
    d = cols.as_dict()
    assert d["step"].tolist() == [1, 2, 3]
    assert d["loss"][0] == 0.5 and np.isnan(d["loss"][1]) and d["loss"][2] == 0.25
    assert np.isnan(d["extra"][0]) and d["extra"][1] == 7.0 and np.isnan(d["extra"][2])
    assert cols.n == 3 and cols.last("step") == 3 and cols.last("nothing") is None
    assert ScalarColumns().last("step") is None


def test_a_big_chunk_is_reused_only_once_no_view_of_it_is_alive():
    from tracer import chunk_pool
    first = RowBuffer(128_000, np.float32)               # a pooled chunk (256 MB reserved)
    first.append(np.full(128_000, 3, np.float32))
    block = id(first._cur.base)
    kept = first.to_array()[0, :10]                      # a view of a view: its base is the block
    del first
    second = RowBuffer(128_000, np.float32)              # the block is still seen: another one
    other = id(second._cur.base)
    assert other != block
    second.append(np.zeros(128_000, np.float32))
    assert kept.tolist() == [3.0] * 10                   # never overwritten
    del kept, second
    third = RowBuffer(128_000, np.float32)               # nobody sees the first block any more
    assert chunk_pool.pooled(third._cur.base) and id(third._cur.base) in {block, other}   # touched memory again
    small = RowBuffer(4, np.float32)                     # small chunks are plain arrays
    assert small._cur.base is None


def test_a_staged_row_is_filled_in_place_handed_out_once_and_recorded_without_a_copy():
    buf = RowBuffer(5000, np.float32)
    buf.append(np.zeros(5000, np.float32))
    row = buf.stage()
    assert row is not None and buf.stage() is None       # one holder at a time
    row[:] = 7
    buf.append(row)                                      # taken as it is
    buf.unstage(row)                                     # already recorded: nothing to give up
    again = buf.stage()
    again[:] = 1
    buf.unstage(again)                                   # given up: it may be handed out again
    later = buf.stage()
    buf.append(np.full(5000, 2, np.float32))             # another value is copied over it
    out = buf.to_array()
    assert later is not None and out[:, 0].tolist() == [0, 7, 2] and buf.n == 3


def test_a_staged_row_survives_a_reset_of_the_buffer():
    buf = RowBuffer(5000, np.float32)
    row = buf.stage()
    row[:] = 3
    buf.reset()                                          # a store drained the buffer: row is still seen
    buf.append(row)                                      # not the next row any more: copied
    assert buf.to_array()[0, 0] == 3 and buf.stage() is not None


def test_release_free_gives_back_only_blocks_no_array_views():
    from tracer import chunk_pool
    kept = chunk_pool.chunk(1024, 2048, np.float32)       # 8 MiB: pooled
    kept[:] = 7.0
    dropped = chunk_pool.chunk(1024, 2048, np.float32)
    dropped_base = id(dropped.base)
    del dropped
    before = len(chunk_pool._blocks)
    released = chunk_pool.release_free()
    assert released >= 1024 * 2048 * 4
    assert all(id(b) != dropped_base for b in chunk_pool._blocks)
    assert any(b is kept.base for b in chunk_pool._blocks) and len(chunk_pool._blocks) < before
    assert float(kept.sum()) == 7.0 * 1024 * 2048                  # a viewed block is untouched


def _smaps_field(address: int, key: str) -> list[str] | None:
    """The values of line ``key`` (``"VmFlags:"``, ``"Rss:"``) of the kernel's mapping
    holding ``address`` (``/proc/self/smaps``); None when there is no such mapping."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(p, 16) for p in head.split("-"))
                inside = lo <= address < hi
            elif inside and line.startswith(key):
                return line.split()[1:]
    return None


def _vm_flags(address: int) -> list[str]:
    return _smaps_field(address, "VmFlags:") or []


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux only: reads /proc/self/smaps")
def test_pool_blocks_are_advised_against_huge_pages_and_a_plain_array_is_not():
    from tracer import chunk_pool
    block = chunk_pool.chunk(1024, 2048, np.float32)     # 8 MiB: pooled
    plain = np.empty(8 << 20, np.uint8)                  # the twin: NumPy's own allocation
    inside = lambda a: a.__array_interface__["data"][0] + 2 * 4096   # a whole page of it
    assert "nh" in _vm_flags(inside(block))
    assert "nh" not in _vm_flags(inside(plain))
    block[:] = 5.0
    assert float(block[-1, -1]) == 5.0                   # values never depend on the advice


def _rss_kib(address: int) -> int:
    """Resident KiB of the mapping holding ``address``."""
    rss = _smaps_field(address, "Rss:")
    return -1 if rss is None else int(rss[0])


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux only: reads /proc/self/smaps")
def test_big_rows_fault_their_chunk_in_ahead_and_record_the_same_values():
    from tracer import chunk_pool
    chunk_pool.release_free()                            # no touched block to reuse: fresh pages
    twin = RowBuffer(128_000, np.float32)                # one 512 KB row: the twin faults row by row
    twin._ready = twin._cur.shape[0]                     # (nothing left to fault in ahead)
    buf = RowBuffer(128_000, np.float32)
    inside = lambda b: b._cur.__array_interface__["data"][0] + 64 * 4096
    assert _rss_kib(inside(twin)) < 1024 and _rss_kib(inside(buf)) < 1024
    row = np.arange(128_000, dtype=np.float32)
    twin.append(row)
    buf.append(row)
    if chunk_pool._populate[0]:                          # a kernel that takes MADV_POPULATE_WRITE
        ahead = RowBuffer.PREFAULT_BYTES // row.nbytes * row.nbytes     # whole rows: 4 of them
        assert _rss_kib(inside(buf)) >= ahead // 1024 - 8
    assert _rss_kib(inside(twin)) < 1024
    assert buf.to_array().tobytes() == twin.to_array().tobytes() == row.tobytes()


def test_a_reused_block_is_not_faulted_in_again_and_a_fresh_one_is(monkeypatch):
    from tracer import chunk_pool
    if chunk_pool._MADVISE is None:
        pytest.skip("no madvise")
    calls = []
    real = chunk_pool._MADVISE
    monkeypatch.setattr(chunk_pool, "_MADVISE", lambda a, n, advice: calls.append(advice) or real(a, n, advice))
    populate = chunk_pool.MADV_POPULATE_WRITE
    row = np.ones(128_000, np.float32)
    chunk_pool.release_free()
    first = RowBuffer(128_000, np.float32)               # a fresh block: faulted in ahead
    first.append(row)
    fresh = calls.count(populate)
    del first
    calls.clear()
    again = RowBuffer(128_000, np.float32)               # the same block, its pages present
    again.append(row)
    assert calls.count(populate) == 0 and fresh == (1 if chunk_pool._populate[0] else 0)
    assert again.to_array().tobytes() == row.tobytes()


def test_the_staged_row_itself_is_taken_without_asking_addresses_unless_a_row_came_between(monkeypatch):
    from tracer import buffers
    asked = []
    address = buffers._address
    monkeypatch.setattr(buffers, "_address", lambda a: asked.append(1) or address(a))
    buf = RowBuffer(5000, np.float32)
    row = buf.stage()
    row[:] = 5
    asked.clear()
    buf.append(row)                                      # the very array handed out: no address asked
    assert asked == [] and buf.to_array()[0, 0] == 5
    late = buf.stage()
    late[:] = 6
    buf.append_fill(np.nan)                              # a row came between: the staged one was overwritten
    buf.append(late)                                     # not the next row any more: copied (the NaN it holds)
    out = buf.to_array()
    assert np.isnan(out[1, 0]) and np.isnan(out[2, 0]) and buf.n == 3
