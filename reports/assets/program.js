
function renderProgram(s){
  const box = $('program'), P = D.program;
  if (!box) return;
  if (!P) { box.innerHTML = '<div class="hint">no step program (the checker could not evaluate this run)</div>'; return; }
  const v = P.values[String(s)], g = P.grad_values[String(s)];
  if (!v) { box.innerHTML = '<div class="hint">values are embedded for the first ' + P.limit + ' iterations; run tracer.explain for this one</div>'; return; }
  let t = P.lines.map((line, i) => '    ' + line + '  ->  ' + v[i]).join('\n');
  if (g) t += '\nGradients (reverse pass through the program):\n' + P.grads.map((line, i) => '    ' + line + ' = ' + g[i]).join('\n');
  box.innerHTML = '<div class="formula" id="program-lines">' + esc(t) + '</div>';
}
