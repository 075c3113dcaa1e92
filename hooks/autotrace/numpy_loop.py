"""Find the training loop of a NumPy script by reading its source: the loop that updates the parameters.

Why from the source: an unedited NumPy script marks nothing; what identifies its
training loop is that the loop's body assigns the parameters (``weights = weights -
...``, ``W -= ...``). The innermost ``for``/``while`` whose body assigns every named
parameter is the one whose iterations are steps. Its lines (header, body, end) and
the function that holds it are what :mod:`hooks.autotrace.numpy_session` watches,
so nothing else of the script is looked at while it runs.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

from tracer.errors import TraceInputError

__all__ = ["LoopSite", "find_loop"]

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_LOOPS = (ast.For, ast.While)


@dataclass(frozen=True)
class LoopSite:
    """Where the training loop is.

    ``function`` is None for a loop at the script's top level, else the name of the
    function holding it, whose code starts at ``first_line`` (its first decorator or
    ``def``). ``header``, ``body`` are inclusive line ranges; ``end`` the loop's last
    line; ``nested`` whether another loop of the same function encloses it.
    """

    path: str
    function: str | None
    first_line: int
    line: int
    header: tuple[int, int]
    body: tuple[int, int]
    end: int
    nested: bool

    def describe(self) -> str:
        where = f"line {self.line}" + (f" (in {self.function})" if self.function else "")
        return where


def _targets(node) -> list:
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.NamedExpr)):
        return [node.target]
    if isinstance(node, ast.With):
        return [item.optional_vars for item in node.items if item.optional_vars is not None]
    return []


def _base_names(target) -> set[str]:
    """Names a target assigns or updates in place (``w``, ``w[...]``, ``a, b = ...``)."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_base_names(t) for t in target.elts)) if target.elts else set()
    if isinstance(target, ast.Starred):
        return _base_names(target.value)
    if isinstance(target, (ast.Subscript, ast.Attribute)):
        return _base_names(target.value)
    return set()


def _walk_scope(node):
    """The nodes of one scope: nested functions, lambdas and classes are not entered."""
    for child in ast.iter_child_nodes(node):
        yield child
        if not isinstance(child, _SCOPES):
            yield from _walk_scope(child)


def _assigned(loop) -> dict[str, int]:
    """Name -> first line assigning it in the loop's body (in this scope)."""
    out: dict[str, int] = {}
    for stmt in loop.body:
        for node in [stmt, *_walk_scope(stmt)]:
            for t in _targets(node):
                for name in _base_names(t):
                    out.setdefault(name, node.lineno)
    return out


def _loops(scope):
    """``(loop, depth)`` for every loop of one scope; depth counts the loops around it."""
    def walk(node, depth):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _SCOPES):
                continue
            if isinstance(child, _LOOPS):
                yield child, depth
                yield from walk(child, depth + 1)
            else:
                yield from walk(child, depth)
    yield from walk(scope, 0)


def _scopes(tree):
    yield tree, None, 1
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
            yield node, node.name, first


def find_loop(source: str, path: str, params: list[str]) -> LoopSite:
    """The innermost loop of ``source`` whose body assigns every name in ``params``.

    Raises :class:`TraceInputError` saying what was found instead."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise TraceInputError(f"SCRIPT: cannot read {path}: {exc}") from None
    candidates, partial = [], {}
    for scope, name, first in _scopes(tree):
        for loop, depth in _loops(scope):
            assigned = _assigned(loop)
            for p in params:
                if p in assigned:
                    partial.setdefault(p, []).append(assigned[p])
            if all(p in assigned for p in params):
                candidates.append((depth, -loop.lineno, loop, name, first))
    if not candidates:
        raise TraceInputError(_not_found(params, partial))
    depth, _, loop, name, first = max(candidates, key=lambda c: c[:2])
    if isinstance(loop, ast.For):
        header_end = max(loop.iter.end_lineno, loop.target.end_lineno)
    else:
        header_end = loop.test.end_lineno
    body = (loop.body[0].lineno, max(s.end_lineno for s in loop.body))
    if body[0] <= header_end:
        raise TraceInputError(f"--numpy-params: the loop at line {loop.lineno} has its body on the header's "
                              "line; steptrace needs the body on lines of its own")
    return LoopSite(path=path, function=name, first_line=first, line=loop.lineno, header=(loop.lineno, header_end),
                    body=body, end=loop.end_lineno, nested=depth > 0)


def _not_found(params, partial) -> str:
    parts = []
    for p in params:
        lines = sorted(set(partial.get(p, [])))
        parts.append(f"{p} at line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))}" if lines
                     else f"{p} in no loop")
    return (f"--numpy-params {','.join(params)}: no for/while loop of the script assigns all of them "
            f"(assigned inside loops: {'; '.join(parts)})")
