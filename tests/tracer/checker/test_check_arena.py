"""The check's arena (tracer.program.scratch.empty) reuses blocks from chunk to chunk, and
never under a value a caller still holds: a recomputed gradient handed on after its chunk,
the engine's values kept by the report's context."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import tracer
import tracer.program.scratch as scratch
from hooks.torch import trace_torch
from tracer.program.scratch import arena, empty
from tracer.program import engine


def _addr(a):
    return a.__array_interface__["data"][0]


def test_a_held_array_is_never_handed_out_again():
    big = (256, 128)                    # 256 KiB of float64: an arena size
    with arena():
        a = empty(big, np.float64)
        a[...] = 7.0
        first = _addr(a)
        view = a[3:].reshape(-1)        # a view keeps the block as busy as the array
        del a
        b = empty(big, np.float64)
        b[...] = 1.0
        assert _addr(b) != first and (view == 7.0).all()
        del view
        c = empty(big, np.float32)      # idle again: the block serves another dtype and shape
        assert _addr(c) == first and c.dtype == np.float32 and (b == 1.0).all()
        d = empty((1000,), np.float64)  # small: plain memory, never the arena
        assert d.base is None
    e = empty(big, np.float64)          # outside a check: a plain array
    assert e.base is None and e.shape == big


def test_an_idle_block_is_reused():
    with arena():
        a = empty((256, 128), np.float64)
        where = _addr(a)
        del a
        assert _addr(empty((200, 128), np.float64)) == where       # smaller fits the same block


def _trace(steps=12):
    torch.manual_seed(0)
    X, Y = torch.randn(40, 30), torch.randn(40, 1)
    model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with trace_torch() as tr:
        for i in range(steps):
            rows = slice(10 * (i % 4), 10 * (i % 4) + 10)
            opt.zero_grad()
            nn.MSELoss()(model(X[rows]), Y[rows]).backward()
            opt.step()
    return tr.trace


def _held(monkeypatch, small_chunks):
    """Check with every array of the engine in the arena (no size floor) and chunks of 3
    steps, keeping every value and gradient the engine hands out, with a copy taken then
    (not the batch rows: :class:`tracer.checker.feed.RowBuffers` refills those per chunk)."""
    monkeypatch.setattr(scratch, "ARENA_MIN", 0)
    import tracer.checker.core as core
    monkeypatch.setattr(core, "CHUNK_BYTES", small_chunks)
    kept = []
    grads, init = engine.Evaluation.gradients, engine.Evaluation.__init__

    def gradients(self, wrt=None):
        out = grads(self, wrt)
        kept.extend((g, g.copy()) for g in out.values())
        return out

    def evaluation(self, *a, **k):
        init(self, *a, **k)
        rows = {i.name for i in self.program.inputs}     # the data rows: RowBuffers' by design
        kept.extend((v, v.copy()) for n, v in self.values.items() if isinstance(v, np.ndarray) and n not in rows)
    monkeypatch.setattr(engine.Evaluation, "gradients", gradients)
    monkeypatch.setattr(engine.Evaluation, "__init__", evaluation)
    return kept


def _assert_kept(held, broken):
    """Many values were held past their chunk; none changed, or (the planted arena) some did."""
    assert len(held) > 50
    changed = sum(not np.array_equal(v, c, equal_nan=True) for v, c in held)
    assert changed > 0 if broken else changed == 0


@pytest.mark.parametrize("broken", [False, True])
def test_values_held_after_their_chunk_are_not_overwritten(monkeypatch, broken):
    trace = _trace()
    clean = tracer.check(trace)
    kept = _held(monkeypatch, small_chunks=3 * 8 * (6 * 2000 + 4 * 8 * 40))
    if broken:              # planted: an arena that takes held blocks as idle
        monkeypatch.setattr(scratch, "_IDLE", 1 << 30)
    report = tracer.check(trace)
    _assert_kept(kept, broken)
    if not broken:
        assert report.verdict == clean.verdict == "passed"
        assert report.table.equals(clean.table)


def test_a_nested_arena_shares_the_outer_blocks():
    big = (256, 128)
    with arena():
        a = empty(big, np.float64)
        where = _addr(a)
        del a
        with arena():                   # inside an active arena: no arena of its own
            held = empty(big, np.float64)
            assert _addr(held) == where
        assert scratch._pool.get() is not None
        assert _addr(empty(big, np.float64)) != where       # still held: still busy
    assert scratch._pool.get() is None


@pytest.mark.parametrize("broken", [False, True])
def test_checks_in_one_arena_never_overwrite_the_first_checks_values(monkeypatch, broken):
    """Several checks in one outer arena (the blocks of the first serve the next): what the
    first check's engine handed out and is still held keeps its memory."""
    first, second = _trace(), _trace(steps=8)
    clean = tracer.check(second)
    with arena():
        kept = _held(monkeypatch, small_chunks=3 * 8 * (6 * 2000 + 4 * 8 * 40))
        tracer.check(first)
        held = list(kept)               # the first check's (the list grows in the second)
        if broken:          # planted: an arena that takes held blocks as idle
            monkeypatch.setattr(scratch, "_IDLE", 1 << 30)
        report = tracer.check(second)
    _assert_kept(held, broken)
    if not broken:
        assert report.verdict == clean.verdict == "passed"
        assert report.table.equals(clean.table)
