"""``matmul``: the matrix product, its vector-Jacobian product and its rounding magnitudes.

Kept apart from the shape operations because its magnitudes come in two kinds. The
exact one (docs/TOLERANCES.md) costs as much as the product itself: ``|A| @ |B|``
beside ``A @ B``. The *lower bound* (``lower=True``) sums fewer nonnegative terms, so it
is at most the exact one, element by element, at a fraction of its cost:

- a forward product of two leaves (``M = 2 |A| @ |B|``, a first layer's ``x @ W``) is
  bounded by ``2 |A @ B|``, from the value already computed (the triangle inequality), at
  the cost of one pass; a forward product with a computed operand sums every ``s``-th
  entry of its contracted index only (``M(A)[..., ::s] @ |B[..., ::s, :]|`` and the like,
  not rescaled: about ``1/s`` of the exact value);
- a gradient product (``g @ B^T``, ``A^T @ g``) groups its contracted index into runs of
  ``s`` and bounds each run's sum ``sum_k a_k b_k`` by ``min_k a_k * sum_k b_k``, the
  minimum taken on the side with fewer runs whose minimum is 0. Every term still counts, so a
  gradient whose few nonzero terms (a unit active in two rows of the batch) a sample
  would miss keeps a bound of the order of its magnitude. When both sides hold zeros
  (more than :data:`SPARSE`: a hidden ReLU layer's activations against its ReLU-masked
  gradient) the minima vanish, and that product is computed exactly.

The checker accepts a recorded value against the bound first and computes the exact
magnitudes only for what that does not settle (:mod:`tracer.checker.tolerance`). Small
products are never cut (:func:`lower_stride`): there the bound would save nothing.
"""
from __future__ import annotations

import numpy as np

from .scratch import empty
from ..errors import TraceInputError
from .batched import align, rank, unbroadcast
from .registry import Op, register

__all__ = ["MatMul", "LowProduct", "lower_stride", "LOWER_WORK", "LOWER_STRIDE", "SPARSE"]

#: per-step multiply-adds from which a product's lower bound samples its contracted index
LOWER_WORK = 1 << 16
#: the largest stride of the sample of a forward product with a computed operand (its
#: bound: about 1/16 of the exact value, which every gradient magnitude downstream
#: inherits; a product of two leaves takes ``2 |A @ B|`` instead, see :meth:`MatMul.fmag`)
#: and the longest run of a gradient product (its bound: about a run's smallest term over
#: its mean, 0.3 on S4)
LOWER_STRIDE = {"forward": 16, "gradient": 8}
#: the share of runs whose smallest term is 0 from which a side of a gradient product
#: counts as sparse (a dense side: none; a ReLU side, half zeros, runs of 4: 94%)
SPARSE = 0.1


def lower_stride(length: int, work: int, cap: int = 8) -> int:
    """The stride of the lower bound over a contracted index of ``length`` in a product
    of ``work`` multiply-adds per step: 1 (every entry) for a small product, else at most
    ``cap``, keeping at least 8 entries (or runs) of the index."""
    if work < LOWER_WORK:
        return 1
    return max(1, min(cap, length // 8))


def _runs(x, axis, s, ufunc):
    """``ufunc.reduce`` over consecutive runs of ``s`` entries along ``axis`` (-1 or -2);
    a last, shorter run holds the remainder. The result is an array of the check's arena
    (:func:`tracer.program.scratch.empty`) laid out in the memory order of ``x``'s axes, as
    NumPy lays out a reduction's own result: a reduction into an output of another order
    walks it element by element (a first layer's ``|x|.T``: 50 times slower), and a fresh
    result costs its page faults on every check."""
    ax = x.ndim + axis
    n = x.shape[ax]
    q = n // s
    out = _empty_in_order(x.shape[:ax] + (-(-n // s),) + x.shape[ax + 1:], x.strides, x.dtype)
    head = x[(slice(None),) * ax + (slice(0, q * s),)]
    ufunc.reduce(head.reshape(head.shape[:ax] + (q, s) + head.shape[ax + 1:]), axis=ax + 1,
                 out=out[(slice(None),) * ax + (slice(0, q),)])
    if q * s < n:
        ufunc.reduce(x[(slice(None),) * ax + (slice(q * s, None),)], axis=ax, keepdims=True,
                     out=out[(slice(None),) * ax + (slice(q, None),)])
    return out


def _empty_in_order(shape, strides, dtype):
    """An arena array of ``shape`` whose axes lie in memory in the order of ``strides``
    (largest first, ties in axis order): the layout ``np.empty_like(.., order="K")`` gives."""
    order = sorted(range(len(shape)), key=lambda i: -abs(strides[i]))
    block = empty(tuple(shape[i] for i in order), dtype)
    return block.transpose(np.argsort(order))


def _matmul(a, b):
    """``np.matmul``, except a contraction of length 1 (an outer product, ``g @ w^T`` for a
    one-output layer): NumPy runs that in its own loop, 4x slower than the broadcast
    product, which gives the same numbers (one multiplication per element)."""
    dtype = np.result_type(a, b)
    if a.ndim > 1 and b.ndim > 1 and a.shape[-1] == 1 == b.shape[-2]:
        return np.multiply(a, b, out=empty(np.broadcast_shapes(a.shape, b.shape), dtype))
    if a.ndim < 2 or b.ndim < 2:
        return np.matmul(a, b)
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    return np.matmul(a, b, out=empty(shape, dtype))


def _abs(x):
    """``np.abs(x)`` into an array of the check's arena (:func:`tracer.program.scratch.empty`)."""
    return np.abs(x, out=empty(np.shape(x), np.asarray(x).dtype))


def _add(x, y):
    """``x + y`` into an array of the check's arena."""
    return np.add(x, y, out=empty(np.broadcast_shapes(np.shape(x), np.shape(y)), np.result_type(x, y)))


def _low_matmul(a, b, factored=False):
    """A lower bound of ``a @ b`` for nonnegative ``a``, ``b`` (contracted: ``a``'s last
    axis, ``b``'s second to last): per run of ``s`` entries, the smallest term of the side
    with fewer zero minima times the sum of the other (see the module docstring). When both
    sides hold zeros (a ReLU layer's activations against a ReLU-masked gradient), every
    run's minimum is mostly 0 and the bound would vanish: the product is then exact.
    ``factored``: the cut product left as its two factors (:class:`LowProduct`)."""
    (m, k), n = a.shape[-2:], b.shape[-1]
    work = int(np.prod(np.broadcast_shapes(a.shape[1:-2], b.shape[1:-2]), dtype=np.int64)) * m * k * n
    s = lower_stride(k, work, LOWER_STRIDE["gradient"])
    if s == 1:
        return _matmul(a, b)
    amin = _runs(a, -1, s, np.minimum)
    if amin.all():                      # a dense side (no run's minimum is 0): it is taken
        return _product(amin, _runs(b, -2, s, np.add), factored)
    za = 1.0 - np.count_nonzero(amin) / max(1, amin.size)       # runs whose minimum is 0
    bmin = _runs(b, -2, s, np.minimum)
    zb = 1.0 - np.count_nonzero(bmin) / max(1, bmin.size)
    if min(za, zb) > SPARSE:
        return _product(a, b, factored)
    if za <= zb:
        return _product(amin, _runs(b, -2, s, np.add), factored)
    return _product(_runs(a, -1, s, np.add), bmin, factored)


def _product(a, b, factored):
    """``a @ b``, or with ``factored`` its factors (:class:`LowProduct`) where it is a plain
    stack of matrix products (one per step, nothing broadcast)."""
    if factored and a.ndim == 3 == b.ndim and a.shape[0] == b.shape[0]:
        return LowProduct(a, b)
    return _matmul(a, b)


class LowProduct:
    """A lower bound of a leaf's gradient magnitudes kept as its two factors, ``left @ right``
    per step (``(S, m, K) @ (S, K, n)``, ``K`` the few runs of :func:`_low_matmul`), in the
    stacked ``shape`` of the leaf (C order: flat element ``c`` of a step is ``(c // n, c % n)``).

    Why: the checker reads a first-layer weight's bound once, in its comparison, block by
    block (:func:`tracer.checker.compare.worst_rows_pair`). Multiplied out whole it is a
    (steps, weights) array (S4: 11 MB a chunk) written to memory and read back; computed per
    block (:meth:`block`, into the comparison's scratch buffer) it stays in the cache. Every
    number is the one ``np.matmul(left, right)`` gives (the same product per step, and per
    row of a step). Arithmetic with it (two bounds summed for a leaf used twice) and
    ``np.asarray`` give the plain array."""

    __array_ufunc__ = None          # no silent NumPy arithmetic: ``+`` multiplies out

    def __init__(self, left: np.ndarray, right: np.ndarray, shape: tuple | None = None) -> None:
        self.left, self.right = left, right
        full = (left.shape[0], left.shape[1], right.shape[2])
        self.shape = full if shape is None else tuple(int(d) for d in shape)
        self.dtype = np.result_type(left.dtype, right.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.matmul(self.left, self.right).reshape(self.shape)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __add__(self, other):
        return np.asarray(self) + np.asarray(other)

    __radd__ = __add__

    def reshape(self, *shape: int | tuple) -> LowProduct | np.ndarray:
        """The same bound in another shape with the same steps (else multiplied out)."""
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        if int(shape[0]) != self.shape[0]:
            return np.asarray(self).reshape(shape)
        rest = [int(d) for d in shape[1:]]
        if -1 in rest:
            known = int(np.prod([d for d in rest if d != -1], dtype=np.int64))
            rest[rest.index(-1)] = self.size // self.shape[0] // max(1, known)
        return LowProduct(self.left, self.right, (self.shape[0], *rest))

    def __getitem__(self, rows) -> LowProduct:
        """The steps ``rows`` (an index array, a boolean mask or a slice) of the bound."""
        if isinstance(rows, tuple):
            raise TypeError("LowProduct: select steps, then use block() or at()")
        left, right = self.left[rows], self.right[rows]
        return LowProduct(left, right, (left.shape[0],) + self.shape[1:])

    def block(self, r0: int, r1: int, c0: int, c1: int, out: np.ndarray | None = None) -> np.ndarray:
        """Steps ``r0:r1``, flat elements ``c0:c1`` of each, as ``(r1 - r0, c1 - c0)``
        (into ``out`` when given)."""
        n = self.right.shape[2]
        i0, i1 = c0 // n, -(-c1 // n)
        left, right = self.left[r0:r1, i0:i1], self.right[r0:r1]
        if out is not None and (c0, c1) == (i0 * n, i1 * n):       # whole matrix rows: straight in
            np.matmul(left, right, out=out.reshape(r1 - r0, i1 - i0, n))
            return out
        part = np.matmul(left, right).reshape(r1 - r0, -1)[:, c0 - i0 * n:c1 - i0 * n]
        if out is None:
            return part
        out[...] = part
        return out

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """One element per step: flat element ``cols[k]`` of step ``rows[k]``."""
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        n = self.right.shape[2]
        i, j = np.divmod(cols, n)
        line = np.matmul(self.left[rows, i][:, None, :], self.right[rows])[:, 0, :]
        return line[np.arange(rows.size), j]


def _whole(g, like):
    """``g`` multiplied out where a :class:`LowProduct` would need a sum over broadcast axes."""
    return np.asarray(g) if isinstance(g, LowProduct) and g.shape != like.shape else g


def _swap(a):
    return np.swapaxes(a, -1, -2)


def _back(g, like):
    """A gradient in ``like``'s per-step shape (undo 1-D promotion); step axis kept."""
    return g.reshape((g.shape[0],) + like.shape[1:])


class MatMul(Op):
    """``x @ y`` with NumPy's rules (1-D operands promoted and squeezed, batch dims broadcast)."""

    name, arity, doc = "matmul", 2, "matrix product x @ y"

    @staticmethod
    def _prep(a, b):
        if rank(a) == 0 or rank(b) == 0:
            raise TraceInputError("op 'matmul': both operands need at least one dimension")
        va, vb = rank(a) == 1, rank(b) == 1
        if va:
            a = a[:, None, :]
        if vb:
            b = b[..., None]
        return a, b, va, vb

    @staticmethod
    def _post(out, va, vb):
        if vb:
            out = out[..., 0]
        if va:
            out = out[..., 0, :] if not vb else out[..., 0]
        return out

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        a, b, va, vb = self._prep(*xs)
        a, b = align(a, b)
        return self._post(_matmul(a, b), va, vb)

    def strides(self, xs: list[np.ndarray]) -> tuple[int, int, int]:
        """Lower-bound strides of the three contractions: the forward product's (over K),
        the left operand's gradient's (over N) and the right operand's (over M), for
        ``(M, K) @ (K, N)`` per step and batch."""
        a, b, _, _ = self._prep(*xs)
        a, b = align(a, b)
        (m, k), n = a.shape[-2:], b.shape[-1]
        work = int(np.prod(np.broadcast_shapes(a.shape[1:-2], b.shape[1:-2]), dtype=np.int64)) * m * k * n
        cap = LOWER_STRIDE["gradient"]
        return lower_stride(k, work, LOWER_STRIDE["forward"]), lower_stride(n, work, cap), lower_stride(m, work, cap)

    def _grads(self, g, a0, b0, need, left=None, right=None, lower=False, factored=(False, False)):
        """``(g @ right^T, left^T @ g)`` reduced to the operands' shapes. ``left``/``right``
        None stand for ``|a0|``/``|b0|``; ``lower``: each product's lower bound (for
        nonnegative operands, :func:`_low_matmul`), per operand left as its factors where
        ``factored`` says so and nothing is summed over broadcast axes (:class:`LowProduct`)."""
        a, b, va, vb = self._prep(a0, b0)
        if va:
            g = g[..., None, :] if not vb else g[..., None, None]
        elif vb:
            g = g[..., None]
        la, rb = align(*self._prep(a0 if left is None else left, b0 if right is None else right)[:2])
        def product(x, y, keep):
            return _low_matmul(x, y, keep) if lower else _matmul(x, y)
        out = [None, None]
        if need[0]:
            ga = product(g, _swap(_abs(rb) if right is None else rb), factored[0])
            out[0] = _back(unbroadcast(_whole(ga, a), a), a0)
        if need[1]:
            gb = product(_swap(_abs(la) if left is None else la), g, factored[1])
            out[1] = _back(unbroadcast(_whole(gb, b), b), b0)
        return out

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        return self._grads(g, xs[0], xs[1], need, xs[0], xs[1])

    def fmag(self, ms: list, xs: list[np.ndarray], out: np.ndarray, attrs: dict,
             exact: tuple[bool, bool] = (False, False), lower: bool = False) -> np.ndarray:
        """``M(A) @ |B| + |A| @ M(B)``; a leaf's magnitude is its own ``|value|`` (``exact``:
        its ``ms`` entry is not read), which saves a product. ``lower``: the lower bound
        (module docstring). For a product of two leaves it is ``2 |A @ B|`` from the value
        itself (``out``, which the evaluation computed): one pass. Why not the sample of the
        contracted index, as for a computed operand: the sample costs a sixteenth of the
        product plus the absolute values of both operands' sampled entries (on S4's
        ``x @ W1``, 500 inputs: 4.2 ms of a check's 136 ms CPU, against 0.8 for ``2 |A @ B|``),
        and it is of the order of ``|A @ B|`` anyway (``K/16 * E|a||b|`` against
        ``sqrt(K) * E|ab|``: about equal at K = 500); every row S4 settles by the bound
        still settles, none needs ``M``."""
        s = self.strides(xs)[0] if lower else 1
        if s > 1 and exact[0] and exact[1]:      # two leaves: 2 |A @ B|, the value at hand
            m = np.abs(out, out=empty(np.shape(out), out.dtype))
            return np.multiply(m, out.dtype.type(2), out=m)
        a, b, va, vb = self._prep(*xs)
        a, b = align(a, b)
        ma = mb = None
        if not (exact[0] and exact[1]):
            ma, mb = align(*self._prep(xs[0] if exact[0] else ms[0], xs[1] if exact[1] else ms[1])[:2])
        if s > 1:
            a, b = a[..., ::s], b[..., ::s, :]
            ma, mb = (None, None) if ma is None else (ma[..., ::s], mb[..., ::s, :])
        a, b = _abs(a), _abs(b)
        if exact[0] and exact[1]:            # both leaves: |A| @ |B| once
            out = _matmul(a, b)
            out *= 2
        elif exact[1]:                       # (M_A + |A|) @ |B|: one product, not two
            out = _matmul(_add(ma, a), b)
        elif exact[0]:
            out = _matmul(a, _add(mb, b))
        else:
            out = _add(_matmul(ma, b), _matmul(a, mb))
        return self._post(out, va, vb)

    def bmag(self, gm: np.ndarray, g: np.ndarray, ms: list, xs: list[np.ndarray], out: np.ndarray,
             attrs: dict, need: list[bool], exact: tuple[bool, bool] = (False, False), lower: bool = False,
             factored: bool = False, leaf: tuple[bool, bool] | None = None) -> list:
        """``gm`` against ``|A|``, ``|B|`` plus ``|g|`` against ``M(A)``, ``M(B)``; against a
        leaf operand (``M = |value|``) the two are one product of ``gm + |g|``; ``lower``:
        the lower bound (of the sum: a run's smallest ``gm + |g|`` is at least the sum of
        the two smallest, so the one product's bound is at least the two products').
        ``factored``: a leaf's bound (of a product with another leaf) as a :class:`LowProduct`
        (``leaf``: which operands are leaves, default ``exact``; an operand only moved from
        a leaf is ``exact`` but not a leaf, and its gradient is read on by the move)."""
        ag = _abs(g)
        one = [need[0] and exact[1], need[1] and exact[0]]      # the other operand is a leaf
        two = [n and not o for n, o in zip(need, one)]
        res = [None, None]
        if any(one):
            leaf = exact if leaf is None else leaf
            keep = (factored and leaf[0], factored and leaf[1])     # only a leaf's: a node's is read on
            # gm + |g| into |g|'s own array where nothing reads |g| after (one array fewer)
            alone = not any(two) and ag.shape == np.broadcast_shapes(np.shape(gm), ag.shape) \
                and ag.dtype == np.result_type(gm, ag)
            both = np.add(gm, ag, out=ag) if alone else _add(gm, ag)
            res = self._grads(both, xs[0], xs[1], one, None, None, lower, keep)
        if any(two):
            first = self._grads(gm, xs[0], xs[1], two, None, None, lower)
            second = self._grads(ag, xs[0], xs[1], two, None if exact[0] else ms[0], None if exact[1] else ms[1],
                                 lower)
            res = [r if not t else _add(f, s) for r, t, f, s in zip(res, two, first, second)]
        return res

    def text(self, args: list, attrs: dict) -> str:
        return f"{args[0]} @ {args[1]}"


register(MatMul())
