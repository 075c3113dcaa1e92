"""Gradient accumulation: several backward passes per optimizer step, recorded as micro-steps.

The checker sums the micro-batches' program losses and gradients per step and checks
them against the run; the diagnosis names a micro-batch loss that is not divided by
the number of micro-steps (gradients k times the mean), and its clean twin (the loss
divided by k) has no finding. Both runs pass every numeric check: the numbers are
what the run did; the finding says what was probably meant.
"""
import numpy as np

import tracer
from tracer import Recorder
from tracer.program import Evaluation, StepProgram

RNG = np.random.default_rng(11)
X = RNG.normal(size=(20, 3))
Y = X @ np.array([[0.5], [-1.0], [2.0]]) + 0.2


def _program(divide_by_k):
    nodes = [{"name": "pred", "op": "linear", "args": ["x", "w", "b"], "where": "train.py:10"},
             {"name": "mse", "op": "mse_loss", "args": ["pred", "y"], "where": "train.py:11"}]
    if divide_by_k:
        nodes.append({"name": "loss", "op": "div", "args": ["mse", 4.0], "where": "train.py:12"})
    else:
        nodes[-1]["name"] = "loss"
    return {"inputs": [{"name": "x", "source": "inputs"}, {"name": "y", "source": "targets"}],
            "params": ["w", "b"], "nodes": nodes, "outputs": {"prediction": "pred", "loss": "loss", "target": "y"}}


def _accumulated_run(divide_by_k, k=4, micro_rows=5, steps=3, lr=0.05):
    program = _program(divide_by_k)
    prog = StepProgram.from_dict(program)
    rec = Recorder(meta={"framework": "torch", "program": program,
                         "optimizer": {"name": "sgd", "convention": "torch", "lr": lr}})
    rec.set_data(X, Y)
    w, b = RNG.normal(size=(1, 3)), np.zeros(1)
    for step in range(steps):
        rows_all, preds, micro, loss = [], [], [], 0.0
        gw, gb = np.zeros_like(w), np.zeros_like(b)
        for j in range(k):
            rows = (np.arange(micro_rows) + (step * k + j) * micro_rows) % len(X)
            ev = Evaluation(prog, {"x": X[rows][None], "y": Y[rows][None], "w": w[None], "b": b[None]})
            g = ev.gradients()
            gw, gb = gw + g["w"][0], gb + g["b"][0]
            loss += float(ev.loss[0])
            rows_all.append(rows)
            preds.append(ev.prediction[0])
            micro.append(np.full(micro_rows, j))
        nw, nb = w - lr * gw, b - lr * gb
        rec.record_step(epoch=1, batch=step + 1, params_before={"w": w, "b": b}, params_after={"w": nw, "b": nb},
                        grads={"w": gw, "b": gb}, rows=np.concatenate(rows_all), y_pred=np.concatenate(preds),
                        loss=loss, micro=np.concatenate(micro), extra={"opt_step": step + 1, "micro_steps": k})
        w, b = nw, nb
    return rec.trace()


def test_undivided_accumulation_is_named_and_every_number_checks():
    trace = _accumulated_run(divide_by_k=False)
    assert trace.samples["micro"].tolist()[:10] == [0] * 5 + [1] * 5
    report = tracer.check(trace)
    assert report.table["passed"].all(), report.summary()
    assert set(report.table["quantity"]) >= {"loss", "prediction", "grad", "update"}
    (f,) = [f for f in report.findings if f.kind == "accumulation"]
    assert f.step == 1 and "4x the mean" in f.message and "loss / 4" in f.fix
    assert report.verdict == "failed"


def test_divided_accumulation_is_clean():
    report = tracer.check(_accumulated_run(divide_by_k=True))
    assert report.ok, report.summary()
    assert report.findings == []


def test_a_wrong_micro_batch_gradient_is_still_caught():
    trace = _accumulated_run(divide_by_k=True)
    trace.arrays().params["w"]["grad"][1] *= 1.5           # planted: step 2's gradient
    report = tracer.check(trace)
    bad = report.failures
    # the recomputed gradient disagrees; the update (applied with the true gradient) too
    assert set(bad["quantity"]) == {"grad", "update"} and set(bad["step"]) == {2} and set(bad["param"]) == {"w"}


def test_micro_steps_survive_save_and_load(tmp_path):
    trace = _accumulated_run(divide_by_k=True)
    loaded = tracer.Trace.load(trace.save(tmp_path / "acc.trace"))
    assert loaded.samples["micro"].tolist() == trace.samples["micro"].tolist()
    assert tracer.check(loaded).ok
