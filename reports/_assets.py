"""The page's static texts (HTML template, style sheet, scripts) as package data files.

Why files: JavaScript and CSS kept in ``reports/assets/`` are read and linted as what they
are, and a change to the page's look is not a change to Python code. They are read once
per process with :mod:`importlib.resources`, so they work from an installed wheel too.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

__all__ = ["asset"]


@lru_cache(maxsize=None)
def asset(name: str) -> str:
    """The text of ``reports/assets/<name>`` (``page.html``, ``page.css``, ``page.js``,
    ``program.js``, ``epoch.js``)."""
    return resources.files("reports").joinpath("assets", name).read_text(encoding="utf-8")
