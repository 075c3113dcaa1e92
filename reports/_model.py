"""The model's predictions at parameters and inputs of the report's choosing, by the engine.

Why: plots evaluate the model where the run did not (the full data set after each
update, a grid of x values for the fitted line). That is the step program the checker
uses (``meta["program"]``, or a 0.1.0 dense stack converted by
:mod:`tracer.program.legacy`), evaluated by :class:`tracer.program.Evaluation` for every
step at once: there is no second forward pass to keep in step with the checker.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tracer.program import StepProgram
    from tracer.trace import Trace

__all__ = ["dense_layers", "forward", "params_at", "program_of_meta"]


def program_of_meta(meta: dict, n_inputs: int, params: list) -> StepProgram | None:
    """The step program a trace's ``meta`` describes (prediction part), or None."""
    from tracer.errors import SteptraceError
    from tracer.program import StepProgram
    from tracer.program.legacy import from_dense_stack

    try:
        if meta.get("program") is not None:
            program = StepProgram.from_dict(meta["program"])
            return None if program.unsupported or "prediction" not in program.outputs else program
        model = meta.get("model")
        if isinstance(model, dict) and model.get("kind") == "dense_stack":
            return from_dense_stack(model, n_inputs, 1, list(params))
    except SteptraceError:
        return None
    return None


def dense_layers(meta: dict) -> list[dict] | None:
    """What the model is made of, or None when no prediction can be computed from ``meta``:
    a dense stack's layer dicts, or the step program's node dicts."""
    if meta.get("program") is not None:
        nodes = meta["program"].get("nodes") if isinstance(meta["program"], dict) else None
        return list(nodes) if nodes and "prediction" in (meta["program"].get("outputs") or {}) else None
    model = meta.get("model")
    if not isinstance(model, dict) or model.get("kind") != "dense_stack" or not model.get("layers"):
        return None
    if any(layer.get("type", "dense") != "dense" for layer in model["layers"]):
        return None
    return model["layers"]


def _input_leaf(inp, x: np.ndarray):
    if inp.source != "inputs":
        return None
    c0, c1 = inp.columns if inp.columns is not None else (0, x.shape[1])
    if c1 > x.shape[1]:
        return None
    block = x[:, c0:c1]
    shape = tuple(inp.shape) if inp.shape is not None else (c1 - c0,)
    block = block.reshape((x.shape[0],) + shape)
    return (np.rint(block).astype(np.int64) if inp.dtype == "int" else block.astype(np.float64))[None]


def forward(meta: dict, params: dict, x: np.ndarray) -> np.ndarray | None:
    """Predictions ``(S, N, m)`` for parameters ``params[name]`` shaped ``(S, *shape)`` and
    inputs ``x`` ``(N, k)``; None when the model cannot be evaluated from ``meta``."""
    from tracer.errors import SteptraceError
    from tracer.program import Evaluation

    x = np.asarray(x, dtype=np.float64)
    program = program_of_meta(meta, x.shape[1], list(params))
    if program is None or any(p not in params for p in program.params):
        return None
    leaves = {c.name: c.value[None].astype(np.int64 if c.dtype == "int" else np.float64) for c in program.consts}
    leaves.update({p: np.asarray(params[p], dtype=np.float64) for p in program.params})
    for inp in program.inputs:
        leaf = _input_leaf(inp, x)
        if leaf is not None:
            leaves[inp.name] = leaf
    try:
        pred = Evaluation(program, leaves, np.float64, outputs=("prediction",)).prediction
    except (SteptraceError, KeyError, ValueError):
        return None
    if pred is None:
        return None
    steps = max(np.asarray(v).shape[0] for v in params.values()) if params else 1
    pred = np.broadcast_to(pred, (max(pred.shape[0], steps),) + pred.shape[1:])
    return pred.reshape(pred.shape[0], x.shape[0], -1)


def params_at(trace: Trace, which: str) -> dict:
    """``{name: (S, *shape)}`` for ``which`` in before/after."""
    return {name: trace.param_values(name, which) for name in trace.param_names}
