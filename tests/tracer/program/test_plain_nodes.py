"""A leaf only moved (``W.T`` of a ``linear`` layer) has the rounding magnitude of a leaf.

A move does no arithmetic, so ``M(W.T) = |W.T|``: a matrix product reads such an operand
as it reads a leaf (``x @ W.T`` of two leaves: ``M = 2 |x| @ |W.T|`` in one product, and the
lower bound ``2 |x @ W.T|`` from the value). A moved computed value, or a moved value given
to the evaluation rather than computed by it, is not read so.
"""
from __future__ import annotations

import numpy as np

from tracer.program import Evaluation, StepProgram

S, B, K, N = 2, 32, 64, 48      # x @ W.T: 32 * 64 * 48 multiply-adds per step, a product the bound cuts


def _n(name, op, *args, **attrs):
    return {"name": name, "op": op, "args": list(args), "attrs": attrs}


def _program():
    nodes = [_n("Wt", "transpose", "W"), _n("Wtt", "reshape", "Wt", shape=[K, N]), _n("z", "matmul", "x", "Wtt"),
             _n("e", "exp", "x"), _n("et", "transpose", "e"), _n("v", "matmul", "et", "x"), _n("sv", "sum", "v"),
             _n("sq", "square", "z"), _n("sz", "sum", "sq"), _n("loss", "add", "sz", "sv")]
    return StepProgram.from_dict({
        "inputs": [{"name": "x", "source": "inputs"}], "params": ["W"], "nodes": nodes, "outputs": {"loss": "loss"}})


def _leaves(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(S, B, K)).astype(dtype), "W": rng.normal(size=(S, N, K)).astype(dtype)}


def test_a_moved_leaf_is_read_as_a_leaf_by_the_product():
    ev = Evaluation(_program(), _leaves(), np.float64)
    assert ev._plain == {"Wt", "Wtt"}                     # moves of W, through two moves; not "et" (of exp(x))
    assert {"et", "v"} <= ev._needed
    x, wt, z = ev.values["x"], ev.values["Wtt"], ev.values["z"]
    exact = ev.magnitudes()["z"]
    assert np.array_equal(exact, 2 * np.matmul(np.abs(x), np.abs(wt)))        # one product, 2 |x| @ |W.T|
    assert np.array_equal(ev.magnitudes(lower=True)["z"], 2 * np.abs(z))      # the bound: from the value
    assert np.all(2 * np.abs(z) <= exact * (1 + 1e-12))


def test_the_gradient_magnitudes_are_those_of_the_leaf_it_moves():
    ev = Evaluation(_program(), _leaves(), np.float64)
    ev.gradients()
    exact, low = ev.gradient_magnitudes()["W"], ev.gradient_magnitudes(lower=True)["W"]
    assert exact.shape == low.shape == (S, N, K)
    assert np.all(np.asarray(low) <= exact * (1 + 1e-12)) and np.median(np.asarray(low) / exact) > 0.01


def test_a_moved_value_given_to_the_evaluation_is_not_read_as_a_leaf():
    leaves = _leaves()
    given = {**leaves, "Wt": 1000 * np.swapaxes(leaves["W"], 1, 2)}
    ev = Evaluation(_program(), given, np.float64)
    assert "Wt" not in ev._plain and "Wtt" not in ev._plain
