"""tracer.param_buffers: a step's before is stored only where it breaks the chain, and
the values read back are exactly those given (NaN and -0.0 included)."""
from __future__ import annotations

import numpy as np
import pytest

from tracer.param_buffers import ParamBuffers
from tracer.recorder import Recorder


def _chained_steps(buf, n, start=0.0):
    for k in range(n):
        buf.add(np.full(buf.size, start + k, buf.dtype), np.full(buf.size, start + k + 1, buf.dtype))


def test_chained_steps_share_one_buffer():
    buf = ParamBuffers((2, 2), np.float32)
    _chained_steps(buf, 5)
    before, after = buf.before_after()
    assert buf.values is not None and np.shares_memory(before, after)
    assert before[:, 0].tolist() == [0, 1, 2, 3, 4] and after[:, 0].tolist() == [1, 2, 3, 4, 5]
    assert buf.nbytes == 6 * 4 * 4 + 0                  # 6 value rows, no gradient row given here


def test_a_break_in_the_chain_keeps_both_values_exactly():
    buf = ParamBuffers((3,), np.float32)
    _chained_steps(buf, 2)
    buf.add(np.array([2, 2, -0.0], np.float32), np.array([np.nan, 3, 3], np.float32))   # -0.0 != +0.0 bits
    buf.add(np.array([np.nan, 3, 3], np.float32), np.array([4, 4, 4], np.float32))       # chains (NaN bits equal)
    before, after = buf.before_after()
    assert buf.values is None and not np.shares_memory(before, after)
    assert np.signbit(before[2, 2]) and before[:2, 0].tolist() == [0, 1] and after[1].tolist() == [2, 2, 2]
    assert np.isnan(before[3, 0]) and after[3].tolist() == [4, 4, 4]


def test_padding_and_reset():
    buf = ParamBuffers((1,), np.float64)
    _chained_steps(buf, 2)
    buf.pad()
    before, after = buf.before_after()
    assert np.isnan(before[2, 0]) and np.isnan(after[2, 0]) and before[:2, 0].tolist() == [0, 1]
    chained = ParamBuffers((1,), np.float64)
    _chained_steps(chained, 3)
    chained.reset()
    _chained_steps(chained, 2, start=10)
    before, after = chained.before_after()
    assert chained.values is not None and before[:, 0].tolist() == [10, 11] and after[:, 0].tolist() == [11, 12]


def test_recorder_tables_are_the_same_chained_or_not():
    tables = []
    for chain in (True, False):
        rec = Recorder(meta={})
        rec._full.chain = chain                           # False: before and after always apart
        w = np.arange(6, dtype=np.float32).reshape(2, 3)
        for s in range(4):
            new = w - 0.5 if s != 2 else w + 7            # step 3 starts from a value written outside
            rec.record_step(epoch=1, batch=s + 1, params_before={"w": w}, params_after={"w": new},
                            grads={"w": np.ones_like(w)}, loss=1.0)
            w = new if s != 1 else new * 2
        tables.append(rec.trace().params)
    a, b = tables
    assert a.equals(b)


@pytest.mark.parametrize("use_memcmp", [True, False])
def test_same_bytes_is_bit_for_bit(monkeypatch, use_memcmp):
    from tracer import param_buffers
    if not use_memcmp:
        monkeypatch.setattr(param_buffers, "_MEMCMP", None)
    a = np.linspace(-1, 1, 1000).astype(np.float32)
    a[3], a[4] = np.nan, 0.0
    b = a.copy()
    assert param_buffers.same_bytes(a, b) and param_buffers.same_bytes(a, a)
    b[4] = -0.0                                     # equal as numbers, not as bits: the chain breaks
    assert not param_buffers.same_bytes(a, b)
    b[4] = 0.0
    b[999] = np.nextafter(b[999], np.float32(2))    # one ulp at the very end
    assert not param_buffers.same_bytes(a, b)
    assert not param_buffers.same_bytes(a, a[:-1])  # another size


def test_the_view_last_after_gave_out_chains_without_a_compare(monkeypatch):
    from tracer import param_buffers
    compared = []
    same = param_buffers._same_bits
    monkeypatch.setattr(param_buffers, "_same_bits", lambda v, r: compared.append(1) or same(v, r))
    buf = ParamBuffers((3,), np.float32)
    _chained_steps(buf, 2)
    compared.clear()
    buf.add(buf.last_after(), np.full(3, 3, np.float32))            # the very view: chained, not compared
    assert compared == [] and buf.values is not None
    stale = buf.last_after()
    buf.add(stale, np.full(3, 4, np.float32))                        # handed out again: chained
    buf.add(stale, np.full(3, 5, np.float32))                        # no longer the last row: compared, breaks
    before, after = buf.before_after()
    assert compared == [1] and buf.values is None
    assert before[:, 0].tolist() == [0, 1, 2, 3, 3] and after[:, 0].tolist() == [1, 2, 3, 4, 5]
