"""Name the tensors a training loop trains, the way the user does.

Why: a trace table that says ``W1`` and ``b2`` (or ``0.weight``) is one the user can
read against their code; ``param3`` is not. Names come, in order of preference, from
an ``nn.Module`` found in the user's frames (``named_parameters``), then from the
user's variables (locals before globals, nearest frame first; loop variables such as
``param`` or ``p`` lose to a specific name), else ``param0``, ``param1``...
"""
from __future__ import annotations

import sys
from types import FrameType

import torch

_GENERIC = {"param", "params", "p", "t", "tensor", "x", "v", "var", "_", "parameter", "leaf", "w_", "value"}
_SKIP_MODULES = ("torch", "hooks", "tracer", "_pytest", "pluggy", "contextlib", "importlib")


def user_frames(start: FrameType | None = None, limit: int = 30) -> list[FrameType]:
    """Frames of the user's code, nearest first (torch and steptrace frames skipped)."""
    frame = start or sys._getframe(1)
    out = []
    while frame is not None and len(out) < limit:
        mod = frame.f_globals.get("__name__", "") or ""
        if not any(mod == m or mod.startswith(m + ".") for m in _SKIP_MODULES):
            out.append(frame)
        frame = frame.f_back
    return out


def _modules(frames: list[FrameType]) -> list[tuple[str, torch.nn.Module, int]]:
    """``(variable name, module, frame depth)`` of the nn.Modules in the user's frames,
    biggest first."""
    found = []
    for depth, frame in enumerate(frames):
        for scope in (frame.f_locals, frame.f_globals):
            for vname, value in list(scope.items()):
                if isinstance(value, torch.nn.Module) and all(value is not m for _, m, _ in found):
                    found.append((vname, value, depth))
    found.sort(key=lambda vmd: -sum(1 for _ in vmd[1].parameters()))
    return found


def module_names(frames: list[FrameType]) -> dict[int, str]:
    """``id(module)`` -> ``"model.0"``: every submodule of the user's modules, by its path."""
    out = {}
    for vname, module, _ in _modules(frames):
        for path, sub in module.named_modules():
            out.setdefault(id(sub), f"{vname}.{path}" if path else vname)
    return out


def find_names(tensors: list[torch.Tensor], frames: list[FrameType], modules: bool = True) -> dict[int, str]:
    """Map ``id(tensor)`` -> a readable name for each tensor found in ``frames``
    (``modules``: parameters of the user's nn.Modules first, by their own names)."""
    wanted = {id(t): t for t in tensors}
    best = {}  # id -> (score tuple, name)
    # 1. nn.Module parameters
    for _, module, depth in (_modules(frames) if modules else []):
        for pname, p in module.named_parameters(remove_duplicate=False):
            if id(p) in wanted and id(p) not in best:
                best[id(p)] = ((0, depth, 0), pname)
    # 2. variables
    for depth, frame in enumerate(frames):
        for rank, scope in enumerate((frame.f_locals, frame.f_globals)):
            for vname, value in list(scope.items()):
                if not isinstance(value, torch.Tensor) or id(value) not in wanted:
                    continue
                generic = vname in _GENERIC or vname.startswith("_")
                score = (1 + int(generic), depth, rank)
                if id(value) not in best or score < best[id(value)][0]:
                    best[id(value)] = (score, vname)
    names = {k: v[1] for k, v in best.items()}
    # names must be unique
    seen = {}
    for key in list(names):
        n = names[key]
        if n in seen:
            names[key] = f"{n}_{sum(1 for v in names.values() if v.startswith(n))}"
        seen[names[key]] = key
    return names
