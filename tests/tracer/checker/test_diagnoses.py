"""Each program-based diagnosis: a planted bug is named (step, parameter or quantity,
evidence, fix) and its clean twin gives no finding and passes the check."""
import numpy as np
import pytest

import tracer
from tracer.checker.diagnoses import diagnose

from _program_runs import mlp_program, simulate

RNG = np.random.default_rng(3)
X = RNG.normal(size=(20, 3))
Y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3


def _params(b1=0.0, units=4, out=1):
    return {"w1": RNG.normal(size=(units, 3)) * 0.5, "b1": np.full(units, b1),
            "w2": RNG.normal(size=(out, units)) * 0.5, "b2": np.zeros(out)}


def _kinds(trace, kind):
    report = tracer.check(trace)
    return [f for f in report.findings if f.kind == kind], report


def test_clean_run_has_no_finding_and_passes():
    trace = simulate(mlp_program(), X, Y, _params(b1=0.1))
    report = tracer.check(trace)
    assert report.ok, report.summary()
    assert report.findings == []


def test_continuity_names_a_write_outside_the_update():
    def extra_update(step, params):
        if step == 2:
            params = dict(params)
            params["w2"] = params["w2"] * 0.9          # e.g. model.weight -= 0.1 * model.weight
        return params
    found, report = _kinds(simulate(mlp_program(), X, Y, _params(b1=0.1), tamper=extra_update), "continuity")
    assert len(found) == 1 and found[0].param == "w2" and found[0].step == 3
    assert "between step 2 and step 3" in found[0].message and found[0].fix
    assert report.verdict == "failed"


def test_dead_relu_is_named_with_its_operation():
    found, _ = _kinds(simulate(mlp_program(), X, Y, _params(b1=-100.0)), "dead_gradient")
    names = sorted(f.param for f in found)
    assert names == ["b1", "w1", "w2"]            # w2 multiplies the dead ReLU's zeros
    assert all("dead ReLU" in f.message and "model.py:4" in f.message for f in found)


def test_softmax_over_one_unit_kills_every_gradient_below_it():
    prog = mlp_program(act="tanh")
    prog["nodes"][2:2] = []
    prog["nodes"].insert(3, {"name": "p", "op": "softmax", "args": ["pred"], "attrs": {"dim": -1}})
    prog["nodes"][-1]["args"] = ["p", "y"]
    prog["outputs"]["prediction"] = "p"
    found, _ = _kinds(simulate(prog, X, (Y > 0).astype(float), _params()), "dead_gradient")
    assert {f.param for f in found} == {"w1", "b1", "w2", "b2"}
    assert all("softmax over a single unit" in f.message for f in found)


def test_loss_broadcast_names_both_shapes():
    prog = mlp_program(target_shape=[])                   # predictions (N, 1), targets (N,)
    found, report = _kinds(simulate(prog, X, Y[:, 0], _params(b1=0.1)), "loss_broadcast")
    assert len(found) == 1
    assert "(20, 1)" in found[0].message and "(20,)" in found[0].message and "(20, 20)" in found[0].message
    assert report.ok is False
    clean, report = _kinds(simulate(mlp_program(), X, Y, _params(b1=0.1)), "loss_broadcast")
    assert clean == [] and report.ok


def test_non_finite_names_the_step_and_the_operation():
    prog = mlp_program(act="tanh")
    prog["nodes"].insert(3, {"name": "lp", "op": "log", "args": ["pred"], "where": "model.py:6"})
    prog["nodes"][-1]["args"] = ["lp", "y"]
    prog["outputs"]["prediction"] = "lp"
    params = _params()
    params["b2"] = np.array([-50.0])                      # log of a negative prediction
    found, report = _kinds(simulate(prog, X, Y, params, steps=2), "non_finite")
    assert len(found) == 1 and found[0].step == 1
    assert "log of 0 or of a negative number" in found[0].message and "model.py:6" in found[0].message
    assert report.verdict == "failed"
    assert (report.table["status"] == "non-finite").any()


def test_a_guessed_linear_model_accepts_a_vector_weight_and_a_scalar_bias():
    """``x @ w + b`` with ``w`` of shape (k,) and a Python-float bias: the guessed model
    compares one prediction per row with one target per row (no broadcast)."""
    from tracer import Recorder
    x, y = X, Y[:, 0]
    rec = Recorder(meta={"framework": "numpy", "optimizer": {"name": "sgd", "convention": "plain", "lr": 0.1}})
    rec.set_data(x, y)
    w, b = np.zeros(3), np.float64(0.0)
    for step in range(3):
        pred = x @ w + b
        gw, gb = x.T @ (pred - y) / len(y), np.mean(pred - y)
        rec.record_step(epoch=step + 1, batch=1, params_before={"w": w, "b": b},
                        params_after={"w": w - 0.1 * gw, "b": b - 0.1 * gb}, rows=np.arange(len(y)), y_pred=pred,
                        loss=float(np.mean((pred - y) ** 2) / 2))
        w, b = w - 0.1 * gw, b - 0.1 * gb
    report = tracer.check(rec.trace())
    assert report.ok, report.summary()
    assert "linear model" in report.identified["model"]


def _loss_program(tail):
    prog = mlp_program(act="tanh")
    prog["nodes"][-1]["name"] = "l0"
    prog["nodes"] += tail
    return prog


def test_a_mean_loss_divided_by_the_batch_size_again_is_named():
    planted = _loss_program([{"name": "loss", "op": "div", "args": ["l0", 20.0], "where": "train.py:12"}])
    found, report = _kinds(simulate(planted, X, Y, _params()), "loss_scale")
    assert len(found) == 1 and "divided by the batch size (20) again at train.py:12" in found[0].message
    assert found[0].evidence["factor"] == 20 and report.table["passed"].all()
    twin = _loss_program([{"name": "loss", "op": "div", "args": ["l0", 2.0]}])      # a /2 is no bug
    assert _kinds(simulate(twin, X, Y, _params()), "loss_scale")[0] == []


def test_a_summed_loss_that_diverges_is_named():
    summed = mlp_program(act="tanh", loss="mse_loss")
    summed["nodes"][-1]["attrs"] = {"reduction": "sum"}
    found, _ = _kinds(simulate(summed, X, Y * 50, _params(), lr=0.05, steps=8), "loss_scale")
    assert len(found) == 1 and "sums over the 20 rows" in found[0].message and "diverged" in found[0].message
    calm, _ = _kinds(simulate(summed, X, Y, _params(), lr=0.001, steps=8), "loss_scale")
    assert calm == []


def test_loss_broadcast_screens_on_two_rows_and_names_the_full_batch():
    """The diagnosis screens on the first step's first 2 rows (a probe of 1 row would not
    broadcast (1, 1) against (1,) and miss the bug); a hit is re-read on the whole step for
    the shapes it names; a probe that cannot be evaluated falls back to the whole step."""
    from tracer.checker.diagnoses.base import Context
    from tracer.checker.diagnoses.loss_shape import LossBroadcast
    prog = mlp_program(target_shape=[])
    trace = simulate(prog, X, Y[:, 0], _params(b1=0.1))
    program = tracer.check(trace).context["program"]
    ctx = Context(trace, program)
    assert ctx.shape_probe.values["pred"].shape[1] == 2
    (found,) = LossBroadcast().run(ctx)
    assert "(20, 1)" in found["message"] and "(20, 20)" in found["message"]
    failing = Context(trace, program)
    failing._evaluate = lambda count, gradients, rows=None: None if rows else Context._evaluate(
        failing, count, gradients)
    (found,) = LossBroadcast().run(failing)
    assert "(20, 20)" in found["message"] and failing.shape_probe.values["pred"].shape[1] == 20
    clean = simulate(mlp_program(), X, Y, _params(b1=0.1))
    clean_ctx = Context(clean, tracer.check(clean).context["program"])
    assert LossBroadcast().run(clean_ctx) == [] and clean_ctx.shape_probe.values["pred"].shape[1] == 2
