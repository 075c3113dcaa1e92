"""``steptrace demo --minibatch``: epoch, batch and iteration on S2's 12 rows, in NumPy.

Why a second demo: S0 is full-batch, so there an epoch *is* an iteration and the
question learners bring (S2: "what is an epoch, a batch and an iteration, and why does
Keras log 187.73 after a batch whose loss is 301.58?") cannot be shown. This runs S2's
data in batches of 4 for 4 epochs, in NumPy (no TensorFlow), and prints one line per
iteration: its epoch and batch, the rows it used, its batch loss and the running
average of the epoch so far, computed as Keras logs it
(:func:`tracer.math.metrics.running`), then checks the run (the running average
included) and writes the trace, CSV files and a workbook.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .exit_codes import VERDICT_EXIT

if TYPE_CHECKING:  # pragma: no cover
    from ..trace import Trace

__all__ = ["run_minibatch_demo", "iteration_table"]

EPOCHS, BATCH_SIZE, LR = 4, 4, 0.005


def iteration_table(trace: Trace) -> pd.DataFrame:
    """One row per iteration: epoch, batch, the x values used, batch loss, the running
    loss of the epoch so far (Keras's logged value) and the parameters after the update."""
    from ..math.metrics import loss_terms, running

    steps = trace.steps.sort_values("step")
    total, count = loss_terms(steps["loss"].to_numpy(), steps["batch_size"].to_numpy())
    cum_total, cum_count = running(total, count, steps["epoch"].to_numpy())
    x = trace.arrays().inputs[:, 0]
    used = trace.samples.groupby("step")["sample"].apply(lambda s: ", ".join(f"{x[i]:g}" for i in s))
    after = trace.params.pivot_table(index="step", columns="param", values="after", sort=False)
    table = pd.DataFrame({"iteration": steps["step"].to_numpy(), "epoch": steps["epoch"].to_numpy(),
                          "batch": steps["batch"].to_numpy(),
                          "x used": used.reindex(steps["step"]).to_numpy(),
                          "batch loss": steps["loss"].to_numpy(),
                          "running loss": cum_total / cum_count})
    for name in after.columns:
        table[f"{name} after"] = after[name].reindex(steps["step"]).to_numpy()
    return table


def run_minibatch_demo(out: Path) -> int:
    """Run, print, check and export the mini-batch example; returns the check's exit code."""
    from .. import check
    from .examples import S2_X, s2_minibatch_numpy

    n = len(S2_X)
    per_epoch = -(-n // BATCH_SIZE)
    print(f"steptrace demo --minibatch: S2's data ({n} rows, x = 1..{n}), a Dense(1)-like model y = x w + b\n"
          f"(w = 0.5, b = 0) in NumPy, mean squared error, batch size {BATCH_SIZE}, {EPOCHS} epochs,\n"
          f"plain SGD (w <- w - lr*g, lr {LR:g}; not Keras's RMSprop).")
    print(f"  epoch: one pass over the {n} rows (shuffled anew each epoch)\n"
          f"  batch: {BATCH_SIZE} of those rows; batch k of an epoch\n"
          f"  iteration: one update of w and b, from one batch: {per_epoch} per epoch, {per_epoch * EPOCHS} in all\n"
          f"  running loss: what Keras logs after each batch - the mean of the epoch's batch losses so far\n"
          f"  (weighted by batch size), reset when an epoch starts; the batch loss is that batch's alone.")
    trace, w, b = s2_minibatch_numpy(EPOCHS, BATCH_SIZE, LR)
    table = iteration_table(trace)
    with pd.option_context("display.float_format", lambda v: f"{v:.6g}", "display.width", 160):
        print("\n" + table.to_string(index=False))
    ends = table.groupby("epoch")["running loss"].last()
    print("\nend of each epoch (what Keras prints as the epoch's loss): "
          + ", ".join(f"epoch {e}: {v:.6g}" for e, v in ends.items()))
    report = check(trace)
    print(report.summary())
    written = [trace.save(out / "minibatch.trace")]
    try:
        from reports import to_csv, to_excel
        written += list(to_csv(trace, out / "csv"))
        written.append(to_excel(trace, out / "minibatch.xlsx"))
    except ImportError as exc:  # reports is part of the package; say so rather than hide it
        print(f"  (export skipped: {exc})", file=sys.stderr)
    print(f"\nfiles written under {out.resolve()}:")
    for p in written:
        print(f"  {p}")
    print(f"\nnext: steptrace explain {out / 'minibatch.trace'} --step {per_epoch + 1}   "
          f"(the first iteration of epoch 2)")
    return VERDICT_EXIT[report.verdict]
