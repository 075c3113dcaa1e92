
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
