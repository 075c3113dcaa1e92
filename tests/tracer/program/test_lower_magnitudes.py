"""The lower bound of the rounding magnitudes (``lower=True``) never exceeds them.

Why: the checker accepts a recorded value against ``max(|value|, L/2)`` before it computes
the exact magnitudes ``M`` (tracer/checker/tolerance.py); that decides exactly as ``M``
would only if ``L <= M`` element by element, for every op a program may hold. So every
registered op runs here after large matrix products (whose bounds are cut), in random
programs, and the forward and gradient bounds are compared with the exact walk's.
"""
from __future__ import annotations

import numpy as np
import pytest

from tracer.program import Evaluation, StepProgram
from tracer.program.registry import REGISTRY, get_op

S, B, K, N = 3, 32, 64, 64     # x @ W1: 32 * 64 * 64 multiply-adds per step, so the bound cuts it


def _n(name, op, *args, **attrs):
    return {"name": name, "op": op, "args": list(args), "attrs": attrs}


def _u(op, *args, **attrs):
    return [_n("u", op, *args, **attrs)]


#: per op, the nodes computing ``u`` from z, z2 (~N(0, 1)), p = exp(z) > 0, s = sigmoid(z),
#: the targets y in [0, 1], class numbers t (S, B), t1 (S, B, 1) and the params w (N,),
#: lw (N, K), lb (N,)
RECIPES = {
    "abs": _u("abs", "z"), "absolute_error": _u("absolute_error", "z", "z2"), "add": _u("add", "z", "z2"),
    "amax": _u("amax", "z", dims=[1]), "amin": _u("amin", "z", dims=[0], keepdim=True),
    "bce_logits_term": _u("bce_logits_term", "z", "y", pos_weight=2.0), "bce_term": _u("bce_term", "s", "y"),
    "binary_cross_entropy": _u("binary_cross_entropy", "s", "y"),
    "binary_cross_entropy_with_logits": _u("binary_cross_entropy_with_logits", "z", "y", reduction="sum"),
    "cast": _u("cast", "z"), "clamp": _u("clamp", "z", min=-0.5, max=0.7), "concat": _u("concat", "z", "z2", dim=1),
    "cos": _u("cos", "z"), "cross_entropy": _u("cross_entropy", "z", "t", num_classes=N, label_smoothing=0.1),
    "detach": [_n("d", "detach", "z"), _n("u", "mul", "d", "z2")], "div": _u("div", "z", "p"),
    "elu": _u("elu", "z"), "eq": [_n("c", "eq", "z", 0.0), _n("u", "add", "c", "z")], "erf": _u("erf", "z"),
    "exp": _u("exp", "z"),
    "expand": [_n("m", "sum", "z", dims=[1], keepdim=True), _n("u", "expand", "m", shape=[-1, N])],
    "expm1": _u("expm1", "z"), "flatten": _u("flatten", "z"),
    "floor": [_n("f", "floor", "z"), _n("u", "mul", "f", "z")], "gather": _u("gather", "z", "t1", dim=1),
    "ge": [_n("c", "ge", "z", "z2"), _n("u", "mul", "c", "z")],
    "gelu": [_n("g1", "gelu", "z"), _n("g2", "gelu", "z2", approximate="tanh"), _n("u", "add", "g1", "g2")],
    "gt": [_n("c", "gt", "z", 0.0), _n("u", "mul", "c", "z2")], "hardtanh": _u("hardtanh", "z"),
    "huber_loss": _u("huber_loss", "z", "y", delta=0.5), "huber_term": _u("huber_term", "z", "y"),
    "identity": _u("identity", "z"), "index": _u("index", "z", items=[{"slice": [None, None, 2]}, {"int": 3}]),
    "l1_loss": _u("l1_loss", "z", "y"), "le": [_n("c", "le", "z", "z2"), _n("u", "mul", "c", "z")],
    "leaky_relu": _u("leaky_relu", "z", alpha=0.1), "linear": _u("linear", "z", "lw", "lb"), "log": _u("log", "p"),
    "log1p": _u("log1p", "p"), "log_softmax": _u("log_softmax", "z"), "logsumexp": _u("logsumexp", "z", dims=[1]),
    "lt": [_n("c", "lt", "z", 0.0), _n("u", "mul", "c", "z")], "matmul": _u("matmul", "z", "z2T"),
    "maximum": _u("maximum", "z", "z2"), "mean": _u("mean", "z", dims=[0]), "minimum": _u("minimum", "z", 0.0),
    "movedim": _u("movedim", "z", source=0, destination=1), "mse_loss": _u("mse_loss", "z", "y"),
    "mul": _u("mul", "z", "z2"), "ne": [_n("c", "ne", "z", "z2"), _n("u", "mul", "c", "z")], "neg": _u("neg", "z"),
    "nll_loss": [_n("lp", "log_softmax", "z"), _n("u", "nll_loss", "lp", "t", num_classes=N, reduction="sum")],
    "one_hot": [_n("o", "one_hot", "t", num_classes=N), _n("u", "mul", "o", "z")],
    "permute": _u("permute", "z", dims=[1, 0]), "pow": _u("pow", "p", "z2"), "reciprocal": _u("reciprocal", "p"),
    "relu": _u("relu", "z"), "reshape": _u("reshape", "z", shape=[0, 8, -1]),
    "round": [_n("r", "round", "z"), _n("u", "mul", "r", "z2")], "rsqrt": _u("rsqrt", "p"), "selu": _u("selu", "z"),
    "sigmoid": _u("sigmoid", "z"), "sign": [_n("c", "sign", "z"), _n("u", "mul", "c", "z2")],
    "silu": _u("silu", "z"), "sin": _u("sin", "z"), "size": [_n("n", "size", "z"), _n("u", "div", "z", "n")],
    "smooth_l1_loss": _u("smooth_l1_loss", "z", "y", beta=0.5), "smooth_l1_term": _u("smooth_l1_term", "z", "y"),
    "softmax": _u("softmax", "z", dim=0), "softplus": _u("softplus", "z", threshold=1.0), "sqrt": _u("sqrt", "p"),
    "square": _u("square", "z"), "squared_error": _u("squared_error", "z", "y"),
    "squeeze": [_n("e", "unsqueeze", "z", dim=1), _n("u", "squeeze", "e")], "stack": _u("stack", "z", "z2", dim=1),
    "sub": _u("sub", "z", "z2"), "sum": _u("sum", "z", dims=[1]), "take": _u("take", "w", "t"),
    "tanh": _u("tanh", "z"), "transpose": _u("transpose", "z"), "unsqueeze": _u("unsqueeze", "z", dim=-1),
    "where": [_n("c", "gt", "z", "z2"), _n("u", "where", "c", "z", "z2")],
}


def _program(op):
    nodes = [_n("z", "matmul", "x", "W1"), _n("z2", "matmul", "x", "W2"), _n("z2T", "transpose", "z2"),
             _n("p", "exp", "z"), _n("s", "sigmoid", "z")] + RECIPES[op]
    nodes += [_n("sq", "square", "u"), _n("su", "sum", "sq"), _n("zz", "square", "z"), _n("sz", "sum", "zz"),
              _n("loss", "add", "su", "sz")]
    return StepProgram.from_dict({
        "inputs": [{"name": "x", "source": "inputs"}, {"name": "y", "source": "targets"},
                   {"name": "t", "source": "targets", "dtype": "int"}, {"name": "t1", "source": "targets", "dtype": "int"}],
        "params": ["W1", "W2", "w", "lw", "lb"], "nodes": nodes, "outputs": {"loss": "loss"}})


def _leaves(rng, dtype):
    t = rng.integers(0, N, size=(S, B))
    out = {"x": rng.normal(size=(S, B, K)), "W1": rng.normal(size=(S, K, N)) / 8, "W2": rng.normal(size=(S, K, N)) / 8,
           "y": rng.uniform(size=(S, B, N)), "w": rng.normal(size=(S, N)), "lw": rng.normal(size=(S, N, N)) / 8,
           "lb": rng.normal(size=(S, N))}
    out = {k: v.astype(dtype) for k, v in out.items()}
    out["x"][:, :, ::5] *= rng.uniform(size=(S, B, 1)) < 0.2     # sparse columns: sums of few terms
    return {**out, "t": t, "t1": t[:, :, None]}


def test_every_registered_op_has_a_recipe():
    get_op("matmul")                          # the registry fills itself on first use
    assert set(REGISTRY) == set(RECIPES)


@pytest.mark.parametrize("op", sorted(RECIPES))
@pytest.mark.parametrize("dtype,factor", [(np.float64, 1.0 + 1e-12), (np.float32, 2.0)])
def test_the_lower_bound_is_below_the_magnitudes_element_by_element(op, dtype, factor):
    rng = np.random.default_rng(sorted(RECIPES).index(op))
    ev = Evaluation(_program(op), _leaves(rng, dtype), dtype)
    assert ev.lower_saves()
    ev.gradients()
    exact, low = ev.magnitudes(), ev.magnitudes(lower=True)
    for name in ev._needed:
        m, lo = np.asarray(exact[name], np.float64), np.asarray(low[name], np.float64)
        assert lo.shape == m.shape, name
        assert np.all(lo <= m * factor) | np.isnan(m).any(), (name, float(np.nanmax(lo - m * factor)))
    gm, gl = ev.gradient_magnitudes(), ev.gradient_magnitudes(lower=True)
    for name, m in gm.items():
        m, lo = np.asarray(m, np.float64), np.asarray(gl[name], np.float64)
        assert np.all(lo <= m * factor), (name, float(np.nanmax(lo - m * factor)))
    ratio = gl["W1"][gm["W1"] > 0] / gm["W1"][gm["W1"] > 0]
    # a bound that settles rows: not vanishing (medians 0.02 to 0.2, div's 0.008, since
    # the forward sample takes every 8th entry; the suite's checks settled the same rows)
    assert np.median(ratio) > 0.005


def test_small_products_are_not_cut():
    op = get_op("matmul")
    assert op.strides([np.ones((2, 4, 8)), np.ones((2, 8, 3))]) == (1, 1, 1)
    assert op.strides([np.ones((2, B, K)), np.ones((2, K, N))]) == (8, 8, 4)


def test_a_product_of_two_leaves_keeps_its_value_where_the_sample_misses_every_term():
    # x nonzero only in a column the forward sample (every 8th) skips: the sample sums
    # nothing, while |x @ W| (the triangle inequality on the value) keeps the bound up
    rng = np.random.default_rng(3)
    x = np.zeros((S, B, K))
    x[:, :, 3] = rng.normal(size=(S, B))
    leaves = {"x": x, "W1": rng.normal(size=(S, K, N)), "y": rng.normal(size=(S, B, N))}
    prog = StepProgram.from_dict({
        "inputs": [{"name": "x", "source": "inputs"}, {"name": "y", "source": "targets"}], "params": ["W1"],
        "nodes": [_n("z", "matmul", "x", "W1"), _n("loss", "mse_loss", "z", "y")], "outputs": {"loss": "loss"}})
    ev = Evaluation(prog, leaves, np.float64)
    assert ev.lower_saves()
    z, low, exact = ev.value("z"), ev.magnitudes(lower=True)["z"], ev.magnitudes()["z"]
    assert np.array_equal(low, 2 * np.abs(z))                        # here it is all the bound has
    assert np.all(low <= exact * (1 + 1e-12)) and np.all((low > 0) == (exact > 0))
    # a product's value given to the evaluation (not computed by it) is not read by the bound
    given = Evaluation(prog, {**leaves, "z": 1000 * z}, np.float64)
    assert np.all(given.magnitudes(lower=True)["z"] <= exact * (1 + 1e-12))


def test_an_outer_product_is_computed_as_the_broadcast_product_with_the_same_numbers():
    from tracer.program.matmul import _matmul
    rng = np.random.default_rng(4)
    g, w = rng.normal(size=(3, 50, 1)).astype(np.float32), rng.normal(size=(1, 1, 40)).astype(np.float32)
    assert np.array_equal(_matmul(g, w), np.matmul(g, w))             # one product per element
    assert _matmul(g, w).shape == (3, 50, 40)
    a, b = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 4, 2))
    assert np.array_equal(_matmul(a, b), np.matmul(a, b))


def test_a_gradient_product_keeps_every_sparse_term_and_is_exact_when_both_sides_are_sparse():
    from tracer.program.matmul import _low_matmul
    rng = np.random.default_rng(5)
    x = np.abs(rng.normal(size=(2, 64, 40)))                            # inputs: dense
    g = np.abs(rng.normal(size=(2, 40, 64))) * (rng.uniform(size=(2, 40, 64)) < 0.05)   # a rarely active unit
    exact, low = np.matmul(x, g), _low_matmul(x, g)
    assert np.all(low <= exact * (1 + 1e-12)) and np.all((low > 0) == (exact > 0))
    h = x * (rng.uniform(size=x.shape) < 0.5)                          # ReLU activations: sparse too
    assert np.array_equal(_low_matmul(h, g), np.matmul(h, g))


@pytest.mark.parametrize("transposed", [True, False])
@pytest.mark.parametrize("axis,ufunc", [(-1, np.minimum), (-2, np.add)])
def test_runs_are_reduced_into_an_arena_array_laid_out_as_numpy_lays_out_its_own(transposed, axis, ufunc):
    # a reduction into an output of another memory order walks it element by element (50x
    # slower on a first layer's |x|.T); the values are those of each run reduced alone
    from tracer.program.matmul import _runs
    from tracer.program.scratch import arena
    rng = np.random.default_rng(6)
    shape = [3, 20, 20]
    shape[axis] = 50                                       # 8 runs of 6 and one of 2
    x = np.abs(rng.normal(size=shape).astype(np.float32))
    if transposed:
        x = np.swapaxes(np.ascontiguousarray(np.swapaxes(x, -1, -2)), -1, -2)      # same shape, F-ordered steps
    ax = x.ndim + axis
    cut = lambda a, b: x[(slice(None),) * ax + (slice(a, b),)]
    want = np.concatenate([ufunc.reduce(cut(a, a + 6), axis=ax, keepdims=True) for a in range(0, 50, 6)], axis=ax)
    fresh = ufunc.reduce(cut(0, 48).reshape(x.shape[:ax] + (8, 6) + x.shape[ax + 1:]), axis=ax + 1)
    with arena():
        got = _runs(x, axis, 6, ufunc)
        assert got.shape == want.shape and np.array_equal(got, want)
        order = lambda a: sorted(range(a.ndim), key=lambda i: -abs(a.strides[i]))
        assert order(got) == order(fresh)                 # NumPy's own layout of the result
