"""Evaluate a step program for many steps at once: values, gradients, rounding magnitudes.

The engine walks the program's primitive nodes in order (forward), then in reverse
(the reverse pass is derived from the program: each op's vector-Jacobian product,
summed where a value is used twice, as micrograd's ``backward`` does). Every array
has a leading step axis, so one call computes a whole group of steps.

Magnitudes are computed only on request (they cost about one more pass each way):
the checker asks for them where a quick comparison is not conclusive.
"""
from __future__ import annotations

import numpy as np

from .scratch import empty
from ..errors import TraceInputError
from .program import StepProgram
from .matmul import LowProduct
from .registry import get_op

__all__ = ["Evaluation"]


class Evaluation:
    """The values of ``program`` for a stack of steps.

    ``leaves`` maps every input, const and param name to a stacked array (axis 0:
    steps, or 1 for a value shared by all steps). ``outputs`` restricts the forward
    pass to what those outputs need (default: loss and prediction).
    """

    def __init__(self, program: StepProgram, leaves: dict, dtype=np.float64, outputs=None):
        self.program = program
        self.dtype = np.dtype(dtype)
        self.values: dict = dict(leaves)
        self._nodes = program.primitive_nodes
        wanted = [v for k, v in program.outputs.items() if k in (outputs or ("loss", "prediction"))]
        self._needed = _ancestors(self._nodes, wanted)
        self._given = {n.name for n in self._nodes if n.name in leaves}   # node values not computed here
        self._plain = _plain_nodes(self._nodes, self._needed, self._given)
        self._grads = None
        self._fmags = self._bmags = self._lfmags = self._lbmags = None
        self._forward()

    # ------------------------------------------------------------- forward
    def _arg(self, a):
        if isinstance(a, str):
            v = self.values.get(a)
            if v is None:
                raise TraceInputError(f"program: no value for {a!r} (a leaf missing from the evaluation)")
            return v
        return np.asarray([a], dtype=self.dtype)

    def _forward(self):
        for n in self._nodes:
            if n.name not in self._needed or n.name in self.values:   # given: not recomputed
                continue
            op = get_op(n.op)
            xs = [self._arg(a) for a in n.args]
            try:
                with np.errstate(all="ignore"):
                    out = op.forward(xs, n.attrs)
            except (ValueError, IndexError, TraceInputError) as exc:
                where = f" at {n.where}" if n.where else ""
                raise TraceInputError(f"program node {n.name!r} ({n.op}{where}): {exc}") from None
            out = np.asarray(out)
            if out.dtype.kind == "f" and out.dtype != self.dtype:
                out = out.astype(self.dtype)
            self.values[n.name] = out

    def value(self, name: str) -> np.ndarray:
        """The stacked value of ``name`` (an input, param, const or node)."""
        return self.values[name]

    @property
    def loss(self) -> np.ndarray:
        """The loss of every step, ``(S,)``."""
        v = self.values[self.program.outputs["loss"]]
        if v.ndim != 1:
            raise TraceInputError(f"program: the loss has per-step shape {v.shape[1:]}, expected a scalar")
        return v

    @property
    def prediction(self) -> np.ndarray | None:
        """The predictions of every step (stacked), or None when the program names none."""
        name = self.program.outputs.get("prediction")
        return None if name is None else self.values.get(name)

    # ------------------------------------------------------------ backward
    def _requires(self, wrt):
        req = set(wrt)
        for n in self._nodes:
            if n.name not in self._needed:
                continue
            op = get_op(n.op)
            if any(isinstance(a, str) and a in req and op.can_differentiate(i) for i, a in enumerate(n.args)):
                req.add(n.name)
        return req

    def gradients(self, wrt: list[str] | None = None) -> dict:
        """d loss / d leaf for each name in ``wrt`` (default: the program's params); stacked
        like the leaves. A param the loss does not reach gets zeros."""
        wrt = list(self.program.params if wrt is None else wrt)
        if self._grads is not None and self._grads[0] == wrt:
            return self._grads[1]
        req = self._requires(wrt)
        loss_name = self.program.outputs["loss"]
        acc = {loss_name: np.ones_like(self.loss)}
        self._walk_back(req, acc, None)
        out = {}
        for w in wrt:
            v = self.values[w]
            g = acc.get(w)
            out[w] = np.zeros(v.shape, dtype=self.dtype) if g is None else _fit(g, v)
        self._grads = (wrt, out, acc, req)
        return out

    def _walk_back(self, req, acc, mags, lower=False, factored=False):
        for n in reversed(self._nodes):
            if n.name not in self._needed or n.name not in req or n.name not in acc:
                continue
            op = get_op(n.op)
            g = acc[n.name]
            xs = [self._arg(a) for a in n.args]
            need = [isinstance(a, str) and a in req and op.can_differentiate(i) for i, a in enumerate(n.args)]
            if not any(need):
                continue
            out = self.values[n.name]
            with np.errstate(all="ignore"):
                if mags is None:
                    gs = op.vjp(g, xs, out, n.attrs, need)
                elif n.op == "matmul":
                    exact = self._exact(n)
                    fm = self.magnitudes(lower)
                    ms = [None if e else fm[a] for a, e in zip(n.args, exact)]
                    gs = op.bmag(mags[n.name], g, ms, xs, out, n.attrs, need, exact=exact, lower=lower,
                                 factored=factored, leaf=self._leaf(n))
                else:
                    fm = self.magnitudes(lower)
                    ms = [fm[a] if isinstance(a, str) else np.abs(x) for a, x in zip(n.args, xs)]
                    gs = op.bmag(mags[n.name], g, ms, xs, out, n.attrs, need)
            for a, gi, nd in zip(n.args, gs, need):
                if not nd or gi is None:
                    continue
                target = acc if mags is None else mags
                target[a] = gi if a not in target else _sum(target[a], gi)

    # ---------------------------------------------------------- magnitudes
    def magnitudes(self, lower: bool = False) -> dict:
        """Forward rounding magnitudes of every value (leaves: their absolute values).

        ``lower``: a lower bound of them, element by element, at a fraction of the cost
        (each large matrix product summed over a sample of its contracted index,
        :mod:`tracer.program.matmul`; every other rule is the exact one, and all are
        monotone in their input magnitudes, so the bound carries through the walk)."""
        key = "_lfmags" if lower else "_fmags"
        if getattr(self, key) is not None:
            return getattr(self, key)
        fm = _LeafMagnitudes(self.values, self._needed, self.dtype)
        for n in self._nodes:
            if n.name not in self._needed:
                continue
            op = get_op(n.op)
            xs = [self._arg(a) for a in n.args]
            with np.errstate(all="ignore"):
                if n.op == "matmul":     # a leaf's magnitude is its own |value|: one product saved
                    exact = self._exact(n)
                    ms = [None if e else fm[a] for a, e in zip(n.args, exact)]
                    # the bound may read the product's value (|A @ B|): only one computed here
                    m = op.fmag(ms, xs, self.values[n.name], n.attrs, exact=exact,
                                lower=lower and n.name not in self._given)
                else:
                    ms = [fm[a] if isinstance(a, str) else np.abs(x) for a, x in zip(n.args, xs)]
                    m = op.fmag(ms, xs, self.values[n.name], n.attrs)
            fm[n.name] = np.asarray(m, dtype=self.dtype)
        setattr(self, key, fm)
        return fm

    def gradient_magnitudes(self, wrt: list[str] | None = None, lower: bool = False, factored: bool = False) -> dict:
        """Rounding magnitudes of :meth:`gradients` (same keys and shapes); ``lower``: a
        lower bound of them (see :meth:`magnitudes`); with ``factored`` a leaf's bound may
        stay a :class:`~tracer.program.matmul.LowProduct` (the checker multiplies it out block
        by block where it compares)."""
        grads = self.gradients(wrt)
        wrt_list, _, acc, req = self._grads
        key = "_lbmags" if lower else "_bmags"
        out = getattr(self, key)
        if out is None:
            loss_name = self.program.outputs["loss"]
            mags = {loss_name: np.ones_like(self.loss)}
            self._walk_back(req, acc, mags, lower, factored=lower and factored)
            out = {w: (np.zeros_like(g) if w not in mags else _fit(mags[w], self.values[w])) for w, g in grads.items()}
        if not factored and any(isinstance(m, LowProduct) for m in out.values()):
            out = {w: np.asarray(m) for w, m in out.items()}
        setattr(self, key, out)
        return out

    def lower_saves(self) -> bool:
        """Whether :meth:`magnitudes` with ``lower`` cuts any product (else it is the exact
        walk, and the checker asks for the exact magnitudes directly)."""
        op = get_op("matmul")
        return any(max(op.strides([self._arg(a) for a in n.args])) > 1 for n in self._nodes
                   if n.op == "matmul" and n.name in self._needed)

    def _is_node(self, name):
        return name in self._needed

    def _leaf(self, node):
        """Per argument: True for a leaf or number (not computed by the program)."""
        return tuple(not (isinstance(a, str) and self._is_node(a)) for a in node.args)

    def _exact(self, node):
        """Per argument: True where its rounding magnitude is its own |value|: a leaf or
        number, or a leaf only moved (:func:`_plain_nodes`: ``W.T`` of a ``linear`` layer)."""
        return tuple(leaf or a in self._plain for a, leaf in zip(node.args, self._leaf(node)))


class _LeafMagnitudes(dict):
    """Magnitudes by name; a leaf's (its own ``|value|``) computed when first read, so a
    leaf only a matrix product reads (which takes ``|value|`` of the entries it uses) costs
    nothing here."""

    def __init__(self, values, nodes, dtype):
        super().__init__()
        self._values, self._nodes, self._dtype = values, nodes, dtype

    def __missing__(self, name):
        if name in self._nodes or name not in self._values:
            raise KeyError(name)
        v = self._values[name]
        m = self[name] = np.abs(v, out=empty(v.shape, v.dtype)).astype(self._dtype, copy=False)
        return m


def _plain_nodes(nodes, needed, given) -> set:
    """Names of the nodes that only move a leaf's values (a shape op, ``moves_only``: the
    transpose ``W.T`` of a ``linear`` layer, a reshape), directly or through other such
    nodes, and that the evaluation computes itself. Their rounding magnitude is their own
    ``|value|``, as a leaf's: a move does no arithmetic. A matrix product reads them as it
    reads a leaf (one product saved, and the lower bound of a product of two leaves,
    :meth:`tracer.program.matmul.MatMul.fmag`)."""
    plain: set = set()
    for n in nodes:
        if n.name not in needed or n.name in given or not getattr(get_op(n.op), "moves_only", False):
            continue
        a = n.args[0] if n.args else None
        if isinstance(a, str) and (a not in needed or a in plain):
            plain.add(n.name)
    return plain


def _sum(x, y):
    """``x + y`` (two contributions to one gradient) in an array of the check's arena (a
    factored bound, :class:`LowProduct`, multiplied out first)."""
    x, y = np.asarray(x), np.asarray(y)
    return np.add(x, y, out=empty(np.broadcast_shapes(x.shape, y.shape), np.result_type(x, y)))


def _fit(g, like):
    """A gradient in the stacked shape of its leaf (summing a shared leaf's steps); a
    factored bound in that shape stays factored."""
    if isinstance(g, LowProduct) and g.shape == like.shape:
        return g
    g = np.asarray(g)
    if like.shape[0] == 1 and g.shape[0] != 1:
        g = g.sum(axis=0, keepdims=True)
    if g.shape != like.shape:
        g = np.broadcast_to(g, like.shape)
    return np.ascontiguousarray(g)


def _ancestors(nodes, wanted) -> set:
    """Names of the nodes the ``wanted`` names depend on (including themselves)."""
    by_name = {n.name: n for n in nodes}
    seen, stack = set(), [w for w in wanted if w in by_name]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        for a in by_name[name].args:
            if isinstance(a, str) and a in by_name:
                stack.append(a)
    return seen
