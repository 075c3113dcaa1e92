"""The import watcher: call back when a module *finishes* loading, without importing it.

Why: tracing must switch on when the script imports Keras or PyTorch, and only then -
importing a framework the script does not use would cost seconds and change what the
script sees. :class:`PostImportFinder` sits on ``sys.meta_path``, declines every import
at once except the watched names, and wraps their loader so the callback runs right
after the module's own code.
"""
from __future__ import annotations

import importlib.abc
import sys
import threading
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, Callable

from .runs import warn

__all__ = ["PostImportFinder"]


class _ImmediateLoader(importlib.abc.Loader):
    """Wraps a module's real loader for one load, then calls back once it has run."""

    def __init__(self, loader, callback):
        self._loader = loader
        self._callback = callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # put the real loader back first: during and after execution the module
        # (and anything inspecting its __spec__/__loader__) sees only the original
        spec = module.__spec__
        if spec is not None:
            spec.loader = self._loader
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        try:
            self._callback(module)
        except Exception as exc:  # the boundary with the script's import: never turn it into a failure
            warn(f"tracing for {module.__name__} could not be switched on: {type(exc).__name__}: {exc}")


class PostImportFinder(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` entry that calls ``callbacks[name](module)`` after ``name`` loads.

    It never finds anything itself: for a watched name it asks the finders after it
    and wraps the loader they return; every other import is declined at once.
    """

    def __init__(self, callbacks: dict[str, Callable[[ModuleType], None]]) -> None:
        self.callbacks = dict(callbacks)
        self._busy = threading.local()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> ModuleSpec | None:
        """The real spec of a watched module, its loader wrapped; None for anything else."""
        callback = self.callbacks.get(fullname)
        if callback is None or getattr(self._busy, "on", False):
            return None
        self._busy.on = True
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._busy.on = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        del self.callbacks[fullname]          # once
        spec.loader = _ImmediateLoader(spec.loader, callback)
        return spec
