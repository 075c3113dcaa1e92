
"use strict";
const D = JSON.parse(document.getElementById('trace-data').textContent);
const N = D.n_steps, S = D.steps, M = D.m || 0, K = D.k || 0;
const $ = id => document.getElementById(id);
let cur = 0, highlighted = [];
function fmt(v){
  if (v === null || v === undefined || Number.isNaN(v)) return '\u2014';
  if (v === 0) return '0';
  const a = Math.abs(v);
  let s = (a >= 1e-4 && a < 1e9) ? Number(v).toPrecision(7) : Number(v).toExponential(6);
  if (s.indexOf('e') >= 0) { const [m, e] = s.split('e'); return m.replace(/\.?0+$/, '') + 'e' + e.replace('+', ''); }
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
  if (d.optimizer) h += '<div class="formula">' + esc(d.optimizer) + '\n' + d.equations.map(([n, e]) => '  ' + esc(n) + ' \u2190 ' + esc(e)).join('\n') +
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
          txt += '\n  ' + name + ' \u2190 ' + sub + ' = ' + fmt(v);
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
  highlight(s); renderEpoch(s); renderBatch(s); renderLoss(s); renderGrads(s); renderUpdate(s); renderProgram(s); renderCheck(s); renderExplain(s); drawCursor();
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
