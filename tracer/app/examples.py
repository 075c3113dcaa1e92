"""Built-in examples: S0, NumPy full-batch gradient descent on y = 13x + 2 + noise; S2 in mini-batches.

Used by ``steptrace demo`` (``--minibatch`` for S2) and the tests. The S0 loop is
written exactly as the tutorial (seed 000) writes it, rebinding ``weights`` and
``biases`` each iteration; the only additions are the tracer and ``tracer.range``.
The S2 example shows what a full-batch run cannot: an epoch of several batches, each
batch one iteration, and the running average Keras logs within an epoch, with no
TensorFlow.
"""
from __future__ import annotations

import numpy as np

from ..trace import Trace


def s0_data(observations: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """S0's data and initial parameters, drawn as the tutorial draws them (global seed 42)."""
    state = np.random.get_state()
    try:
        np.random.seed(42)
        x = np.random.uniform(low=-10, high=10, size=(observations, 1))
        np.random.seed(42)
        noise = np.random.uniform(-1, 1, (observations, 1))
        targets = 13 * x + 2 + noise
        np.random.seed(42)
        init_range = 0.1
        weights = np.random.uniform(low=-init_range, high=init_range, size=(1, 1))
        biases = np.random.uniform(low=-init_range, high=init_range, size=1)
    finally:
        np.random.set_state(state)
    return x, targets, weights, biases


def s0_numpy(iterations: int = 100, learning_rate: float = 0.02, declare_lr: bool = False,
             observations: int = 1000) -> tuple[Trace, np.ndarray, np.ndarray]:
    """Trace S0 and return ``(trace, weights, biases)`` (the final parameters)."""
    from hooks.numpy import NumpyTracer

    x, targets, weights, biases = s0_data(observations)
    tracer = NumpyTracer(params=["weights", "biases"], predictions="outputs", loss="loss",
                         inputs=x, targets=targets, lr=learning_rate if declare_lr else None)
    for i in tracer.range(iterations):
        outputs = np.dot(x, weights) + biases
        deltas = outputs - targets
        loss = np.sum(deltas ** 2) / 2 / observations
        deltas_scaled = deltas / observations
        weights = weights - learning_rate * np.dot(x.T, deltas_scaled)
        biases = biases - learning_rate * np.sum(deltas_scaled)
    return tracer.trace, weights, biases


#: S2's data (seed 002): the learner's 12 rows, x = 1..12
S2_X = np.arange(1.0, 13.0).reshape(-1, 1)
S2_Y = np.array([5.0, 8.8, 9.6, 14.2, 18.8, 19.5, 21.4, 26.8, 28.9, 32.0, 33.8, 38.2]).reshape(-1, 1)


def s2_minibatch_numpy(epochs: int = 4, batch_size: int = 4, learning_rate: float = 0.005,
                       seed: int = 0) -> tuple[Trace, np.ndarray, np.ndarray]:
    """S2's data in NumPy mini-batches: a ``Dense(1)``-like model ``x @ w + b`` (w = 0.5, b = 0,
    as the scenario initialises Keras), batches drawn shuffled by the tracer, mean squared
    error, plain SGD (``w <- w - lr * g``, not Keras's RMSprop) and, as Keras logs it, the
    running mean of the epoch's batch losses. Returns ``(trace, w, b)``."""
    from hooks.numpy import NumpyTracer

    x, y = S2_X, S2_Y
    w, b = np.array([[0.5]]), np.zeros(1)
    tracer = NumpyTracer(params=["w", "b"], predictions="y_pred", loss="loss", inputs=x, targets=y,
                         lr=learning_rate, logs={"loss": "running_loss"})
    for epoch in range(epochs):
        seen, total = 0, 0.0                          # Keras's loss tracker, reset at each epoch
        for rows in tracer.batches(batch_size=batch_size, shuffle=True, seed=seed):
            xb, yb = x[rows], y[rows]
            y_pred = xb @ w + b
            loss = np.mean((y_pred - yb) ** 2)
            seen, total = seen + len(rows), total + loss * len(rows)
            running_loss = total / seen
            grad = 2 * (y_pred - yb) / len(rows)
            w = w - learning_rate * xb.T @ grad
            b = b - learning_rate * np.sum(grad, axis=0)
    return tracer.trace, w, b
