"""Recognise what a hand-written formula *is*: ``1 / (1 + np.exp(-z))`` is ``sigmoid(z)``.

Why: the NumPy hook maps each call to one registry op, which is exact but reads as
four anonymous steps in ``explain``, and its reverse pass is fragile (``exp(-z)``
overflows to inf for very negative ``z``, and the quotient rule then gives
``inf / inf = NaN`` where the sigmoid's own derivative is 0). A chain whose inner
values are used nowhere else is replaced by the registry op it spells; the program is
then verified against NumPy's numbers like any other (:mod:`hooks.numpy.functions`).
"""
from __future__ import annotations

from collections import Counter

__all__ = ["fuse"]


def _uses(nodes: list[dict], outputs: dict) -> Counter:
    counts = Counter(a for n in nodes for a in n["args"] if isinstance(a, str))
    counts.update(v for v in outputs.values())
    return counts


def _sigmoid_arg(node: dict, by_name: dict, uses: Counter) -> tuple[str, list[str]] | None:
    """``(z, inner node names)`` when ``node`` is ``1 / (1 + exp(-z))``, else None."""
    if node["op"] == "div" and node["args"][0] == 1.0 and isinstance(node["args"][1], str):
        s = node["args"][1]
    elif node["op"] == "reciprocal" and isinstance(node["args"][0], str):
        s = node["args"][0]
    else:
        return None
    add = by_name.get(s)
    if add is None or add["op"] != "add" or 1.0 not in add["args"]:
        return None
    e = next((a for a in add["args"] if isinstance(a, str)), None)
    exp = by_name.get(e)
    if exp is None or exp["op"] != "exp":
        return None
    neg = by_name.get(exp["args"][0])
    if neg is None or neg["op"] != "neg":
        return None
    inner = [s, e, neg["name"]]
    if any(uses[name] != 1 for name in inner):
        return None
    return neg["args"][0], inner


def fuse(nodes: list[dict], outputs: dict) -> list[dict]:
    """The nodes with every single-use ``1 / (1 + exp(-z))`` chain replaced by ``sigmoid(z)``."""
    by_name = {n["name"]: n for n in nodes}
    uses = _uses(nodes, outputs)
    drop, out = set(), []
    for node in nodes:
        found = _sigmoid_arg(node, by_name, uses)
        if found is not None:
            z, inner = found
            drop.update(inner)
            node = {**node, "op": "sigmoid", "args": [z], "attrs": {}}
        out.append(node)
    return [n for n in out if n["name"] not in drop]
