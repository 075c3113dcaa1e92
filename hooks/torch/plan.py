"""A captured step's program and what later steps need to be checked against it.

Why a plan apart from the program: the program (JSON, ``meta["program"]``) says what
a step computes; the plan also keeps what the hook needs at every later step without
watching the forward pass again - the graph *signature* that tells whether a step ran
the same computation, where the graph saved the batch and the predictions, a loss
module whose forward pre-hook hands over the predictions, which untracked tensors are
recorded as frozen parameters, and whether the program holds for one batch size
only (a hand-written ``/ len(y)`` baked in as a number).
"""
from __future__ import annotations

import torch

__all__ = ["Plan"]


class Plan:
    """See the module docstring. Built by :func:`hooks.torch.build.build_plan`."""

    def __init__(self, signature: tuple | None = None, params: list[torch.Tensor] | None = None) -> None:
        self.program: dict | None = None
        self.reasons: list[dict] = []             # unsupported entries: {op, where, reason}
        self.signature = signature
        self.params: list[torch.Tensor] = list(params or [])
        self.frozen: list[torch.Tensor] = []      # untracked tensors recorded as parameters
        self.flagged: set[int] = set()            # ids of frozen tensors used as a layer's weight/bias
        self.layout = None                        # hooks.torch.layout.Layout
        self.pred_loc = None                      # hooks.torch.graph.Locator of the predictions
        self.pred_module: torch.nn.Module | None = None
        self.pred_arg = 0                         # which argument of the loss module is the prediction
        self.build_pred: torch.Tensor | None = None   # the build step's predictions (used once)
        self.batch_size: int | None = None
        self.batch_dependent = False
        self.loss_meta: dict | None = None

    @classmethod
    def unsupported(cls, op: str, reason: str, signature: tuple | None = None) -> "Plan":
        """A plan that only says why the step cannot be checked."""
        plan = cls(signature)
        plan.fail(reason, op=op)
        return plan

    def fail(self, reason: str, where: str | None = None, op: str | None = None) -> None:
        """Note an operation the program cannot express (each op and line once)."""
        entry = {"op": op or "step", "reason": reason}
        if where:
            entry["where"] = where
        if entry not in self.reasons:
            self.reasons.append(entry)

    @property
    def ok(self) -> bool:
        """Whether the program can be evaluated (nothing unsupported)."""
        return self.program is not None and not self.reasons

    def covers(self, signature: tuple, batch_size: int | None) -> bool:
        """Whether a step with this graph signature and batch size ran this plan's computation."""
        if signature != self.signature:
            return False
        return not self.batch_dependent or batch_size is None or batch_size == self.batch_size

    def program_json(self) -> dict:
        """``meta["program"]``: the program, or an empty one listing what is unsupported."""
        if self.ok:
            return self.program
        return {"format": 1, "inputs": [], "consts": [], "params": [], "nodes": [], "outputs": {},
                "unsupported": [dict(r) for r in self.reasons] or [{"op": "step", "reason": "no program"}]}

    def needs_rows(self) -> bool:
        """Whether the program reads the batch's rows from the data table."""
        return bool(self.ok and self.program.get("inputs"))
