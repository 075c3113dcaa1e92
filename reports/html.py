"""A self-contained HTML page that steps through the iterations of a trace.

Why: a learner wants to *watch* training one step at a time - which rows the batch
used, what the model predicted, the batch loss, each gradient as a sum of per-row
terms with the numbers in it, the optimizer's update, and whether the checker agrees.
One file, no server, no network, no external scripts: the trace is embedded as JSON
and a small inline script renders one step at a time, so 10,000 iterations stay
responsive (the page touches only the current batch's rows on each step).

Keys: Right/Left arrow (or ``n``/``p``) next/previous, Home/End first/last; the
timeline and the slider jump anywhere.
"""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from tracer.atomic import replacing_file
from tracer.errors import TraceFileError, TraceInputError

from ._html_epoch import EPOCH_JS, EPOCH_SECTION
from ._html_page import CSS, JS, TEMPLATE
from ._html_payload import EXPLAIN_LIMIT, build_payload
from ._html_program import PROGRAM_JS, PROGRAM_SECTION
from ._safe import html_text, script_json

if TYPE_CHECKING:
    import os

    from tracer.trace import Trace


def to_html(trace: Trace, path: str | os.PathLike, explain_limit: int = EXPLAIN_LIMIT,
            title: str | None = None) -> Path:
    """Write the step-through page for ``trace`` to ``path`` (one .html file) and return it.

    ``explain_limit``: iterations for which the full text of :func:`tracer.explain` is
    embedded (the page builds its own substituted derivation for every iteration).
    An unwritable path raises :class:`tracer.errors.TraceFileError`.
    """
    if not hasattr(trace, "tables"):
        raise TraceInputError(f"trace: expected a tracer.Trace, got {type(trace).__name__}")
    path = Path(path)
    payload = build_payload(trace, explain_limit=explain_limit)
    if title:
        payload["title"] = title
    page = render_page(payload)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing_file(path) as tmp:        # a full disk leaves no partial page
            tmp.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise TraceFileError(f"cannot write the HTML page {path}: {exc.strerror or exc}") from None
    return path


def render_page(payload: dict) -> str:
    """The page's text for ``payload``, every trace string escaped for where it lands.

    Why one pass: the template's placeholders are replaced by one ``re.sub``, so text
    inserted for one placeholder (a framework named ``__DATA__``) is never scanned for
    another. The title is HTML-escaped; the data is JSON made inert inside ``<script>``
    (:func:`reports._safe.script_json`, NaN and infinities as null).
    """
    parts = {"__TITLE__": html_text(payload.get("title", "")), "__CSS__": _CSS, "__JS__": _JS,
             "__CSP__": CSP, "__DATA__": script_json(payload)}
    return _PLACEHOLDER.sub(lambda m: parts[m.group(0)], _TEMPLATE)


_PLACEHOLDER = re.compile("__(?:TITLE|CSS|JS|CSP|DATA)__")


# the step program's and the epoch's sections and renderers (static text, no trace data)
_TEMPLATE = TEMPLATE.replace("__PROGRAM_SECTION__", PROGRAM_SECTION).replace("__EPOCH_SECTION__", EPOCH_SECTION)
_CSS = CSS
_JS = JS + PROGRAM_JS + EPOCH_JS

#: Content-Security-Policy of the page: only its own inline script (by hash) may run, and
#: nothing is fetched. A second wall behind the escaping: an injected ``<script>`` or
#: ``onerror=`` would not run even if a name slipped through unescaped.
CSP = ("default-src 'none'; script-src 'sha256-"
       + base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode("ascii")
       + "'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'")
