"""Losses: values and gradients against independent NumPy formulas, finite differences,
and the real Keras and torch loss functions."""
import numpy as np
import pytest

from tracer.errors import TraceInputError, UnsupportedError
from tracer.math import get_loss, squared_error_family
from tracer.math.losses import LOSS_NAMES

RNG = np.random.default_rng(3)
S, B, M_OUT = 3, 5, 4
Z = RNG.normal(size=(S, B, M_OUT)) * 2          # logits / regression predictions
T = RNG.normal(size=(S, B, M_OUT))              # regression targets
PROB = RNG.uniform(0.05, 0.95, size=(S, B, M_OUT))
BIN = (RNG.uniform(size=(S, B, M_OUT)) > 0.5).astype(float)
CLS = RNG.integers(0, M_OUT, size=(S, B, 1)).astype(float)
ONEHOT = (CLS == np.arange(M_OUT)).astype(float)
SOFT = RNG.uniform(size=(S, B, M_OUT))
SOFT /= SOFT.sum(-1, keepdims=True)             # soft labels
PROBS_ROW = RNG.uniform(0.05, 1.0, size=(S, B, M_OUT))   # unnormalised "probabilities"


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


# (spec, y_pred, y_true, numpy value per step, numpy gradient)
def _cases():
    d = Z - T
    n, m = B, M_OUT
    cases = {
        "se_sum": ({"name": "squared_error", "divide_by": []}, Z, T, (d ** 2).sum((1, 2)), 2 * d),
        "se_2n": ({"name": "squared_error", "divide_by": [2, "n"]}, Z, T, (d ** 2).sum((1, 2)) / 2 / n, d / n),
        "mse": ({"name": "mse"}, Z, T, (d ** 2).mean((1, 2)), 2 * d / (n * m)),
        "mae": ({"name": "mae"}, Z, T, np.abs(d).mean((1, 2)), np.sign(d) / (n * m)),
        "huber": ({"name": "huber", "delta": 1.3}, Z, T,
                  np.where(np.abs(d) <= 1.3, 0.5 * d ** 2, 1.3 * np.abs(d) - 0.5 * 1.3 ** 2).mean((1, 2)),
                  np.clip(d, -1.3, 1.3) / (n * m)),
        "bce": ({"name": "bce"}, PROB, BIN,
                -(BIN * np.log(PROB) + (1 - BIN) * np.log(1 - PROB)).mean((1, 2)),
                (PROB - BIN) / (PROB * (1 - PROB)) / (n * m)),
        "bce_torch": ({"name": "bce", "convention": "torch"}, PROB, BIN,
                      -(BIN * np.log(PROB) + (1 - BIN) * np.log(1 - PROB)).mean((1, 2)),
                      (PROB - BIN) / (PROB * (1 - PROB)) / (n * m)),
        "bce_logits": ({"name": "bce_logits"}, Z, BIN,
                       -(BIN * np.log(sigmoid(Z)) + (1 - BIN) * np.log(1 - sigmoid(Z))).mean((1, 2)),
                       (sigmoid(Z) - BIN) / (n * m)),
        "cce_logits": ({"name": "cce_logits"}, Z, SOFT,
                       -(SOFT * np.log(softmax(Z))).sum(-1).mean(1), (softmax(Z) - SOFT) / n),
        "scce_logits": ({"name": "scce_logits"}, Z, CLS,
                        -(ONEHOT * np.log(softmax(Z))).sum(-1).mean(1), (softmax(Z) - ONEHOT) / n),
        "cross_entropy_sum": ({"name": "cross_entropy", "reduction": "sum", "convention": "torch"}, Z, CLS,
                              -(ONEHOT * np.log(softmax(Z))).sum((1, 2)), softmax(Z) - ONEHOT),
    }
    q = PROBS_ROW / PROBS_ROW.sum(-1, keepdims=True)
    sumt = SOFT.sum(-1, keepdims=True)
    cce_grad = (-SOFT / PROBS_ROW + sumt / PROBS_ROW.sum(-1, keepdims=True)) / n
    cases["cce"] = ({"name": "cce"}, PROBS_ROW, SOFT, -(SOFT * np.log(q)).sum(-1).mean(1), cce_grad)
    cases["scce"] = ({"name": "scce"}, PROBS_ROW, CLS, -(ONEHOT * np.log(q)).sum(-1).mean(1),
                     (-ONEHOT / PROBS_ROW + 1 / PROBS_ROW.sum(-1, keepdims=True)) / n)
    return cases


CASES = _cases()


@pytest.mark.parametrize("key", sorted(CASES))
def test_value_and_grad_match_numpy(key):
    spec, yp, yt, val, grad = CASES[key]
    loss = get_loss(spec)
    np.testing.assert_allclose(loss.value(yp, yt), val, rtol=1e-12)
    np.testing.assert_allclose(loss.grad(yp, yt), grad, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("key", sorted(CASES))
def test_grad_matches_finite_differences(key):
    spec, yp, yt, _, _ = CASES[key]
    loss = get_loss(spec)
    g = loss.grad(yp, yt)
    h = 1e-6
    for idx in [(0, 0, 0), (1, 2, 3), (2, 4, 1)]:
        up, dn = yp.copy(), yp.copy()
        up[idx] += h
        dn[idx] -= h
        fd = (loss.value(up, yt)[idx[0]] - loss.value(dn, yt)[idx[0]]) / (2 * h)
        assert g[idx] == pytest.approx(fd, rel=1e-5, abs=1e-8), (key, idx)


def test_mse_equals_squared_error_n_m_and_family():
    fam = squared_error_family()
    assert [f["divide_by"] for f in fam] == [[], [2], ["n"], [2, "n"], ["n", "m"], [2, "n", "m"]]
    assert fam[3]["label"] == "sum of squares / 2 / n"
    assert get_loss(fam[3]).describe() == "sum of squares / 2 / n"
    a = get_loss({"name": "mse"}).value(Z, T)
    b = get_loss({"name": "squared_error", "divide_by": ["n", "m"]}).value(Z, T)
    np.testing.assert_array_equal(a, b)
    assert get_loss({"name": "mse"}).describe() == "mean squared error (mean over rows and outputs)"


def test_s0_first_loss_golden():
    """SCENARIOS.md S0: first loss of the NumPy tutorial, sum(d**2) / 2 / 1000."""
    np.random.seed(42)
    x = np.random.uniform(-10, 10, (1000, 1))
    np.random.seed(42)
    noise = np.random.uniform(-1, 1, (1000, 1))
    y = 13 * x + 2 + noise
    np.random.seed(42)
    w = np.random.uniform(-0.1, 0.1, (1, 1))
    b = np.random.uniform(-0.1, 0.1, 1)
    out = x @ w + b
    loss = get_loss({"name": "squared_error", "divide_by": [2, "n"]})
    assert loss.value(out[None], y[None])[0] == pytest.approx(2937.686334634683, rel=1e-13)
    # gradient of that loss w.r.t. the outputs is deltas / n, as the tutorial's deltas_scaled
    np.testing.assert_allclose(loss.grad(out[None], y[None])[0], (out - y) / 1000, rtol=1e-12)


def test_mask_counts_real_rows_only():
    loss = get_loss({"name": "mse"})
    mask = np.ones((S, B), bool)
    mask[1, 3:] = False
    v = loss.value(Z, T, mask=mask)
    np.testing.assert_allclose(v[1], ((Z[1, :3] - T[1, :3]) ** 2).mean(), rtol=1e-12)
    g = loss.grad(Z, T, mask=mask)
    assert (g[1, 3:] == 0).all()
    np.testing.assert_allclose(g[1, :3], 2 * (Z[1, :3] - T[1, :3]) / (3 * M_OUT), rtol=1e-12)


def test_keras_bce_clipping_and_torch_clamp():
    yp = np.array([[[0.0], [1.0], [0.3]]])
    yt = np.array([[[1.0], [0.0], [1.0]]])
    k = get_loss({"name": "bce"}).value(yp, yt)[0]
    eps = 1e-7
    assert k == pytest.approx((-np.log(eps) * 2 - np.log(0.3)) / 3, rel=1e-9)
    t = get_loss({"name": "bce", "convention": "torch"}).value(yp, yt)[0]
    assert t == pytest.approx((100 * 2 - np.log(0.3)) / 3, rel=1e-12)
    g = get_loss({"name": "bce"}).grad(yp, yt)
    assert g[0, 0, 0] == 0 and g[0, 1, 0] == 0   # clipped: no gradient, like tf.clip_by_value


def test_defaults_and_describe():
    assert get_loss({"name": "cce"}).divide_by == ["n"]
    assert get_loss({"name": "bce"}).divide_by == ["n", "m"]
    assert get_loss({"name": "mae", "reduction": "sum"}).divide_by == ["m"]          # Keras: per-row mean
    assert get_loss({"name": "mae", "reduction": "sum", "convention": "torch"}).divide_by == []
    assert "Keras clipping" in get_loss({"name": "bce"}).describe()
    assert get_loss({"name": "cross_entropy"}).name == "scce_logits"
    expr, (yp, yt) = get_loss({"name": "mse"}).elementwise
    assert str(expr) == "(y_pred - y_true)**2"


def test_bad_input():
    with pytest.raises(UnsupportedError, match="hinge"):
        get_loss({"name": "hinge"})
    with pytest.raises(TraceInputError, match="divide_by"):
        get_loss({"name": "squared_error", "divide_by": ["k"]})
    with pytest.raises(TraceInputError, match="y_true"):
        get_loss({"name": "mse"}).value(Z, T[:, :2])
    with pytest.raises(TraceInputError, match="y_pred"):
        get_loss({"name": "mse"}).value(Z[0], T[0])
    with pytest.raises(TraceInputError, match="class numbers"):
        get_loss({"name": "scce_logits"}).value(Z, CLS + 0.5)
    with pytest.raises(TraceInputError):
        get_loss("mse")
    assert set(LOSS_NAMES) >= {"mse", "bce_logits", "scce_logits"}


def test_planted_bug_wrong_divisor_is_caught():
    """A trace whose loss was sum/2/n is not mistaken for mse."""
    d = Z - T
    recorded = (d ** 2).sum((1, 2)) / 2 / B
    assert not np.allclose(get_loss({"name": "mse"}).value(Z, T), recorded, rtol=1e-6)
    np.testing.assert_allclose(get_loss({"name": "squared_error", "divide_by": [2, "n"]}).value(Z, T), recorded)


# ----------------------------------------------------------------- real frameworks
@pytest.fixture(scope="module")
def tf_mod():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import keras
    return tf, keras


KERAS_LOSSES = {
    "mse": lambda k: k.losses.MeanSquaredError(dtype="float64"),
    "mae": lambda k: k.losses.MeanAbsoluteError(dtype="float64"),
    "huber": lambda k: k.losses.Huber(delta=1.3, dtype="float64"),
    "bce": lambda k: k.losses.BinaryCrossentropy(dtype="float64"),
    "bce_logits": lambda k: k.losses.BinaryCrossentropy(from_logits=True, dtype="float64"),
    "cce": lambda k: k.losses.CategoricalCrossentropy(dtype="float64"),
    "cce_logits": lambda k: k.losses.CategoricalCrossentropy(from_logits=True, dtype="float64"),
    "scce": lambda k: k.losses.SparseCategoricalCrossentropy(dtype="float64"),
    "scce_logits": lambda k: k.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64"),
}
KERAS_LOSSES["bce_smooth"] = lambda k: k.losses.BinaryCrossentropy(label_smoothing=0.2, dtype="float64")
KERAS_LOSSES["cce_logits_smooth"] = lambda k: k.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.3,
                                                                               dtype="float64")
KERAS_SPECS = {"huber": {"name": "huber", "delta": 1.3}, "bce_smooth": {"name": "bce", "label_smoothing": 0.2},
               "cce_logits_smooth": {"name": "cce_logits", "label_smoothing": 0.3}}
KERAS_DATA = {"bce_smooth": (PROB, BIN), "cce_logits_smooth": (Z, ONEHOT), "mse": (Z, T), "mae": (Z, T), "huber": (Z, T), "bce": (PROB, BIN), "bce_logits": (Z, BIN),
              "cce": (PROBS_ROW, SOFT), "cce_logits": (Z, SOFT), "scce": (PROBS_ROW, CLS), "scce_logits": (Z, CLS)}


@pytest.mark.keras
@pytest.mark.parametrize("name", sorted(KERAS_LOSSES))
def test_matches_keras(tf_mod, name):
    tf, keras = tf_mod
    yp, yt = KERAS_DATA[name]
    spec = KERAS_SPECS.get(name, {"name": name})
    loss = get_loss(spec)
    fn = KERAS_LOSSES[name](keras)
    vals, grads = [], []
    for s in range(S):
        v = tf.Variable(yp[s])
        with tf.GradientTape() as tape:
            out = fn(yt[s], v)
        vals.append(float(out))
        grads.append(tape.gradient(out, v).numpy())
    np.testing.assert_allclose(loss.value(yp, yt), vals, rtol=1e-6)
    np.testing.assert_allclose(loss.grad(yp, yt), np.array(grads), rtol=1e-6, atol=1e-12)


@pytest.fixture(scope="module")
def torch_mod():
    import torch
    return torch


def _torch_cases(torch):
    F = torch.nn.functional
    return {
        "mse": ({"name": "mse", "convention": "torch"}, Z, T, lambda p, t: F.mse_loss(p, t)),
        "mae": ({"name": "mae", "convention": "torch"}, Z, T, lambda p, t: F.l1_loss(p, t)),
        "huber": ({"name": "huber", "delta": 1.3, "convention": "torch"}, Z, T,
                  lambda p, t: F.huber_loss(p, t, delta=1.3)),
        "mse_sum": ({"name": "mse", "reduction": "sum", "convention": "torch"}, Z, T,
                    lambda p, t: F.mse_loss(p, t, reduction="sum")),
        "bce": ({"name": "bce", "convention": "torch"}, PROB, BIN, lambda p, t: F.binary_cross_entropy(p, t)),
        "bce_logits": ({"name": "bce_logits", "convention": "torch"}, Z, BIN,
                       lambda p, t: F.binary_cross_entropy_with_logits(p, t)),
        "cross_entropy": ({"name": "cross_entropy", "convention": "torch"}, Z, CLS,
                          lambda p, t: F.cross_entropy(p, t[:, 0].long())),
        "cross_entropy_soft": ({"name": "cce_logits", "convention": "torch"}, Z, SOFT,
                               lambda p, t: F.cross_entropy(p, t)),
        "cross_entropy_smooth": ({"name": "cross_entropy", "convention": "torch", "label_smoothing": 0.15}, Z, CLS,
                                 lambda p, t: F.cross_entropy(p, t[:, 0].long(), label_smoothing=0.15)),
    }


@pytest.mark.torch
@pytest.mark.parametrize("key", ["mse", "mae", "huber", "mse_sum", "bce", "bce_logits", "cross_entropy",
                                 "cross_entropy_soft", "cross_entropy_smooth"])
def test_matches_torch(torch_mod, key):
    torch = torch_mod
    spec, yp, yt, fn = _torch_cases(torch)[key]
    loss = get_loss(spec)
    vals, grads = [], []
    for s in range(S):
        p = torch.tensor(yp[s], dtype=torch.float64, requires_grad=True)
        out = fn(p, torch.tensor(yt[s], dtype=torch.float64))
        out.backward()
        vals.append(out.item())
        grads.append(p.grad.numpy())
    np.testing.assert_allclose(loss.value(yp, yt), vals, rtol=1e-12)
    np.testing.assert_allclose(loss.grad(yp, yt), np.array(grads), rtol=1e-10, atol=1e-15)


@pytest.mark.keras
def test_keras_uses_logits_behind_a_sigmoid_or_softmax(tf_mod):
    """Keras computes bce/cce from the logits when y_pred comes from a sigmoid/softmax: no clipping."""
    tf, keras = tf_mod
    z = np.array([[20.0], [-3.0], [25.0]])
    t = np.array([[0.0], [1.0], [1.0]])
    got = float(keras.losses.BinaryCrossentropy()(t, keras.activations.sigmoid(tf.constant(z, tf.float32))))
    loss = get_loss({"name": "bce"})
    assert loss.as_logits().name == "bce_logits" and loss.as_logits().divide_by == ["n", "m"]
    assert loss.as_logits().value(z[None], t[None])[0] == pytest.approx(got, rel=1e-6)
    assert abs(loss.value((1 / (1 + np.exp(-z)))[None], t[None])[0] - got) > 0.1   # clipping would differ
    zc = RNG.normal(size=(4, 3)) * 10
    tc = np.eye(3)[[0, 2, 1, 1]]
    got = float(keras.losses.CategoricalCrossentropy()(tc, keras.activations.softmax(tf.constant(zc, tf.float32))))
    assert get_loss({"name": "cce"}).as_logits().value(zc[None], tc[None])[0] == pytest.approx(got, rel=1e-5)
