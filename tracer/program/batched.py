"""Arrays with a leading step axis: the one layout the step program computes in.

Why: the checker recomputes every recorded step of a group at once. Every value of the
program is therefore an array whose axis 0 runs over steps (size ``S``, or 1 for a
constant shared by all steps) and whose remaining axes are the value's own shape in
one step (its *per-step shape*). Broadcasting, axes and reductions are defined on the
per-step shape, exactly as NumPy and torch define them; the helpers here translate
them to the stacked layout so that no op has to think about the step axis.
"""
from __future__ import annotations

import numpy as np

__all__ = ["rank", "step_axis", "step_axes", "align", "unbroadcast", "per_step_shape"]


def rank(a: np.ndarray) -> int:
    """The per-step rank of a stacked value (its ndim without the step axis)."""
    return a.ndim - 1


def per_step_shape(a: np.ndarray) -> tuple:
    """The shape of one step's value."""
    return tuple(a.shape[1:])


def step_axis(axis: int, r: int) -> int:
    """The stacked axis for per-step ``axis`` of a value of per-step rank ``r``.

    Raises ValueError for an axis out of range (as NumPy would)."""
    axis = int(axis)
    if not -r <= axis < max(r, 1) or (r == 0 and axis not in (0, -1)):
        raise ValueError(f"axis {axis} is out of range for a value of rank {r}")
    if r == 0:
        return 1
    return (axis % r) + 1


def step_axes(axes: int | tuple | list | None, r: int) -> tuple:
    """Stacked axes for per-step ``axes`` (None: every per-step axis)."""
    if axes is None:
        return tuple(range(1, r + 1))
    if isinstance(axes, (int, np.integer)):
        axes = [axes]
    return tuple(sorted({step_axis(a, r) for a in axes}))


def align(*arrays: np.ndarray) -> list[np.ndarray]:
    """Make per-step ranks equal by inserting length-1 axes after the step axis.

    NumPy aligns shapes from the right; with a leading step axis that would pair a
    per-step ``(N,)`` with the step axis of a per-step ``(N, 1)``. Padding the lower
    rank at position 1 restores per-step right alignment, so ``(N, 1)`` against
    ``(N,)`` broadcasts to ``(N, N)`` exactly as in NumPy and torch.
    """
    r = max(rank(a) for a in arrays)
    out = []
    for a in arrays:
        k = r - rank(a)
        out.append(a.reshape((a.shape[0],) + (1,) * k + a.shape[1:]) if k else a)
    return out


def unbroadcast(g: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Sum a gradient ``g`` down to the stacked shape of ``like`` (the chain rule of broadcasting)."""
    extra = rank(g) - rank(like)
    if extra > 0:
        g = g.sum(axis=tuple(range(1, 1 + extra)))
    axes = tuple(i for i in range(g.ndim) if like.shape[i] == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if g.shape != like.shape:
        g = np.broadcast_to(g, like.shape)
    return g
