"""Numbers and counts as people read them: a few significant digits, real plurals.

Why: a learner who reads ``lr=0.05000000074505806`` or ``9.99999e-07`` sees float32
rounding, not the 0.05 and 1e-6 they typed, and "1 steps" reads as a bug. Everything a
person reads (explanations, summaries, the CLI, the page's and the workbook's labels)
goes through :func:`num`; the data itself (tables, CSV, the workbook's cells) keeps
full precision.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["num", "plural", "count", "num_list", "compact_rows"]


def num(v: object, digits: int = 4) -> str:
    """``v`` rounded to ``digits`` significant digits for display.

    ``0.05000000074505806`` -> ``0.05``; ``9.99999e-07`` -> ``1e-6``; ``20.074485`` ->
    ``20.07``; integers stay whole (``1000``); NaN -> ``n/a``; booleans and text as given.
    """
    if v is None:
        return "n/a"
    if isinstance(v, bool) or isinstance(v, str):
        return str(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "n/a"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if f == 0:
        return "0"
    if abs(f) < 1e6 and (f.is_integer() or abs(f) >= 10 ** digits):
        return str(int(round(f)))       # 2937.69 -> 2938, never 2.94e3
    return _tidy(f"{f:.{digits}g}")


def _tidy(text: str) -> str:
    """``1e-06`` -> ``1e-6``, ``1.5e+07`` -> ``1.5e7``: exponents without padding."""
    if "e" not in text:
        return text
    mant, exp = text.split("e")
    sign = "-" if exp.startswith("-") else ""
    return f"{mant}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"


def num_list(values: Iterable[object], digits: int = 4, limit: int = 6) -> str:
    """A few values as ``[0.5, 0.658, ...]`` (the first ``limit``, then the count)."""
    vals = list(values)
    text = ", ".join(num(v, digits) for v in vals[:limit])
    more = f", ... ({len(vals)} values)" if len(vals) > limit else ""
    return f"[{text}{more}]"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``word`` or its plural for ``n`` (``many``, default ``word + "s"``)."""
    return word if int(n) == 1 else (many or word + "s")


def count(n: int, word: str, many: str | None = None) -> str:
    """``1 step``, ``12 steps``, ``1 batch``, ``3 batches`` (give ``many`` for irregular plurals)."""
    return f"{int(n)} {plural(n, word, many)}"


def compact_rows(rows: Iterable[int], limit: int = 12) -> str:
    """Row numbers as ranges a person can read: ``0-999``, ``0-3, 8, 10-12``.

    Why: a shuffled batch of 1,000 rows is not something to read in one cell; after
    ``limit`` runs the text stops with the count (``... (1000 rows)``).
    """
    vals = [int(r) for r in rows]
    if not vals:
        return ""
    runs, start, prev = [], vals[0], vals[0]
    for v in vals[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}" if prev > start + 1 else f"{start}, {prev}")
        if v is not None:
            start = prev = v
    text = ", ".join(runs[:limit])
    if len(runs) > limit:
        text += f", ... ({count(len(vals), 'row')})"
    elif len(runs) > 1 or len(vals) > 2:
        text += f" ({count(len(vals), 'row')})"
    return text
