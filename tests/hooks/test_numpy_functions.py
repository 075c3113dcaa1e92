"""NumPy models and losses given as plain functions (issue 9, item 3), traced and checked.

The classic course logistic regression (a Python-float bias, ``sigmoid`` and binary
cross-entropy written by hand, gradients written by hand) and a NumPy MLP with a tanh
hidden layer are traced into step programs and checked: both pass with nothing
"cannot check", tracing leaves their results bit-identical, and bugs planted in the
hand-written gradients (a missing 1/n, a sign error) are caught at step 1, each beside
a clean twin that passes.
"""
import numpy as np
import pytest

import tracer
from hooks.numpy import NumpyTracer


# ------------------------------------------------------------------ the models
def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def logistic(w, b, x):
    return sigmoid(np.dot(x, w) + b)


def bce(p, y):
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def logistic_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3 + rng.normal(scale=0.5, size=(n, 1)) > 0).astype(float)
    return x, y


def logistic_run(bug=None, iterations=30, traced=True, lr=0.1):
    """The course's loop: ``w = zeros, b = 0.0``, forward, cost, hand-written gradients."""
    x, y = logistic_data()
    n = len(x)
    w, b = np.zeros((3, 1)), 0.0
    tr = NumpyTracer(params=["w", "b"], predictions="p", loss="cost", inputs=x, targets=y, lr=lr,
                     model=logistic, loss_fn=bce) if traced else None
    loop = tr.range(iterations) if traced else range(iterations)
    for i in loop:
        p = sigmoid(np.dot(x, w) + b)
        cost = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        dw = np.dot(x.T, p - y) / n
        db = np.sum(p - y) / n
        if bug == "missing_1_over_n":
            dw = np.dot(x.T, p - y)
        if bug == "sign":
            db = -db
        w = w - lr * dw
        b = b - lr * db
    return (tr.trace if traced else None), w, b


def mlp(W1, b1, W2, b2, x):
    h = np.tanh(x @ W1 + b1)
    return h @ W2 + b2


def mse(y_pred, y):
    return np.mean((y_pred - y) ** 2)


def mlp_run(bug=None, iterations=20, lr=0.05, traced=True):
    """A 2 -> 8 -> 1 tanh network on a smooth target, backprop written by hand."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, size=(64, 2))
    y = np.sin(x[:, :1]) + 0.5 * x[:, 1:] ** 2
    W1, b1 = rng.normal(scale=0.5, size=(2, 8)), np.zeros(8)
    W2, b2 = rng.normal(scale=0.5, size=(8, 1)), 0.0
    n = len(x)
    tr = NumpyTracer(params=["W1", "b1", "W2", "b2"], predictions="out", loss="loss", inputs=x, targets=y,
                     lr=lr, model=mlp, loss_fn=mse) if traced else None
    for i in (tr.range(iterations) if traced else range(iterations)):
        h = np.tanh(x @ W1 + b1)
        out = h @ W2 + b2
        loss = np.mean((out - y) ** 2)
        d_out = 2 * (out - y) / n
        dW2 = h.T @ d_out
        db2 = np.sum(d_out)
        d_h = d_out @ W2.T * (1 - h ** 2)
        dW1 = x.T @ d_h
        db1 = d_h.sum(axis=0)
        if bug == "missing_1_over_n":
            dW1 = x.T @ (d_h * n)
        if bug == "sign":
            db2 = -db2
        W1, b1, W2, b2 = W1 - lr * dW1, b1 - lr * db1, W2 - lr * dW2, b2 - lr * db2
    return (tr.trace if traced else None), (W1, b1, W2, b2)


# ---------------------------------------------------------------- logistic
@pytest.fixture(scope="module")
def logistic_clean():
    return logistic_run()


def test_classic_logistic_regression_passes(logistic_clean):
    trace, w, b = logistic_clean
    report = tracer.check(trace)
    assert report.verdict == "passed", report.summary()
    assert report.cannot_check == []
    assert "loss" not in report.identified            # the loss was traced, not guessed
    counts = report.table.groupby("quantity").size().to_dict()
    assert counts == {"loss": 30, "prediction": 30, "update": 60}
    program = trace.meta["program"]
    assert program["unsupported"] == []
    ops = [n["op"] for n in program["nodes"]]
    assert ops[:3] == ["matmul", "add", "sigmoid"]    # 1 / (1 + exp(-z)) read as the sigmoid
    assert program["outputs"] == {"target": "y", "prediction": "p", "loss": "cost"}
    where = {n["where"].split(":")[0] for n in program["nodes"]}
    assert where == {"test_numpy_functions.py"}


def test_python_float_bias_is_a_scalar_parameter(logistic_clean):
    trace, w, b = logistic_clean
    assert isinstance(b, float)
    shapes = {p["name"]: p["shape"] for p in trace.meta["params"]}
    assert shapes == {"w": [3, 1], "b": []}
    last = trace.params[trace.params.step == 30].set_index("param")
    assert last.loc["b", "after"] == b


def test_tracing_leaves_the_results_bit_identical(logistic_clean):
    _, w, b = logistic_clean
    _, w0, b0 = logistic_run(traced=False)
    assert np.array_equal(w, w0) and b == b0


@pytest.mark.parametrize("bug, param, words", [
    ("missing_1_over_n", "w", "missing the 1/n factor (n = 200)"),
    ("sign", "b", "sign error"),
])
def test_planted_gradient_bugs_are_caught(bug, param, words):
    report = tracer.check(logistic_run(bug)[0])
    assert report.verdict == "failed", report.summary()
    first = report.first_failure()
    assert first["step"] == 1 and first["quantity"] == "update" and first["param"] == param
    assert any(f.param == param and words in f.message for f in report.findings), report.summary()
    other = report.table[(report.table.quantity == "update") & (report.table.param != param)]
    assert other["passed"].all()
    assert report.table[report.table.quantity.isin(["loss", "prediction"])]["passed"].all()


def test_explain_reads_like_the_users_code(logistic_clean):
    text = tracer.explain(logistic_clean[0], step=1)
    assert "p = sigmoid(z)" in text        # z: the name `sigmoid` gives its argument
    assert "cost = -t" in text
    assert "all 4 checks of this step passed" in text


# ---------------------------------------------------------------------- MLP
def test_numpy_mlp_with_tanh_passes_bit_identical():
    trace, params = mlp_run()
    report = tracer.check(trace)
    assert report.verdict == "passed", report.summary()
    assert report.cannot_check == []
    assert "tanh" in [n["op"] for n in trace.meta["program"]["nodes"]]
    _, plain = mlp_run(traced=False)
    assert all(np.array_equal(a, b) for a, b in zip(params, plain))


@pytest.mark.parametrize("bug, param, factor", [("missing_1_over_n", "W1", 64.0), ("sign", "b2", -1.0)])
def test_mlp_planted_bugs_are_caught(bug, param, factor):
    report = tracer.check(mlp_run(bug)[0])
    assert report.verdict == "failed"
    first = report.first_failure()
    assert first["step"] == 1 and first["param"] == param and first["quantity"] == "update"
    assert first["factor"] == pytest.approx(factor, rel=1e-6)
    others = report.table[(report.table.quantity == "update") & (report.table.param != param)]
    assert others["passed"].all()


def test_model_function_alone_lets_the_checker_identify_the_loss():
    x, y = logistic_data()
    n = len(x)
    w, b = np.zeros((3, 1)), 0.0
    tr = NumpyTracer(params=["w", "b"], predictions="p", loss="cost", inputs=x, targets=y, model=logistic)
    for i in tr.range(10):
        p = sigmoid(np.dot(x, w) + b)
        cost = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        w = w - 0.1 * np.dot(x.T, p - y) / n
        b = b - 0.1 * np.sum(p - y) / n
    report = tracer.check(tr.trace)
    assert report.verdict == "passed", report.summary()
    assert report.identified["loss"] == "binary cross-entropy on probabilities (torch BCELoss) (mean)"
    assert "lr 0.1" in report.identified["optimizer"]


def test_a_model_the_program_cannot_follow_says_cannot_check_and_never_crashes():
    x, y = logistic_data(60)
    w, b = np.zeros((3, 1)), 0.0

    def softmax_model(w, b, x):
        z = x @ w + b
        return np.exp(z - np.prod(z, axis=1, keepdims=True))

    tr = NumpyTracer(params=["w", "b"], predictions="p", inputs=x, targets=y, lr=0.1, model=softmax_model)
    for i in tr.range(3):
        p = softmax_model(w, b, x)
        w = w - 0.1 * x.T @ (p - y) / 60
        b = b - 0.1 * float(np.mean(p - y))
    report = tracer.check(tr.trace)
    assert report.verdict == "incomplete"
    assert any(r.startswith("model: numpy.prod at test_numpy_functions.py:") for r in report.cannot_check), \
        report.cannot_check


def test_a_bias_gradient_that_cancels_exactly_is_no_false_alarm():
    """Balanced labels and ``w = 0, b = 0.0``: at step 1 every prediction is 0.5 and the
    user's ``np.sum(p - y) / n`` is exactly 0, while the checker's recomputed gradient of b
    is a rounding residue (1.7e-18 here). The update check must allow the recomputed
    gradient's own rounding (lr * M(g)), not only the parameter's (|b| = 0): before, the
    clean run FAILED as "b was never updated" and the sign bug was named the same way."""
    np.random.seed(0)                 # tests/scripts/sweep/numpy_logreg_functions.py's data: 50 ones of 100
    x = np.random.randn(100, 3)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.2 > 0).astype(float).reshape(-1, 1)
    assert y.sum() == 50

    def run(sign):
        w, b, lr = np.zeros((3, 1)), 0.0, 0.5
        tr = NumpyTracer(params=["w", "b"], predictions="p", loss="cost", inputs=x, targets=y, lr=lr,
                         model=logistic, loss_fn=bce)
        for _ in tr.range(5):
            p = sigmoid(np.dot(x, w) + b)
            cost = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
            db = np.sum(p - y) / len(x)
            w = w - lr * np.dot(x.T, p - y) / len(x)
            b = b - sign * lr * db
        assert cost > 0
        return tracer.check(tr.trace)

    clean = run(1.0)
    assert clean.verdict == "passed" and not clean.cannot_check, str(clean)
    first = clean.table[(clean.table.step == 1) & (clean.table.param == "b")]
    assert first.actual.iloc[0] == 0.0 and first.expected.iloc[0] != 0.0      # the residue itself
    buggy = run(-1.0)
    assert buggy.verdict == "failed"
    assert any("sign error" in str(f) for f in buggy.findings), [str(f) for f in buggy.findings]


@pytest.mark.parametrize("guard", ["1e-12", "1e-8", "clip"])
def test_a_guarded_log_in_the_loss_is_no_false_alarm(guard):
    """``np.log(p + 1e-8)`` or ``np.clip(p, 1e-7, 1 - 1e-7)`` keeps log(0) away; the loop's
    backward pass is the unguarded ``(p - y) / n`` (the tutorials' own). The guard moved the
    recomputed float64 gradient by 1e-14 to 1e-10 relative, far above the tolerance: updates
    FAILED (and the fitted rate came out 0.50000000000096 instead of 0.5);
    the check allows exactly the guard's effect, so a sign error on b still fails."""
    np.random.seed(3)
    X = np.random.randn(60, 3)
    y = (X[:, :1] * X[:, 1:2] > 0).astype(float)

    def model(W, b, X):
        return 1.0 / (1.0 + np.exp(-(X @ W + b)))

    def bce(p, y):
        if guard == "clip":
            p = np.clip(p, 1e-7, 1 - 1e-7)
            return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        c = float(guard)
        return -np.mean(y * np.log(p + c) + (1 - y) * np.log(1 - p + c))

    def run(bug=False):
        W, b, lr = np.random.randn(3, 1) * 0.5, np.zeros(1), 0.5
        tr = NumpyTracer(params=["W", "b"], predictions="p", loss="loss", inputs=X, targets=y, model=model,
                         loss_fn=bce)
        for i in tr.range(10):
            xb, yb = X, y
            p = model(W, b, xb)
            loss = bce(p, yb)
            d = (p - yb) / len(xb)
            W -= lr * xb.T @ d
            b -= (-lr if bug else lr) * d.sum(0)
        return tracer.check(tr.trace)

    clean = run()
    assert clean.verdict == "passed" and not clean.cannot_check, str(clean)
    assert "lr 0.5 " in clean.identified["optimizer"]
    buggy = run(bug=True)
    assert buggy.verdict == "failed"
    assert any("sign error" in str(f) for f in buggy.findings), [str(f) for f in buggy.findings]
