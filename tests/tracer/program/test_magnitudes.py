"""Rounding magnitudes bound the real rounding of a lower-precision computation.

The same program runs in float64 (the reference) and in float32 / float16 (as a
framework would); for every value and gradient ``|low - ref| <= FACTOR * eps * M``
must hold, including the cases that broke fixed relative tolerances: a regression
near convergence (tiny residuals, huge terms) and a saturated sigmoid with binary
cross-entropy (a gradient of 4e-6 made of terms near 1). And the tolerance must stay
tight enough that a wrong factor of 1.01 on a gradient is outside it.
"""
import numpy as np
import pytest

from tracer.checker.tolerance import EPS, FACTOR
from tracer.program import Evaluation, StepProgram

RNG = np.random.default_rng(1)


def _mlp(loss_nodes, act="tanh"):
    nodes = [{"name": "h", "op": "linear", "args": ["x", "w1", "b1"]},
             {"name": "a", "op": act, "args": ["h"]},
             {"name": "z", "op": "linear", "args": ["a", "w2", "b2"]}] + loss_nodes
    return StepProgram.from_dict({"inputs": [{"name": "x", "source": "inputs"}, {"name": "y", "source": "targets"}],
                                  "params": ["w1", "b1", "w2", "b2"], "nodes": nodes,
                                  "outputs": {"prediction": "z", "loss": "loss"}})


def _leaves(S=4, B=32, k=20, u=16, m=1, scale=1.0, targets=None):
    x = RNG.normal(size=(S, B, k)) * scale
    w1, b1 = RNG.normal(size=(S, u, k)) / np.sqrt(k), RNG.normal(size=(S, u)) * 0.1
    w2, b2 = RNG.normal(size=(S, m, u)) / np.sqrt(u), RNG.normal(size=(S, m)) * 0.1
    return {"x": x, "w1": w1, "b1": b1, "w2": w2, "b2": b2, "y": targets}


def _check_bound(program, leaves, low):
    ref = Evaluation(program, leaves, np.float64)
    lo = Evaluation(program, {k: v.astype(low) for k, v in leaves.items()}, low)
    eps = EPS[np.dtype(low).name]
    fm = ref.magnitudes()
    worst = 0.0
    for name in ("z", "loss"):
        err = np.abs(lo.values[name].astype(np.float64) - ref.values[name])
        worst = max(worst, float(np.max(err / (FACTOR * eps * fm[name] + 1e-300))))
    gm = ref.gradient_magnitudes()
    for name, g in ref.gradients().items():
        err = np.abs(lo.gradients()[name].astype(np.float64) - g)
        worst = max(worst, float(np.max(err / (FACTOR * eps * gm[name] + 1e-300))))
    return worst, ref


@pytest.mark.parametrize("low", [np.float32, np.float16])
def test_regression_near_convergence_stays_inside_the_bound(low):
    leaves = _leaves()
    prog = _mlp([{"name": "loss", "op": "mse_loss", "args": ["z", "y"]}])
    pred = Evaluation(prog, {**leaves, "y": np.zeros((4, 32, 1))}, np.float64).values["z"]
    leaves["y"] = pred + RNG.normal(size=pred.shape) * 1e-6       # residuals 1e-6, predictions ~1
    worst, _ = _check_bound(prog, leaves, low)
    assert worst <= 1.0


def test_saturated_sigmoid_bce_gradient_stays_inside_the_bound():
    leaves = _leaves(scale=8.0)
    prog = _mlp([{"name": "loss", "op": "binary_cross_entropy_with_logits", "args": ["z", "y"]}])
    z = Evaluation(prog, {**leaves, "y": np.zeros((4, 32, 1))}, np.float64).values["z"]
    leaves["y"] = (z > 0).astype(np.float64)                  # confident and right: loss ~ 1e-4
    worst, _ = _check_bound(prog, leaves, np.float32)
    assert worst <= 1.0


@pytest.mark.parametrize("act", ["relu", "gelu", "sigmoid", "silu"])
def test_classification_mlp_in_float32_and_float16(act):
    leaves = _leaves(m=5)
    leaves["y"] = RNG.integers(0, 5, size=(4, 32))
    prog = _mlp([{"name": "loss", "op": "cross_entropy", "args": ["z", "y"],
                  "attrs": {"num_classes": 5, "label_smoothing": 0.1}}], act=act)
    for low in (np.float32, np.float16):
        worst, _ = _check_int(prog, leaves, low)
        assert worst <= 1.0


def _check_int(prog, leaves, low):
    ints = {k: v for k, v in leaves.items() if v.dtype.kind in "iu"}
    floats = {k: v for k, v in leaves.items() if k not in ints}
    ref = Evaluation(prog, leaves, np.float64)
    lo = Evaluation(prog, {**{k: v.astype(low) for k, v in floats.items()}, **ints}, low)
    eps = EPS[np.dtype(low).name]
    gm = ref.gradient_magnitudes()
    worst = 0.0
    for name, g in ref.gradients().items():
        err = np.abs(lo.gradients()[name].astype(np.float64) - g)
        worst = max(worst, float(np.max(err / (FACTOR * eps * gm[name] + 1e-300))))
    err = abs(float(lo.loss[0]) - float(ref.loss[0]))
    return max(worst, err / (FACTOR * eps * float(ref.magnitudes()["loss"][0]))), ref


def test_a_gradient_one_percent_off_is_outside_the_float32_bound():
    leaves = _leaves()
    leaves["y"] = RNG.normal(size=(4, 32, 1))
    prog = _mlp([{"name": "loss", "op": "mse_loss", "args": ["z", "y"]}])
    ref = Evaluation(prog, leaves, np.float64)
    gm = ref.gradient_magnitudes()
    g = ref.gradients()["w1"]
    tol = FACTOR * EPS["float32"] * gm["w1"]
    caught = np.abs(0.01 * g) > tol
    assert caught.mean() > 0.5                      # most elements show it
    top = np.abs(g) >= np.quantile(np.abs(g), 0.9)
    assert caught[top].all()                        # and every large one does


@pytest.mark.parametrize("op,expected", [("floor", [-3.0, -1.0, 0.0, 2.0]), ("round", [-3.0, -1.0, 1.0, 2.0])])
def test_steps_floor_and_round_evaluate_with_their_value_as_magnitude(op, expected):
    """floor and round have no derivative to carry a rounding through: their magnitude is
    |value| (as sign's and Heaviside's), not a crash of sympy's derivative of floor."""
    prog = StepProgram.from_dict({"inputs": [{"name": "x", "source": "inputs"}], "params": [],
                                  "nodes": [{"name": "r", "op": op, "args": ["x"]}],
                                  "outputs": {"prediction": "r"}})
    x = np.array([[[-2.6], [-0.7], [0.6], [2.4]]])
    ev = Evaluation(prog, {"x": x}, np.float64)
    assert ev.values["r"].ravel().tolist() == expected
    assert np.abs(ev.magnitudes()["r"]).ravel().tolist() == [abs(v) for v in expected]


@pytest.mark.parametrize("dtype,expected,slope", [("int", [-2.0, 0.0, 0.0, 2.0], 0.0),
                                                  ("bool", [1.0, 1.0, 0.0, 1.0], 0.0),
                                                  ("float", [-2.6, -0.7, 0.0, 2.4], 1.0)])
def test_a_cast_evaluates_and_passes_its_gradient_as_torch_does(dtype, expected, slope):
    """An int or bool cast (``.long()``, ``.bool()`` in a torch program) passes no gradient, a
    float cast all of it; compiling the int cast's rules crashed the check (sympy's derivative
    of the truncation is an unevaluated Subs, which the magnitude walk cannot take)."""
    prog = StepProgram.from_dict({"inputs": [{"name": "x", "source": "inputs"}], "params": ["w"],
                                  "nodes": [{"name": "h", "op": "mul", "args": ["x", "w"]},
                                            {"name": "c", "op": "cast", "args": ["h"], "attrs": {"dtype": dtype}},
                                            {"name": "loss", "op": "sum", "args": ["c"]}],
                                  "outputs": {"prediction": "c", "loss": "loss"}})
    x = np.array([[[-2.6], [-0.7], [0.0], [2.4]]])
    ev = Evaluation(prog, {"x": x, "w": np.ones((1, 1))}, np.float64)
    assert ev.values["c"].ravel().tolist() == expected
    assert ev.gradients()["w"].ravel().tolist() == [slope * x.sum()]
    assert np.isfinite(ev.gradient_magnitudes()["w"]).all() and np.isfinite(ev.magnitudes()["c"]).all()
