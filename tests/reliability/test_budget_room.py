"""The budget check's cached bound (:mod:`tracer.budget_room`) never changes a decision.

Each run below records the same steps twice, with the shortcut on and off, and compares
everything the recorder kept (tables, capture mode, notes, the store's chunks); on top, every
time the shortcut answers "fits" the full check is asked too and must agree. The steps vary
what the bound keys on: new parameters, optimizer slots appearing, a broken chain, a
parameter absent from a step, batches of other sizes, steps without predictions, micro-steps,
logs with new columns, a note; budgets are tight enough to fall back to summary (no store),
spill (a spilling store) or flush (a store that does not spill) part-way.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from tracer import Recorder, budget_room
from tracer.store import StreamStore


def _steps(seed: int, n: int = 60) -> list[dict]:
    """``n`` record_step keyword arguments, the layout changing now and then."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=300)
    b = rng.normal(size=4)
    out = []
    for s in range(1, n + 1):
        names = {"w": w, "b": b}
        if s > 20:
            names["v"] = np.full(50, float(s > 40))            # a parameter first seen late
        if s == 33:
            del names["b"]                                      # absent from one step
        before = {k: v.copy() for k, v in names.items()}
        if s == 27:
            before["w"] = before["w"] + 1.0                     # a write between steps: the chain breaks
        after = {k: v - 0.01 * (s % 3) for k, v in before.items()}
        rows_n = 8 if s % 7 else 3                              # a short batch now and then
        kw = dict(epoch=1 + s // 20, batch=s, params_before=before, params_after=after,
                  grads={k: v * 0.5 for k, v in before.items()}, rows=rng.integers(0, 100, rows_n),
                  y_pred=None if s % 11 == 0 else rng.normal(size=(rows_n, 1)), loss=float(s), lr=0.1)
        if s > 10:
            kw["state"] = {k: ({"m": v * 2} if s < 45 or k != "w" else {"m": v * 2, "v": v * 3})
                           for k, v in before.items()}
        if s == 50:
            kw["micro"] = np.arange(rows_n) % 2
        if s % 13 == 0:
            kw["logs"] = {f"metric_{s}": 1.5}                   # a new steps column, back-filled
        out.append(kw)
        w, b = after["w"], after.get("b", b)
    return out


def _record(steps: list[dict], max_bytes, store) -> Recorder:
    rec = Recorder(max_bytes=max_bytes, store=store)
    rec.set_data(np.zeros((100, 2)), np.zeros((100, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i, kw in enumerate(steps):
            rec.record_step(**kw)
            if i == 30:
                rec.note("a note mid-run")
    return rec


def _tables(rec: Recorder) -> dict:
    t = rec.trace()
    return {"steps": t.steps, "params": t.params, "samples": t.samples,
            "mode": t.meta["capture"]["mode"], "notes": t.meta.get("notes")}


@pytest.fixture
def checked(monkeypatch):
    """Room.fits wrapped: whenever it says "fits", the full check must say so too."""
    taken = []
    fits = budget_room.Room.fits

    def fits_checked(self, rec, before, state, rows, y_pred, micro):
        ok = fits(self, rec, before, state, rows, y_pred, micro)
        if ok:
            growth = rec._full.growth(before, state, rows, y_pred)
            assert rec.kept_bytes + rec.growth_factor * growth <= rec.max_bytes
            taken.append(rec.steps_seen)
        return ok
    monkeypatch.setattr(budget_room.Room, "fits", fits_checked)
    return taken


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind,max_bytes", [("none", 60_000), ("none", 200_000), ("none", None),
                                            ("spill", 400_000), ("spill", 2_000_000), ("readback", 3_000_000)])
def test_the_cached_budget_bound_decides_as_the_full_check(tmp_path, monkeypatch, checked, seed, kind, max_bytes):
    steps = _steps(seed)
    got = {}
    for on in (True, False):
        monkeypatch.setattr(budget_room, "ENABLED", on)
        store = None if kind == "none" else StreamStore(tmp_path / f"{on}.trace", flush_every=10_000,
                                                        flush_seconds=None, spill=kind == "spill")
        got[on] = _tables(_record(steps, max_bytes, store))
        if on and max_bytes is not None:
            assert len(checked) >= 3, "the shortcut was never taken"
    for key in ("steps", "params", "samples"):
        pd.testing.assert_frame_equal(got[True][key], got[False][key], check_exact=True)
    assert got[True]["mode"] == got[False]["mode"] and got[True]["notes"] == got[False]["notes"]


def test_the_budgets_above_fall_back_and_spill_part_way(tmp_path):
    """The tight budgets really decide something mid-run (else the test above shows little)."""
    steps = _steps(0)
    assert _tables(_record(steps, 60_000, None))["mode"] == "summary"
    assert _tables(_record(steps, 200_000, None))["mode"] == "summary"
    rec = _record(steps, 400_000, StreamStore(tmp_path / "s.trace", flush_every=10_000, flush_seconds=None))
    assert rec.store.chunks > 1 if hasattr(rec.store, "chunks") else True
    assert rec.full and len(rec.trace().steps) == len(steps)
