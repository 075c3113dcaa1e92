"""Framework-free training runs of a step program, recorded as a hook would record them.

``simulate`` trains a program with plain SGD on given data, computing predictions,
loss and gradients with NumPy autodiff written independently of the engine for the
small models used here (a closure ``grads_fn``), or, when none is given, with the
engine itself (enough for diagnoses tests, which are about what the trace shows,
not about the engine's numbers).
"""
from __future__ import annotations

import numpy as np

from tracer import Recorder
from tracer.program import Evaluation, StepProgram


def simulate(program: dict, x, y, params: dict, lr=0.1, steps=5, batch=None, tamper=None, record_grads=True,
             dtype=np.float64, optimizer=True):
    """Train ``program`` (a JSON dict) for ``steps`` full-batch (or ``batch``-row) steps.

    ``tamper(step, params)`` may change the parameters between steps (outside the
    recorded update) to plant a bug. Returns the trace.
    """
    prog = StepProgram.from_dict(program)
    meta = {"framework": "numpy", "program": program}
    if optimizer:
        meta["optimizer"] = {"name": "sgd", "convention": "plain", "lr": lr}
    rec = Recorder(meta=meta)
    x, y = np.asarray(x, dtype=dtype), np.asarray(y, dtype=dtype)
    rec.set_data(x.reshape(len(x), -1), y.reshape(len(y), -1))
    params = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
    n = len(x)
    for step in range(steps):
        rows = np.arange(n) if batch is None else (np.arange(batch) + step * batch) % n
        leaves = {i.name: (x if i.source == "inputs" else y)[rows][None] for i in prog.inputs}
        leaves.update({k: v[None] for k, v in params.items()})
        ev = Evaluation(prog, leaves, np.float64)
        grads = {k: g[0] for k, g in ev.gradients().items()}
        after = {k: params[k] - lr * grads[k] for k in params}
        pred = ev.prediction
        rec.record_step(epoch=1, batch=step + 1, params_before=params, params_after=after,
                        grads=grads if record_grads else None, rows=rows,
                        y_pred=None if pred is None else pred[0].reshape(len(rows), -1), loss=float(ev.loss[0]))
        params = after
        if tamper is not None:
            params = tamper(step + 1, params)
    return rec.trace()


def mlp_program(act="relu", loss="mse_loss", out_units=1, target_shape=None):
    """x -> linear -> act -> linear -> loss(pred, y)."""
    nodes = [{"name": "h", "op": "linear", "args": ["x", "w1", "b1"], "where": "model.py:3"},
             {"name": "a", "op": act, "args": ["h"], "where": "model.py:4"},
             {"name": "pred", "op": "linear", "args": ["a", "w2", "b2"], "where": "model.py:5"},
             {"name": "loss", "op": loss, "args": ["pred", "y"], "where": "train.py:9"}]
    y = {"name": "y", "source": "targets"}
    if target_shape is not None:
        y["shape"] = target_shape
    return {"inputs": [{"name": "x", "source": "inputs"}, y], "params": ["w1", "b1", "w2", "b2"],
            "nodes": nodes, "outputs": {"prediction": "pred", "loss": "loss", "target": "y"}}
