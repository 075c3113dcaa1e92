"""Keras-style stateful metrics: against the real Keras metrics and the S2 golden run."""
import numpy as np
import pytest

from tracer.errors import TraceInputError, UnsupportedError
from tracer.math import get_loss, get_metric, get_optimizer
from tracer.math.metrics import loss_terms, running

RNG = np.random.default_rng(5)
S, B, M_OUT = 4, 6, 3
YP = RNG.normal(size=(S, B, M_OUT))
YT = RNG.normal(size=(S, B, M_OUT))
PROB = RNG.uniform(size=(S, B, 1))
BIN = (RNG.uniform(size=(S, B, 1)) > 0.5).astype(float)
CLS = RNG.integers(0, M_OUT, size=(S, B, 1)).astype(float)
ONEHOT = (CLS == np.arange(M_OUT)).astype(float)
EPOCH = np.array([1, 1, 2, 2])

X12 = np.arange(1, 13, dtype=np.float64)
Y12 = np.array([5.0, 8.8, 9.6, 14.2, 18.8, 19.5, 21.4, 26.8, 28.9, 32.0, 33.8, 38.2])


@pytest.fixture(scope="module")
def keras_mod():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    return keras


CASES = {
    "mse": ("MeanSquaredError", YP, YT), "rmse": ("RootMeanSquaredError", YP, YT),
    "mae": ("MeanAbsoluteError", YP, YT), "binary_accuracy": ("BinaryAccuracy", PROB, BIN),
    "categorical_accuracy": ("CategoricalAccuracy", YP, ONEHOT),
    "sparse_categorical_accuracy": ("SparseCategoricalAccuracy", YP, CLS),
    "exact_accuracy": ("Accuracy", np.round(YP), np.round(YT)),
}


@pytest.mark.keras
@pytest.mark.parametrize("kind", sorted(CASES))
def test_running_values_match_keras(keras_mod, kind):
    cls, yp, yt = CASES[kind]
    km = getattr(keras_mod.metrics, cls)(dtype="float64")
    logged = []
    for s in range(S):
        if s > 0 and EPOCH[s] != EPOCH[s - 1]:
            km.reset_state()
        km.update_state(yt[s], yp[s])
        logged.append(float(km.result()))
    m = get_metric({"kind": kind})
    tot, cnt = m.batch_terms(yp, yt)
    np.testing.assert_allclose(m.result(*running(tot, cnt, EPOCH)), logged, rtol=1e-12)


def test_accuracy_resolves_from_shapes():
    m = get_metric({"name": "accuracy", "kind": "accuracy"})
    assert m.resolve(PROB.shape, BIN.shape) == "binary_accuracy"
    assert m.resolve(YP.shape, CLS.shape) == "sparse_categorical_accuracy"
    assert m.resolve(YP.shape, ONEHOT.shape) == "categorical_accuracy"
    t1, _ = m.batch_terms(YP, CLS)
    t2, _ = get_metric("sparse_categorical_accuracy").batch_terms(YP, CLS)
    np.testing.assert_array_equal(t1, t2)


def test_running_resets_each_epoch():
    tot, cnt = running(np.array([1.0, 2, 3, 4, 5]), np.ones(5), np.array([1, 1, 2, 2, 2]))
    assert tot.tolist() == [1, 3, 3, 7, 12] and cnt.tolist() == [1, 2, 1, 2, 3]
    with pytest.raises(TraceInputError):
        running(np.ones(3), np.ones(2), np.ones(3))


def test_errors_and_describe():
    with pytest.raises(UnsupportedError, match="auc"):
        get_metric({"kind": "auc"})
    assert "so far" in get_metric({"name": "root_mean_squared_error"}).describe()
    assert get_metric({"name": "root_mean_squared_error"}).kind == "rmse"
    with pytest.raises(TraceInputError):
        get_metric("mse").batch_terms(YP, YT[:, :2])


def test_s2_golden_one_batch():
    """SCENARIOS.md S2: Keras logs loss 402.9850 and RMSE 20.0745 from the weights before the update."""
    yp = (0.5 * X12)[None, :, None]
    yt = Y12[None, :, None]
    m = get_metric({"name": "root_mean_squared_error", "kind": "rmse"})
    assert m.result(*m.batch_terms(yp, yt))[0] == pytest.approx(20.074485778808594, rel=1e-7)
    assert get_loss({"name": "mse"}).value(yp, yt)[0] == pytest.approx(402.9850158691406, rel=1e-7)


def test_s2_golden_four_epochs_batch_four():
    """S2 with epochs=4, batch_size=4, shuffle=False: the running loss Keras logs and the kernel
    after each of the 12 iterations (FRAMEWORK-FACTS.md), rebuilt from our loss, optimizer
    rule and running-mean metric only."""
    loss = get_loss({"name": "mse"})
    rule = get_optimizer({"name": "rmsprop", "convention": "keras", "lr": 0.05})
    params = np.array([[0.5, 0.0]])
    state = rule.initial_state(params)
    kernels, losses, epochs = [], [], []
    for it in range(12):
        rows = slice(4 * (it % 3), 4 * (it % 3) + 4)
        x, y = X12[rows], Y12[rows]
        yp = (params[0, 0] * x + params[0, 1])[None, :, None]
        losses.append(loss.value(yp, y[None, :, None])[0])
        dy = loss.grad(yp, y[None, :, None])[0, :, 0]
        grads = np.array([[(dy * x).sum(), dy.sum()]])
        params, state = rule.step(params, grads, state, np.array([it + 1]))
        kernels.append(params[0, 0])
        epochs.append(it // 3 + 1)
    tot, cnt = loss_terms(np.array(losses), 4)
    logged = get_metric({"kind": "mse"}).result(*running(tot, cnt, np.array(epochs)))
    np.testing.assert_allclose(logged, [73.885, 187.73184, 325.36114, 48.24874, 136.83186, 252.76921,
                                        39.48581, 113.57014, 211.38586, 33.02761, 96.15235, 179.49981],
                               rtol=2e-6)
    np.testing.assert_allclose(kernels, [0.6581139, 0.8133439, 0.95879096, 0.9698953, 1.0271562, 1.1329172,
                                         1.1410482, 1.1846774, 1.274396, 1.281273, 1.3188599, 1.3996835],
                               rtol=2e-6)
