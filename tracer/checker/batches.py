"""Gather each recorded step's batch (rows, inputs, targets, predictions) as arrays.

Steps are grouped by batch size so each group is one stack ``(S, B, ...)`` and the
checker can recompute a whole group with batched NumPy calls (a short last batch
of an epoch forms its own group).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class StepGroup:
    """Steps sharing a batch size: ``steps`` (S,), ``rows`` (S, B), ``x`` (S, B, k),
    ``y`` (S, B, m), ``pred`` (S, B, m) or None, ``param_pos`` (S,) positions into
    the parameter arrays (-1 where parameters were not captured)."""

    steps: np.ndarray
    rows: np.ndarray
    x: np.ndarray
    y: np.ndarray
    pred: np.ndarray | None
    param_pos: np.ndarray


def step_groups(arrays) -> list[StepGroup]:
    """Group the recorded steps of a trace's arrays by batch size."""
    if arrays.inputs is None or arrays.sample_step.size == 0:
        return []
    order = np.argsort(arrays.sample_step, kind="stable")
    s_step = arrays.sample_step[order]
    s_row = arrays.sample_row[order]
    s_pred = None if arrays.sample_pred is None else arrays.sample_pred[order]
    steps, starts, counts = np.unique(s_step, return_index=True, return_counts=True)
    pos_of = {int(s): i for i, s in enumerate(arrays.param_step)}
    groups = []
    for size in np.unique(counts):
        sel = counts == size
        idx = starts[sel][:, None] + np.arange(size)[None, :]
        rows = s_row[idx]
        if np.any(rows < 0):
            continue
        pred = None
        if s_pred is not None:
            pred = s_pred[idx].astype(np.float64)
        groups.append(StepGroup(
            steps=steps[sel], rows=rows,
            x=arrays.inputs[rows].astype(np.float64), y=arrays.targets[rows].astype(np.float64),
            pred=pred, param_pos=np.array([pos_of.get(int(s), -1) for s in steps[sel]], dtype=np.int64)))
    return groups
