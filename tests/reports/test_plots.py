"""Plots and build_report: files exist, are real images, and draw the trace's numbers."""
from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

import reports
from reports import plots

from _trace_factories import s0_trace, s2_trace


def _lines(ax):
    return {ln.get_label(): ln for ln in ax.get_lines()}


def test_s2_loss_plot_shows_logged_batch_and_full_data_rmse():
    trace = s2_trace()
    fig = plots.plot_loss(trace)
    ax_loss, ax_rmse = fig.axes
    lines = _lines(ax_rmse)
    logged = next(v for k, v in lines.items() if k.startswith("RMSE logged"))
    batch = next(v for k, v in lines.items() if k.startswith("RMSE of this batch"))
    full = next(v for k, v in lines.items() if k.startswith("RMSE on all data"))
    y = logged.get_ydata()
    np.testing.assert_allclose(y[np.isfinite(y)], trace.steps.logged_root_mean_squared_error)
    assert np.isnan(y).sum() == 3            # the running value's line stops at each of the 3 epoch resets
    # batch RMSE = sqrt(batch mse loss); full-data after update 1 = 18.7706 (SCENARIOS.md, S2 epochs=1)
    np.testing.assert_allclose(batch.get_ydata(), np.sqrt(trace.steps.loss), rtol=1e-12)
    one = s2_trace(epochs=1, batch_size=12, shuffle=False)
    full1 = next(v for k, v in _lines(plots.plot_loss(one).axes[1]).items() if k.startswith("RMSE on all"))
    assert full1.get_ydata()[0] == pytest.approx(18.7706, abs=1e-4)
    assert logged.get_ydata()[0] != pytest.approx(full.get_ydata()[0], rel=1e-3)
    assert any("epoch boundary" == k for k in _lines(ax_loss))
    assert [t.get_text() for t in ax_loss.texts] == ["epoch 1", "epoch 2", "epoch 3", "epoch 4"]
    assert ax_loss.get_ylabel() and ax_rmse.get_xlabel().startswith("iteration")


def test_s0_params_plot_ends_at_the_golden_weights():
    fig = plots.plot_params(s0_trace())
    w = _lines(fig.axes[0])["weights"].get_ydata()
    b = _lines(fig.axes[1])["biases"].get_ydata()
    assert len(w) == 101 and w[-1] == pytest.approx(13.09844702, abs=1e-8) and b[-1] == pytest.approx(1.73587336, abs=1e-8)
    assert w[0] == pytest.approx(-0.02509198, abs=1e-8)


def test_save_all_and_build_report_write_real_files(tmp_path):
    trace = s2_trace()
    out = reports.build_report(trace, xlsx=tmp_path / "r.xlsx", html=tmp_path / "r.html",
                               plots=tmp_path / "plots", progress=False)
    names = sorted(p.name for p in out["plots"])
    assert names == ["fits.gif", "fits.png", "fits.svg", "gradients.png", "gradients.svg", "loss.png",
                     "loss.svg", "params.png", "params.svg"]
    for p in out["plots"]:
        if p.suffix == ".svg":
            assert p.read_text().lstrip().startswith("<?xml") and "<svg" in p.read_text()[:2000]
        else:
            im = Image.open(p)
            assert im.size[0] > 300 and im.size[1] > 200
    gif = Image.open(tmp_path / "plots" / "fits.gif")
    assert gif.n_frames == 12
    assert out["xlsx"].exists() and out["html"].exists()


def test_fit_plots_refuse_multi_feature_models():
    from _trace_factories import long_trace
    from tracer.errors import TraceInputError
    with pytest.raises(TraceInputError, match="one-feature"):
        plots.plot_fits(long_trace(20))


def _legend_outside(fig, ax):
    fig.canvas.draw()
    leg, box = ax.get_legend().get_window_extent(), ax.get_window_extent()
    return leg.x0 >= box.x1


def _ticks(ax):
    return [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]


@pytest.mark.parametrize("case", ["one iteration", "one epoch", "10,000 iterations"])
def test_plots_survive_edge_cases(case, tmp_path):
    """One iteration (the learner's run), one epoch of several batches, 10,000 iterations: integer
    ticks, the legend beside the data, epochs labelled, every plot written."""
    from _trace_factories import long_trace
    trace = {"one iteration": lambda: s2_trace(epochs=1, batch_size=12, shuffle=False),
             "one epoch": lambda: s2_trace(epochs=1, batch_size=4),
             "10,000 iterations": lambda: long_trace(10_000)}[case]()
    for fn in (plots.plot_loss, plots.plot_params, plots.plot_gradients):
        fig = fn(trace)
        ax = fig.axes[-1] if fn is not plots.plot_loss else fig.axes[0]
        ticks = _ticks(fig.axes[-1])
        assert ticks and all(float(t).is_integer() for t in ticks), (fn.__name__, ticks)
        assert _legend_outside(fig, ax), fn.__name__
        if case == "one iteration" and fn is plots.plot_loss:
            assert ticks == [1.0]
        if case != "10,000 iterations":
            assert "epoch 1" in [t.get_text() for t in ax.texts]
        else:
            assert ax.child_axes and "epoch" in ax.child_axes[0].get_xlabel()
    assert plots.save_all(trace, tmp_path / "plots", formats=("png",))


def test_full_data_loss_comes_from_the_engine_for_an_identified_loss():
    """The demo's NumPy run declares no loss: the checker identifies it, and the plot's full-data
    loss is that loss of all rows with the weights after each update (the loop's own formula)."""
    from tracer.app.examples import s0_numpy
    trace, _, _ = s0_numpy(iterations=5)
    assert not trace.meta.get("loss")
    full = next(v for k, v in _lines(plots.plot_loss(trace).axes[0]).items() if k.startswith("loss on all"))
    a = trace.arrays()
    w, b = trace.param_values("weights", "after"), trace.param_values("biases", "after")
    want = [np.sum((a.inputs @ w[k] + b[k] - a.targets) ** 2) / 2 / len(a.inputs) for k in range(5)]
    np.testing.assert_allclose(full.get_ydata(), want, rtol=1e-12)
