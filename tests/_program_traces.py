"""Traces that carry a step program (``meta["program"]``), trained by real PyTorch.

Why: the reports must follow the program, not a dense-stack description. These runs are
recorded with :class:`tracer.Recorder` exactly as a program-building hook would record
them (torch parameter names and state slots, the program as JSON), with the numbers
computed by torch itself:

- :func:`polynomial_trace`: PyTorch's "learning PyTorch with examples" fit
  ``y = a + b x + c x^2 + d x^3`` of ``sin(x)`` on raw scalar tensors, sum-reduced MSE,
  ``optim.RMSprop``.
- :func:`mlp_trace`: ``Linear(2, 3) -> tanh -> Linear(3, 1) -> sigmoid``, MSE, ``optim.Adam``.
- :func:`logistic_trace`: ``Linear(2, 1) -> sigmoid`` with ``BCELoss``, ``optim.SGD`` with momentum.
- :func:`softmax_trace`: ``Linear(2, 3)`` with ``cross_entropy`` on class numbers, ``optim.SGD``.
"""
from __future__ import annotations

import numpy as np

from tracer import Recorder


def _record(program, params, forward, loss_fn, opt, x, y, epochs, batch_size, seed, opt_spec, target=None):
    import torch

    rec = Recorder(meta={"framework": "torch", "program": program, "optimizer": opt_spec})
    rec.set_data(x, y)
    rng = np.random.default_rng(seed)
    xt, yt = torch.tensor(x), torch.tensor(y if target is None else target)
    t = 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x))
        for b, i0 in enumerate(range(0, len(x), batch_size), start=1):
            rows = order[i0:i0 + batch_size]
            before = {n: p.detach().numpy().copy() for n, p in params.items()}
            pred = forward(xt[rows])
            loss = loss_fn(pred, yt[rows])
            opt.zero_grad()
            loss.backward()
            grads = {n: p.grad.numpy().copy() for n, p in params.items()}
            opt.step()
            t += 1
            state = {n: {k: v.numpy().copy() for k, v in opt.state[p].items() if k != "step"}
                     for n, p in params.items()}
            rec.record_step(epoch=epoch, batch=b, params_before=before,
                            params_after={n: p.detach().numpy().copy() for n, p in params.items()},
                            grads=grads, rows=rows, y_pred=pred.detach().numpy().reshape(len(rows), -1),
                            loss=float(loss.detach()), lr=opt.param_groups[0]["lr"], batch_size=len(rows),
                            state=state, extra={"opt_step": t})
    return rec.trace()


def polynomial_trace(n: int = 40, steps: int = 4, lr: float = 1e-2):
    """The tutorial's polynomial on raw scalar tensors (full batch, ``steps`` iterations)."""
    import torch

    torch.manual_seed(0)
    x = np.linspace(-np.pi, np.pi, n).reshape(-1, 1)
    y = np.sin(x)
    params = {k: torch.randn((), dtype=torch.float64, requires_grad=True) for k in "abcd"}
    program = {
        "inputs": [{"name": "x", "source": "inputs", "shape": []}, {"name": "y", "source": "targets", "shape": []}],
        "params": list("abcd"),
        "nodes": [{"name": "x2", "op": "pow", "args": ["x", 2]}, {"name": "x3", "op": "pow", "args": ["x", 3]},
                  {"name": "bx", "op": "mul", "args": ["b", "x"]}, {"name": "cx2", "op": "mul", "args": ["c", "x2"]},
                  {"name": "dx3", "op": "mul", "args": ["d", "x3"]}, {"name": "s1", "op": "add", "args": ["a", "bx"]},
                  {"name": "s2", "op": "add", "args": ["s1", "cx2"]},
                  {"name": "y_pred", "op": "add", "args": ["s2", "dx3"]},
                  {"name": "loss", "op": "mse_loss", "args": ["y_pred", "y"], "attrs": {"reduction": "sum"}}],
        "outputs": {"prediction": "y_pred", "loss": "loss", "target": "y"}}
    p = params

    def forward(xb):
        xb = xb[:, 0]
        return p["a"] + p["b"] * xb + p["c"] * xb ** 2 + p["d"] * xb ** 3
    opt = torch.optim.RMSprop(params.values(), lr=lr)
    return _record(program, params, forward, lambda q, yb: (q - yb[:, 0]).pow(2).sum(), opt, x, y, steps,
                   n, 0, {"name": "rmsprop", "convention": "torch", "lr": lr})


def _linear_params(sizes, seed):
    import torch

    torch.manual_seed(seed)
    params = {}
    for i, (k, u) in enumerate(zip(sizes[:-1], sizes[1:])):
        layer = torch.nn.Linear(k, u).double()
        params[f"{2 * i}.weight"] = layer.weight.detach().clone().requires_grad_(True)
        params[f"{2 * i}.bias"] = layer.bias.detach().clone().requires_grad_(True)
    return params


def _two_moons(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    label = (x[:, 0] + 0.5 * x[:, 1] ** 2 > 0.3).astype(np.float64).reshape(-1, 1)
    return x, label


def mlp_trace(n: int = 16, epochs: int = 2, batch_size: int = 8, lr: float = 0.05):
    """``Linear(2, 3) -> tanh -> Linear(3, 1) -> sigmoid`` with MSE and torch Adam."""
    import torch

    x, y = _two_moons(n, 1)
    p = _linear_params([2, 3, 1], 1)
    program = {
        "inputs": [{"name": "x", "source": "inputs"}, {"name": "y", "source": "targets"}],
        "params": list(p),
        "nodes": [{"name": "z1", "op": "linear", "args": ["x", "0.weight", "0.bias"], "label": "model.0 (Linear)"},
                  {"name": "h", "op": "tanh", "args": ["z1"]},
                  {"name": "z2", "op": "linear", "args": ["h", "2.weight", "2.bias"], "label": "model.2 (Linear)"},
                  {"name": "prob", "op": "sigmoid", "args": ["z2"]},
                  {"name": "loss", "op": "mse_loss", "args": ["prob", "y"]}],
        "outputs": {"prediction": "prob", "loss": "loss", "target": "y"}}

    def forward(xb):
        h = torch.tanh(xb @ p["0.weight"].T + p["0.bias"])
        return torch.sigmoid(h @ p["2.weight"].T + p["2.bias"])
    opt = torch.optim.Adam(p.values(), lr=lr)
    return _record(program, p, forward, torch.nn.functional.mse_loss, opt, x, y, epochs, batch_size, 2,
                   {"name": "adam", "convention": "torch", "lr": lr})


def logistic_trace(n: int = 20, epochs: int = 2, batch_size: int = 10, lr: float = 0.5):
    """``Linear(2, 1) -> sigmoid`` with torch ``BCELoss`` and SGD with momentum 0.9."""
    import torch

    x, y = _two_moons(n, 3)
    p = _linear_params([2, 1], 3)
    program = {
        "inputs": [{"name": "x", "source": "inputs"}, {"name": "y", "source": "targets"}],
        "params": list(p),
        "nodes": [{"name": "z", "op": "linear", "args": ["x", "0.weight", "0.bias"]},
                  {"name": "prob", "op": "sigmoid", "args": ["z"]},
                  {"name": "loss", "op": "binary_cross_entropy", "args": ["prob", "y"]}],
        "outputs": {"prediction": "prob", "loss": "loss", "target": "y"}}

    def forward(xb):
        return torch.sigmoid(xb @ p["0.weight"].T + p["0.bias"])
    opt = torch.optim.SGD(p.values(), lr=lr, momentum=0.9)
    return _record(program, p, forward, torch.nn.functional.binary_cross_entropy, opt, x, y, epochs, batch_size,
                   4, {"name": "sgd", "convention": "torch", "lr": lr, "momentum": 0.9})


def softmax_trace(n: int = 12, epochs: int = 2, batch_size: int = 6, lr: float = 0.3):
    """``Linear(2, 3)`` logits with ``cross_entropy`` on class numbers (a target column)."""
    import torch

    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, 2))
    cls = (np.digitize(x[:, 0] + x[:, 1], [-0.5, 0.5])).astype(np.float64).reshape(-1, 1)
    p = _linear_params([2, 3], 5)
    program = {
        "inputs": [{"name": "x", "source": "inputs"}, {"name": "y", "source": "targets", "shape": [],
                                                      "dtype": "int"}],
        "params": list(p),
        "nodes": [{"name": "logits", "op": "linear", "args": ["x", "0.weight", "0.bias"]},
                  {"name": "loss", "op": "cross_entropy", "args": ["logits", "y"], "attrs": {"num_classes": 3}}],
        "outputs": {"prediction": "logits", "loss": "loss", "target": "y"}}

    def forward(xb):
        return xb @ p["0.weight"].T + p["0.bias"]
    opt = torch.optim.SGD(p.values(), lr=lr)
    return _record(program, p, forward, torch.nn.functional.cross_entropy, opt, x, cls, epochs, batch_size, 6,
                   {"name": "sgd", "convention": "torch", "lr": lr}, target=cls[:, 0].astype(np.int64))


def engine_trace(meta: dict, x, y, params: dict, steps: int = 3, batch_size: int = 4, seed: int = 0,
                 log_fn=None):
    """A run whose numbers are the engine's own (the program or 0.1.0 model and loss in ``meta``,
    the declared optimizer), for testing how the reports *print* every registry op: the
    workbook's formulas must reproduce the engine cell for cell.

    ``log_fn(history)`` (optional) gives the logs of each step from the list of
    ``(predictions before, targets, predictions after the update)`` of the steps so far."""
    from tracer.checker.resolve import resolve_program
    from tracer.math.optimizers import get_optimizer
    from tracer.program import Evaluation

    rec = Recorder(meta=meta)
    rec.set_data(x, y)
    rule = get_optimizer(meta["optimizer"])
    state = {n: rule.initial_state(v) for n, v in params.items()}
    program = resolve_program(_one_step(meta, x, y, params)).program
    rng = np.random.default_rng(seed)
    history = []
    for s in range(steps):
        rows = rng.permutation(len(x))[:batch_size]
        leaves = {i.name: _leaf(i, x if i.source == "inputs" else y, rows) for i in program.inputs}
        leaves.update({c.name: c.value[None] for c in program.consts})
        leaves.update({n: np.asarray(v, dtype=np.float64)[None] for n, v in params.items()})
        ev = Evaluation(program, leaves)
        grads = {n: g[0] for n, g in ev.gradients().items()}
        after = {}
        for n, v in params.items():
            p1, st = rule.step(np.asarray(v)[None], grads[n][None], {k: w[None] for k, w in state[n].items()},
                               np.array([s + 1.0]))
            after[n], state[n] = p1[0], {k: w[0] for k, w in st.items()}
        pred = ev.prediction[0].reshape(len(rows), -1)
        logs = None
        if log_fn is not None:
            leaves.update({n: np.asarray(v, dtype=np.float64)[None] for n, v in after.items()})
            history.append((pred, y[rows], Evaluation(program, leaves).prediction[0].reshape(len(rows), -1)))
            logs = log_fn(history)
        rec.record_step(epoch=1, batch=s + 1, params_before=params, params_after=after, grads=grads, rows=rows,
                        y_pred=pred, loss=float(ev.loss[0]), lr=rule.lr, batch_size=len(rows),
                        state={n: dict(state[n]) for n in params}, extra={"opt_step": s + 1}, logs=logs)
        params = after
    return rec.trace()


def _leaf(inp, table, rows):
    c0, c1 = inp.columns or (0, table.shape[1])
    shape = tuple(inp.shape) if inp.shape is not None else (c1 - c0,)
    block = table[rows][:, c0:c1].reshape((len(rows),) + shape)[None]
    return np.rint(block).astype(np.int64) if inp.dtype == "int" else block


def _one_step(meta, x, y, params):
    """A one-step trace with ``meta``, to resolve its program before the run is recorded."""
    rec = Recorder(meta=meta)
    rec.set_data(x, y)
    rec.record_step(epoch=1, batch=1, params_before=params, params_after=params, grads=None,
                    rows=np.arange(len(x)), y_pred=None, loss=0.0, lr=0.0, batch_size=len(x))
    return rec.trace()
