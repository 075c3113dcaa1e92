"""One program for every batch size, from two traces at different batch sizes.

Why: hand-written NumPy code reads the batch size as a plain number - ``/ len(y)``,
``1 / m * np.sum(...)``, ``x.shape[0]`` - and a program traced on one batch would
hold that number as a constant: right for that batch, wrong for a shorter last batch
or for the whole data set (which ``explain`` and the reports evaluate). So the
function is traced at two batch sizes ``B1`` and ``B2`` and the two programs compared:

- identical: nothing depends on the batch size;
- a number ``c1`` in one and ``c2`` in the other with ``c1 = a * B1`` and
  ``c2 = a * B2`` (or ``a / B1`` and ``a / B2``) at the same place: it becomes a node
  computing ``a * n`` (or ``a / n``) from ``n``, the batch's number of rows, itself
  computed from the batch's inputs (``sum`` of ones, exact in floating point);
- a reshape target holding ``B1`` where the other holds ``B2``: that dimension becomes
  ``-1`` (inferred);
- anything else (a constant array of ``B1`` rows, a different sequence of operations)
  cannot be unified, and the caller is told where.
"""
from __future__ import annotations

import copy
import math

__all__ = ["unify"]

_REL = 1e-12


def unify(p1: dict, p2: dict, b1: int, b2: int) -> tuple[dict | None, str | None]:
    """``(program valid at any batch size, None)`` or ``(None, reason)``; ``p1`` itself when
    nothing depends on the batch size."""
    if p1["consts"] != p2["consts"]:
        return None, _const_reason(p1, p2)
    n1, n2 = p1["nodes"], p2["nodes"]
    if len(n1) != len(n2) or p1["outputs"] != p2["outputs"]:
        return None, "the function runs different operations at different batch sizes"
    changes = []          # (node index, arg index or None, replacement)
    for i, (a, b) in enumerate(zip(n1, n2)):
        where = a.get("where") or "?"
        if a["op"] != b["op"] or a["name"] != b["name"] or len(a["args"]) != len(b["args"]):
            return None, f"different operations at {where} for different batch sizes"
        if a["attrs"] != b["attrs"]:
            shape = _reshape_target(a, b, b1, b2)
            if shape is None:
                return None, f"{a['op']} at {where} has settings that change with the batch size"
            changes.append((i, None, shape))
        for k, (x, y) in enumerate(zip(a["args"], b["args"])):
            if x == y:
                continue
            if isinstance(x, str) or isinstance(y, str):
                return None, f"different arguments at {where} for different batch sizes"
            form = _batch_form(float(x), float(y), b1, b2)
            if form is None:
                return None, f"the number {x:g} at {where} changes with the batch size in a way steptrace " \
                             "cannot express"
            changes.append((i, k, form))
    if not changes:
        return p1, None
    return _apply(p1, changes), None


def _const_reason(p1, p2) -> str:
    for c1, c2 in zip(p1["consts"], p2["consts"]):
        if c1 != c2:
            used = next((n.get("where") for n in p1["nodes"] if c1["name"] in n["args"]), None)
            return f"an array built from the batch size{f' at {used}' if used else ''}"
    return "arrays built from the batch size"


def _reshape_target(a, b, b1, b2):
    """The reshape target with the batch dimension inferred (-1), or None."""
    if a["op"] != "reshape" or set(a["attrs"]) != {"shape"} or set(b["attrs"]) != {"shape"}:
        return None
    s1, s2 = list(a["attrs"]["shape"]), list(b["attrs"]["shape"])
    if len(s1) != len(s2) or -1 in s1:
        return None
    diff = [i for i, (u, v) in enumerate(zip(s1, s2)) if u != v]
    if len(diff) != 1 or s1[diff[0]] != b1 or s2[diff[0]] != b2:
        return None
    s1[diff[0]] = -1
    return {"shape": s1}


def _close(u: float, v: float) -> bool:
    return math.isclose(u, v, rel_tol=_REL, abs_tol=0.0)


def _batch_form(c1: float, c2: float, b1: int, b2: int):
    """``("mul", a)`` when ``c = a * n``, ``("div", a)`` when ``c = a / n``, else None."""
    if _close(c1 / b1, c2 / b2):
        return ("mul", c1 / b1)
    if _close(c1 * b1, c2 * b2):
        return ("div", c1 * b1)
    return None


def _rows_nodes(program: dict, taken: set) -> tuple[list[dict], str]:
    """Nodes computing ``n``, the batch's number of rows, from the first input (exactly)."""
    inp = program["inputs"][0]
    rank = 1 + len(inp.get("shape") or [])
    base = _free("batch_rows", taken)
    label = {"label": "batch rows"}
    nodes = [{"name": f"{base}/zeros", "op": "mul", "args": [inp["name"], 0.0], "attrs": {}, **label},
             {"name": f"{base}/ones", "op": "add", "args": [f"{base}/zeros", 1.0], "attrs": {}, **label}]
    last = f"{base}/ones"
    if rank > 1:
        nodes.append({"name": f"{base}/per_row", "op": "mean", "args": [last],
                      "attrs": {"dims": list(range(1, rank)), "keepdim": False}, **label})
        last = f"{base}/per_row"
    nodes.append({"name": base, "op": "sum", "args": [last], "attrs": {"dims": None, "keepdim": False}, **label})
    return nodes, base


def _free(name: str, taken: set) -> str:
    k, out = 1, name
    while out in taken:
        k += 1
        out = f"{name}_{k}"
    taken.add(out)
    return out


def _apply(p1: dict, changes: list) -> dict:
    program = copy.deepcopy(p1)
    nodes = program["nodes"]
    taken = {n["name"] for n in nodes} | set(program["params"]) | {i["name"] for i in program["inputs"]} | \
        {c["name"] for c in program["consts"]}
    head, n = _rows_nodes(program, taken)
    derived: dict = {}
    for i, k, change in changes:
        node = nodes[i]
        if k is None:
            node["attrs"] = change
            continue
        kind, a = change
        key = (kind, float(f"{a:.15g}"))
        if key not in derived:
            if kind == "mul" and _close(a, 1.0):
                derived[key] = n
            else:
                name = _free(f"{a:.15g}*{n}" if kind == "mul" else f"{a:.15g}/{n}", taken)
                head.append({"name": name, "op": kind, "args": [n, a] if kind == "mul" else [a, n], "attrs": {},
                             "where": node.get("where"), "label": "batch rows"})
                derived[key] = name
        node["args"][k] = derived[key]
    program["nodes"] = [{k: v for k, v in h.items() if v is not None} for h in head] + nodes
    program.setdefault("notes", []).append(
        "numbers computed from the batch size (len(...), .shape[0]) are recomputed from each batch's rows")
    return program
