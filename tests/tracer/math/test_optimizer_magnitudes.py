"""The optimizer rules' rounding magnitudes are finite where a gradient has been exactly 0.

Why: Adam divides by ``sqrt(v_hat) + eps``; the first-order magnitude of ``sqrt(v)`` is
``|d sqrt(v)/dv| * M(v)``, and with ``v = 0`` (a dead ReLU unit whose gradient has been
exactly 0 since the start) that is ``inf * 0``. An exact zero carries no rounding, so
its term is 0; a NaN magnitude made the update check read ``expected 0, got 0`` as a
failure on a correct Adam run (a false alarm found by ``bench/peak_rss_run.py``).
"""
import numpy as np
import pytest

from tracer.math.optimizers import get_optimizer


@pytest.mark.parametrize("convention", ["torch", "keras"])
@pytest.mark.parametrize("spec", [
    {"name": "adam", "lr": 1e-3},
    {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
    {"name": "rmsprop", "lr": 1e-2},
    {"name": "adagrad", "lr": 1e-2},
])
def test_magnitudes_are_finite_with_a_zero_gradient_and_zero_state(spec, convention):
    rule = get_optimizer({**spec, "convention": convention})
    p = np.array([[0.5, -0.25, 0.0, 1.0]])
    g = np.array([[0.0, 0.1, 0.0, -0.2]])          # elements 0 and 2: exactly zero so far
    t = np.array([3])
    state = {s: np.where(g != 0, 0.01, 0.0) for s in rule.slots}
    new_p, new_state = rule.step(p, g, state, t)
    mags = rule.magnitudes(p, g, state, t)
    for name, m in mags.items():
        assert np.isfinite(m).all(), (name, m)
    # the zero-gradient elements do not move, and their magnitude is the value's own
    # (AdamW still decays the weight by lr * weight_decay)
    decay = 1 - spec["lr"] * spec.get("weight_decay", 0.0)
    assert new_p[0, 0] == pytest.approx(p[0, 0] * decay, rel=1e-12) and new_p[0, 2] == 0.0
    # its magnitude is the value's own (times the few roundings of a decay), not NaN or inf
    assert abs(new_p[0, 0]) <= mags["p"][0, 0] <= 2.1 * abs(p[0, 0])
    assert mags["p"][0, 2] == 0.0
    # a moving element keeps a positive magnitude at least its own size
    assert mags["p"][0, 1] >= abs(new_p[0, 1]) > 0
