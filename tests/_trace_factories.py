"""Traces of the scenarios built directly with :class:`tracer.Recorder`, no framework needed.

Why: the reports (and anything else downstream of the Trace) must be testable before
and without the framework hooks. Each builder replays a scenario of
``docs/SCENARIOS.md`` in plain NumPy and records it exactly as a hook would
(same parameter names, slot names, logs and meta), so the numbers are the scenario's
golden numbers.

- :func:`s0_trace`: NumPy full-batch gradient descent, 100 iterations (S0).
- :func:`s2_trace`: Keras ``Dense(1)`` + ``RMSprop(0.05)`` on 12 rows, epochs=4,
  batch_size=4, kernel 0.5, bias 0, simulated with Keras's RMSprop formula (S2).
- :func:`long_trace`: a small linear model trained with mini-batch SGD for many
  iterations (10,000 by default), for size and speed tests.
"""
from __future__ import annotations

import numpy as np

from tracer import Recorder

S0_META = {
    "framework": "numpy",
    "model": {"kind": "dense_stack", "layers": [
        {"type": "dense", "weight": "weights", "bias": "biases", "transpose": False,
         "activation": "linear", "units": 1}]},
    "loss": {"name": "squared_error", "divide_by": [2, "n"]},
    "optimizer": {"name": "sgd", "convention": "plain", "lr": 0.02},
}

S2_X = np.arange(1.0, 13.0).reshape(-1, 1)
S2_Y = np.array([5.0, 8.8, 9.6, 14.2, 18.8, 19.5, 21.4, 26.8, 28.9, 32.0, 33.8, 38.2]).reshape(-1, 1)


def s0_data():
    """The S0 data and initial parameters, exactly as the seed page builds them."""
    np.random.seed(42)
    x = np.random.uniform(-10, 10, (1000, 1))
    np.random.seed(42)
    noise = np.random.uniform(-1, 1, (1000, 1))
    targets = 13 * x + 2 + noise
    np.random.seed(42)
    weights = np.random.uniform(-0.1, 0.1, (1, 1))
    biases = np.random.uniform(-0.1, 0.1, 1)
    return x, targets, weights, biases


def s0_trace(iterations: int = 100, lr: float = 0.02):
    """Scenario S0: full-batch GD on y = 13.1 x + 2, loss sum(d^2)/2/n, plain SGD."""
    x, targets, weights, biases = s0_data()
    n = x.shape[0]
    meta = {**S0_META, "optimizer": {**S0_META["optimizer"], "lr": lr}}
    rec = Recorder(meta=meta)
    rec.set_data(x, targets)
    rows = np.arange(n)
    for i in range(iterations):
        outputs = x @ weights + biases
        deltas = outputs - targets
        loss = np.sum(deltas ** 2) / 2 / n
        deltas_scaled = deltas / n
        g_w = x.T @ deltas_scaled
        g_b = np.sum(deltas_scaled, axis=0)
        new_w = weights - lr * g_w
        new_b = biases - lr * g_b
        rec.record_step(epoch=i + 1, batch=1, params_before={"weights": weights, "biases": biases},
                        params_after={"weights": new_w, "biases": new_b},
                        grads={"weights": g_w, "biases": g_b}, rows=rows, y_pred=outputs,
                        loss=loss, lr=lr, batch_size=n)
        weights, biases = new_w, new_b
    return rec.trace()


def s2_batches(epochs: int, batch_size: int, shuffle: bool, seed: int, n: int = 12):
    """Row positions of every batch, epoch by epoch (a seeded shuffle per epoch)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(epochs):
        order = rng.permutation(n) if shuffle else np.arange(n)
        out.append([order[i:i + batch_size] for i in range(0, n, batch_size)])
    return out


def s2_trace(epochs: int = 4, batch_size: int = 4, shuffle: bool = True, seed: int = 2,
             lr: float = 0.05, rho: float = 0.9, epsilon: float = 1e-7, custom: dict | None = None,
             validation: bool = False):
    """Scenario S2: Keras Dense(1), RMSprop, mse, RMSE metric, kernel 0.5, bias 0.

    Keras's RMSprop: ``v = rho v + (1 - rho) g^2``; ``p -= lr g / sqrt(v + eps)``.
    ``logs`` are what Keras shows: running means over the batches of the epoch so far
    (``loss`` weighted by batch size, RMSE over every prediction seen this epoch).
    ``custom``: extra logged metrics ``{name: fn(list of the epoch's residual arrays so far)}``,
    described as Keras describes a function metric (kind ``unsupported``); ``validation``:
    ``val_loss`` and ``val_root_mean_squared_error`` at each epoch end on the 12 training
    rows with the weights after the epoch (``validation_data=(x, y)``, as in the S2 thread).
    """
    meta = {
        "framework": "keras",
        "model": {"kind": "dense_stack", "layers": [
            {"type": "dense", "weight": "dense/kernel", "bias": "dense/bias", "transpose": False,
             "activation": "linear", "units": 1}]},
        "loss": {"name": "mse", "reduction": "sum_over_batch_size"},
        "optimizer": {"name": "rmsprop", "convention": "keras", "lr": lr, "rho": rho,
                      "momentum": 0.0, "epsilon": epsilon, "centered": False},
        "metrics": [{"name": "root_mean_squared_error", "kind": "rmse"}] +
                   [{"name": n, "kind": "unsupported", "keras_name": "MeanMetricWrapper"} for n in custom or {}],
    }
    x, y = S2_X, S2_Y
    rec = Recorder(meta=meta)
    rec.set_data(x, y)
    w = np.array([[0.5]])
    b = np.array([0.0])
    vw = np.zeros_like(w)
    vb = np.zeros_like(b)
    t = 0
    for e, batches in enumerate(s2_batches(epochs, batch_size, shuffle, seed, len(x)), start=1):
        loss_sum = count = sq_sum = 0.0
        residuals = []
        for bi, rows in enumerate(batches, start=1):
            xb, yb = x[rows], y[rows]
            nb = len(rows)
            pred = xb @ w + b
            d = pred - yb
            loss = float(np.mean(d ** 2))
            g_pred = 2.0 * d / nb
            gw = xb.T @ g_pred
            gb = g_pred.sum(axis=0)
            vw = rho * vw + (1 - rho) * gw ** 2
            vb = rho * vb + (1 - rho) * gb ** 2
            new_w = w - lr * gw / np.sqrt(vw + epsilon)
            new_b = b - lr * gb / np.sqrt(vb + epsilon)
            t += 1
            loss_sum += loss * nb
            count += nb
            sq_sum += float(np.sum(d ** 2))
            logs = {"loss": loss_sum / count, "root_mean_squared_error": np.sqrt(sq_sum / count)}
            residuals.append(d)
            logs.update({n: float(fn(residuals)) for n, fn in (custom or {}).items()})
            rec.record_step(epoch=e, batch=bi, params_before={"dense/kernel": w, "dense/bias": b},
                            params_after={"dense/kernel": new_w, "dense/bias": new_b},
                            grads={"dense/kernel": gw, "dense/bias": gb}, rows=rows, y_pred=pred,
                            loss=loss, lr=lr, batch_size=nb,
                            state={"dense/kernel": {"velocity": vw}, "dense/bias": {"velocity": vb}},
                            logs=logs, extra={"opt_step": t})
            w, b = new_w, new_b
        if validation:
            d_all = x @ w + b - y
            logs = {**logs, "val_loss": float(np.mean(d_all ** 2)),
                    "val_root_mean_squared_error": float(np.sqrt(np.mean(d_all ** 2)))}
        rec.record_epoch(e, logs)
    return rec.trace()


def long_trace(iterations: int = 10_000, n_rows: int = 200, batch_size: int = 20, lr: float = 0.01,
               seed: int = 0, max_bytes: int | None = None):
    """Mini-batch SGD on a 2-feature linear model with mse, for many iterations (plain SGD)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, 2))
    y = x @ np.array([[2.0], [-3.4]]) + 4.2 + 0.01 * rng.normal(size=(n_rows, 1))
    meta = {
        "framework": "numpy",
        "model": {"kind": "dense_stack", "layers": [
            {"type": "dense", "weight": "w", "bias": "b", "transpose": False,
             "activation": "linear", "units": 1}]},
        "loss": {"name": "mse", "reduction": "mean"},
        "optimizer": {"name": "sgd", "convention": "plain", "lr": lr},
    }
    rec = Recorder(meta=meta, max_bytes=max_bytes)
    rec.set_data(x, y)
    w = np.zeros((2, 1))
    b = np.zeros(1)
    per_epoch = n_rows // batch_size
    step = 0
    epoch = 0
    while step < iterations:
        epoch += 1
        order = rng.permutation(n_rows)
        for bi in range(per_epoch):
            if step >= iterations:
                break
            rows = order[bi * batch_size:(bi + 1) * batch_size]
            pred = x[rows] @ w + b
            d = pred - y[rows]
            g = 2 * d / len(rows)
            gw, gb = x[rows].T @ g, g.sum(axis=0)
            nw, nb = w - lr * gw, b - lr * gb
            rec.record_step(epoch=epoch, batch=bi + 1, params_before={"w": w, "b": b},
                            params_after={"w": nw, "b": nb}, grads={"w": gw, "b": gb}, rows=rows,
                            y_pred=pred, loss=float(np.mean(d ** 2)), lr=lr, batch_size=len(rows))
            w, b = nw, nb
            step += 1
    return rec.trace()


def mlp_trace(epochs: int = 2, batch_size: int = 4, hidden: int = 3, lr: float = 0.01, seed: int = 4,
              activation: str = "tanh"):
    """A small Dense stack on the S2 data: 1 -> ``hidden`` (tanh or relu) -> 1, Keras Adam, mse.

    Keras Adam: ``alpha = lr sqrt(1 - b2^t) / (1 - b1^t)`` (betas cast to float32 there, as Keras does); ``m += (g - m)(1 - b1)``;
    ``v += (g^2 - v)(1 - b2)``; ``p -= m alpha / (sqrt(v) + eps)``.
    """
    b1, b2, eps = 0.9, 0.999, 1e-7
    meta = {
        "framework": "keras",
        "model": {"kind": "dense_stack", "layers": [
            {"type": "dense", "weight": "dense/kernel", "bias": "dense/bias", "transpose": False,
             "activation": activation, "units": hidden},
            {"type": "dense", "weight": "dense_1/kernel", "bias": "dense_1/bias", "transpose": False,
             "activation": "linear", "units": 1}]},
        "loss": {"name": "mse", "reduction": "sum_over_batch_size"},
        "optimizer": {"name": "adam", "convention": "keras", "lr": lr, "beta_1": b1, "beta_2": b2,
                      "epsilon": eps, "amsgrad": False},
    }
    rng = np.random.default_rng(seed)
    x, y = S2_X / 12.0, S2_Y / 10.0
    params = {"dense/kernel": rng.normal(0, 0.8, (1, hidden)), "dense/bias": rng.normal(0, 0.1, hidden),
              "dense_1/kernel": rng.normal(0, 0.8, (hidden, 1)), "dense_1/bias": np.zeros(1)}
    m_ = {k: np.zeros_like(v) for k, v in params.items()}
    v_ = {k: np.zeros_like(v) for k, v in params.items()}
    rec = Recorder(meta=meta)
    rec.set_data(x, y)
    t = 0
    for e, batches in enumerate(s2_batches(epochs, batch_size, True, seed, len(x)), start=1):
        for bi, rows in enumerate(batches, start=1):
            xb, yb = x[rows], y[rows]
            z1 = xb @ params["dense/kernel"] + params["dense/bias"]
            a1 = np.tanh(z1) if activation == "tanh" else np.maximum(z1, 0)
            pred = a1 @ params["dense_1/kernel"] + params["dense_1/bias"]
            d = pred - yb
            loss = float(np.mean(d ** 2))
            g2 = 2 * d / len(rows)
            grads = {"dense_1/kernel": a1.T @ g2, "dense_1/bias": g2.sum(axis=0)}
            da1 = g2 @ params["dense_1/kernel"].T
            dz1 = da1 * ((1 - a1 ** 2) if activation == "tanh" else (z1 > 0))
            grads["dense/kernel"] = xb.T @ dz1
            grads["dense/bias"] = dz1.sum(axis=0)
            t += 1
            # Keras casts beta_1/beta_2 to the variable dtype (float32) for the bias correction
            alpha = lr * np.sqrt(1 - float(np.float32(b2)) ** t) / (1 - float(np.float32(b1)) ** t)
            new = {}
            for k_, p_ in params.items():
                g_ = grads[k_]
                m_[k_] = m_[k_] + (g_ - m_[k_]) * (1 - b1)
                v_[k_] = v_[k_] + (g_ ** 2 - v_[k_]) * (1 - b2)
                new[k_] = p_ - m_[k_] * alpha / (np.sqrt(v_[k_]) + eps)
            rec.record_step(epoch=e, batch=bi, params_before=params, params_after=new, grads=grads,
                            rows=rows, y_pred=pred, loss=loss, lr=lr, batch_size=len(rows),
                            state={k_: {"momentum": m_[k_].copy(), "velocity": v_[k_].copy()} for k_ in params},
                            extra={"opt_step": t})
            params = new
    return rec.trace()
