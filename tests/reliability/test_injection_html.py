"""The step-through page never runs a name from the trace, and still works around it.

Pages are built from traces whose every name field is a script payload (see
``_hostile.py``) and opened in headless Chromium twice: once as written (escaping plus
the page's Content-Security-Policy) and once with CSP bypassed, so the escaping alone
must stop every payload. Nothing may run (no dialog, no ``window.__pwned``, no injected
element, no CSP violation), and the page's own script must run: the step counter moves.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import reports
from reports._safe import script_json
from reports.html import CSP, render_page

from _hostile import SCRIPT, clean_trace, hostile_formulas_meta, hostile_trace

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


def _open(browser, path, bypass_csp):
    ctx = browser.new_context(bypass_csp=bypass_csp, viewport={"width": 1300, "height": 900})
    page = ctx.new_page()
    events = {"dialogs": [], "errors": [], "requests": []}
    page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: events["errors"].append(str(e)))
    page.on("console", lambda m: events["errors"].append(m.text) if m.type == "error" else None)

    def route(r):
        if not r.request.url.startswith("file://"):
            events["requests"].append(r.request.url)
            return r.abort()
        return r.continue_()
    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    return ctx, page, events


def _assert_inert_and_working(page, events, n_steps):
    for _ in range(n_steps):                       # every step renders every section
        page.click("#btn-next")
    page.keyboard.press("Home")
    assert page.evaluate("window.__pwned") is None
    assert events["dialogs"] == []
    assert events["errors"] == [], events["errors"]
    assert events["requests"] == []
    assert page.query_selector_all("img, svg, iframe, object, embed") == []
    assert len(page.query_selector_all("script")) == 2          # the data block and the page's own
    assert page.inner_text("#step-num") == "1"
    page.click("#btn-next")
    assert page.inner_text("#step-num") == "2"


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["with-csp", "escaping-only"])
@pytest.mark.parametrize("build", [hostile_trace, hostile_formulas_meta], ids=["names", "meta-text"])
def test_script_payloads_in_every_name_never_run(browser, tmp_path, build, bypass_csp):
    trace = build(SCRIPT)
    path = reports.to_html(trace, tmp_path / "attack.html")
    ctx, page, events = _open(browser, path, bypass_csp)
    _assert_inert_and_working(page, events, trace.n_steps)
    ctx.close()


def test_payload_names_are_shown_as_the_literal_text(browser, tmp_path):
    trace = hostile_trace(SCRIPT)
    path = reports.to_html(trace, tmp_path / "attack.html")
    ctx, page, events = _open(browser, path, bypass_csp=True)
    weight, bias = SCRIPT[0], SCRIPT[1]
    shown = page.eval_on_selector_all("#update-table tbody tr", "els => els.map(e => e.dataset.param)")
    assert shown[:3] == [f"{weight}[0,0]", f"{weight}[1,0]", bias]
    grads = page.inner_text("#grads")
    assert f"dL/d{weight}[0,0] = " in grads and f"dL/d{bias} = " in grads
    # the by-hand gradient sum still agrees with the recorded gradient under hostile names
    sums = [float(v) for v in page.eval_on_selector_all("#grads .gsum", "els => els.map(e => e.dataset.value)")]
    np.testing.assert_allclose(sums[:2], trace.param_values(weight, "grad")[0].ravel(), rtol=1e-9)
    headers = page.eval_on_selector_all("#data-table th", "els => els.map(e => e.textContent)")
    assert headers == ["row", SCRIPT[6], SCRIPT[7], SCRIPT[8]]
    assert page.title() == f"steptrace - {SCRIPT[5]} run - 4 iterations"
    assert SCRIPT[2] in page.inner_text("#logged")
    ctx.close()


def test_clean_twin_page_works(browser, tmp_path):
    trace = clean_trace()
    path = reports.to_html(trace, tmp_path / "clean.html")
    ctx, page, events = _open(browser, path, bypass_csp=False)
    _assert_inert_and_working(page, events, trace.n_steps)
    assert "passed" in page.inner_text("#check-step")
    ctx.close()


def test_script_json_cannot_close_or_confuse_the_script_element():
    payload = {"a": "</script><!--<script>&\u2028\u2029", "b": [1.5, float("nan"), float("inf")]}
    text = script_json(payload)
    assert not re.search(r"[<>&\u2028\u2029]", text)
    assert json.loads(text) == {"a": payload["a"], "b": [1.5, None, None]}


def test_template_substitution_is_one_pass():
    page = render_page({"title": "__DATA__ __JS__ __CSS__ __CSP__", "n_steps": 0})
    assert "<title>steptrace - __DATA__ __JS__ __CSS__ __CSP__</title>" in page
    assert page.count('<script id="trace-data"') == 1
    assert CSP in page and "script-src 'sha256-" in CSP and "default-src 'none'" in CSP


def test_infinite_and_nan_hyperparameters_give_a_working_page(browser, tmp_path):
    from tracer.app.cli import main

    from _trace_factories import s2_trace

    trace = s2_trace()                      # Keras RMSprop: rho and epsilon are formula symbols
    trace.meta["optimizer"].update(lr=float("inf"), rho=float("inf"), epsilon=float("nan"))
    saved = trace.save(tmp_path / "inf.trace")
    out = tmp_path / "inf.html"
    assert main(["report", str(saved), "--html", str(out)]) == 0
    data = re.search(r'<script id="trace-data" type="application/json">(.*?)</script>', out.read_text()).group(1)
    json.loads(data, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    ctx, page, events = _open(browser, out, bypass_csp=False)
    _assert_inert_and_working(page, events, trace.n_steps)
    ctx.close()
