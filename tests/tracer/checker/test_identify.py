"""tracer.checker.identify: the loss and the learning rate found from the numbers alone."""
from __future__ import annotations

import numpy as np
import pytest

import tracer
from tracer.checker.identify import candidate_losses, guess_linear_model, sgd_rate
from _trace_factories import s0_trace


def test_s0_without_a_declared_loss_or_optimizer_is_identified():
    trace = s0_trace(iterations=4)
    trace.meta.pop("loss")
    trace.meta.pop("optimizer")
    report = tracer.check(trace)
    assert report.identified["loss"] == "sum of squares / 2 / n"
    assert "lr 0.02" in report.identified["optimizer"]
    assert report.verdict == "passed"


def test_a_wrong_factor_is_not_identified_as_another_candidate():
    trace = s0_trace(iterations=3)
    trace.meta.pop("loss")
    trace.meta.pop("optimizer")
    trace.arrays().steps["loss"] = trace.arrays().steps["loss"] * 3.0     # no candidate gives 3x
    report = tracer.check(trace)
    assert report.identified.get("loss") != "sum of squares / 2 / n"
    assert report.verdict != "passed"


@pytest.mark.parametrize("lr", [0.05, 0.001, 0.3])
def test_sgd_rate_reads_the_shortest_decimal_from_float32_updates(lr):
    g = np.linspace(-3, 3, 64).astype(np.float32)
    p = np.full(64, 1.5, np.float32)
    update = (p - np.float32(lr) * g) - p
    assert sgd_rate(update, g, np.abs(p), 2.0 ** -24) == lr


def test_sgd_rate_is_least_squares_when_no_short_decimal_explains_the_update():
    g = np.linspace(-3, 3, 64)
    update = -0.1 * g + 0.01 * np.sin(np.arange(64))
    assert sgd_rate(update, g, np.ones(64), 2.0 ** -52) == pytest.approx(-np.dot(update, g) / np.dot(g, g), rel=1e-12)
    assert sgd_rate(np.zeros(4), np.zeros(4), np.ones(4), 2.0 ** -52) is None      # no gradient: no rate


def test_candidates_and_the_linear_model_guess():
    names = [name for _, name in candidate_losses(1, False)]
    assert "sum of squares / 2 / n" in names and len(names) == len(set(names))
    model = guess_linear_model(s0_trace(iterations=1))
    assert model["layers"][0]["weight"] == "weights" and model["layers"][0]["bias"] == "biases"


def test_sgd_rate_told_that_every_element_is_finite_gives_the_same_rate():
    from tracer.checker.identify import SAMPLE
    rng = np.random.default_rng(7)
    for n in (1000, SAMPLE + 1234, 3 * SAMPLE):                     # below and above the sample size
        p = rng.standard_normal(n).astype(np.float32)
        g = rng.standard_normal(n).astype(np.float32)
        update = ((p - np.float32(3e-4) * g).astype(np.float32) - p).astype(np.float64)
        noisy = update * (1 + 1e-3 * rng.standard_normal(n))        # no short decimal fits: the fitted rate
        for u in (update, noisy):
            want = sgd_rate(u, g, np.abs(p), 2.0 ** -24)
            assert sgd_rate(u, g, np.abs(p), 2.0 ** -24, finite=True) == want
        assert sgd_rate(update, g, np.abs(p), 2.0 ** -24, finite=True) == 3e-4


def test_sampled_rows_are_picked_straight_from_finite_rows_and_converted_whole_otherwise():
    from types import SimpleNamespace

    from tracer.checker.identify import SAMPLE, _sampled
    from tracer.checker.update_rules import RowsOfGrad
    rng = np.random.default_rng(8)
    rows, size = np.array([0, 2, 5]), SAMPLE // 2 + 3                  # more elements than the sample
    before = rng.standard_normal((6, size)).astype(np.float32)
    after = (before * 0.999).astype(np.float32)
    grad = rng.standard_normal((6, size)).astype(np.float32)
    p = SimpleNamespace(before=before, after=after)
    u, g, mag, work = _sampled(p, RowsOfGrad(grad, None), rows)
    k = rows.size * size // SAMPLE + 1                                  # every k-th of the rows end to end
    want_b = before[rows].astype(np.float64).reshape(-1)[::k]
    assert work is not None and np.array_equal(g, grad[rows].astype(np.float64).reshape(-1)[::k])
    assert np.array_equal(u, after[rows].astype(np.float64).reshape(-1)[::k] - want_b)
    after[5, 7] = np.nan                                                # a NaN in a sampled row: whole rows
    u, g, mag, work = _sampled(p, RowsOfGrad(grad, None), rows)
    assert work is None and u.shape == (3, size) and np.isnan(u[2, 7])


def test_sgd_rate_working_in_the_callers_rows_gives_the_same_rate_and_leaves_a_non_finite_sample_alone():
    from tracer.checker.identify import SAMPLE
    rng = np.random.default_rng(9)
    n = SAMPLE - 17
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32).astype(np.float64)
    update = ((p - np.float32(3e-4) * g).astype(np.float32) - p).astype(np.float64)
    noisy = update * (1 + 1e-3 * rng.standard_normal(n))           # the fitted rate, to its last bit
    for u in (update, noisy, noisy * 1e-30):
        want = sgd_rate(u, g, np.abs(p), 2.0 ** -24, grad_mag=np.abs(g))
        work = (np.full(n, np.nan), np.full(n, np.nan))
        mag = np.abs(p).astype(np.float64)
        got = sgd_rate(u.copy(), g.copy(), mag, 2.0 ** -24, finite=True, grad_mag=np.abs(g), work=work)
        assert got == want and (want == 3e-4) == (u is update)
        assert not np.array_equal(mag, np.abs(p))                       # the magnitude was worked in
    bad = noisy.copy()
    bad[5] = np.nan                                                     # a NaN: the sample is cut, work not used
    work = (np.zeros(3), np.zeros(3))                                   # (would fail if it were)
    assert sgd_rate(bad, g, np.abs(p), 2.0 ** -24, work=work) == sgd_rate(bad, g, np.abs(p), 2.0 ** -24)
    assert np.isfinite(sgd_rate(bad, g, np.abs(p), 2.0 ** -24))


def test_a_sampled_row_with_an_inf_goes_the_slow_way_and_a_huge_finite_row_picks_the_same_elements():
    from types import SimpleNamespace

    from tracer.checker.identify import SAMPLE, _sampled
    from tracer.checker.update_rules import RowsOfGrad
    rng = np.random.default_rng(10)
    rows, size = np.array([0, 3]), SAMPLE // 2 + 5
    before = rng.standard_normal((4, size)).astype(np.float32)
    grad = rng.standard_normal((4, size)).astype(np.float32)
    after = (before - np.float32(1e-3) * grad).astype(np.float32)
    p = SimpleNamespace(before=before, after=after)
    u0, g0, mag0, work = _sampled(p, RowsOfGrad(grad, None), rows)
    assert work is not None                                             # the clean twin: picked
    for arr, value in ((grad, np.inf), (before, -np.inf)):
        saved = arr[3, 11]
        arr[3, 11] = value                                              # an inf in a sampled row
        assert _sampled(p, RowsOfGrad(grad, None), rows)[3] is None
        arr[3, 11] = saved
    before[0, 1] = after[0, 1] = np.float32(1e30)                       # finite, its square is not
    u, g, mag, work = _sampled(p, RowsOfGrad(grad, None), rows)
    k = rows.size * size // SAMPLE + 1
    assert work is None and mag.size > u0.size                          # the slow way: whole rows
    assert sgd_rate(u, g, mag, 2.0 ** -24) == sgd_rate(u0, g0, mag0, 2.0 ** -24) == 1e-3
    assert np.array_equal(u.reshape(-1)[::k], u0)                       # ...which sample the same elements
