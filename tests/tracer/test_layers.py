"""Imports run one way: hooks -> tracer <- reports, and the application layer on top.

Why a test: ``docs/ARCHITECTURE.md`` promises that a trace saved on a training machine
can be checked and reported anywhere, which holds only while ``tracer`` and ``reports``
never import a framework, and the library core never reaches up into the hooks, the
reports or the application layer. Prose does not keep that promise; this test does.
Every module is parsed with :mod:`ast` (nothing is imported), so lazy imports inside
functions count as much as the ones at the top.

Rules:

- ``tracer/`` outside ``tracer/app/`` imports neither ``hooks`` nor ``reports``, nor
  ``tracer.app`` (``tracer/__main__.py``, the ``python -m tracer`` entry, excepted);
- ``tracer/`` and ``reports/`` import no framework (torch, tensorflow, keras);
- ``reports/`` does not import ``hooks``, and ``hooks/`` does not import ``reports``;
- tracer's top-level modules and subpackages import each other without cycles (an
  import under ``if TYPE_CHECKING:`` is never executed, so it names a type for the
  annotations without making a cycle; it still counts for the direction rules above).
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("torch", "tensorflow", "keras")


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of a (possibly relative) ``from`` import."""
    if level == 0:
        return module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _is_submodule(root: Path, name: str) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _type_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes under an ``if TYPE_CHECKING:`` (never executed)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def imports_of(root: Path, path: Path, type_checking: bool = True) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path``, lazy ones included
    (and the ones under ``if TYPE_CHECKING:`` unless ``type_checking`` is false).

    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module
    under ``root``, else of ``pkg``; ``importlib.import_module("...")`` with a constant
    name counts too.
    """
    current = _module_name(root, path)
    is_package = path.name == "__init__.py"
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = set() if type_checking else _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(current, is_package, node.level, node.module)
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                found.append((node.lineno, full if _is_submodule(root, full) else base))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and getattr(node.func, "attr",
                                                                    getattr(node.func, "id", "")) == "import_module":
            name = node.args[0].value
            level = len(name) - len(name.lstrip("."))
            found.append((node.lineno, _resolve(current, is_package, level, name.lstrip(".") or None)
                          if level else name))
    return sorted(set(found))


def _top(name: str) -> str:
    return name.split(".")[0]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _rule_violations(root: Path) -> tuple[list[str], dict[str, set[str]]]:
    """Direction violations, and the import graph between tracer's top-level parts."""
    problems, graph = [], {}
    for package in ("tracer", "hooks", "reports"):
        for path in sorted((root / package).rglob("*.py")):
            current = _module_name(root, path)
            where = f"{path.relative_to(root)}"
            in_app = _within(current, "tracer.app")
            runtime = set(imports_of(root, path, type_checking=False))
            for line, name in imports_of(root, path):
                top = _top(name)
                if package == "tracer" and not in_app and top in ("hooks", "reports"):
                    problems.append(f"{where}:{line}: tracer (outside tracer/app) imports {name}")
                if package == "tracer" and not in_app and current != "tracer.__main__" \
                        and _within(name, "tracer.app"):
                    problems.append(f"{where}:{line}: the tracer library imports the application layer ({name})")
                if package in ("tracer", "reports") and top in FRAMEWORKS:
                    problems.append(f"{where}:{line}: {package} imports the framework {name}")
                if package == "reports" and top == "hooks":
                    problems.append(f"{where}:{line}: reports imports {name}")
                if package == "hooks" and top == "reports":
                    problems.append(f"{where}:{line}: hooks imports {name}")
                if package == "tracer" and current.count(".") >= 1 and name.count(".") >= 1 \
                        and top == "tracer" and (line, name) in runtime:
                    a, b = ".".join(current.split(".")[:2]), ".".join(name.split(".")[:2])
                    if a != b:
                        graph.setdefault(a, set()).add(b)
    return problems, graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_violations(root: Path) -> list[str]:
    """Every import against the direction, and every cycle, under ``root`` (a checkout)."""
    problems, graph = _rule_violations(root)
    problems += [f"import cycle between {' and '.join(c)}" for c in _cycles(graph)]
    return problems


def test_the_code_imports_one_way():
    assert layer_violations(ROOT) == []


def _plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_planted_violations_are_caught(tmp_path):
    _plant(tmp_path, {
        "tracer/__init__.py": "from .trace import Trace\n",
        "tracer/__main__.py": "from .app.cli import main\n",            # allowed: the entry point
        "tracer/trace.py": "def load():\n    from .recorder import Recorder\n",   # lazy: still a cycle
        "tracer/recorder.py": "from tracer.trace import load\n",
        "tracer/store.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .source import S\n",
        "tracer/source.py": "from .store import Store\n",       # type-only the other way: no cycle
        "tracer/checker/__init__.py": "",
        "tracer/checker/core.py": "import torch\n\ndef f():\n    from hooks import numpy\n",
        "tracer/checker/late.py": "import importlib\nm = importlib.import_module('reports.excel')\n",
        "tracer/explain.py": "from .app import cli\n",
        "tracer/app/__init__.py": "",
        "tracer/app/cli.py": "import hooks.numpy\nimport reports\nfrom .. import checker\n",   # allowed
        "hooks/__init__.py": "",
        "hooks/numpy.py": "import numpy\nfrom tracer import Trace\n",                  # allowed
        "hooks/keras.py": "from reports import to_csv\n",
        "reports/__init__.py": "",
        "reports/excel.py": "from tensorflow import keras\nfrom hooks.numpy import x\nimport tracer.trace\n",
    })
    found = layer_violations(tmp_path)
    expected = [
        "tracer/checker/core.py:1: tracer imports the framework torch",
        "tracer/checker/core.py:4: tracer (outside tracer/app) imports hooks.numpy",
        "tracer/checker/late.py:2: tracer (outside tracer/app) imports reports.excel",
        "tracer/explain.py:1: the tracer library imports the application layer (tracer.app.cli)",
        "hooks/keras.py:1: hooks imports reports",
        "reports/excel.py:1: reports imports the framework tensorflow",
        "reports/excel.py:2: reports imports hooks.numpy",
        "import cycle between tracer.recorder and tracer.trace",
    ]
    assert sorted(found) == sorted(expected)


def test_relative_imports_resolve_to_absolute_names(tmp_path):
    _plant(tmp_path, {"tracer/__init__.py": "", "tracer/math/__init__.py": "",
                      "tracer/math/losses.py": "", "tracer/errors.py": "",
                      "tracer/math/metrics.py": "from .losses import y\nfrom ..errors import E\nfrom . import losses\n"})
    found = imports_of(tmp_path, tmp_path / "tracer/math/metrics.py")
    assert found == [(1, "tracer.math.losses"), (2, "tracer.errors"), (3, "tracer.math.losses")]
