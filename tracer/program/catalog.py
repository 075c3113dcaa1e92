"""The registry as a table for people: ``python -m tracer.program.catalog`` prints it as Markdown.

docs/PROGRAM.md embeds this table; a test keeps the two in step, so the documented
vocabulary is exactly the one the checker accepts.
"""
from __future__ import annotations

from .registry import MISSING, REGISTRY, get_op

__all__ = ["markdown"]


def _arity(op) -> str:
    if isinstance(op.arity, int):
        return str(op.arity)
    lo, hi = op.arity
    return f"{lo}..{'' if hi is None else hi}"


def markdown() -> str:
    """One row per registered op: name, kind, arguments, attributes with defaults, what it is."""
    get_op("add")                       # loads the registry
    from .elementwise import Elementwise
    from .macros import Macro
    rows = ["| op | kind | args | attributes (default) | what |", "|---|---|---|---|---|"]
    for name in sorted(REGISTRY):
        op = REGISTRY[name]
        kind = "macro" if isinstance(op, Macro) else ("elementwise (sympy)" if isinstance(op, Elementwise)
                                                      else "structural (NumPy)")
        attrs = ", ".join(f"{k}" if v is MISSING else f"{k} ({v!r})" for k, v in op.defaults.items())
        doc = (op.doc or "").replace("|", "\\|")
        if isinstance(op, Elementwise) and not doc:
            import sympy as sp                 # (tracer.math imports this package: no import back)
            doc = sp.sstr(op.expr()).replace("**", "^")
        rows.append(f"| `{name}` | {kind} | {_arity(op)} | {attrs} | {doc} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(markdown())
