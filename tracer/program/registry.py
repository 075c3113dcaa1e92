"""The closed registry of primitive operations a step program may use.

Why a closed table (as BackPACK maps module types to handlers): the checker must
never guess. An operation is either in this table, with its forward pass, its
vector-Jacobian product and its rounding-magnitude rules, or the program says
"cannot check: <op> at <file:line>". Programs are stored as data (op names,
argument names, numeric attributes), so loading one never evaluates code: the only
code that runs is the code registered here.

Every op works on stacked values (axis 0 = steps, see :mod:`tracer.program.batched`).
An op subclass provides:

- ``forward(xs, attrs)``: the value of every step at once;
- ``vjp(g, xs, out, attrs, need)``: the gradient of each argument given the
  gradient ``g`` of the output (None for arguments not in ``need``);
- ``fmag(ms, xs, out, attrs)``: a rounding magnitude ``M`` of the output, such that
  a framework computing in precision ``eps`` is off by about ``eps * M``; ``ms`` are
  the arguments' magnitudes (a leaf's magnitude is its absolute value);
- ``bmag(gm, g, ms, xs, out, attrs, need)``: the same for the gradients.

Linear ops (reshapes, sums, indexing...) get ``fmag``/``bmag`` for free: the op
itself applied to magnitudes.
"""
from __future__ import annotations

import numpy as np

from ..errors import TraceInputError

__all__ = ["Op", "REGISTRY", "register", "get_op", "MISSING"]

MISSING = object()
REGISTRY: dict[str, "Op"] = {}


class Op:
    """Base class of a registered operation (see the module docstring)."""

    #: registry name (what a program's ``op`` field says)
    name: str = ""
    #: number of arguments: an int, or (min, max) with max None for "any"
    arity: int | tuple = 1
    #: attribute names with their defaults (MISSING: required)
    defaults: dict = {}
    #: argument positions that can carry a gradient (None: all of them)
    differentiable: tuple | None = None
    #: True for ops linear in their (differentiable) arguments: magnitudes follow the op
    linear: bool = False
    #: one-line description for people
    doc: str = ""

    # ------------------------------------------------------------- attributes
    def check_attrs(self, attrs: dict, where: str = "") -> dict:
        """Attributes with defaults filled in; unknown or missing ones raise TraceInputError."""
        attrs = dict(attrs or {})
        unknown = set(attrs) - set(self.defaults)
        if unknown:
            raise TraceInputError(f"{where}op {self.name!r}: unknown attribute(s) {sorted(unknown)} "
                                  f"(expected {sorted(self.defaults)})")
        out = {}
        for key, default in self.defaults.items():
            if key in attrs:
                out[key] = attrs[key]
            elif default is MISSING:
                raise TraceInputError(f"{where}op {self.name!r}: attribute {key!r} is required")
            else:
                out[key] = default
        return self.normalise(out, where)

    def normalise(self, attrs: dict, where: str) -> dict:
        """Validate attribute types (subclasses override); returns the attributes."""
        return attrs

    def check_arity(self, n: int, where: str = "") -> None:
        """Raise TraceInputError when ``n`` arguments do not fit the op."""
        lo, hi = (self.arity, self.arity) if isinstance(self.arity, int) else self.arity
        if n < lo or (hi is not None and n > hi):
            want = str(lo) if lo == hi else f"{lo}..{hi if hi is not None else 'any'}"
            raise TraceInputError(f"{where}op {self.name!r}: expected {want} argument(s), got {n}")

    def can_differentiate(self, i: int) -> bool:
        """Whether argument ``i`` can receive a gradient through this op."""
        return self.differentiable is None or i in self.differentiable

    # ---------------------------------------------------------------- numbers
    def forward(self, xs: list, attrs: dict) -> np.ndarray:
        raise NotImplementedError

    def vjp(self, g: np.ndarray, xs: list, out: np.ndarray, attrs: dict, need: list) -> list:
        raise NotImplementedError

    def fmag(self, ms: list, xs: list, out: np.ndarray, attrs: dict) -> np.ndarray:
        """Forward rounding magnitude; linear ops apply themselves to the magnitudes."""
        if self.linear:
            mags = [m if self.can_differentiate(i) else x for i, (m, x) in enumerate(zip(ms, xs))]
            return np.abs(self.forward(mags, attrs))
        return np.abs(out)

    def bmag(self, gm: np.ndarray, g: np.ndarray, ms: list, xs: list, out: np.ndarray, attrs: dict, need: list) -> list:
        """Gradient rounding magnitudes; linear ops pass them through their VJP."""
        if self.linear:
            return [None if r is None else np.abs(r) for r in self.vjp(gm, xs, out, attrs, need)]
        return [None if r is None else np.abs(r) for r in self.vjp(g, xs, out, attrs, need)]

    # ---------------------------------------------------------------- display
    def text(self, args: list[str], attrs: dict) -> str:
        """How a line of the program reads, e.g. ``x @ W1`` or ``relu(z1)``."""
        shown = [f"{k}={v!r}" for k, v in attrs.items() if self.defaults.get(k, MISSING) != v]
        return f"{self.name}({', '.join(list(args) + shown)})"

    def __repr__(self) -> str:
        return f"<op {self.name}>"


def register(op: Op) -> Op:
    """Add ``op`` to the registry (names are unique)."""
    if not op.name or op.name in REGISTRY:
        raise ValueError(f"op name {op.name!r} is empty or already registered")
    REGISTRY[op.name] = op
    return op


def get_op(name: str) -> Op | None:
    """The registered op called ``name``, or None (the caller says "cannot check")."""
    _load()
    return REGISTRY.get(name)


_LOADED = False


def _load() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from . import elementwise, structural, reductions, indexing, macros  # noqa: F401  (they register their ops)
