"""The step-through page's static parts: the HTML template and its style sheet.

Why apart from :mod:`reports.html`: the page is three texts (template, style, script)
and the code that fills them; keeping the texts in their own modules keeps each small.
The placeholders (``__TITLE__``, ``__CSS__``, ``__JS__``, ``__CSP__``, ``__DATA__``) are
filled in one pass by :func:`reports.html.render_page`; ``__PROGRAM_SECTION__`` and
``__EPOCH_SECTION__`` take the static sections of :mod:`reports._html_program` and
:mod:`reports._html_epoch`.
"""
from __future__ import annotations

__all__ = ["TEMPLATE", "CSS"]

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="__CSP__">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>steptrace - __TITLE__</title>
<style>__CSS__</style></head>
<body>
<header>
  <h1>steptrace: __TITLE__</h1>
  <div id="position" aria-live="polite">
    Iteration <b id="step-num">1</b> of <span id="step-total"></span>
    &middot; epoch <b id="pos-epoch"></b> of <span id="epoch-total"></span>
    &middot; batch <b id="pos-batch"></b> of <span id="batch-total"></span>
    &middot; <span id="verdict" class="verdict"></span>
  </div>
  <div id="controls">
    <button id="btn-first" title="first (Home)">&laquo; first</button>
    <button id="btn-prev" title="previous (Left arrow)">&#x25C0; prev</button>
    <button id="btn-next" title="next (Right arrow)">next &#x25B6;</button>
    <button id="btn-last" title="last (End)">last &raquo;</button>
    <input id="slider" type="range" min="1" value="1" aria-label="iteration">
    <label>go to <input id="goto" type="number" min="1" value="1" style="width:7em"></label>
    <span class="hint">keys: &larr; &rarr; Home End</span>
  </div>
  <div id="timeline-wrap">
    <canvas id="timeline" height="90"></canvas><canvas id="timeline-cursor" height="90"></canvas>
  </div>
  <div class="hint" id="timeline-legend">timeline: batch loss per iteration (dotted lines: epoch boundaries); click to jump</div>
</header>
<main>
  <section id="left">
    <h2>Data <span class="hint" id="data-note"></span></h2>
    <div id="data-wrap"><table id="data-table"></table></div>
  </section>
  <section id="right">
    <h2>This batch: predictions (parameters before the update)</h2>
    <div id="batch-wrap"><table id="batch-table"></table></div>
    <h2>Batch loss</h2>
    <div id="loss-box"></div>
    <div id="logged"></div>
    __EPOCH_SECTION__
    <h2>Gradients, by hand</h2>
    <div id="grads"></div>
    <h2>The update</h2>
    <div id="update"></div>
    __PROGRAM_SECTION__
    <h2>Check</h2>
    <div id="check"></div>
    <details id="explain-box"><summary>Full derivation (tracer.explain)</summary><pre id="explain"></pre></details>
  </section>
</main>
<script id="trace-data" type="application/json">__DATA__</script>
<script>__JS__</script>
</body></html>
"""

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:8px 16px;z-index:2}
h1{font-size:18px;margin:2px 0 6px}
h2{font-size:15px;margin:14px 0 6px;color:#333}
#position{font-size:15px;margin-bottom:6px}
#controls{display:flex;gap:8px;align-items:center;flex-wrap:wrap}
#controls button{font-size:14px;padding:3px 10px;cursor:pointer}
#slider{flex:1;min-width:200px}
.hint{color:#777;font-size:12px}
#timeline-wrap{position:relative;height:90px;margin-top:6px}
#timeline-wrap canvas{position:absolute;left:0;top:0;width:100%;height:90px}
#timeline-cursor{cursor:pointer}
main{display:grid;grid-template-columns:minmax(260px,1fr) 2fr;gap:18px;padding:0 16px 40px}
#data-wrap{max-height:70vh;overflow:auto;border:1px solid #ddd;background:#fff}
#batch-wrap{max-height:40vh;overflow:auto;border:1px solid #ddd;background:#fff}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:2px 8px;text-align:right;border-bottom:1px solid #eee;white-space:nowrap}
th{position:sticky;top:0;background:#f0f0f0}
tr.used td{background:#fff6d5}
tr.batch td{background:#ffe58f}
#epoch-wrap{max-height:30vh;overflow:auto;border:1px solid #ddd;background:#fff}
#epoch-table tr.current td{font-weight:bold;background:#ffe58f}
.formula{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;background:#f4f4f4;padding:6px 8px;
  border-radius:4px;overflow-x:auto;white-space:pre-wrap}
.verdict{padding:1px 8px;border-radius:10px;font-size:13px}
.v-passed{background:#d9f7be;color:#135200}.v-failed{background:#ffccc7;color:#a8071a}
.v-cannot{background:#eee;color:#555}
.ok{color:#135200}.bad{color:#a8071a;font-weight:bold}
pre{white-space:pre-wrap;font-size:12px}
"""
