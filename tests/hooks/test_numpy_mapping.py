"""The NumPy-to-program mapping: each call traced, verified and differentiated right.

A function is traced on a batch (:func:`hooks.numpy.functions.build_program`), and the
program must (1) reproduce NumPy's own numbers (the builder checks it), and (2) give
gradients equal to central finite differences of the *user's* function - so every
mapped call means what NumPy means. What cannot be mapped is listed as unsupported
with the NumPy name and the user's ``file:line``, and never raises.
"""
import sys

import numpy as np
import pytest

from hooks.numpy.functions import Functions, build_program, call_model
from tracer.program import Evaluation, StepProgram

HERE = "test_numpy_mapping.py"


def program_of(model, loss_fn, params, x, y, sizes=None, other=None, full=None):
    sizes = sizes or {len(x)}
    return build_program(Functions(model, loss_fn, "pred", "loss"), params, (x, y), other, sizes,
                         full or len(x))


def leaves(program, params, x, y):
    out = {program.inputs[0].name: np.asarray(x, dtype=float)[None],
           program.inputs[1].name: np.asarray(y, dtype=np.int64 if program.inputs[1].dtype == "int" else float)[None]}
    out.update({c.name: c.value[None] for c in program.consts})
    out.update({k: np.asarray(v, dtype=float)[None] for k, v in params.items()})
    return out


def numeric_grad(model, loss_fn, params, x, y, name, h=1e-6):
    g = np.zeros(np.shape(params[name]))
    flat = g.reshape(-1)
    for i in range(flat.size):
        vals = []
        for s in (1, -1):
            p = {k: np.array(v, dtype=float) for k, v in params.items()}
            p[name].reshape(-1)[i] += s * h
            vals.append(float(loss_fn(call_model(model, p, x), y)))
        flat[i] = (vals[0] - vals[1]) / (2 * h)
    return g


def check_gradients(model, loss_fn, params, x, y):
    prog = program_of(model, loss_fn, params, x, y)
    assert prog["unsupported"] == [], prog["unsupported"]
    p = StepProgram.from_dict(prog)
    grads = Evaluation(p, leaves(p, params, x, y), np.float64).gradients()
    for name in params:
        np.testing.assert_allclose(grads[name][0], numeric_grad(model, loss_fn, params, x, y, name),
                                   rtol=1e-5, atol=1e-7, err_msg=name)
    return prog


@pytest.fixture
def data():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(12, 3))
    y = rng.uniform(0.1, 0.9, size=(12, 1))
    params = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4), "v": rng.normal(size=(4, 1)), "c": 0.25}
    return params, x, y


def test_elementwise_reductions_and_shapes(data):
    params, x, y = data

    def model(W, b, v, c, x):
        h = np.maximum(0, x @ W + b) + 0.1 * np.minimum(x.dot(W), 0.0)      # relu, dot method, minimum
        h = np.where(h > 0.5, np.sqrt(h + 1.0), h ** 2) - np.abs(b) / 3    # where, comparison, sqrt, abs, square
        h = np.clip(h, -2.0, 2.0) * np.exp(-np.square(h) / 10)             # clamp, exp, neg
        z = (h @ v).reshape(len(x), -1) + c                                 # reshape with the batch size
        return z.T.T + np.log1p(np.abs(z)) * 0

    def loss(p, y):
        d = p - y
        return np.sum(d * d, axis=1, keepdims=True).mean() + 0.01 * np.sum(np.tanh(p)) / len(y)

    prog = check_gradients(model, loss, params, x, y)
    ops = {n["op"] for n in prog["nodes"]}
    assert {"relu", "minimum", "where", "gt", "sqrt", "square", "abs", "clamp", "exp", "neg", "reshape",
            "transpose", "log1p", "sum", "mean", "tanh", "matmul"} <= ops
    reshape = next(n for n in prog["nodes"] if n["op"] == "reshape")
    assert reshape["attrs"]["shape"] == [0, -1]     # the batch dimension, as docs/PROGRAM.md asks


def test_indexing_softmax_cross_entropy_by_hand(data):
    params, x, _ = data
    labels = np.array([0, 1, 2, 3] * 3)

    def model(W, b, v, c, x):
        return x @ W + b

    def cross_entropy(z, y):
        e = np.exp(z)
        logp = np.log(e / e.sum(axis=1, keepdims=True))
        return -np.mean(logp[np.arange(len(y)), y])

    prog = check_gradients(model, cross_entropy, {k: params[k] for k in ("W", "b", "v", "c")}, x, labels)
    assert prog["inputs"][1]["dtype"] == "int"
    assert any(n["op"] == "index" for n in prog["nodes"])


def test_stable_softmax_with_max_and_min_is_followed(data):
    """``z - np.max(z, axis=1, keepdims=True)`` (CS231n's stable softmax), ``z.max()``,
    ``np.amin`` and ``np.maximum.reduce`` are the registry's ``amax`` / ``amin``, not "cannot
    check"; the gradients agree with finite differences (the max's own share cancels)."""
    params, x, labels = data
    labels = (np.arange(len(x)) % 3).astype(np.int64)
    params = {"W": params["W"], "b": params["b"]}

    def model(W, b, x):
        z = x @ W + b
        e = np.exp(z - np.max(z, axis=1, keepdims=True))
        return e / np.sum(e, axis=1, keepdims=True) + 0.01 * (z.max() - np.amin(z, axis=0).sum()) \
            + 0.001 * np.maximum.reduce(z, axis=1, keepdims=True)

    def nll(p, y):
        return -np.mean(np.log(p[np.arange(len(y)), y]))

    prog = check_gradients(model, nll, params, x, labels)
    assert {"amax", "amin"} <= {n["op"] for n in prog["nodes"]}


@pytest.mark.parametrize("body, op, line_word", [
    ("np.prod(z, axis=1, keepdims=True)", "numpy.prod", "np.prod"),
    ("z.std()", "numpy.std", "z.std"),
    ("np.arctan(z)", "numpy.arctan", "np.arctan"),
    ("z + float(z.sum())", "float()", "float("),
    ("z[z > 0]", "indexing", "z[z > 0]"),
])
def test_unsupported_calls_are_listed_with_the_users_line(data, body, op, line_word):
    params, x, y = data
    namespace = {"np": np}
    source = f"def model(W, b, v, c, x):\n    z = x @ W + b\n    out = {body}\n    return out\n"
    exec(compile(source, "user_model.py", "exec"), namespace)
    prog = program_of(namespace["model"], lambda p, y: np.sum(p), params, x, y)
    assert prog["unsupported"], prog
    first = prog["unsupported"][0]
    assert first["op"] == op and first["where"] == "user_model.py:3", first
    assert "in model" in first.get("reason", "")
    assert "loss" not in prog["outputs"]
    StepProgram.from_dict(prog)           # still a valid program: the checker says "cannot check"


def test_an_exception_in_the_function_is_reported_not_raised(data):
    params, x, y = data

    def model(W, b, v, c, x):
        return np.einsum("ij,jk->ik", x, W).frobnicate()

    prog = program_of(model, None, params, x, y)
    ops = [u["op"] for u in prog["unsupported"]]
    assert ops[0] == "numpy.einsum"
    assert ops[-1] == "exception" and prog["unsupported"][-1]["where"].startswith(HERE)


def test_random_draws_printing_and_the_users_random_state(data, capsys):
    params, x, y = data
    np.random.seed(1)
    before = np.random.get_state()[1].copy()

    def model(W, b, v, c, x):
        print("in the model")
        return (x @ W + b) * (np.random.rand(*x.shape[:1], 1) > 0.5)

    prog = program_of(model, None, params, x, y)
    assert capsys.readouterr().out == ""
    assert np.array_equal(np.random.get_state()[1], before)
    assert [u["op"] for u in prog["unsupported"]] == ["numpy.random"]


def test_calling_convention_by_name_and_by_position(data):
    params, x, y = data
    seen = []

    def by_name(x, v, W, c, b):
        seen.append("name")
        return x @ W @ v + c

    def by_position(a, bb, cc, dd, data):
        seen.append("position")
        return data @ a @ cc + dd

    for fn in (by_name, by_position):
        prog = program_of(fn, None, params, x, y)
        assert prog["unsupported"] == []
        assert [n["args"] for n in prog["nodes"]][:2] == [["x", "W"], ["t1", "v"]]
    assert seen == ["name", "position"]


def test_batch_size_numbers_follow_each_batch(data):
    params, x, y = data
    model = lambda W, b, v, c, x: x @ W @ v + c                      # noqa: E731
    loss = lambda p, y: 1 / len(y) * np.sum((p - y) ** 2) / y.shape[0] * 2   # noqa: E731
    prog = program_of(model, loss, params, x, y, sizes={12, 5}, other=(x[:11], y[:11]))
    assert prog["unsupported"] == []
    names = [n["name"] for n in prog["nodes"]]
    assert "batch_rows" in names and "1/batch_rows" in names
    p = StepProgram.from_dict(prog)
    for rows in (slice(0, 5), slice(0, 12)):
        ev = Evaluation(p, leaves(p, params, x[rows], y[rows]), np.float64)
        want = loss(model(**params, x=x[rows]), y[rows])
        assert ev.loss[0] == pytest.approx(want, rel=1e-14)


def test_batch_size_shaped_constants_refused_only_when_sizes_differ(data):
    params, x, y = data
    model = lambda W, b, v, c, x: x @ W @ v + c * np.ones((len(x), 1))  # noqa: E731
    loss = lambda p, y: np.mean((p - y) ** 2)                             # noqa: E731
    other = (x[:11], y[:11])
    one_size = program_of(model, loss, params, x[:6], y[:6], sizes={6}, other=(x[:5], y[:5]), full=12)
    assert one_size["unsupported"] == [] and "depend on the batch size" in one_size["notes"][0]
    mixed = program_of(model, loss, params, x, y, sizes={12, 5}, other=other)
    assert mixed["unsupported"][0]["op"] == "batch size"
    assert "batches of 5, 12 rows" in mixed["unsupported"][0]["reason"]


def test_nothing_left_behind(data):
    params, x, y = data
    before = sys.gettrace(), sys.getprofile(), np.geterr()
    program_of(lambda W, b, v, c, x: np.log(x @ W - 100.0), None, params, x, y)
    assert (sys.gettrace(), sys.getprofile(), np.geterr()) == before
