"""Numerical guards (``log(p + 1e-12)``, ``clip(p, 1e-7, 1 - 1e-7)``) found in a program and taken out."""
import numpy as np

from tracer.checker.guards import GUARD, guard_free
from tracer.program import Evaluation, StepProgram


def _program(nodes):
    return StepProgram.from_dict({
        "format": 1, "params": ["w"],
        "inputs": [{"name": "x", "source": "inputs", "columns": [0, 1], "shape": [1]},
                   {"name": "y", "source": "targets", "columns": [0, 1], "shape": [1]}],
        "nodes": nodes, "outputs": {"loss": nodes[-1]["name"]}})


BCE = [
    {"name": "z", "op": "mul", "args": ["x", "w"]},
    {"name": "p", "op": "sigmoid", "args": ["z"]},
    {"name": "pc", "op": "clamp", "args": ["p"], "attrs": {"min": 1e-7, "max": 1 - 1e-7}},
    {"name": "a", "op": "add", "args": ["pc", 1e-8]},
    {"name": "la", "op": "log", "args": ["a"]},
    {"name": "q", "op": "sub", "args": [1.0, "pc"]},
    {"name": "b", "op": "add", "args": ["q", 1e-8]},
    {"name": "lb", "op": "log", "args": ["b"]},
    {"name": "t1", "op": "mul", "args": ["y", "la"]},
    {"name": "m", "op": "sub", "args": [1.0, "y"]},
    {"name": "t2", "op": "mul", "args": ["m", "lb"]},
    {"name": "s", "op": "add", "args": ["t1", "t2"]},
    {"name": "mean", "op": "mean", "args": ["s"]},
    {"name": "loss", "op": "neg", "args": ["mean"]},
]


def test_guards_are_removed_and_nothing_else():
    free = guard_free(_program(BCE))
    ops = {n.name: (n.op, n.args) for n in free.nodes}
    assert ops["a"] == ("add", ["pc", 0.0]) and ops["b"] == ("add", ["q", 0.0])
    assert ops["pc"][0] == "identity"
    assert ops["q"] == ("sub", [1.0, "pc"]) and ops["m"] == ("sub", [1.0, "y"])    # 1.0 is no guard
    # without the guards, the gradient is the hand-written one: mean((p - y) * x)
    rng = np.random.default_rng(0)
    x, y, w = rng.normal(size=(1, 16, 1)), (rng.random((1, 16, 1)) < 0.5).astype(float), np.array([[0.7]])
    leaves = {"x": x, "y": y, "w": w}
    g0 = Evaluation(free, leaves, np.float64).gradients()["w"]
    p = 1 / (1 + np.exp(-0.7 * x))
    np.testing.assert_allclose(g0.reshape(()), np.mean((p - y) * x), rtol=1e-14)
    g1 = Evaluation(_program(BCE), leaves, np.float64).gradients()["w"]
    assert 1e-12 < abs(float(g1.reshape(()) - g0.reshape(()))) < 1e-6     # the guard's effect, small


def test_a_constant_that_is_part_of_the_model_is_no_guard():
    nodes = [
        {"name": "z", "op": "mul", "args": ["x", "w"]},
        {"name": "a", "op": "add", "args": ["z", 1e-7]},        # read by square, not by log/div: the model
        {"name": "sq", "op": "square", "args": ["a"]},
        {"name": "c", "op": "add", "args": ["sq", 2 * GUARD]},  # too large for a guard
        {"name": "l", "op": "log", "args": ["c"]},
        {"name": "d", "op": "clamp", "args": ["l"], "attrs": {"min": 0.5}},
        {"name": "loss", "op": "mean", "args": ["d"]},
    ]
    assert guard_free(_program(nodes)) is None
