"""Small Keras trainings shared by the Keras tests, in-process (TensorFlow) and in
subprocesses (``KERAS_BACKEND=torch``): data, a traced ``fit``, and the check's verdict.

Why one place: the same model must be traced on both backends and compared, so the
builders live where both the test modules and :mod:`_keras_backend_probe` import them.
Backend-neutral: nothing here imports TensorFlow or torch.
"""
from __future__ import annotations

import numpy as np

import keras

import tracer
from hooks.keras import TraceCallback

L = keras.layers


def data(kind: str, n: int = 30, k: int = 4, seed: int = 0):
    """``(x, y)`` of a small problem: ``reg`` (one target), ``pos`` (positive targets),
    ``prob`` (rows of probabilities), ``bin`` (0/1 column), ``bin1d`` (0/1 vector), ``pm1``
    (-1/+1), ``onehot``, ``labels`` (class numbers)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k)) * 2
    s = x @ rng.normal(size=(k, 3))
    out = {"reg": lambda: s[:, :1] + 0.1, "pos": lambda: np.abs(s[:, :2]) + 0.5,
           "prob": lambda: np.exp(s) / np.exp(s).sum(1, keepdims=True),
           "bin": lambda: (s[:, :1] > 0).astype(float), "bin1d": lambda: (s[:, 0] > 0).astype(float),
           "pm1": lambda: np.sign(s[:, :2]), "onehot": lambda: np.eye(3)[s.argmax(1)],
           "labels": lambda: s.argmax(1)}
    return x, out[kind]()


def diabetes_like(n: int = 120, seed: int = 11):
    """Unscaled tabular features with clinical-looking ranges (tens to hundreds) and a 0/1
    outcome: what a first Keras tutorial feeds a sigmoid, whose output then saturates."""
    rng = np.random.default_rng(seed)
    cols = [rng.poisson(4, n), rng.normal(120, 30, n), rng.normal(70, 20, n), rng.normal(20, 15, n),
            rng.exponential(80, n), rng.normal(32, 8, n), rng.gamma(2.0, 0.25, n), 21 + rng.exponential(12, n)]
    x = np.column_stack(cols).clip(0, None).round(1)
    logit = -8 + 0.04 * x[:, 1] + 0.08 * x[:, 5]
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)


def diabetes_model(seed: int = 7) -> keras.Model:
    """Dense 12 relu, 8 relu, 1 sigmoid; binary cross-entropy, Adam, accuracy."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8,)), L.Dense(12, activation="relu"), L.Dense(8, activation="relu"),
                              L.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def sequential(layers: list, input_shape: tuple, loss, optimizer=None, seed: int = 3, metrics=(), name=None,
               **compile_kw) -> keras.Model:
    """A compiled ``Sequential`` of ``layers`` (fresh seed, Adam(0.01) by default); ``name``
    fixes the model's name, which Keras otherwise numbers per process (``sequential_7``)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(input_shape)] + list(layers), name=name)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(0.01), loss=loss, metrics=list(metrics),
                  **compile_kw)
    return model


def fit(model: keras.Model, x, y, traced: bool = True, epochs: int = 2, batch_size: int = 8, **fit_kw):
    """``model.fit`` with or without a TraceCallback; returns ``(history dict, callback or None)``."""
    cb = TraceCallback() if traced else None
    hist = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[cb] if cb else [],
                     **fit_kw)
    return hist.history, cb


def verdict(trace) -> tuple[str, list[str], list[dict]]:
    """``(verdict, cannot-check reasons, first failed rows)`` of ``tracer.check(trace)``."""
    report = tracer.check(trace)
    table = report.table
    bad = [] if table is None or not len(table) else \
        table[~table["passed"]][["step", "quantity", "param", "expected", "actual"]].head(5).to_dict("records")
    return report.verdict, list(report.cannot_check), bad


def bit_identical(m0: keras.Model, m1: keras.Model) -> bool:
    """Same weights and optimizer variables, byte for byte."""
    same = all(a.tobytes() == b.tobytes() for a, b in zip(m0.get_weights(), m1.get_weights()))
    value = lambda v: keras.ops.convert_to_numpy(keras.ops.copy(v.value)).tobytes()
    opt = all(value(a) == value(b) for a, b in zip(m0.optimizer.variables, m1.optimizer.variables))
    return same and opt


class StopAt(keras.callbacks.Callback):
    """Raises in the batch end of global step ``at`` (a crash in the user's code)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.n = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.n += 1
        if self.n == self.at:
            raise RuntimeError("planted")
