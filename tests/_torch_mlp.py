"""A ``Linear -> ReLU -> Linear`` torch MLP trained with ``optim.SGD`` on MSE, recorded step by
step with :class:`tracer.Recorder` (no hook): the checker tests' float32 model whose first
layer is wide enough for the lower bounds of the magnitudes to matter.

Shared by ``tests/tracer/checker/test_lower_bound_check.py`` and ``test_forward_sample.py``,
which differ only in its sizes, seed and target scale.
"""
from __future__ import annotations

import numpy as np

from tracer import Recorder

PROGRAM = {"inputs": [{"name": "x", "source": "inputs"}, {"name": "y", "source": "targets"}],
           "params": ["0.weight", "0.bias", "2.weight", "2.bias"],
           "nodes": [{"name": "z1", "op": "linear", "args": ["x", "0.weight", "0.bias"]},
                     {"name": "h", "op": "relu", "args": ["z1"]},
                     {"name": "z2", "op": "linear", "args": ["h", "2.weight", "2.bias"]},
                     {"name": "loss", "op": "mse_loss", "args": ["z2", "y"]}],
           "outputs": {"prediction": "z2", "loss": "loss", "target": "y"}}


def sgd_mlp_trace(steps: int, batch: int, k: int, hidden: int, lr: float, seed: int, y_scale: float):
    """``steps`` SGD steps on batches of ``batch`` rows of ``k`` normal inputs, targets a random
    linear function of them divided by ``y_scale``; every step recorded as the torch hook would."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(steps * batch, k)).astype(np.float32)
    y = (x @ rng.normal(size=(k, 1)) / y_scale).astype(np.float32)
    model = torch.nn.Sequential(torch.nn.Linear(k, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    params = dict(model.named_parameters())
    rec = Recorder(meta={"framework": "torch", "program": PROGRAM,
                         "optimizer": {"name": "sgd", "convention": "torch", "lr": lr}})
    rec.set_data(x, y)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(steps):
        rows = np.arange(step * batch, (step + 1) * batch)
        before = {n: p.detach().numpy().copy() for n, p in params.items()}
        pred = model(torch.tensor(x[rows]))
        loss = torch.nn.functional.mse_loss(pred, torch.tensor(y[rows]))
        opt.zero_grad()
        loss.backward()
        grads = {n: p.grad.numpy().copy() for n, p in params.items()}
        opt.step()
        rec.record_step(epoch=1, batch=step + 1, params_before=before, grads=grads, rows=rows,
                        params_after={n: p.detach().numpy().copy() for n, p in params.items()},
                        y_pred=pred.detach().numpy(), loss=float(loss.detach()), lr=lr, batch_size=batch,
                        extra={"opt_step": step + 1})
    return rec.trace()


def exact_requests(monkeypatch, method: str) -> list:
    """``(name, rows)`` of every request the check makes to ``quantities.Mags.<method>``
    (``"value"``: exact forward magnitudes, ``"grad"``: exact gradient magnitudes), so that a
    test can tell which rows the lower bound alone settled."""
    import tracer.checker.quantities as quantities

    asked = []
    real = getattr(quantities.Mags, method)

    def spy(self, name, rows=None):
        asked.append((name, 0 if rows is None else len(rows)))
        return real(self, name, rows)
    monkeypatch.setattr(quantities.Mags, method, spy)
    return asked
