"""A self-contained HTML page that steps through the iterations of a trace.

Why: a learner wants to *watch* training one step at a time - which rows the batch
used, what the model predicted, the batch loss, each gradient as a sum of per-row
terms with the numbers in it, the optimizer's update, and whether the checker agrees.
One file, no server, no network, no external scripts: the trace is embedded as JSON
and a small inline script renders one step at a time, so 10,000 iterations stay
responsive (the page touches only the current batch's rows on each step).

Keys: Right/Left arrow (or ``n``/``p``) next/previous, Home/End first/last; the
timeline and the slider jump anywhere.
"""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from tracer.atomic import replacing_file
from tracer.errors import TraceFileError, TraceInputError

from ._html_payload import EXPLAIN_LIMIT, build_payload
from ._html_program import PROGRAM_JS, PROGRAM_SECTION
from ._safe import html_text, script_json


def to_html(trace, path, explain_limit: int = EXPLAIN_LIMIT, title: str | None = None) -> Path:
    """Write the step-through page for ``trace`` to ``path`` (one .html file) and return it.

    ``explain_limit``: iterations for which the full text of :func:`tracer.explain` is
    embedded (the page builds its own substituted derivation for every iteration).
    An unwritable path raises :class:`tracer.errors.TraceFileError`.
    """
    if not hasattr(trace, "tables"):
        raise TraceInputError(f"trace: expected a tracer.Trace, got {type(trace).__name__}")
    path = Path(path)
    payload = build_payload(trace, explain_limit=explain_limit)
    if title:
        payload["title"] = title
    page = render_page(payload)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing_file(path) as tmp:        # a full disk leaves no partial page
            tmp.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise TraceFileError(f"cannot write the HTML page {path}: {exc.strerror or exc}") from None
    return path


def render_page(payload: dict) -> str:
    """The page's text for ``payload``, every trace string escaped for where it lands.

    Why one pass: the template's placeholders are replaced by one ``re.sub``, so text
    inserted for one placeholder (a framework named ``__DATA__``) is never scanned for
    another. The title is HTML-escaped; the data is JSON made inert inside ``<script>``
    (:func:`reports._safe.script_json`, NaN and infinities as null).
    """
    parts = {"__TITLE__": html_text(payload.get("title", "")), "__CSS__": _CSS, "__JS__": _JS,
             "__CSP__": CSP, "__DATA__": script_json(payload)}
    return _PLACEHOLDER.sub(lambda m: parts[m.group(0)], _TEMPLATE)


_PLACEHOLDER = re.compile("__(?:TITLE|CSS|JS|CSP|DATA)__")


_TEMPLATE = """<!DOCTYPE html>
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

_CSS = """
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
tr.batch td{background:#ffe58f}
.formula{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;background:#f4f4f4;padding:6px 8px;
  border-radius:4px;overflow-x:auto;white-space:pre-wrap}
.verdict{padding:1px 8px;border-radius:10px;font-size:13px}
.v-passed{background:#d9f7be;color:#135200}.v-failed{background:#ffccc7;color:#a8071a}
.v-cannot{background:#eee;color:#555}
.ok{color:#135200}.bad{color:#a8071a;font-weight:bold}
pre{white-space:pre-wrap;font-size:12px}
"""

_JS = r"""
"use strict";
const D = JSON.parse(document.getElementById('trace-data').textContent);
const N = D.n_steps, S = D.steps, M = D.m || 0, K = D.k || 0;
const $ = id => document.getElementById(id);
let cur = 0, highlighted = [];
function fmt(v){
  if (v === null || v === undefined || Number.isNaN(v)) return '\u2014';
  if (v === 0) return '0';
  const a = Math.abs(v);
  let s = (a >= 1e-4 && a < 1e9) ? Number(v).toPrecision(10) : Number(v).toExponential(8);
  if (s.indexOf('e') >= 0) { const [m, e] = s.split('e'); return m.replace(/\.?0+$/, '') + 'e' + e; }
  return s.indexOf('.') >= 0 ? s.replace(/\.?0+$/, '') : s;
}
function par(v){ const s = fmt(v); return (v < 0) ? '(' + s + ')' : s; }
function esc(s){ return String(s).replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c])); }
function num(v, cls){ return '<td' + (cls ? ' class="' + cls + '"' : '') + ' data-value="' + (v === null ? '' : v) + '">' + fmt(v) + '</td>'; }
// epochs and batches per epoch
const epochs = S.epoch, batches = S.batch;
const epochMax = {}; let nEpochs = 0;
for (let i = 0; i < N; i++) { const e = epochs[i]; epochMax[e] = Math.max(epochMax[e] || 0, batches[i]); }
nEpochs = Object.keys(epochMax).length;
$('step-total').textContent = N; $('epoch-total').textContent = nEpochs;
$('slider').max = N; $('goto').max = N;
function colName(base, i, w){ return w === 1 ? base : base + i; }
const xNames = D.inputs && D.inputs.length ? D.inputs : Array.from({length: K}, (_, j) => colName('x', j, K));
const yNames = D.targets && D.targets.length ? D.targets : Array.from({length: M}, (_, o) => colName('y', o, M));
// ---------------------------------------------------------------- data table
const dataRows = [];
(function buildData(){
  const t = $('data-table');
  if (D.data_x === undefined) { $('data-note').textContent = '(not recorded)'; return; }
  const n = D.n_rows, lim = D.data_table_limit;
  if (n > lim) { $('data-note').textContent = '(' + n + ' rows: too many to list; the batch table shows this batch\'s rows)'; return; }
  $('data-note').textContent = '(' + n + ' rows; this batch highlighted)';
  let h = '<thead><tr><th>row</th>' + xNames.map(c => '<th>' + esc(c) + '</th>').join('') +
          yNames.map(c => '<th>' + esc(c) + '</th>').join('') + '</tr></thead><tbody>';
  const ky = D.data_y.length / n;
  for (let i = 0; i < n; i++) {
    h += '<tr data-row="' + i + '"><td>' + i + '</td>';
    for (let j = 0; j < K; j++) h += '<td>' + fmt(D.data_x[i * K + j]) + '</td>';
    for (let o = 0; o < ky; o++) h += '<td>' + fmt(D.data_y[i * ky + o]) + '</td>';
    h += '</tr>';
  }
  t.innerHTML = h + '</tbody>';
  t.querySelectorAll('tbody tr').forEach(tr => dataRows.push(tr));
})();
// ---------------------------------------------------------------- timeline
const tl = $('timeline'), tc = $('timeline-cursor');
function drawTimeline(){
  const w = tl.clientWidth || 800; tl.width = w; tc.width = w;
  const g = tl.getContext('2d'); g.clearRect(0, 0, w, 90);
  const L = S.loss || [];
  let lo = Infinity, hi = -Infinity;
  for (const v of L) if (v !== null && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const logScale = lo > 0 && hi / lo > 1e3;
  const f = v => logScale ? Math.log10(v) : v;
  const flo = f(lo), fhi = f(hi) === f(lo) ? f(lo) + 1 : f(hi);
  const X = i => (N === 1 ? w / 2 : 4 + (w - 8) * i / (N - 1));
  const Y = v => 84 - 78 * (f(v) - flo) / (fhi - flo);
  if (nEpochs > 1 && nEpochs <= 300) {
    g.strokeStyle = '#bbb'; g.setLineDash([2, 3]);
    for (let i = 1; i < N; i++) if (epochs[i] !== epochs[i - 1]) { const x = (X(i - 1) + X(i)) / 2; g.beginPath(); g.moveTo(x, 0); g.lineTo(x, 90); g.stroke(); }
    g.setLineDash([]);
  }
  g.strokeStyle = '#1f77b4'; g.lineWidth = 1.2; g.beginPath();
  if (N > 2 * w) {       // min/max per pixel column keeps 10,000 points cheap
    const per = N / w;
    for (let px = 0; px < w; px++) {
      let a = Infinity, b = -Infinity;
      for (let i = Math.floor(px * per); i < Math.min(N, Math.floor((px + 1) * per)); i++) { const v = L[i]; if (v !== null) { a = Math.min(a, v); b = Math.max(b, v); } }
      if (a <= b) { g.moveTo(px, Y(a)); g.lineTo(px, Y(b) - 0.5); }
    }
  } else {
    let started = false;
    for (let i = 0; i < N; i++) { const v = L[i]; if (v === null) continue; if (!started) { g.moveTo(X(i), Y(v)); started = true; } else g.lineTo(X(i), Y(v)); }
  }
  g.stroke();
  g.fillStyle = '#777'; g.font = '11px sans-serif';
  g.fillText('loss ' + (logScale ? '(log) ' : '') + fmt(hi), 4, 11); g.fillText(fmt(lo), 4, 88);
  tc._X = X;
}
function drawCursor(){
  const w = tc.width, g = tc.getContext('2d'); g.clearRect(0, 0, w, 90);
  const x = tc._X ? tc._X(cur) : 0;
  g.fillStyle = 'rgba(255,77,79,0.9)'; g.fillRect(x - 1, 0, 3, 90);
}
tc.addEventListener('click', ev => {
  const r = tc.getBoundingClientRect(); const frac = (ev.clientX - r.left - 4) / Math.max(1, r.width - 8);
  go(Math.round(frac * (N - 1)));
});
window.addEventListener('resize', () => { drawTimeline(); drawCursor(); });
// ---------------------------------------------------------------- step rendering
function pval(p, which, s, e){ const k = D.param_pos[s]; if (k < 0) return null; return p[which][k * p.size + e]; }
function elemLabel(p, e){
  if (p.size === 1) return p.name;
  const idx = []; let r = e;
  for (let d = p.shape.length - 1; d >= 0; d--) { idx.unshift(r % p.shape[d]); r = Math.floor(r / p.shape[d]); }
  return p.name + '[' + idx.join(',') + ']';
}
function renderBatch(s){
  const lo = D.sample_lo[s], hi = D.sample_hi[s];
  const model = D.desc.model, linear = !model || model.activation === 'linear';
  const gname = linear ? 'dL/d\u0177' : 'dL/dz';
  let h = '<thead><tr><th>row</th>' + xNames.map(c => '<th>' + esc(c) + '</th>').join('') +
    yNames.map(c => '<th>' + esc(c) + '</th>').join('') + yNames.map(c => '<th>\u0177 ' + esc(c) + '</th>').join('') +
    yNames.map(c => '<th>\u0177 \u2212 ' + esc(c) + '</th>').join('') +
    (D.row_grad ? yNames.map(c => '<th>' + gname + ' ' + esc(c) + '</th>').join('') : '') + '</tr></thead><tbody>';
  const ky = D.data_y ? D.data_y.length / D.n_rows : M;
  for (let i = lo; i < hi; i++) {
    const r = D.sample_rows[i];
    h += '<tr data-row="' + r + '"><td>' + r + '</td>';
    for (let j = 0; j < K; j++) h += num(D.data_x ? D.data_x[r * K + j] : null, 'x');
    for (let o = 0; o < ky; o++) h += num(D.data_y ? D.data_y[r * ky + o] : null, 'y');
    for (let o = 0; o < M; o++) h += num(D.sample_pred ? D.sample_pred[i * M + o] : null, 'pred');
    for (let o = 0; o < M; o++) { const p = D.sample_pred ? D.sample_pred[i * M + o] : null, y = D.data_y ? D.data_y[r * ky + o] : null;
      h += num(p === null || y === null ? null : p - y, 'resid'); }
    if (D.row_grad) for (let o = 0; o < M; o++) h += num(D.row_grad[i * M + o], 'rgrad');
    h += '</tr>';
  }
  $('batch-table').innerHTML = h + '</tbody>';
}
function renderLoss(s){
  const d = D.desc; const n = D.sample_hi[s] - D.sample_lo[s];
  let h = '<div class="formula">';
  if (d.loss) h += 'loss: ' + esc(d.loss) + '\n';
  if (d.loss_term) h += 'per element: l = ' + esc(d.loss_term) + '   ;   L = \u03a3 l' +
      (d.divide_by && d.divide_by.length ? ' / ' + d.divide_by.map(f => f === 'n' ? 'n (' + n + ' rows)' : f === 'm' ? 'm (' + M + ' outputs)' : esc(f)).join(' / ') : '') + '\n';
  h += 'L = <b id="batch-loss" data-value="' + (S.loss[s] === null ? '' : S.loss[s]) + '">' + fmt(S.loss[s]) + '</b>  (recorded, this batch, parameters before the update)</div>';
  $('loss-box').innerHTML = h;
  const logged = Object.keys(S).filter(c => c.startsWith('logged_'));
  $('logged').innerHTML = logged.length ? '<div class="hint">logged by the framework after this batch (running values over the epoch so far): ' +
    logged.map(c => esc(c.slice(7)) + ' = <span class="logged" data-key="' + esc(c.slice(7)) + '" data-value="' + S[c][s] + '">' + fmt(S[c][s]) + '</span>').join(', ') + '</div>' : '';
}
function renderGrads(s){
  const lo = D.sample_lo[s], hi = D.sample_hi[s], model = D.desc.model;
  const ky = D.data_y ? D.data_y.length / D.n_rows : M;
  let h = '';
  if (D.desc.loss_grad) h += '<div class="formula">d l / d\u0177 = ' + esc(D.desc.loss_grad) + ' (sympy.diff), divided as the loss is' +
     (model && model.activation !== 'linear' ? '; dL/dz = dL/d\u0177 \u00b7 ' + esc(model.activation) + "'(z)" : '') + '</div>';
  const terms = 6;
  for (const p of D.params) {
    const lim = Math.min(p.size, 16);
    for (let e = 0; e < lim; e++) {
      const rec = pval(p, 'grad', s, e), lab = elemLabel(p, e);
      let line = 'dL/d' + esc(lab) + ' = ';
      if (model && D.row_grad && (p.name === model.weight || p.name === model.bias)) {
        let o, j = null;
        if (p.name === model.weight) { const a = Math.floor(e / p.shape[1]), b = e % p.shape[1]; if (model.transpose) { o = a; j = b; } else { j = a; o = b; } }
        else o = e;
        const parts = []; let sum = 0;
        for (let i = lo; i < hi; i++) {
          const r = D.sample_rows[i], gz = D.row_grad[i * M + o];
          const xv = j === null ? 1 : D.data_x[r * K + j];
          sum += gz * xv;
          if (parts.length < terms) parts.push(j === null ? par(gz) : par(gz) + '\u00b7' + par(xv));
        }
        const more = (hi - lo) > terms ? ' + \u2026 (' + (hi - lo) + ' terms)' : '';
        line += '\u03a3<sub>rows</sub> ' + (linear(model) ? 'dL/d\u0177' : 'dL/dz') + (j === null ? '' : ' \u00b7 ' + esc(xNames[j])) + ' = ' + parts.join(' + ') + more +
          ' = <b class="gsum" data-value="' + sum + '">' + fmt(sum) + '</b>';
        const ok = rec !== null && Math.abs(sum - rec) <= 1e-6 * Math.max(Math.abs(rec), Math.abs(sum)) + 1e-12;
        line += (rec === null && p.grad_source === 'recomputed') ? '   (recomputed by the checker: the run recorded no gradient)' :
          '   recorded <span class="grec" data-value="' + (rec === null ? '' : rec) + '">' + fmt(rec) + '</span> ' +
          (rec === null ? '' : (ok ? '<span class="ok">\u2713</span>' : '<span class="bad">\u2717 differs</span>'));
      } else {
        const rc = (rec === null && p.grad_recomputed) ? pval({size: p.size, v: p.grad_recomputed}, 'v', s, e) : null;
        line += rc !== null ? '<span class="grecomp" data-value="' + rc + '">' + fmt(rc) + '</span> (recomputed by the checker: the run recorded no gradient)' :
          '<span class="grec" data-value="' + (rec === null ? '' : rec) + '">' + fmt(rec) + '</span> (recorded)';
      }
      h += '<div class="formula grad" data-param="' + esc(lab) + '">' + line + '</div>';
    }
    if (p.size > lim) h += '<div class="hint">' + (p.size - lim) + ' more elements of ' + esc(p.name) + ' not shown</div>';
  }
  $('grads').innerHTML = h || '<div class="hint">no parameters recorded</div>';
}
function linear(model){ return !model || model.activation === 'linear'; }
function renderUpdate(s){
  const d = D.desc;
  let h = '';
  if (d.optimizer) h += '<div class="formula">' + esc(d.optimizer) + '\n' + d.equations.map(([n, e]) => '  ' + esc(n) + ' = ' + esc(e)).join('\n') +
     (d.symbols ? '\n  with ' + Object.entries(d.symbols).map(([k, v]) => esc(k) + ' = ' + fmt(v)).join(', ') : '') +
     '\n  lr = ' + fmt(S.lr ? S.lr[s] : null) + (S.opt_step ? ', t = ' + fmt(S.opt_step[s]) : '') + '</div>';
  const slots = [];
  for (const p of D.params) for (const k of Object.keys(p.slots)) if (!slots.includes(k)) slots.push(k);
  h += '<table id="update-table"><thead><tr><th>parameter</th><th>before</th><th>gradient</th>' + slots.map(k => '<th>' + esc(k) + ' (after)</th>').join('') +
       '<th>after</th><th>change</th></tr></thead><tbody>';
  for (const p of D.params) {
    const lim = Math.min(p.size, 16);
    for (let e = 0; e < lim; e++) {
      const b = pval(p, 'before', s, e), a = pval(p, 'after', s, e);
      h += '<tr data-param="' + esc(elemLabel(p, e)) + '"><td style="text-align:left">' + esc(elemLabel(p, e)) + '</td>' + num(b, 'before') + num(pval(p, 'grad', s, e), 'grad') +
        slots.map(k => p.slots[k] ? num(pval({size: p.size, v: p.slots[k]}, 'v', s, e), 'slot') : '<td></td>').join('') +
        num(a, 'after') + num(a === null || b === null ? null : a - b, 'delta') + '</tr>';
    }
  }
  h += '</tbody></table>';
  const U = D.update_values;
  if (U && d.equations && d.equations.length) {
    const lines = [];
    for (const p of D.params) {
      const u = U[p.name]; if (!u) continue;
      const lim = Math.min(p.size, 4), k = D.param_pos[s]; if (k < 0) continue;
      for (let e = 0; e < lim; e++) {
        const at = (arr) => arr[k * p.size + e];
        const env = Object.assign({}, d.symbols || {}, {p: pval(p, 'before', s, e), g: pval(p, 'grad', s, e),
                                  lr: S.lr ? S.lr[s] : null, t: S.opt_step ? S.opt_step[s] : S.step[s]});
        for (const [slot, arr] of Object.entries(u.prev)) env[slot] = at(arr);
        let txt = elemLabel(p, e) + ':';
        d.equations.forEach(([name, expr], i) => {
          const sub = expr.replace(/[A-Za-z_][A-Za-z_0-9]*/g, w => (Object.prototype.hasOwnProperty.call(env, w) && typeof env[w] === 'number') ? par(env[w]) : w);
          const v = at(u.eq[i]);
          txt += '\n  ' + name + ' = ' + sub + ' = ' + fmt(v);
          env[name] = v;
        });
        lines.push('<div class="formula upd" data-param="' + esc(elemLabel(p, e)) + '" data-after="' + env.p + '">' + esc(txt) + '</div>');
      }
    }
    h += '<h3 style="font-size:14px">The update with the numbers in it</h3>' + lines.join('');
  }
  $('update').innerHTML = h;
}
function renderCheck(s){
  const c = D.check;
  const v = $('verdict');
  if (!c || !c.available) { $('check').innerHTML = '<div class="hint">' + esc(c ? c.message : 'check not available') + '</div>'; v.textContent = 'check not available'; v.className = 'verdict v-cannot'; return; }
  const st = c.status[s], cnt = c.counts[s];
  v.textContent = 'check: ' + st; v.className = 'verdict ' + (st === 'passed' ? 'v-passed' : st === 'failed' ? 'v-failed' : 'v-cannot');
  let h = '<div id="check-step" class="' + (st === 'passed' ? 'ok' : st === 'failed' ? 'bad' : '') + '">this iteration: ' + esc(st) + ' (' + cnt[0] + ' passed, ' + cnt[1] + ' failed, ' + cnt[2] + ' not checkable)</div>';
  const f = c.failures[String(s)];
  if (f) h += '<ul>' + f.map(t => '<li>' + esc(t) + '</li>').join('') + '</ul>';
  h += '<div class="hint">whole run: ' + esc(c.verdict) + '</div>';
  $('check').innerHTML = h;
}
function renderExplain(s){
  const e = D.explain;
  if (e && e.texts && e.texts[String(s)] !== undefined) $('explain').textContent = e.texts[String(s)];
  else if (e && e.texts) $('explain').textContent = 'The full text is embedded for the first ' + Object.keys(e.texts).length + ' iterations; run `tracer.explain(trace, step=' + S.step[s] + ')` for this one. The sections above hold the same numbers.';
  else $('explain').textContent = (e && e.message) || 'explanation not available';
}
function highlight(s){
  for (const tr of highlighted) tr.classList.remove('batch');
  highlighted = [];
  if (!dataRows.length) return;
  for (let i = D.sample_lo[s]; i < D.sample_hi[s]; i++) { const tr = dataRows[D.sample_rows[i]]; if (tr) { tr.classList.add('batch'); highlighted.push(tr); } }
  if (highlighted.length) { const w = $('data-wrap'); const top = Math.min(...highlighted.slice(0, 50).map(t => t.offsetTop)); if (top < w.scrollTop + 20 || top > w.scrollTop + w.clientHeight - 20) w.scrollTop = Math.max(0, top - 30); }
}
function go(s){
  if (N === 0) return;
  s = Math.max(0, Math.min(N - 1, s | 0)); cur = s;
  $('step-num').textContent = S.step[s]; $('pos-epoch').textContent = epochs[s]; $('pos-batch').textContent = batches[s];
  $('batch-total').textContent = epochMax[epochs[s]];
  $('slider').value = s + 1; if (document.activeElement !== $('goto')) $('goto').value = s + 1;
  highlight(s); renderBatch(s); renderLoss(s); renderGrads(s); renderUpdate(s); renderProgram(s); renderCheck(s); renderExplain(s); drawCursor();
  if (location.hash !== '#' + (s + 1)) history.replaceState(null, '', '#' + (s + 1));
}
$('btn-first').onclick = () => go(0); $('btn-prev').onclick = () => go(cur - 1);
$('btn-next').onclick = () => go(cur + 1); $('btn-last').onclick = () => go(N - 1);
$('slider').addEventListener('input', ev => go(+ev.target.value - 1));
$('goto').addEventListener('change', ev => go(+ev.target.value - 1));
document.addEventListener('keydown', ev => {
  if (ev.target && ev.target.tagName === 'INPUT' && ev.target.type === 'number') return;
  if (ev.key === 'ArrowRight' || ev.key === 'n') { go(cur + 1); ev.preventDefault(); }
  else if (ev.key === 'ArrowLeft' || ev.key === 'p') { go(cur - 1); ev.preventDefault(); }
  else if (ev.key === 'Home') { go(0); ev.preventDefault(); }
  else if (ev.key === 'End') { go(N - 1); ev.preventDefault(); }
});
if (N === 0) {
  document.querySelector('main').innerHTML = '<p id="empty">This trace has no recorded iterations.</p>';
  $('controls').style.display = 'none';
} else {
  drawTimeline();
  const h0 = parseInt((location.hash || '#1').slice(1), 10);
  go(Number.isFinite(h0) ? h0 - 1 : 0);
}
document.body.dataset.ready = '1';
"""

# the step program's section and renderer (static text, no trace data): part of the template
_TEMPLATE = _TEMPLATE.replace("__PROGRAM_SECTION__", PROGRAM_SECTION)
_JS = _JS + PROGRAM_JS

#: Content-Security-Policy of the page: only its own inline script (by hash) may run, and
#: nothing is fetched. A second wall behind the escaping: an injected ``<script>`` or
#: ``onerror=`` would not run even if a name slipped through unescaped.
CSP = ("default-src 'none'; script-src 'sha256-"
       + base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode("ascii")
       + "'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'")
