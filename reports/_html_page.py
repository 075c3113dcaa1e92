"""The step-through page's static parts: the HTML template, its style sheet and its script.

Why apart from :mod:`reports.html`: the page is three texts (template, style, script) and
the code that fills them. The texts are package data files (``reports/assets/page.html``,
``page.css``, ``page.js``, read by :mod:`reports._assets`). The script renders one
iteration at a time from the embedded JSON (:mod:`reports._html_payload`), so 10,000
iterations stay responsive. The placeholders (``__TITLE__``, ``__CSS__``, ``__JS__``,
``__CSP__``, ``__DATA__``) are filled in one pass by :func:`reports.html.render_page`;
``__PROGRAM_SECTION__`` and ``__EPOCH_SECTION__`` take the static sections of
:mod:`reports._html_program` and :mod:`reports._html_epoch`.
"""
from __future__ import annotations

from ._assets import asset

__all__ = ["TEMPLATE", "CSS", "JS"]

TEMPLATE = asset("page.html")

CSS = asset("page.css")

JS = asset("page.js")
