"""The NumPy names lambdified code runs against, got without ``from numpy import *``.

Why: ``sympy.lambdify(..., "numpy")`` fills its namespace, once per process, with
``from numpy import *; from numpy.linalg import *``, and NumPy 2's star import loads every
lazy submodule (f2py, testing, ma, polynomial, ...): about 50 ms of CPU, paid by a process's
first check. :data:`NUMPY` holds the same objects for every name NumPy has already loaded
(the printed code calls functions such as ``exp`` and ``select``; a name it needs and this
lacks, lambdify imports by itself), and :func:`numpy_lambdify` prints with the printer and
settings that sympy picks for ``"numpy"``: the same source, run against the same functions.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

__all__ = ["NUMPY", "numpy_lambdify"]


def _namespace() -> dict:
    """sympy's ``"numpy"`` namespace (its defaults, the two star imports, its translations,
    ``Abs``), each name taken only if NumPy has loaded it."""
    from sympy.utilities.lambdify import NUMPY_DEFAULT, NUMPY_TRANSLATIONS
    ns = dict(NUMPY_DEFAULT, numpy=np)
    for module in (np, np.linalg):
        loaded = vars(module)
        ns.update((k, loaded[k]) for k in module.__all__ if k in loaded)
    ns.update((name, ns[to]) for name, to in NUMPY_TRANSLATIONS.items())
    ns.setdefault("Abs", abs)
    return ns


#: the namespace of lambdified code (see the module docstring)
NUMPY = _namespace()


def numpy_lambdify(args: list | tuple, expr: sp.Expr) -> Callable:
    """``sympy.lambdify(args, expr, "numpy")``, the same function without the star import."""
    printer = NumPyPrinter({"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True,
                            "user_functions": {}})
    return sp.lambdify(args, expr, modules=[NUMPY], printer=printer)
