"""Built-in examples: scenario S0, NumPy full-batch gradient descent on y = 13x + 2 + noise.

Used by ``steptrace demo`` and the tests. The loop is written exactly as the
tutorial (seed 000) writes it, rebinding ``weights`` and ``biases`` each
iteration; the only additions are the tracer and ``tracer.range``.
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
