"""Escaping trace strings for the place they land: HTML, JSON in a script, mathtext, cells.

Why one module: every name in a trace (parameters, columns, metrics, the framework,
notes) comes from whoever wrote the trace file, and a report opened in a browser or a
spreadsheet must not run it. Each output context has its own rule, and each rule lives
here once so that every writer applies the same one:

- HTML text and attributes: :func:`html_text` (``& < > " '``).
- JSON inside a ``<script>`` element: :func:`script_json` escapes ``<``, ``>``, ``&``,
  U+2028 and U+2029 as ``\\uXXXX``, so ``</script>`` or ``<!--<script>`` in a name can
  neither close the element nor switch the HTML parser into its "escaped script" state;
  non-finite numbers become ``null`` (strict JSON, ``allow_nan=False``).
- matplotlib labels: :func:`plain_label` escapes ``$`` so a name is never parsed as
  mathtext (``w$\\foo{$`` would otherwise raise in the renderer).
- Spreadsheet cells (OWASP "CSV injection"): a string starting with ``=``, ``+``, ``-``,
  ``@``, tab or carriage return is a formula to Excel and LibreOffice. CSV cells get a
  leading single quote (:func:`csv_text`); workbook cells are written with the string
  type and Excel's quote-prefix flag (:func:`xlsx_cell`), so the text is shown as typed
  and is never evaluated. Numbers are never touched.
"""
from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

#: first characters that make a spreadsheet treat a cell as a formula (OWASP)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                   "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_RE = re.compile("[<>&\u2028\u2029]")
_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
_HTML_RE = re.compile("[&<>\"']")


def html_text(value: object) -> str:
    """``value`` as text safe in HTML element content and in quoted attributes."""
    return _HTML_RE.sub(lambda m: _HTML_ESCAPES[m.group(0)], str(value))


def finite_json(value: object) -> object:
    """A copy of ``value`` (dicts, lists, tuples, scalars) with NaN and infinities as None.

    Why: JSON has no NaN or Infinity; ``json.dumps`` would write tokens a browser's
    ``JSON.parse`` rejects, so the page would not start.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def script_json(payload: object) -> str:
    """``payload`` as strict JSON that is inert inside an HTML ``<script>`` element.

    The escapes only occur inside JSON strings (JSON's own syntax has none of these
    characters), and ``\\uXXXX`` is valid JSON, so ``JSON.parse`` returns the original
    text. Non-finite floats become ``null``.
    """
    try:
        text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except ValueError:          # a NaN or infinity somewhere: walk once, only in this case
        text = json.dumps(finite_json(payload), separators=(",", ":"), allow_nan=False)
    return _SCRIPT_RE.sub(lambda m: _SCRIPT_ESCAPES[m.group(0)], text)


def plain_label(value: object) -> str:
    """``value`` as a matplotlib label that is drawn literally, never parsed as mathtext.

    matplotlib parses text with an even number of unescaped ``$`` as math; ``\\$`` is a
    literal dollar sign (backslashes outside math are drawn as they are).
    """
    return str(value).replace("$", r"\$")


def formula_like(value: object) -> bool:
    """True for a string a spreadsheet would evaluate (starts with ``= + - @``, tab or CR)."""
    return isinstance(value, str) and value.startswith(FORMULA_PREFIXES)


def csv_text(value: object) -> object:
    """A CSV cell: a formula-like string gets a leading ``'`` (OWASP); anything else as is."""
    return "'" + value if formula_like(value) else value


def xlsx_text(value: str) -> str:
    """``value`` without the control characters XML (so xlsx) cannot hold: each is written
    as ``\\xNN``, so two names that differ only there stay distinct."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE.sub(lambda m: f"\\x{ord(m.group(0)):02x}", value)


def xlsx_cell(ws: WriteOnlyWorksheet, value: object, bold: bool = False) -> object:
    """A value for openpyxl's write-only ``ws.append``: a formula-like string becomes a
    string-typed cell with the quote prefix (shown as typed, never evaluated, also after
    an edit in Excel); other values pass through (a ``WriteOnlyCell`` when ``bold``).
    Strings lose the control characters a workbook cannot hold (:func:`xlsx_text`).
    """
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    if isinstance(value, str):
        value = xlsx_text(value)
    if not (bold or formula_like(value)):
        return value
    cell = WriteOnlyCell(ws, value=value)
    if isinstance(value, str):
        cell.data_type = "s"          # openpyxl guessed "f" for a leading "="
        if formula_like(value):
            cell.quotePrefix = True
    if bold:
        cell.font = Font(bold=True)
    return cell
