"""The step program on the page: its lines with each step's values, and their rendering.

Why: the page's derivation ("the gradient is the sum of these per-row terms") is the
checker's program evaluated on that step; showing the program itself, line by line with
the step's values as :func:`tracer.explain` prints them, lets a learner follow any model,
not only one dense layer.

:func:`program_payload` builds ``payload["program"]``; :data:`PROGRAM_JS` renders it
(``renderProgram(s)`` fills ``#program``). The page template integrates both with
:data:`PROGRAM_SECTION` (see the note in the module's tests and the task report).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._assets import asset
from ._html_engine import op_text
from ._xl_symbols import d_name

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from tracer.program import StepProgram

    from ._html_engine import EngineView

__all__ = ["program_payload", "PROGRAM_JS", "PROGRAM_SECTION", "PROGRAM_STEPS_LIMIT", "short"]

#: iterations whose program values are embedded (each is one short text per line)
PROGRAM_STEPS_LIMIT = 2000


def short(a: ArrayLike, limit: int = 6) -> str:
    """A value as ``explain`` prints it: one number, or the first few and the count."""
    a = np.asarray(a, dtype=np.float64)
    if a.size == 1:
        return f"{a.reshape(-1)[0]:.10g}"
    flat = a.reshape(-1)
    text = ", ".join(f"{v:.8g}" for v in flat[:limit])
    more = f", ... ({a.size} values)" if a.size > limit else ""
    return f"[{text}{more}]" + (f" shape {a.shape}" if a.ndim > 1 else "")


def program_payload(program: StepProgram, view: EngineView, step_ids: np.ndarray,
                    limit: int = PROGRAM_STEPS_LIMIT) -> dict:
    """``{"lines": [...], "grads": [...], "values": {step index: [text per line]}, "grad_values": {...}}``.

    ``lines`` are the primitive nodes the engine evaluated (``name = text``) and the
    parameters; ``grads`` the parameters' gradients (``dL/d<p>``); values are this step's,
    keyed by the page's step index (only the first ``limit`` iterations).
    """
    evaluated = set()
    for c in view.chunks:
        evaluated |= set(c.ev.values)
    nodes = [n for n in program.primitive_nodes if n.name in evaluated]
    out = {"lines": [op_text(n) for n in nodes] + [f"{p} (before the update)" for p in program.params],
           "grads": [d_name(p) for p in program.params] if program.has_loss else [],
           "values": {}, "grad_values": {}, "limit": limit, "source": "tracer.check (the engine's values)"}
    names = [n.name for n in nodes] + list(program.params)
    index = {int(s): i for i, s in enumerate(step_ids)}
    for c in view.chunks:
        for j, s in enumerate(c.group.steps.tolist()):
            i = index.get(int(s))
            if i is None or i >= limit:
                continue
            out["values"][str(i)] = [short(c.ev.values[n][min(j, c.ev.values[n].shape[0] - 1)]) for n in names]
            if out["grads"]:
                out["grad_values"][str(i)] = [short(c.grads[p][j]) for p in program.params]
    return out


#: the page section that shows the program (to add to the template, after "The update")
PROGRAM_SECTION = ('<h2>The step program <span class="hint">(what the checker evaluated; this '
                   'iteration\'s values)</span></h2>\n    <div id="program"></div>')

#: ``renderProgram(s)``: fills ``#program`` for step index ``s`` (uses the page's ``$``, ``esc``, ``D``)
PROGRAM_JS = asset("program.js")
