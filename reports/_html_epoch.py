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

from ._assets import asset

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
EPOCH_JS = asset("epoch.js")
