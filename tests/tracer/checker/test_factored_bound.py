"""A first-layer weight's lower bound kept as its two factors decides as the whole bound did.

The lower bound of a weight's gradient magnitudes ``|X|^T @ (M(dZ) + |dZ|)``, cut into runs
of the batch (tracer/program/matmul.py), is left as its factors (``LowProduct``) and
multiplied out block by block inside the comparison (tracer/checker/compare.py), never
stored whole. An S4-like program (raw ``x @ W1 + b1``, ``maximum(., 0)``, ``@ W2 + b2``, MSE,
hand-written SGD) is recorded from real torch steps. The factored bound must be the dense
bound bit for bit and never above the exact magnitudes ``M``; planted faults (a gradient 1%
off on one weight, a wrong sign on one element, an error 1.5 times the tolerance on the most
cancelled element, ten times the learning rate) are caught where they are, and their clean
twin passes without any exact magnitude of W1.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tracer  # noqa: E402
import tracer.checker.compare as compare  # noqa: E402
import tracer.checker.quantities as quantities  # noqa: E402
from tracer import Recorder  # noqa: E402
from tracer.checker.feed import leaves, positions, step_groups  # noqa: E402
from tracer.checker.resolve import resolve_program  # noqa: E402
from tracer.checker.tolerance import EPS, FACTOR, LOWER_FACTOR  # noqa: E402
from tracer.program import Evaluation, StepProgram  # noqa: E402
from tracer.program.matmul import LowProduct  # noqa: E402

PROGRAM = {"inputs": [{"name": "x", "source": "inputs"}, {"name": "y", "source": "targets"}],
           "params": ["W1", "b1", "W2", "b2"],
           "nodes": [{"name": "z1", "op": "matmul", "args": ["x", "W1"]},
                     {"name": "a1", "op": "add", "args": ["z1", "b1"]},
                     {"name": "h", "op": "maximum", "args": ["a1", 0.0]},
                     {"name": "z2", "op": "matmul", "args": ["h", "W2"]},
                     {"name": "y_hat", "op": "add", "args": ["z2", "b2"]},
                     {"name": "loss", "op": "mse_loss", "args": ["y_hat", "y"]}],
           "outputs": {"prediction": "y_hat", "loss": "loss", "target": "y"}}
LR = 0.01


def _trace(steps=6, batch=32, k=64, hidden=128, lr_run=LR):
    """S4's loop in small: the trace declares ``LR``, the loop steps with ``lr_run``."""
    torch.manual_seed(4)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(steps * batch, k)).astype(np.float32)
    y = (x @ rng.normal(size=(k, 1)) / 8).astype(np.float32)
    params = {"W1": torch.randn(k, hidden) * 0.1, "b1": torch.zeros(hidden), "W2": torch.randn(hidden, 1) * 0.1,
              "b2": torch.zeros(1)}
    for p in params.values():
        p.requires_grad_(True)
    rec = Recorder(meta={"framework": "torch", "program": PROGRAM,
                         "optimizer": {"name": "sgd", "convention": "plain", "lr": LR}})
    rec.set_data(x, y)
    for step in range(steps):
        rows = np.arange(step * batch, (step + 1) * batch)
        before = {n: p.detach().numpy().copy() for n, p in params.items()}
        h = torch.maximum(torch.tensor(x[rows]) @ params["W1"] + params["b1"], torch.tensor(0.0))
        pred = h @ params["W2"] + params["b2"]
        loss = torch.nn.functional.mse_loss(pred, torch.tensor(y[rows]))
        loss.backward()
        grads = {n: p.grad.numpy().copy() for n, p in params.items()}
        with torch.no_grad():
            for p in params.values():
                p -= lr_run * p.grad
                p.grad = None
        rec.record_step(epoch=1, batch=step + 1, params_before=before, grads=grads, rows=rows,
                        params_after={n: p.detach().numpy().copy() for n, p in params.items()},
                        y_pred=pred.detach().numpy(), loss=float(loss.detach()), lr=LR, batch_size=batch)
    return rec.trace()


def _evaluation(trace, dtype=np.float32):
    arrays = trace.arrays()
    program = resolve_program(trace).program
    group = step_groups(arrays)[0]
    return Evaluation(program, leaves(program, arrays, group, dtype), dtype), positions(group.param_pos)


@pytest.fixture(scope="module")
def clean():
    return _trace()


def test_the_factored_bound_is_the_dense_bound_and_never_above_the_exact_magnitudes(clean):
    ev, _ = _evaluation(clean)
    low = ev.gradient_magnitudes(lower=True, factored=True)
    assert isinstance(low["W1"], LowProduct)
    assert not any(isinstance(low[n], LowProduct) for n in ("b1", "W2", "b2"))   # not products of two leaves
    dense = np.asarray(low["W1"])
    ev2, _ = _evaluation(clean)
    assert np.array_equal(dense, ev2.gradient_magnitudes(lower=True)["W1"])      # bit for bit
    exact = ev2.gradient_magnitudes()["W1"]
    assert np.all(dense * LOWER_FACTOR <= exact)            # as the checker uses it, in float32
    assert np.median(dense / exact) > 0.01                  # and not vacuous
    ev64, _ = _evaluation(clean, np.float64)
    low64 = np.asarray(ev64.gradient_magnitudes(lower=True, factored=True)["W1"])
    assert np.all(low64 <= ev64.gradient_magnitudes()["W1"])                    # L <= M, element by element
    assert all(isinstance(m, np.ndarray) for m in ev.gradient_magnitudes(lower=True).values())   # asked plain


def test_blocks_elements_and_steps_of_the_factored_bound_are_those_of_the_product(clean):
    ev, _ = _evaluation(clean)
    low = ev.gradient_magnitudes(lower=True, factored=True)["W1"].reshape(6, -1)
    dense = np.asarray(low)
    assert dense.shape == (6, 64 * 128)
    n = 128
    for r0, r1, c0, c1 in [(0, 2, 0, 64 * n), (2, 5, 3 * n, 7 * n), (1, 3, 5, 1000), (5, 6, 64 * n - 9, 64 * n)]:
        assert np.array_equal(low.block(r0, r1, c0, c1), dense[r0:r1, c0:c1])
        out = np.empty((r1 - r0, c1 - c0), dtype=dense.dtype)
        assert low.block(r0, r1, c0, c1, out) is out and np.array_equal(out, dense[r0:r1, c0:c1])
    rows, cols = np.array([0, 3, 3, 5]), np.array([0, 17, 64 * n - 1, 4000])
    assert np.array_equal(low.at(rows, cols), dense[rows, cols])
    pick = np.array([4, 1])
    assert np.array_equal(np.asarray(low[pick]), dense[pick])
    assert np.array_equal(np.asarray(low[np.arange(6) % 2 == 0]), dense[::2])
    assert np.array_equal(low + dense, 2 * dense) and np.array_equal(dense + low, 2 * dense)


def test_the_pair_pass_with_the_factored_bound_gives_what_the_dense_bound_gives(clean, monkeypatch):
    ev, pos = _evaluation(clean)
    e = ev.gradients()["W1"].reshape(6, -1)
    a = clean.arrays().params["W1"].grad[pos].copy()
    a[1, 5] *= -1.0                                          # one row failing, among clean ones
    low = ev.gradient_magnitudes(lower=True, factored=True)["W1"].reshape(6, -1)
    rtol = FACTOR * EPS["float32"]
    for block in (compare.BLOCK, 1000):                      # whole rows per block; blocks cut inside rows
        monkeypatch.setattr(compare, "BLOCK", block)
        got = compare.worst_rows_pair(e, a, rtol, low, rtol * LOWER_FACTOR)
        want = compare.worst_rows_pair(e, a, rtol, np.asarray(low), rtol * LOWER_FACTOR)
        for (i1, b1), (i2, b2) in zip(got, want):
            assert np.array_equal(i1, i2) and np.array_equal(b1, b2)
        (_, bad), (j, bad2) = got
        assert bad2[1] > 1 and j[1] == 5 and np.all(np.delete(bad2, 1) <= 1)


def _exact_rows(monkeypatch):
    """Records ``(param, rows)`` of every request for exact gradient magnitudes, and the
    kinds of scale the pair pass was given."""
    asked, scales = [], []
    real, pair = quantities.Mags.grad, quantities.worst_rows_pair

    def grad(self, name, rows=None):
        asked.append((name, 0 if rows is None else len(rows)))
        return real(self, name, rows)

    def worst_rows_pair(e, a, rtol, scale, rtol2):
        scales.append(type(scale).__name__)
        return pair(e, a, rtol, scale, rtol2)
    monkeypatch.setattr(quantities.Mags, "grad", grad)
    monkeypatch.setattr(quantities, "worst_rows_pair", worst_rows_pair)
    return asked, scales


def test_the_clean_twin_passes_its_first_layer_rows_settled_by_the_factored_bound(clean, monkeypatch):
    asked, scales = _exact_rows(monkeypatch)
    report = tracer.check(clean)
    assert report.verdict == "passed", report.summary()
    assert scales == ["LowProduct"]
    assert not [a for a in asked if a[0] == "W1"]
    rows = report.table.query("quantity == 'grad' and param == 'W1'")
    own = rows["abs_err"] / np.maximum(rows["expected"].abs(), rows["actual"].abs())
    assert len(rows) == 6 and (rows["rel_err"] < own).all()   # each measured against the bound, not |value|


def _grad_failures(report):
    fails = report.failures
    return fails[fails["quantity"] == "grad"][["step", "param", "index"]].values.tolist()


def _planted(change):
    trace = _trace()
    ev, pos = _evaluation(trace)
    grad = trace.arrays().params["W1"].grad
    i = change(grad[np.arange(len(grad))[pos][2]], ev, pos)     # step 3's row, in place
    return trace, i


def _largest(row, ev, pos):
    return int(np.argmax(np.abs(row)))


def test_a_gradient_one_percent_off_on_one_weight_fails_there():
    def off(row, ev, pos):
        i = _largest(row, ev, pos)
        row[i] *= np.float32(1.01)
        return i
    trace, i = _planted(off)
    report = tracer.check(trace)
    assert report.verdict == "failed"
    assert _grad_failures(report) == [[3, "W1", i]]


def test_a_gradient_with_the_wrong_sign_on_one_element_fails_there():
    def flip(row, ev, pos):
        i = int(np.argsort(np.abs(row))[-50])                # a middling element, not the largest
        row[i] = -row[i]
        return i
    trace, i = _planted(flip)
    report = tracer.check(trace)
    assert report.verdict == "failed"
    assert _grad_failures(report) == [[3, "W1", i]]


def _cancelled(row, ev, pos, size):
    """Adds ``size`` tolerances to the element of step 3's W1 gradient whose value is
    smallest against its exact magnitude."""
    g = ev.gradients()["W1"].reshape(6, -1)[2].astype(np.float64)
    m = ev.gradient_magnitudes()["W1"].reshape(6, -1)[2].astype(np.float64)
    i = int(np.argmin(np.where(m > 0, np.abs(g) / m, np.inf)))
    assert abs(g[i]) < 1e-3 * m[i]                          # deeply cancelled
    row[i] += np.float32(size * FACTOR * EPS["float32"] * m[i])
    return i


def test_an_error_above_the_tolerance_on_a_cancelled_element_fails_and_one_below_passes(monkeypatch):
    trace, i = _planted(lambda row, ev, pos: _cancelled(row, ev, pos, 1.5))
    report = tracer.check(trace)
    assert report.verdict == "failed"
    assert _grad_failures(report) == [[3, "W1", i]]
    trace, i = _planted(lambda row, ev, pos: _cancelled(row, ev, pos, 0.5))
    asked, scales = _exact_rows(monkeypatch)
    report = tracer.check(trace)
    assert scales == ["LowProduct"] and [a for a in asked if a[0] == "W1"] == [("W1", 1)]   # that row only
    assert report.verdict == "passed", report.summary()


def test_ten_times_the_learning_rate_fails_the_updates_while_the_gradients_pass():
    report = tracer.check(_trace(lr_run=10 * LR))
    assert report.verdict == "failed"
    table = report.table
    assert (table.query("quantity == 'grad'")["status"] == "passed").all()
    updates = table.query("quantity == 'update' and param == 'W1'")
    assert len(updates) == 6 and (updates["status"] == "failed").all()


def test_a_weight_used_twice_gets_its_two_bounds_summed_not_factored():
    program = StepProgram.from_dict({
        "inputs": [{"name": "x", "source": "inputs"}], "params": ["W"],
        "nodes": [{"name": "u", "op": "matmul", "args": ["x", "W"]}, {"name": "v", "op": "matmul", "args": ["x", "W"]},
                  {"name": "w", "op": "mul", "args": ["u", "v"]}, {"name": "loss", "op": "sum", "args": ["w"]}],
        "outputs": {"loss": "loss"}})
    rng = np.random.default_rng(0)
    lv = {"x": rng.normal(size=(3, 32, 64)).astype(np.float32), "W": rng.normal(size=(3, 64, 64)).astype(np.float32)}
    low = Evaluation(program, lv, np.float32).gradient_magnitudes(lower=True, factored=True)["W"]
    plain = Evaluation(program, lv, np.float32).gradient_magnitudes(lower=True)["W"]
    assert isinstance(low, np.ndarray) and np.array_equal(low, plain)
    assert np.all(low * LOWER_FACTOR <= Evaluation(program, lv, np.float32).gradient_magnitudes()["W"])
