"""The step-through page, driven in headless Chromium (Debian's /usr/bin/chromium via Playwright).

The page is opened from a file with every network request refused; the test presses
"next" (button and arrow key) and reads back the shown step, the highlighted data rows,
the batch's predictions, loss, gradients and updated parameters against the trace.
"""
from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

import reports
from reports import _html_payload
from tracer.errors import TraceFileError

from _trace_factories import long_trace, mlp_trace, s2_trace

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors, requests = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    def route(r):
        if not r.request.url.startswith("file://"):
            requests.append(r.request.url)
            return r.abort()
        return r.continue_()
    page.route("**/*", route)
    t0 = time.perf_counter()
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    return page, errors, requests, time.perf_counter() - t0


def _values(page, selector):
    return [float(v) for v in page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.value)")]


def _shown(page):
    return {"step": int(page.inner_text("#step-num")), "epoch": int(page.inner_text("#pos-epoch")),
            "batch": int(page.inner_text("#pos-batch"))}


def test_s2_page_steps_through_all_12_iterations(browser, tmp_path):
    trace = s2_trace()
    path = reports.to_html(trace, tmp_path / "s2.html")
    text = path.read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|https?://", text), "page must be self-contained"
    page, errors, requests, _ = _open(browser, path)
    steps, samples = trace.steps, trace.samples
    for k in range(1, 13):
        if k > 1:
            if k % 2:
                page.click("#btn-next")
            else:
                page.keyboard.press("ArrowRight")
        shown = _shown(page)
        row = steps.iloc[k - 1]
        assert shown == {"step": k, "epoch": int(row.epoch), "batch": int(row.batch)}
        batch = samples[samples.step == k]
        rows = page.eval_on_selector_all("#data-table tr.batch", "els => els.map(e => +e.dataset.row)")
        assert sorted(rows) == sorted(batch["sample"].tolist())
        assert page.eval_on_selector_all("#batch-table tbody tr", "els => els.map(e => +e.dataset.row)") == \
            batch["sample"].tolist()
        assert _values(page, "#batch-table td.pred") == batch["y_pred"].tolist()
        x = trace.data.set_index("sample").loc[batch["sample"], "x"].tolist()
        assert _values(page, "#batch-table td.x") == x
        assert float(page.get_attribute("#batch-loss", "data-value")) == row.loss
        # gradients: the page's own sum of per-row terms equals the recorded gradient
        sums = _values(page, "#grads .gsum")
        recorded = [trace.param_values("dense/kernel", "grad")[k - 1, 0, 0],
                    trace.param_values("dense/bias", "grad")[k - 1, 0]]
        np.testing.assert_allclose(sums, recorded, rtol=1e-9)
        assert _values(page, "#grads .grec") == recorded
        after = [trace.param_values("dense/kernel", "after")[k - 1, 0, 0],
                 trace.param_values("dense/bias", "after")[k - 1, 0]]
        assert _values(page, "#update-table td.after") == after
        assert _values(page, "#update-table td.slot") == [
            trace.param_values("dense/kernel", "velocity")[k - 1, 0, 0],
            trace.param_values("dense/bias", "velocity")[k - 1, 0]]
        # the update with the numbers substituted ends at the recorded parameter
        upd = [float(v) for v in page.eval_on_selector_all("#update .upd", "els => els.map(e => e.dataset.after)")]
        np.testing.assert_allclose(upd, after, rtol=1e-12)
        assert "velocity \u2190 " in page.inner_text("#update .upd")
        # this epoch so far: one row per batch of the epoch up to this one, the running values
        e_rows = steps[(steps.epoch == row.epoch) & (steps.step <= k)]
        assert len(page.query_selector_all("#epoch-table tbody tr")) == len(e_rows)
        logged = _values(page, "#epoch-table td.elogged")       # per row: loss, then the RMSE
        assert logged[0::2] == e_rows["logged_loss"].tolist()
        assert logged[1::2] == e_rows["logged_root_mean_squared_error"].tolist()
        np.testing.assert_allclose(_values(page, "#epoch-table td.erun")[0::2], e_rows["logged_loss"], rtol=1e-12)
        used = page.eval_on_selector_all("#data-table tr.used", "els => els.map(e => +e.dataset.row)")
        earlier = samples[samples.step.isin(e_rows.step[e_rows.step < k])]["sample"]
        assert sorted(used) == sorted(earlier.tolist())
        assert "passed" in page.inner_text("#check-step")
        assert float(page.get_attribute(".logged[data-key='root_mean_squared_error']", "data-value")) == \
            pytest.approx(row.logged_root_mean_squared_error, rel=1e-15)
    page.keyboard.press("ArrowRight")              # past the end stays at the end
    assert _shown(page)["step"] == 12
    page.keyboard.press("ArrowLeft")
    assert _shown(page)["step"] == 11
    page.keyboard.press("Home")
    assert _shown(page)["step"] == 1
    assert "Step 1 (epoch 1, batch 1)" in page.text_content("#explain")
    assert errors == [] and requests == []
    page.close()


def test_10000_iteration_trace_opens_and_steps_quickly(browser, tmp_path):
    trace = long_trace(10_000)
    t0 = time.perf_counter()
    path = reports.to_html(trace, tmp_path / "long.html")
    t_write = time.perf_counter() - t0
    size_mb = path.stat().st_size / 1e6
    page, errors, requests, t_open = _open(browser, path)
    t0 = time.perf_counter()
    for _ in range(50):
        page.keyboard.press("ArrowRight")
    assert _shown(page)["step"] == 51
    t_50 = time.perf_counter() - t0
    page.keyboard.press("End")
    assert _shown(page)["step"] == 10_000
    batch = trace.samples[trace.samples.step == 10_000]
    assert _values(page, "#batch-table td.pred") == batch["y_pred"].tolist()
    print(f"\n10,000 iterations: write {t_write:.2f} s, file {size_mb:.1f} MB, open {t_open:.2f} s, "
          f"50 steps {t_50:.2f} s")
    assert t_open < 20 and t_50 < 15 and size_mb < 40
    assert errors == [] and requests == []
    page.close()


def test_page_says_when_the_check_is_not_available(monkeypatch):
    import tracer.checker

    def broken(trace, **kw):
        raise ImportError("no checker in this build")
    monkeypatch.setattr(tracer.checker, "check", broken)
    payload = _html_payload.build_payload(s2_trace())
    assert payload["check"]["available"] is False
    assert payload["check"]["message"].startswith("check not available")
    assert payload["explain"]["available"] is False
    json.dumps(payload, allow_nan=False)


def test_unwritable_html_path(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with pytest.raises(TraceFileError, match="cannot write the HTML page"):
        reports.to_html(s2_trace(), blocker / "page.html")


def test_dense_stack_page_renders_every_step(browser, tmp_path):
    trace = mlp_trace()
    page, errors, requests, _ = _open(browser, reports.to_html(trace, tmp_path / "mlp.html"))
    for k in range(1, trace.n_steps + 1):
        assert _shown(page)["step"] == k
        shown = sum(min(int(np.prod(trace.param_shape(p))), 4) for p in trace.param_names)
        assert len(page.query_selector_all("#update .upd")) == shown   # up to 4 elements per parameter
        assert "passed" in page.inner_text("#check-step")
        page.click("#btn-next")
    assert errors == [] and requests == []
    page.close()


def _tiny_trace(capture="full", steps=4):
    from tracer import Recorder
    rec = Recorder(meta={"framework": "numpy"}, capture=capture)
    x = np.arange(6.0).reshape(-1, 1)
    rec.set_data(x, 2 * x)
    w = np.zeros((1, 1))
    for i in range(steps):
        rows = np.arange(3) + 3 * (i % 2)
        g = x[rows].T @ (x[rows] @ w - 2 * x[rows]) / 3
        rec.record_step(epoch=1 + i // 2, batch=1 + i % 2, params_before={"w": w}, params_after={"w": w - 0.1 * g},
                        grads={"w": g}, rows=rows, y_pred=x[rows] @ w, loss=1.0, lr=0.1)
        w = w - 0.1 * g
    return rec.trace()


def test_summary_and_empty_traces_still_give_a_page(browser, tmp_path):
    summary = _tiny_trace(capture="summary")
    page, errors, requests, _ = _open(browser, reports.to_html(summary, tmp_path / "summary.html"))
    page.keyboard.press("ArrowRight")
    assert _shown(page)["step"] == 2 and errors == []
    page.close()
    empty = _tiny_trace(steps=0)
    page, errors, requests, _ = _open(browser, reports.to_html(empty, tmp_path / "empty.html"))
    page.keyboard.press("ArrowRight")
    assert "no recorded iterations" in page.inner_text("main") and errors == []
    page.close()
    # the other reports: values workbook, CSV; plots refuse an empty trace clearly
    from reports import plots
    from tracer.errors import TraceInputError
    from reports.excel import FormulasNotWritten
    for t in (summary, empty):
        with pytest.warns(FormulasNotWritten, match="holds values, not live formulas"):
            assert reports.to_excel(t, tmp_path / "t.xlsx", formulas=True).exists()
        assert len(reports.to_csv(t, tmp_path / "csv")) == 5
    with pytest.raises(TraceInputError, match="no recorded steps"):
        plots.save_all(empty, tmp_path / "plots")
    assert plots.save_all(summary, tmp_path / "plots", formats=("png",))


# ------------------------------------------------------------ the checker's own numbers
def test_s0_page_shows_the_recomputed_gradient(browser, tmp_path):
    """S0's NumPy loop records no gradients and declares no loss: the page's per-row terms and
    gradients are the checker's (identified loss, engine's reverse pass), labelled as such, and
    equal the loop's own x.T @ (pred - y) / n."""
    from tracer.app.examples import s0_numpy

    trace, _, _ = s0_numpy(iterations=4)
    page, errors, requests, _ = _open(browser, reports.to_html(trace, tmp_path / "s0.html"))
    a = trace.arrays()
    x, y = a.inputs, a.targets
    for k in range(1, 5):
        w, b = trace.param_values("weights", "before")[k - 1], trace.param_values("biases", "before")[k - 1]
        d = (x @ w + b - y) / len(x)
        text = page.inner_text("#grads")
        assert "\u2014 (recorded)" not in text and "recomputed by the checker" in text
        np.testing.assert_allclose(_values(page, "#grads .gsum"), [(x.T @ d).item(), d.sum()], rtol=1e-10)
        upd = [float(v) for v in page.eval_on_selector_all("#update .upd", "els => els.map(e => e.dataset.after)")]
        np.testing.assert_allclose(upd, [trace.param_values("weights", "after")[k - 1, 0, 0],
                                         trace.param_values("biases", "after")[k - 1, 0]], rtol=1e-12)
        page.keyboard.press("ArrowRight")
    assert "identified" in page.inner_text("#loss-box")
    assert errors == [] and requests == []
    page.close()


@pytest.mark.torch
def test_payload_values_are_the_checkers(tmp_path):
    """Predictions, gradients, the optimizer's assignments and the program's lines come from
    the checker's evaluation; on a torch MLP they reproduce what torch computed."""
    import _program_traces

    trace = _program_traces.mlp_trace()
    p = _html_payload.build_payload(trace, explain_limit=0)
    np.testing.assert_allclose(p["pred_recomputed"], p["sample_pred"], rtol=1e-12)
    for q in p["params"]:
        assert q["grad_source"] == "recorded"
        np.testing.assert_allclose(q["grad_recomputed"], q["grad"], rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(p["update_values"][q["name"]]["eq"][-1], q["after"], rtol=1e-12)
    lines = p["program"]["lines"]
    assert lines[:3] == ["z1/W.T = 0.weight.T", "z1/x@W.T = x @ z1/W.T", "z1 = z1/x@W.T + 0.bias"]
    assert "h = tanh(z1)" in lines and p["program"]["grads"][0] == "dL/d(0.weight)"
    loss_line = lines.index("loss = mean(loss/term)")
    for i in range(trace.n_steps):
        assert float(p["program"]["values"][str(i)][loss_line]) == pytest.approx(trace.steps["loss"][i], rel=1e-9)
    assert "row_grad" not in p and p["desc"]["model"] is None   # two layers: no one-layer sum of row terms
    json.dumps(p, allow_nan=False)


def test_program_section_renders_the_lines_with_this_steps_values(browser, tmp_path):
    """The page's program section (reports._html_program) shows the program with the step's values."""
    trace = s2_trace()
    page, errors, _, _ = _open(browser, reports.to_html(trace, tmp_path / "s2.html"))
    for s in (0, 5, 11):
        page.evaluate(f"renderProgram({s})")
        text = page.inner_text("#program-lines")
        assert "z1 = x1@W + dense/bias  ->" in text and "dL/d(dense/kernel) = " in text
        loss = next(line for line in text.splitlines() if line.strip().startswith("loss = "))
        assert float(loss.split("->")[1]) == pytest.approx(trace.steps["loss"][s], rel=1e-9)
    assert errors == []
    page.close()
