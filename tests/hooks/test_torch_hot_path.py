"""Issue 12: the recording hot path's shortcuts record exactly what the plain path records.

Full capture hands a big parameter's ``before`` to the recorder as the recorder's own last
``after`` row when the bits are equal (no copy), and copies a big gradient straight into
the recorder's next row. Both shortcuts only apply from ``hooks.torch.step._CHAIN_MIN``
elements on; here they are forced on for small models (and off for the twin), and the
tables must be the same bit for bit - including a write between steps (the chain breaks:
the continuity finding must still name it) and loops with an optimizer, gradient
accumulation and ``every=2``.

Summary capture's steady state (``hooks.torch.steady``) reuses what one step taught it about
the next; switched off (``steady.ENABLED = False``) every step goes the plain way, and the
tables must again be the same bit for bit - also when the step's graph changes mid-run (the
shortcut must give way to the plain path, which notes the uncovered steps) and comes back.

Full capture's recorded steps take the steady state's parameters and column names too (their
snapshot stays the plain one). The recorder's budget check answers from a cached bound far from the budget
(``tracer.budget_room``): with it on and off, full capture records the same tables, and a
budget that falls back to summary or spills to a store does so at the same step.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import tracer
from hooks.torch import steady as tsteady
from hooks.torch import step as tstep
from hooks.torch import trace_torch
from tracer import budget_room
from tracer.store import StreamStore


def _update(model, opt, lr):
    """The step's update: the optimizer's, or plain SGD written by hand on the parameters."""
    if opt is not None:
        opt.step()
    else:
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad


def _loop(kind, capture="full", **budget):
    torch.manual_seed(0)
    X, Y = torch.randn(48, 6), torch.randn(48, 1)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = {"adam": torch.optim.Adam(model.parameters(), lr=0.01),
           "write": torch.optim.SGD(model.parameters(), lr=0.1)}.get(kind)   # write: the step closes at step()
    every = 2 if kind == "every" else 1
    with trace_torch(strict=True, every=every, capture=capture, **budget) as tr:
        for i in range(6):
            rows = slice(8 * i, 8 * i + 8)
            if opt is not None:
                opt.zero_grad()
            else:
                model.zero_grad()
            out = model(X[rows])
            if kind == "graph" and i in (3, 4):
                out = out * 1.0                                      # another graph, the same parameters
            if kind == "stale" and i == 4:
                model[0].weight.grad = torch.ones_like(model[0].weight)   # not zeroed: a stale gradient
            nn.functional.mse_loss(out, Y[rows]).backward()
            if kind == "accumulate":
                nn.functional.mse_loss(model(X[rows][:4]), Y[rows][:4]).backward()
            _update(model, opt, 0.1)
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


def _returns(monkeypatch, owner, name):
    """Patch method ``owner.name`` to keep what each call returns; the list it fills."""
    seen = []
    method = getattr(owner, name)

    def counting(self, *args):
        out = method(self, *args)
        seen.append(out)
        return out
    monkeypatch.setattr(owner, name, counting)
    return seen


def _summary_twins(monkeypatch, kind, capture="summary"):
    taken = _returns(monkeypatch, tsteady.Steady, "matches")
    monkeypatch.setattr(tsteady, "ENABLED", False)
    plain, w_plain = _loop(kind, capture=capture)
    assert sum(taken) == 0
    monkeypatch.setattr(tsteady, "ENABLED", True)
    fast, w_fast = _loop(kind, capture=capture)
    assert all(torch.equal(a, b) for a, b in zip(w_plain, w_fast))  # training untouched
    return plain, fast, sum(taken)


@pytest.mark.parametrize("kind", ["sgd", "adam", "write", "accumulate", "every", "graph", "stale"])
def test_summary_steady_state_records_the_same_tables_as_the_plain_path(monkeypatch, kind):
    plain, fast, taken = _summary_twins(monkeypatch, kind)
    assert taken >= 2, taken                                         # the shortcut was taken
    steps = plain.steps
    assert "update_norm_0.weight" in steps and steps["update_norm_0.weight"].gt(0).all()
    assert steps["value_norm_0.weight"].gt(0).all() and steps["grad_norm_0.weight"].gt(0).all()
    pd.testing.assert_frame_equal(_tables(plain)["steps"], _tables(fast)["steps"], check_exact=True)
    assert plain.meta.get("notes") == fast.meta.get("notes")


def test_the_steps_every_k_skips_in_full_capture_take_the_steady_state(monkeypatch):
    plain, fast, taken = _summary_twins(monkeypatch, "every", capture="full")
    assert taken == 5                      # steps 2-6 (step 1 learns): skipped and recorded ones alike
    assert plain.n_steps == 3 and plain.steps["step"].tolist() == [1, 3, 5]
    for name, table in _tables(plain).items():
        pd.testing.assert_frame_equal(table, _tables(fast)[name], check_exact=True, obj=name)
    assert len(plain.data) == 48 and plain.params["before"].notna().all()


def test_summary_steady_state_gives_way_when_the_graph_changes(monkeypatch):
    plain, fast, taken = _summary_twins(monkeypatch, "graph")
    notes = " ".join(fast.meta.get("notes") or [])
    assert "2 step(s) ran a computation other than the step program (steps 4, 5)" in notes, notes
    assert taken == 3                    # steps 2, 3 and 6 (step 1 learns; 4 and 5 ran another graph)
    steps = fast.steps
    assert steps["update_norm_0.weight"].gt(0).all() and len(steps) == 6


def test_summary_steady_state_sees_a_stale_gradient(monkeypatch):
    plain, fast, _ = _summary_twins(monkeypatch, "stale")
    for trace in (plain, fast):
        flags = trace.steps["stale_grad_0.weight"].tolist()
        assert flags == [0, 0, 0, 0, 1, 0], flags                    # the ones left at step 5 only
        assert trace.steps["stale_grad_0.bias"].eq(0).all()


def test_the_stale_sample_reads_every_part_of_a_big_gradient():
    g = torch.zeros(300, 70)                          # 21000 values: 64 runs of 16, 328 apart
    assert not tstep._nonzero(g)
    for run in (0, 31, 63):                           # the first, a middle and the last run
        for offset in (0, 15):
            g.view(-1).zero_()
            g.view(-1)[run * 328 + offset] = 1e-30
            assert tstep._nonzero(g), (run, offset)
    g.view(-1).zero_()
    g.view(-1)[16] = 1.0                              # between two runs: not sampled
    assert not tstep._nonzero(g)
    assert tsteady.sample(g).numel() == 1024
    t = torch.zeros(70, 300).t()                      # not contiguous: a flat copy is sampled
    t[0, 0] = 1.0
    assert tstep._nonzero(t) and not tstep._nonzero(torch.zeros(70, 300).t())


class _Rows(torch.utils.data.Dataset):
    """A map-style dataset that is not a TensorDataset: the trace fills its data table from the batches."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _loader_loop(dataset_kind):
    torch.manual_seed(1)
    X, Y = torch.randn(40, 5), torch.randn(40, 1)
    ds = _Rows(X, Y) if dataset_kind == "indexed" else torch.utils.data.TensorDataset(X, Y)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)
    model = nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with trace_torch(strict=True, every=3) as tr:
        for _ in range(2):
            for xb, yb in loader:
                opt.zero_grad()
                nn.functional.mse_loss(model(xb), yb).backward()
                opt.step()
    return tr.trace, X


@pytest.mark.parametrize("dataset_kind", ["tensor", "indexed"])
def test_steps_every_k_skips_still_bring_the_rows_a_dataset_fills_the_data_table_with(monkeypatch, dataset_kind):
    monkeypatch.setattr(tsteady, "ENABLED", False)
    plain, X = _loader_loop(dataset_kind)
    monkeypatch.setattr(tsteady, "ENABLED", True)
    fast, _ = _loader_loop(dataset_kind)
    assert fast.steps["step"].tolist() == [1, 4, 7, 10] and fast.meta["torch"]["data"] == (
        "dataset" if dataset_kind == "tensor" else "indexed")
    for trace in (plain, fast):                       # every row, drawn by recorded steps or not
        inputs = trace.data[[c for c in trace.data.columns if c.startswith("x")]].to_numpy()
        np.testing.assert_array_equal(inputs, X.numpy())
    for name, table in _tables(plain).items():
        pd.testing.assert_frame_equal(table, _tables(fast)[name], check_exact=True, obj=name)
    assert tracer.check(fast).table["passed"].all()


def test_the_stale_test_sees_the_smallest_values_and_nans():
    """A gradient an update used and nobody zeroed is stale, down to one subnormal, a NaN or
    an -inf in the last value of the sample's last run; an unused one never is."""
    p, q = torch.zeros(300, 70, requires_grad=True), torch.zeros(3, requires_grad=True)
    consumed = {id(p): True, id(q): True}
    p.grad, q.grad = torch.zeros_like(p), torch.zeros_like(q)
    assert tstep._stale([p, q], consumed) == {id(p): False, id(q): False}
    for value in (1e-45, float("nan"), -float("inf")):
        q.grad[1] = value
        assert tstep._stale([p, q], consumed) == {id(p): False, id(q): True}, value
        q.grad.zero_()
    p.grad.view(-1)[63 * 328 + 15] = 1e-45                          # the last value of the last run
    assert tstep._stale([p, q], consumed) == {id(p): True, id(q): False}
    assert tstep._stale([p, q], {id(p): False, id(q): True}) == {id(p): False, id(q): False}   # not used by an update


@pytest.mark.parametrize("capture", ["full", "summary"])
def test_summary_capture_puts_no_hook_on_the_loss_module(capture):
    torch.manual_seed(0)
    X, Y = torch.randn(32, 3), torch.randn(32, 1)
    model, loss_fn = nn.Linear(3, 1), nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hooked = []
    with trace_torch(strict=True, capture=capture) as tr:
        for i in range(4):
            opt.zero_grad()
            loss_fn(model(X[8 * i:8 * i + 8]), Y[8 * i:8 * i + 8]).backward()
            opt.step()
            hooked.append(len(loss_fn._forward_pre_hooks))
    assert hooked[-1] == (1 if capture == "full" else 0)      # the predictions hook: full capture only
    assert len(loss_fn._forward_pre_hooks) == 0 and tr.trace.n_steps == 4
    if capture == "full":
        assert tr.trace.samples["y_pred"].notna().all()
    else:
        assert tr.trace.steps["update_norm_weight"].gt(0).all()


def _every_loop(kind, capture, every=4, steps=15):
    """``every=k`` over more steps than k, so that skipped steps follow skipped steps (the short
    way of :meth:`hooks.torch.step.StepCycle.short_way`); ``kind`` plants what it must give way to."""
    torch.manual_seed(2)
    X, Y = torch.randn(8 * steps, 6), torch.randn(8 * steps, 1)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))
    loss_fn = nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if kind in ("optimizer", "write") else None
    with trace_torch(strict=True, every=every, capture=capture) as tr:
        for i in range(steps):
            rows = slice(8 * i, 8 * i + 8)
            model.zero_grad()
            out = model(X[rows])
            if kind == "graph" and i in (5, 6, 9):
                out = out * 1.0                                      # another graph, the same parameters
            loss_fn(out, Y[rows]).backward()
            if kind == "accumulate" and i in (5, 9):
                loss_fn(model(X[rows][:4]), Y[rows][:4]).backward()  # a second backward: one step
            _update(model, opt, 0.05)
            if kind == "write" and i in (5, 8):
                model[0].weight.data.mul_(0.5)                       # between two skipped steps (closed at step())
    return tr.trace, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("capture", ["full", "summary"])
@pytest.mark.parametrize("kind", ["manual", "optimizer", "write", "graph", "accumulate"])
def test_steps_every_k_skips_take_the_short_way_and_record_the_same_tables(monkeypatch, kind, capture):
    taken = _returns(monkeypatch, tstep.StepCycle, "short_way")
    monkeypatch.setattr(tsteady, "ENABLED", False)
    plain, w_plain = _every_loop(kind, capture)
    assert sum(taken) == 0
    monkeypatch.setattr(tsteady, "ENABLED", True)
    fast, w_fast = _every_loop(kind, capture)
    assert sum(taken) >= (2 if kind == "graph" else 4), taken    # steps 3, 4, 7, 8, ... went the short way
    assert all(torch.equal(a, b) for a, b in zip(w_plain, w_fast))  # training untouched
    assert fast.steps["step"].tolist()[:4] == [1, 5, 9, 13]
    for name, table in _tables(plain).items():
        pd.testing.assert_frame_equal(table, _tables(fast)[name], check_exact=True, obj=name)
    assert plain.meta == fast.meta
    if kind == "write":
        assert fast.meta["torch"]["between_steps"]["0.weight"]["after_step"] == 6


def _loss_module_loop(every, optimizer):
    torch.manual_seed(3)
    X, Y = torch.randn(80, 4), torch.randn(80, 1)
    model, loss_fn = nn.Linear(4, 1), nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1) if optimizer else None
    hooked = []
    with trace_torch(strict=True, every=every) as tr:
        for i in range(10):
            hooked.append(len(loss_fn._forward_pre_hooks))          # while the step's forward runs
            model.zero_grad()
            loss_fn(model(X[8 * i:8 * i + 8]), Y[8 * i:8 * i + 8]).backward()
            _update(model, opt, 0.1)
    assert len(loss_fn._forward_pre_hooks) == 0
    return tr.trace, hooked


@pytest.mark.parametrize("optimizer", [False, True])
def test_every_k_puts_the_predictions_hook_on_only_for_the_forward_passes_of_recorded_steps(optimizer):
    every1, _ = _loss_module_loop(1, optimizer)
    every4, hooked = _loss_module_loop(4, optimizer)
    assert every4.steps["step"].tolist() == [1, 5, 9]
    # the forward of step 1 is watched (no hook yet); the hook is on for the forward passes of steps 5
    # and 9 (recorded: put on at the open of the step before) and of the steps after them and after
    # step 1 (a micro-batch of the recorded step would need it), off for the others
    assert hooked == [0, 1, 0, 0, 1, 1, 0, 0, 1, 1], hooked
    want = every1.samples[every1.samples["step"].isin([1, 5, 9])].reset_index(drop=True)
    got = every4.samples.reset_index(drop=True)
    assert got["y_pred"].notna().all() and len(got) == 24
    pd.testing.assert_frame_equal(want, got, check_exact=True)


@pytest.mark.parametrize("kind", ["manual", "graph", "accumulate"])
def test_summary_steps_take_the_short_way_and_record_the_same_tables(monkeypatch, kind):
    taken = _returns(monkeypatch, tstep.StepCycle, "short_way")
    monkeypatch.setattr(tsteady, "ENABLED", False)
    plain, _ = _every_loop(kind, "summary", every=1)
    monkeypatch.setattr(tsteady, "ENABLED", True)
    fast, _ = _every_loop(kind, "summary", every=1)
    assert sum(taken) >= 8, taken
    steps = fast.steps
    assert steps["update_norm_0.weight"].gt(0).all() and steps["value_norm_0.weight"].gt(0).all()
    pd.testing.assert_frame_equal(_tables(plain)["steps"], _tables(fast)["steps"], check_exact=True)
    assert plain.meta == fast.meta


@pytest.mark.parametrize("kind", ["optimizer", "manual"])
def test_every_k_records_its_steps_as_every_step_is_recorded(kind):
    """What a skipped step no longer takes (its versions, learning rate and update counts, the
    predictions hook) leaves the recorded steps' rows as every=1 records them."""
    every1, _ = _every_loop(kind, "full", every=1)
    every3, _ = _every_loop(kind, "full", every=3)
    kept = every3.steps["step"].tolist()
    assert kept == [1, 4, 7, 10, 13]
    for name, want in _tables(every1).items():
        want = want[want["step"].isin(kept)].reset_index(drop=True)
        got = _tables(every3)[name]
        assert len(got) > 0 and want.shape == got.shape, name
        pd.testing.assert_frame_equal(want, got, check_exact=True, obj=name)
    steps = every3.steps
    assert steps["lr"].eq(0.05).all() if kind == "optimizer" else steps["lr"].isna().all()
    assert steps["updates_0.weight"].eq(1).all()


@pytest.mark.parametrize("kind", ["sgd", "adam", "write", "accumulate", "every", "graph", "stale"])
def test_full_capture_steady_state_records_the_same_tables_as_the_plain_path(monkeypatch, kind):
    """Full capture's recorded steps take the learned structure too (their parameters and
    column names; the snapshot stays the plain one): the same tables, bit for bit."""
    plain, fast, taken = _summary_twins(monkeypatch, kind, capture="full")
    assert taken >= 2, taken
    for name, table in _tables(plain).items():
        assert table.shape[0] > 0, name
        pd.testing.assert_frame_equal(table, _tables(fast)[name], check_exact=True, obj=name)
    assert plain.meta.get("notes") == fast.meta.get("notes") and plain.meta["torch"] == fast.meta["torch"]
    assert plain.meta.get("update_rule") == fast.meta.get("update_rule")


@pytest.mark.parametrize("budget", ["default", "fallback", "spill"])
@pytest.mark.parametrize("kind", ["sgd", "adam", "write", "accumulate", "graph", "stale"])
def test_the_budget_checks_cached_bound_records_the_same_tables(monkeypatch, tmp_path, kind, budget):
    taken = _returns(monkeypatch, budget_room.Room, "fits")
    got = {}
    for on in (False, True):
        monkeypatch.setattr(budget_room, "ENABLED", on)
        room = {"adam": 9500, "write": 7500, "accumulate": 7500, "graph": 6300}.get(kind, 6500)  # full to step 5
        store = StreamStore(tmp_path / f"{on}.trace", flush_every=1000, flush_seconds=None)
        kw = {"fallback": {"max_bytes": room},
              "spill": {"max_bytes": 14 * (room - 1400), "store": store}}.get(budget, {})   # a store holds no data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got[on] = _loop(kind, **kw)
        assert any(taken) == on, taken                                  # the shortcut was taken (only when on)
    (plain, w_plain), (fast, w_fast) = got[False], got[True]
    assert all(torch.equal(a, b) for a, b in zip(w_plain, w_fast))
    for name, table in _tables(plain).items():
        pd.testing.assert_frame_equal(table, _tables(fast)[name], check_exact=True, obj=name)
    assert plain.meta["capture"] == fast.meta["capture"] and plain.meta.get("notes") == fast.meta.get("notes")
    if budget == "fallback":
        assert fast.meta["capture"]["mode"] == "summary" and fast.steps["update_norm_0.weight"].notna().any()
    if budget == "spill":
        assert fast.meta["capture"]["mode"] == "full" and len(fast.params) == 6 * 65 and kw["store"].chunks > 1
