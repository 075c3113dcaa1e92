"""The page's "epoch so far" section: the batches of this epoch up to this iteration.

Why: the running average is the heart of the S2 lesson. Keras logs, after each batch,
the mean over every batch of the epoch so far, and resets it when an epoch starts. The
section lists the epoch's batches up to the current one (rows used, batch value, the
running value recomputed and the logged one), shades in the data table the rows the
epoch has already used, and shows the updated model's loss on all rows. The numbers
are the checker's (:func:`tracer.checker.logged.metric_series`, the step program on
all rows with the weights after each update).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tracer.checker.report import CheckReport
    from tracer.trace import Trace

__all__ = ["epoch_payload", "EPOCH_SECTION", "EPOCH_JS"]


def _by_index(trace, steps, values) -> list:
    """``values`` (one per step in ``steps``) laid out by the page's iteration index (None: unknown)."""
    pos = {int(s): i for i, s in enumerate(trace.steps["step"].to_numpy())}
    out = [None] * trace.n_steps
    for s, v in zip(np.asarray(steps).tolist(), np.asarray(values, dtype=np.float64).tolist()):
        if int(s) in pos and np.isfinite(v):
            out[pos[int(s)]] = float(v)
    return out


def epoch_payload(trace: Trace, report: CheckReport | None) -> dict:
    """``{"series": [{"name", "label", "batch", "running"}], "full_after": [...] | None}``."""
    from tracer.checker.logged import metric_series
    from tracer.errors import SteptraceError
    from tracer.metric_names import KIND_OF_NAME, LABEL

    out = {"series": [], "full_after": None}
    losses = report.context.get("loss_by_step") if report is not None else None
    specs = ["loss"] + [m for m in trace.meta.get("metrics") or [] if m.get("kind") not in (None, "unsupported")]
    for spec in specs:
        try:
            s = metric_series(trace, spec, losses or None)
        except SteptraceError:
            s = None
        if s is None:
            continue
        name = "loss" if spec == "loss" else spec["name"]
        out["series"].append({"name": name, "label": LABEL.get(KIND_OF_NAME.get(name, ""), name),
                              "batch": _by_index(trace, s.steps, s.batch_value),
                              "running": _by_index(trace, s.steps, s.running)})
    program = report.context.get("program") if report is not None else None
    if program is not None and program.has_loss:
        from tracer.checker.recompute import full_data_series
        try:
            fd = full_data_series(trace, "after", program)
            out["full_after"] = _by_index(trace, fd.steps, fd.loss)
        except (SteptraceError, ValueError, IndexError):
            pass
    return out


#: the section (placed after the batch loss in the page template)
EPOCH_SECTION = ('<h2>This epoch so far <span class="hint">(what the framework averages: reset at each epoch '
                 'start; shaded rows in the data table were used earlier in this epoch)</span></h2>\n'
                 '    <div id="epoch-wrap"><table id="epoch-table"></table></div><div id="epoch-note" class="hint">'
                 '</div>')

#: ``renderEpoch(s)``: fills the table and shades the rows used earlier in the epoch
EPOCH_JS = r"""
function compactRows(lo, hi){
  const r = D.sample_rows.slice(lo, hi); if (!r.length) return '';
  const runs = []; let a = r[0], b = r[0];
  for (let i = 1; i <= r.length; i++) {
    if (i < r.length && r[i] === b + 1) { b = r[i]; continue; }
    runs.push(a === b ? String(a) : (b === a + 1 ? a + ', ' + b : a + '-' + b));
    if (i < r.length) { a = b = r[i]; }
  }
  return runs.length > 6 ? runs.slice(0, 6).join(', ') + ', \u2026 (' + r.length + ' rows)' : runs.join(', ');
}
function renderEpoch(s){
  const t = $('epoch-table'); if (!t) return;
  const E = D.epoch || {series: []}, e = epochs[s];
  let i0 = s; while (i0 > 0 && epochs[i0 - 1] === e) i0--;
  let h = '<thead><tr><th>iteration</th><th>batch</th><th style="text-align:left">rows used</th>';
  for (const q of E.series) h += '<th>' + esc(q.label) + ' of the batch</th><th>' + esc(q.label) + ' running (epoch so far)</th>';
  for (const q of E.series) { const c = 'logged_' + q.name; if (S[c]) h += '<th>' + esc(q.name) + ' logged</th>'; }
  if (E.full_after) h += '<th>loss on all rows after the update</th>';
  h += '</tr></thead><tbody>';
  for (let i = i0; i <= s; i++) {
    h += '<tr class="' + (i === s ? 'current' : '') + '"><td>' + S.step[i] + '</td><td>' + batches[i] + '</td><td style="text-align:left">' +
      esc(compactRows(D.sample_lo[i], D.sample_hi[i])) + '</td>';
    for (const q of E.series) h += num(q.batch[i], 'ebatch') + num(q.running[i], 'erun');
    for (const q of E.series) { const c = 'logged_' + q.name; if (S[c]) h += num(S[c][i], 'elogged'); }
    if (E.full_after) h += num(E.full_after[i], 'efull');
    h += '</tr>';
  }
  t.innerHTML = h + '</tbody>';
  $('epoch-note').textContent = (s - i0 + 1) + ' of ' + epochMax[e] + ' batches of epoch ' + e +
    ' so far: the running value is the mean over every row of these batches, each predicted with the weights before its own update.';
  const shaded = renderEpoch.shaded || [];      // a function property: the main script calls go() first
  for (const tr of shaded) tr.classList.remove('used');
  renderEpoch.shaded = [];
  if (!dataRows.length) return;
  for (let i = D.sample_lo[i0]; i < D.sample_lo[s]; i++) { const tr = dataRows[D.sample_rows[i]]; if (tr) { tr.classList.add('used'); renderEpoch.shaded.push(tr); } }
}
"""
