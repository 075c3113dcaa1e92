"""Issue 12: the recording hot path's shortcuts record exactly what the plain path records.

Full capture hands a big parameter's ``before`` to the recorder as the recorder's own last
``after`` row when the bits are equal (no copy), and copies a big gradient straight into
the recorder's next row. Both shortcuts only apply from ``hooks.torch.step._CHAIN_MIN``
elements on; here they are forced on for small models (and off for the twin), and the
tables must be the same bit for bit - including a write between steps (the chain breaks:
the continuity finding must still name it) and loops with an optimizer, gradient
accumulation and ``every=2``.
"""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import tracer
from hooks.torch import step as tstep
from hooks.torch import trace_torch


def _loop(kind):
    torch.manual_seed(0)
    X, Y = torch.randn(48, 6), torch.randn(48, 1)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = {"adam": torch.optim.Adam(model.parameters(), lr=0.01),
           "write": torch.optim.SGD(model.parameters(), lr=0.1)}.get(kind)   # write: the step closes at step()
    every = 2 if kind == "every" else 1
    with trace_torch(strict=True, every=every) as tr:
        for i in range(6):
            rows = slice(8 * i, 8 * i + 8)
            if opt is not None:
                opt.zero_grad()
            else:
                model.zero_grad()
            nn.functional.mse_loss(model(X[rows]), Y[rows]).backward()
            if kind == "accumulate":
                nn.functional.mse_loss(model(X[rows][:4]), Y[rows][:4]).backward()
            if opt is not None:
                opt.step()
            else:
                with torch.no_grad():
                    for p in model.parameters():
                        p -= 0.1 * p.grad
            if kind == "write" and i == 2:
                model[0].weight.data.mul_(0.5)                       # between steps: breaks the chain
    return tr.trace, [p.detach().clone() for p in model.parameters()]


def _tables(trace):
    out = {}
    for name in ("steps", "params", "samples"):
        df = getattr(trace, name)
        out[name] = df.reindex(sorted(df.columns), axis=1).reset_index(drop=True)
    return out


@pytest.mark.parametrize("kind", ["sgd", "adam", "write", "accumulate", "every"])
def test_shortcuts_record_the_same_tables_as_the_plain_path(monkeypatch, kind):
    monkeypatch.setattr(tstep, "_CHAIN_MIN", 1 << 40)                # plain copies everywhere
    plain, w_plain = _loop(kind)
    monkeypatch.setattr(tstep, "_CHAIN_MIN", 1)                      # every parameter takes the shortcuts
    fast, w_fast = _loop(kind)
    assert all(torch.equal(a, b) for a, b in zip(w_plain, w_fast))  # training untouched
    for name, table in _tables(plain).items():
        other = _tables(fast)[name]
        assert table.shape == other.shape and table.shape[0] > 0, name
        pd.testing.assert_frame_equal(table, other, check_exact=True, obj=name)


def test_a_write_between_steps_still_breaks_the_chain_with_the_shortcuts(monkeypatch):
    monkeypatch.setattr(tstep, "_CHAIN_MIN", 1)
    trace, _ = _loop("write")
    p = trace.params[trace.params["param"] == "0.weight"]
    after3 = p[p["step"] == 3].sort_values("index")["after"].to_numpy()
    before4 = p[p["step"] == 4].sort_values("index")["before"].to_numpy()
    np.testing.assert_array_equal(before4, (after3.astype(np.float32) * np.float32(0.5)))
    assert not np.array_equal(before4, after3)
    report = tracer.check(trace)
    assert not report.ok and "0.weight" in report.summary()


def test_the_shortcuts_are_taken(monkeypatch):
    monkeypatch.setattr(tstep, "_CHAIN_MIN", 1)
    seen = {"chained": 0, "staged": 0}
    same, staged = tstep._same, tstep._staged_row

    def count_same(value, row):
        out = same(value, row)
        seen["chained"] += out
        return out

    def count_staged(*args):
        out = staged(*args)
        seen["staged"] += out is not None
        return out
    monkeypatch.setattr(tstep, "_same", count_same)
    monkeypatch.setattr(tstep, "_staged_row", count_staged)
    _loop("sgd")
    assert seen["chained"] >= 4 * 4 and seen["staged"] >= 4 * 4     # 4 parameters, steps 2..6 / 2..5
