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
    np.testing.assert_allclose(logged.get_ydata(), trace.steps.logged_root_mean_squared_error)
    # batch RMSE = sqrt(batch mse loss); full-data after update 1 = 18.7706 (SCENARIOS.md, S2 epochs=1)
    np.testing.assert_allclose(batch.get_ydata(), np.sqrt(trace.steps.loss), rtol=1e-12)
    one = s2_trace(epochs=1, batch_size=12, shuffle=False)
    full1 = next(v for k, v in _lines(plots.plot_loss(one).axes[1]).items() if k.startswith("RMSE on all"))
    assert full1.get_ydata()[0] == pytest.approx(18.7706, abs=1e-4)
    assert logged.get_ydata()[0] != pytest.approx(full.get_ydata()[0], rel=1e-3)
    assert any("epoch boundary" == k for k in _lines(ax_loss))
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
