"""Checking JSON documents against small, composable rules, with the path of what is wrong.

Why: a file from someone else (``meta.json``) must be refused with one line naming the
field (``meta.params[2].shape: expected ..., got ...``), not with a KeyError later. Each
rule is a function ``check(value, path)`` that raises :class:`Invalid` and carries the
words of what it expects (``check.expected``); :func:`record`, :func:`list_of`,
:func:`mapping` and :func:`nullable` compose them. :func:`check_limits` bounds a whole
document (depth, size, string length, 64-bit integers) iteratively, so a deeply nested
file cannot exhaust Python's recursion. :mod:`tracer.meta` builds the meta schema on it.
"""
from __future__ import annotations

import json
import math
import re
from typing import Callable

#: deepest nesting of lists and dicts accepted anywhere in a document
MAX_DEPTH = 64
#: most values (dict entries and list items, counted recursively) in one document
MAX_NODES = 2_000_000
#: longest string anywhere (notes, source lines)
MAX_TEXT = 1_000_000
#: longest name (parameter, column, metric, slot)
MAX_NAME = 4096
#: longest list anywhere
MAX_ITEMS = 1_000_000
#: largest integer accepted as a size or count
MAX_COUNT = 2**62

#: a rule: ``check(value, path)`` raises :class:`Invalid`; ``check.expected`` says what it wants
Check = Callable[[object, str], None]


class Invalid(Exception):
    """A value that does not match: where (``path``), what was expected, what was found."""

    def __init__(self, path: str, expected: str, value: object):
        super().__init__(path)
        self.path, self.expected, self.value = path, expected, value


def show(value: object) -> str:
    """``value`` as short one-line JSON for a message (at most 60 characters)."""
    try:
        text = json.dumps(value, ensure_ascii=True, default=repr)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(v: object) -> bool:
    """An integer that is not a bool (JSON ``true`` is not a size)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: object) -> bool:
    """An int or float that is not a bool (NaN and infinities included)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def make(expected: str, test: Callable[[object], bool]) -> Check:
    """A rule from a predicate and the words of what it expects."""
    def check(value: object, path: str) -> None:
        if not test(value):
            raise Invalid(path, expected, value)
    check.expected = expected  # type: ignore[attr-defined]
    return check


def text(max_len: int = MAX_TEXT, expected: str = "a string") -> Check:
    """A string of at most ``max_len`` characters."""
    return make(expected, lambda v: isinstance(v, str) and len(v) <= max_len)


NAME = text(MAX_NAME, f"a name (a string of at most {MAX_NAME} characters)")
BOOL = make("true or false", lambda v: isinstance(v, bool))
NUMBER = make("a number", is_number)
COUNT = make("a non-negative integer", lambda v: is_int(v) and 0 <= v <= MAX_COUNT)
POSITIVE_COUNT = make("a positive integer", lambda v: is_int(v) and 1 <= v <= MAX_COUNT)


def nullable(check: Check) -> Check:
    """``check`` or null (``None``)."""
    def inner(value: object, path: str) -> None:
        if value is not None:
            try:
                check(value, path)
            except Invalid as bad:
                if bad.path == path:
                    raise Invalid(path, bad.expected + " or null", value) from None
                raise
    inner.expected = check.expected + " or null"  # type: ignore[attr-defined]
    return inner


def list_of(item: Check, expected: str, unique: bool = False, objects: bool = False) -> Check:
    """A list of ``item``; a bad item is reported as the whole list (``expected a list of
    names, got [...]``), or, for lists of ``objects``, at the item's own path."""
    def inner(value: object, path: str) -> None:
        if not isinstance(value, list):
            raise Invalid(path, expected, value)
        for i, v in enumerate(value):
            try:
                item(v, f"{path}[{i}]")
            except Invalid as bad:
                if bad.path == f"{path}[{i}]" and not objects:
                    raise Invalid(path, expected, value) from None
                raise
        if unique and len(set(value)) != len(value):
            dup = next(v for i, v in enumerate(value) if v in value[:i])
            raise Invalid(path, expected + " without repeats", dup)
    inner.expected = expected  # type: ignore[attr-defined]
    return inner


def key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else f"{path}[{json.dumps(key)}]"


def record(fields: dict[str, Check], required: tuple = (), extra: Check | None = None,
           expected: str = "an object") -> Check:
    """A dict whose known keys follow ``fields``; other keys follow ``extra`` (opaque)."""
    def inner(value: object, path: str) -> None:
        if not isinstance(value, dict):
            raise Invalid(path, expected, value)
        for key in required:
            if key not in value:
                raise Invalid(key_path(path, key), "a value (the key is required)", None)
        for key, v in value.items():
            check = fields.get(key, extra)
            if check is not None:
                check(v, key_path(path, key))
    inner.expected = expected  # type: ignore[attr-defined]
    return inner


def mapping(value_check: Check, expected: str = "an object") -> Check:
    """A dict from names to values that follow ``value_check``."""
    def inner(value: object, path: str) -> None:
        if not isinstance(value, dict):
            raise Invalid(path, expected, value)
        for key, v in value.items():
            NAME(key, key_path(path, key))
            value_check(v, key_path(path, key))
    inner.expected = expected  # type: ignore[attr-defined]
    return inner


def _opaque(value: object, path: str) -> None:
    """Opaque JSON: finite numbers only (sizes are checked once for the whole document)."""
    stack = [(value, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise Invalid(p, "a finite number", v)
        if isinstance(v, dict):
            stack.extend((x, key_path(p, k)) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, f"{p}[{i}]") for i, x in enumerate(v))


OPAQUE: Check = _opaque


def check_limits(value: object, root: str) -> None:
    """Depth, size, string length, JSON types and integer range for the whole document
    (``root`` names it in messages),
    iteratively (a deeply nested file must not exhaust Python's recursion)."""
    stack: list[tuple[object, str, int]] = [(value, root, 0)]
    nodes = 0
    while stack:
        v, path, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise Invalid(root, f"at most {MAX_NODES} values in all", "(more)")
        if isinstance(v, (dict, list)):
            if depth >= MAX_DEPTH:
                raise Invalid(path, f"at most {MAX_DEPTH} levels of nesting", v)
            if len(v) > MAX_ITEMS:
                raise Invalid(path, f"at most {MAX_ITEMS} items", f"{len(v)} items")
            if isinstance(v, dict):
                for k, x in v.items():
                    if not isinstance(k, str) or len(k) > MAX_NAME:
                        raise Invalid(path, f"keys that are strings of at most {MAX_NAME} characters", str(k))
                    stack.append((x, key_path(path, k), depth + 1))
            else:
                stack.extend((x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v))
        elif isinstance(v, str):
            if len(v) > MAX_TEXT:
                raise Invalid(path, f"a string of at most {MAX_TEXT} characters", f"{len(v)} characters")
        elif is_int(v):
            if abs(v) > 2**63:
                raise Invalid(path, "an integer within 64 bits", v)
        elif not (v is None or isinstance(v, (bool, float))):
            raise Invalid(path, "a JSON value", type(v).__name__)
