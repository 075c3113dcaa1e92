"""``Recorder.record_steps`` (K steps at once, :mod:`tracer.step_block`) stores what K calls
of ``record_step`` store, bit for bit, and takes its shortcut only where that holds by
construction: buffers that exist and chain, no flush, spill or budget decision inside the
block.

Why: each test records the same random steps both ways and compares the traces; a planted
fault (a ``before`` that is not the previous ``after``) must show in both the same way, and
its clean twin must take the shortcut.
"""
import numpy as np
import pytest

from tracer import Recorder, step_block
from tracer.store import StreamStore


def _steps(n, seed=0, nudge=None):
    """``n`` chained steps of two parameters with Adam-like state, rows and predictions; step
    ``nudge`` (0-based) starts from a ``before`` that is not the previous ``after``."""
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    out = []
    for i in range(n):
        if i == nudge:
            w = w + np.float32(1.0)
        gw, gb = rng.normal(size=w.shape).astype(np.float32), rng.normal(size=b.shape).astype(np.float32)
        k = 5 if i % 4 else 3                      # a short batch now and then
        out.append(dict(
            before={"w": w, "b": b}, after={"w": w - gw, "b": b - gb}, grads={"w": gw, "b": gb},
            state={"w": {"m": gw * 2}, "b": {"m": gb * 2}},
            kw=dict(epoch=1 + i // 6, batch=1 + i % 6, rows=None if i == 4 else rng.permutation(20)[:k],
                    y_pred=None if i == 13 else rng.normal(size=(k, 2)),    # rows unknown; no predictions
                    loss=float(i), lr=0.1, batch_size=k, logs={"loss": 0.5 * i}, extra={"opt_step": i + 1})))
        w, b = w - gw, b - gb
    return out


def _record(rec, steps, blocks):
    """Record ``steps`` singly, or as the given blocks (sizes) through ``record_steps``."""
    i = 0
    for size in blocks:
        part = steps[i:i + size]
        stack = {key: {n: np.stack([s[key][n] for s in part]) for n in ("w", "b")} for key in ("before", "after", "grads")}
        state = {n: {"m": np.stack([s["state"][n]["m"] for s in part])} for n in ("w", "b")}
        got = rec.record_steps([s["kw"] for s in part], stack["before"], stack["after"], stack["grads"], state)
        assert got == list(range(i + 1, i + size + 1))
        i += size
    for s in steps[i:]:
        rec.record_step(params_before=s["before"], params_after=s["after"], grads=s["grads"], state=s["state"],
                        **s["kw"])


def _same(a, b):
    for name in ("steps", "samples", "params"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert list(ta.columns) == list(tb.columns) and ta.shape == tb.shape
        for col in ta.columns:
            assert ta[col].to_numpy().tobytes() == tb[col].to_numpy().tobytes() or list(ta[col]) == list(tb[col]), col
    assert a.meta["capture"] == b.meta["capture"] and a.meta["params"] == b.meta["params"]
    for n in ("w", "b"):
        for which in ("before", "after", "grad", "m"):
            assert a.param_values(n, which).tobytes() == b.param_values(n, which).tobytes()


def _counting(monkeypatch):
    taken = []
    real = step_block._block_fits
    monkeypatch.setattr(step_block, "_block_fits", lambda *a: taken.append(real(*a)) or taken[-1])
    return taken


@pytest.mark.parametrize("nudge", [None, 9, 7])     # 9: inside a block; 7: its first step
def test_blocks_store_what_single_steps_store(monkeypatch, nudge):
    steps = _steps(18, nudge=nudge)
    taken = _counting(monkeypatch)
    one, many = Recorder({"framework": "numpy"}), Recorder({"framework": "numpy"})
    _record(one, steps, [])
    _record(many, steps, [2, 5, 7, 4])
    assert taken == [False, True, nudge is None, True]    # the first block makes the buffers
    _same(many.trace(), one.trace())
    before, after = many.trace().param_values("w", "before"), many.trace().param_values("w", "after")
    chained = before[1:] == after[:-1]
    assert chained.all() if nudge is None else (not chained[nudge - 1].any() and chained[:nudge - 1].all())


@pytest.mark.filterwarnings("ignore:steptrace. recording step")
def test_a_block_that_would_flush_or_pass_the_budget_goes_step_by_step(monkeypatch, tmp_path):
    steps = _steps(18)
    taken = _counting(monkeypatch)
    for kind in ("store", "budget"):
        def make(sub):
            if kind == "store":
                return Recorder({"framework": "numpy"}, store=StreamStore(tmp_path / kind / sub, flush_every=6,
                                                                          flush_seconds=None))
            return Recorder({"framework": "numpy"}, max_bytes=6000)
        one, many = make("one"), make("many")
        _record(one, steps, [])
        taken.clear()
        _record(many, steps, [2, 3, 1, 7, 5])
        if kind == "store":      # block of 7 with none held: the 6th step flushes inside it
            assert taken == [False, True, True, False, True]
            assert sorted(p.name for p in (tmp_path / kind / "many").iterdir()) == \
                sorted(p.name for p in (tmp_path / kind / "one").iterdir())
        else:
            assert any(taken) and not all(taken) and one.capture == many.capture == "summary"
        _same(many.trace(), one.trace())
