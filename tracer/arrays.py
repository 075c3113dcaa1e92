"""The columnar arrays behind a trace, and the shaping and naming rules every table shares.

Why a module of its own: the recorder fills these arrays and the :class:`tracer.Trace`
turns them into tables, so both need them; kept here, imports run one way
(``recorder -> trace -> arrays``) instead of the recorder and the trace importing
each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import TraceInputError

__all__ = ["ParamArrays", "TraceArrays", "as_2d", "column_names"]


def as_2d(name: str, array: Any) -> np.ndarray:
    """``array`` as rows: a scalar becomes (1, 1), a vector a column, more dims are
    flattened after the first. ``name`` is used in the error for non-numbers."""
    arr = np.asarray(array)
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    elif arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    elif arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise TraceInputError(f"{name}: expected numbers, got an array of dtype {arr.dtype}")
    return arr


def column_names(prefix: str, width: int) -> list[str]:
    """``x`` for one column, else ``x0..x{k-1}``: the naming rule of every table."""
    return [prefix] if width == 1 else [f"{prefix}{i}" for i in range(width)]


@dataclass
class ParamArrays:
    """One parameter's recorded arrays, one row per recorded step and one column per
    element (flattened; :attr:`shape` is the parameter's own shape).

    Why a type: every layer reads these five arrays; attribute names make a misspelt
    key an error where it is written instead of a ``KeyError`` deep in the checker.
    """

    shape: tuple
    before: np.ndarray
    grad: np.ndarray
    after: np.ndarray
    slots: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shape = tuple(int(d) for d in self.shape)

    @property
    def size(self) -> int:
        """Elements of the parameter (the width of each array)."""
        return int(self.before.shape[1])

    @property
    def update(self) -> np.ndarray:
        """``after - before`` of every recorded step (in the recorded dtype)."""
        return self.after - self.before

    def __getitem__(self, key: str) -> Any:
        """``p["before"]``: the 0.1.0 dict spelling, kept for code written against it."""
        if key not in ("shape", "before", "grad", "after", "slots"):
            raise KeyError(key)
        return getattr(self, key)

    @classmethod
    def coerce(cls, value: ParamArrays | dict) -> ParamArrays:
        """A :class:`ParamArrays` from itself or from the 0.1.0 dict of the same keys."""
        if isinstance(value, cls):
            return value
        return cls(shape=value["shape"], before=value["before"], grad=value["grad"], after=value["after"],
                   slots=dict(value.get("slots") or {}))


@dataclass
class TraceArrays:
    """The columnar arrays behind a Trace (what the checker reads, no DataFrames)."""

    inputs: np.ndarray | None = None
    targets: np.ndarray | None = None
    steps: dict = field(default_factory=dict)
    epochs: dict = field(default_factory=dict)
    sample_step: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sample_row: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sample_pred: np.ndarray | None = None
    sample_micro: np.ndarray | None = None      # micro-step of each row (gradient accumulation)
    param_step: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    params: dict[str, ParamArrays] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.params = {name: ParamArrays.coerce(p) for name, p in self.params.items()}
