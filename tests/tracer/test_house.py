"""The house rules of issue 14, checked on the library's own source (``ast``, no imports):
modules of one concept stay under ~400 lines, functions under 60 (tables of data aside),
every public function is fully annotated, and a broad ``except`` says why on its line."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tracer", "hooks", "reports")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text()


def _public_functions(body, owner=""):
    for node in body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield from _public_functions(node.body, node.name + ".")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield owner + node.name, node


def _annotated(fn: ast.FunctionDef) -> bool:
    a = fn.args
    params = [p for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
    extra = [p for p in (a.vararg, a.kwarg) if p is not None]
    return fn.returns is not None and all(p.annotation is not None for p in params + extra)


def test_no_module_is_over_the_size_of_one_concept():
    big = [(name, src.count("\n")) for name, src in _modules() if src.count("\n") > MAX_MODULE_LINES]
    assert not big, big


def test_no_function_is_over_sixty_lines():
    long = []
    for name, src in _modules():
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def test_every_public_function_is_fully_annotated():
    missing = [f"{name}:{fn.lineno} {qual}" for name, src in _modules()
               for qual, fn in _public_functions(ast.parse(src).body) if not _annotated(fn)]
    assert not missing, missing


def test_every_broad_except_says_why_on_its_line():
    bare = []
    for name, src in _modules():
        lines = src.splitlines()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ExceptHandler):
                types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
                broad = node.type is None or any(isinstance(t, ast.Name) and t.id in ("Exception", "BaseException")
                                                 for t in types)
                if broad and "#" not in lines[node.lineno - 1]:
                    bare.append(f"{name}:{node.lineno}")
    assert not bare, bare


def test_the_checks_above_can_fail():
    """Planted: each rule rejects a counter-example (a test that cannot fail is a defect)."""
    fn = ast.parse("def f(x, *a, **k) -> int:\n    return 1\n").body[0]
    assert not _annotated(fn)
    assert _annotated(ast.parse("def f(x: int, *a: int, **k: int) -> int:\n    return 1\n").body[0])
    assert list(_public_functions(ast.parse("class _P:\n    def f(self): pass\n").body)) == []
    assert [q for q, _ in _public_functions(ast.parse("class P:\n    def f(self): pass\n").body)] == ["P.f"]
