"""Watch one training step's forward pass: the torch functions it calls, in order.

Why a ``TorchFunctionMode``: every operation a step runs - ``F.linear`` inside an
``nn.Linear``, ``x @ w``, ``F.cross_entropy``, ``torch.max(x, 0)`` - passes a mode's
``__torch_function__`` at the level the user called it (the functions torch calls
inside it do not: the mode is off while its handler runs). Recording
``(function, arguments, result, user's source line)`` there is what
:mod:`hooks.torch.build` turns into the step program.

What the mode may and may not do: it calls ``func`` first and returns its result
unchanged. It records only while grad mode is on (not ``no_grad``, not
``inference_mode``) and some tensor argument requires grad. It never reads
``grad_fn``, ``.data`` or values (reading ``grad_fn`` of a view made under
``no_grad`` whose base was changed in place raises - ``nn.init.orthogonal_`` did).
Its own failures are caught: one warning, recording stops, the user's call returns
what it returned untraced. It holds the latest :data:`MAX_RECORDS` records (keeping at
most :data:`MAX_HELD_BYTES` of results alive); a step that needs more is "too large to
check".

The mode is on the stack only while a step is being captured (:meth:`Capture.arm`
to :meth:`Capture.disarm`): in steady state no mode is active and operations cost
nothing extra. Arming puts the mode just above PyTorch's own ``DeviceContext`` (which
``torch.set_default_device`` keeps at the bottom of the stack) and below modes the
user entered, so their ``with`` blocks still exit their own mode.
"""
from __future__ import annotations

import os
import sys
import warnings
from collections import deque
from typing import Any, Callable, TYPE_CHECKING

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

__all__ = ["Capture", "Record", "MAX_RECORDS", "func_name"]

MAX_RECORDS = 10_000
"""Records one captured step may hold; a bigger step cannot be checked."""
MAX_HELD_BYTES = 256 * 1024**2
"""Bytes of results the records may keep alive (older records go first)."""
_SKIP = ("torch", "hooks", "tracer", "contextlib", "functools", "typing")
_MUTATORS = {"__setitem__", "__delitem__"}
_SIZE_FUNCS = {"size", "numel", "__len__", "shape", "dim", "nelement"}


class Record:
    """One torch function call of the captured forward pass."""

    __slots__ = ("func", "name", "args", "kwargs", "out", "where", "module", "nbytes", "derived")

    def __init__(self, func, name, args, kwargs, out, where, module, derived=False):
        self.func = func
        self.name = name            # normalised function name (see func_name)
        self.args = args
        self.kwargs = kwargs
        self.out = out
        self.where = where          # "file.py:31", the user's line
        self.module = module        # the nn.Module whose forward made the call, or None
        self.derived = derived      # an untracked call on the loader's batch (preprocessing)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        self.nbytes = sum(o.numel() * o.element_size() for o in outs if isinstance(o, torch.Tensor))

    def tensors(self) -> Iterator[torch.Tensor]:
        """The tensor arguments (one level of list/tuple included), in order."""
        for a in list(self.args) + list(self.kwargs.values()):
            if isinstance(a, torch.Tensor):
                yield a
            elif isinstance(a, (list, tuple)):
                for b in a:
                    if isinstance(b, torch.Tensor):
                        yield b

    def outs(self) -> list[torch.Tensor]:
        """The tensors the call returned."""
        if isinstance(self.out, torch.Tensor):
            return [self.out]
        if isinstance(self.out, (list, tuple)):
            return [o for o in self.out if isinstance(o, torch.Tensor)]
        return []

    def __repr__(self) -> str:
        return f"<Record {self.name} at {self.where}>"


def func_name(func: Any) -> str | None:
    """The name a torch function is known by in :mod:`hooks.torch.ops` (``"matmul"``,
    ``"__rsub__"``, ``"T"`` for the ``Tensor.T`` property, ``"cross_entropy"``)."""
    name = getattr(func, "__name__", None)
    if name == "__get__":                 # a property: Tensor.T, Tensor.mT, Tensor.data ...
        owner = getattr(func, "__self__", None)
        name = getattr(owner, "__name__", None)
        if name is None:                  # a Python property wrapping a descriptor (our .data patch)
            fget = getattr(owner, "fget", None)
            name = getattr(getattr(fget, "__self__", None), "__name__", None)
    return name


def _tracks(args, kwargs) -> bool:
    """Whether some tensor argument (one level of list/tuple included) requires grad."""
    for a in args:
        if isinstance(a, torch.Tensor):
            if a.requires_grad:
                return True
        elif isinstance(a, (list, tuple)):
            for b in a:
                if isinstance(b, torch.Tensor) and b.requires_grad:
                    return True
    if kwargs:
        for a in kwargs.values():
            if isinstance(a, torch.Tensor) and a.requires_grad:
                return True
    return False


def _where(frame) -> tuple[str | None, Any]:
    """The user's source line (``file.py:31``) and the innermost module whose ``forward`` runs."""
    module = None
    while frame is not None:
        code = frame.f_code
        if module is None and code.co_name == "forward":
            owner = frame.f_locals.get("self")
            if isinstance(owner, torch.nn.Module):
                module = owner
        mod = frame.f_globals.get("__name__", "") or ""
        if not any(mod == m or mod.startswith(m + ".") for m in _SKIP):
            return f"{os.path.basename(code.co_filename)}:{frame.f_lineno}", module
        frame = frame.f_back
    return None, module


class Capture(TorchFunctionMode):
    """The capture mode (see the module docstring). ``on_error(message)`` is told once
    when recording fails; the records taken so far are then dropped."""

    def __init__(self, on_error: Callable[[str], None] | None = None, ignored: Callable[[], bool] | None = None):
        super().__init__()
        self.records: deque = deque(maxlen=MAX_RECORDS)
        self._held = 0                             # bytes of the results the records keep alive
        self.overflow = False                      # older records were dropped to stay within the caps
        self.size_values: set[int] = set()         # ints read off tracked tensors' shapes
        self.slices: deque = deque(maxlen=256)     # (source, index, result) of untracked fancy indexing
        self.seeds: dict[int, torch.Tensor] = {}   # the loader batch's tensors and what was computed from them
        self.failed: str | None = None
        self.armed = False
        self._on_error = on_error
        self._ignored = ignored or (lambda: False)

    # ------------------------------------------------------------ the stack
    def arm(self) -> None:
        """Start capturing: put the mode on the stack (above a DeviceContext, below user modes)."""
        if self.armed or self.failed is not None:
            return
        self.clear()
        stack = [_pop() for _ in range(_depth())]       # top first
        stack.reverse()                                 # bottom first
        bottom = [m for m in stack if _is_device_context(m)]
        rest = [m for m in stack if not _is_device_context(m)]
        for m in bottom + [self] + rest:
            _push(m)
        self.armed = True

    def disarm(self) -> None:
        """Stop capturing: take the mode off the stack, wherever it is (the records stay)."""
        if not self.armed:
            return
        self.armed = False
        above = []
        for _ in range(_depth()):
            m = _pop()
            if m is self:
                break
            above.append(m)
        for m in reversed(above):
            _push(m)

    def clear(self) -> None:
        """Forget what was recorded."""
        self.records = deque(maxlen=MAX_RECORDS)
        self._held = 0
        self.overflow = False
        self.size_values = set()
        self.slices.clear()
        self.seeds = {}

    def seed(self, data: Any) -> None:
        """The DataLoader batch drawn while the step is watched: untracked calls on its
        tensors (``xb.view(-1, 784) / 255``, ``F.one_hot(yb, 3)``) are recorded as *derived*
        records, so that a model input computed from the batch can be traced back to it."""
        if isinstance(data, (list, tuple)):
            for t in data:
                if isinstance(t, torch.Tensor):
                    self.seeds[id(t)] = t

    def take(self) -> list[Record]:
        """The records of the step (the caller owns them now)."""
        records, self.records = list(self.records), deque(maxlen=MAX_RECORDS)
        self._held = 0
        return records

    # ---------------------------------------------------------------- watch
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if not self.armed or self.failed is not None:
            return func(*args, **(kwargs or {}))
        caught: list = []
        shown = warnings.showwarning
        warnings.showwarning = lambda *w, **kw: caught.append(w)   # not a filter change: registries stay valid
        try:
            out = func(*args, **(kwargs or {}))
        except BaseException:  # the user's call failed: restore warnings, re-raise unchanged
            warnings.showwarning = shown
            if caught:
                try:
                    reissue(caught, sys._getframe(1))
                except Exception:  # the call's own exception is what the user sees
                    pass
            raise
        warnings.showwarning = shown
        if caught:
            reissue(caught, sys._getframe(1))   # raises where the user's filters make warnings errors
        try:
            self._note(func, args, kwargs, out)
        except Exception as exc:  # recording must never change what the user's call does
            self._fail(f"{type(exc).__name__}: {exc}")
        return out

    def _note(self, func, args, kwargs, out) -> None:
        if self._ignored() or not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return
        if not _tracks(args, kwargs):
            if self.seeds and self._derived(func, args, kwargs, out):
                return
            self._untracked(func, args, out)
            return
        name = func_name(func)
        if out is None and name in _MUTATORS and args and isinstance(args[0], torch.Tensor):
            out = args[0]                              # x[...] = v changes x: later uses see the change
        if not isinstance(out, torch.Tensor):
            if isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out):
                pass                                   # max(x, dim) and friends: kept, refused later
            else:
                if name in _SIZE_FUNCS:
                    self._sizes(out)
                return
        self._keep(Record(func, name, tuple(args), dict(kwargs or {}), out, *_where(sys._getframe(2))))

    def _derived(self, func, args, kwargs, out) -> bool:
        """Record an untracked call that reads the loader's batch (or a tensor computed from
        it) and returns a new tensor; True when recorded. The builder uses these records only
        when a batch tensor cannot be found in the loader's batch as it is."""
        if not isinstance(out, torch.Tensor) or out.dim() == 0:
            return False
        seeds = self.seeds
        ins = [a for a in args if isinstance(a, torch.Tensor)]
        ins += [a for a in (kwargs or {}).values() if isinstance(a, torch.Tensor)]
        if any(a is out for a in ins) or not any(seeds.get(id(a)) is a for a in ins) or len(seeds) > 4096:
            return False
        name = func_name(func)
        if name == "__getitem__" and (not args or seeds.get(id(args[0])) is not args[0]):
            return False                               # X[idx] with a seeded index: a cut, not a derivation
        seeds[id(out)] = out
        where, module = _where(sys._getframe(3))
        self._keep(Record(func, name, tuple(args), dict(kwargs or {}), out, where, module, True))
        return True

    def _keep(self, rec: Record) -> None:
        if len(self.records) == MAX_RECORDS:
            self.overflow = True                       # the oldest record goes: the step may not need it
            self._held -= self.records[0].nbytes
        self.records.append(rec)
        self._held += rec.nbytes
        while self._held > MAX_HELD_BYTES and len(self.records) > 1:
            self.overflow = True
            self._held -= self.records.popleft().nbytes

    def _untracked(self, func, args, out) -> None:
        """``features[idx]`` on untracked tensors: which tensor a batch was sliced from. The cut
        (``X[idx]``, ``x_train[i:i + bs]``) seeds the derived records, as a loader's batch does."""
        if len(args) == 2 and isinstance(out, torch.Tensor) and isinstance(args[0], torch.Tensor) \
                and out.dim() >= 1 and func_name(func) == "__getitem__":
            if isinstance(args[1], (torch.Tensor, list, np.ndarray, range)):
                self.slices.append((args[0], args[1], out))
            elif not isinstance(args[1], slice) or out._base is None:
                return
            if len(self.seeds) < 4096:
                self.seeds[id(out)] = out

    def _sizes(self, out) -> None:
        if len(self.size_values) > 256:
            return
        if isinstance(out, int) and not isinstance(out, bool):
            self.size_values.add(int(out))
        elif isinstance(out, torch.Size):
            n = 1
            for s in out:
                self.size_values.add(int(s))
                n *= int(s)
            self.size_values.add(n)

    def _fail(self, message: str) -> None:
        self.failed = message
        self.records = deque(maxlen=MAX_RECORDS)
        if self._on_error is not None:
            try:
                self._on_error(message)
            except Exception:  # pragma: no cover - a reporting failure must not reach the user
                pass


def reissue(caught: list, frame: FrameType | None) -> None:
    """Issue the warnings a watched call raised as it would have untraced: one that points at
    the mode's handler (or PyTorch's dispatch) points at the frame that called the torch
    function instead, and each counts in its location's registry, so "once" stays once."""
    if frame is not None and frame.f_code.co_filename.endswith(_OVERRIDES):
        frame = frame.f_back.f_back if frame.f_back is not None else frame    # dispatch, then the function
    for message, category, filename, lineno, *_ in caught:
        module_globals = None
        if frame is not None and (filename == __file__ or filename.endswith(_OVERRIDES)):
            filename, lineno, module_globals = frame.f_code.co_filename, frame.f_lineno, frame.f_globals
        elif module_globals is None:
            module_globals = _globals_of(filename)
        registry = None if module_globals is None else module_globals.setdefault("__warningregistry__", {})
        warnings.warn_explicit(message, category, filename, lineno,
                               module=None if module_globals is None else module_globals.get("__name__"),
                               registry=registry, module_globals=module_globals)


_OVERRIDES = os.path.join("torch", "overrides.py")


def _globals_of(filename: str):
    for mod in list(sys.modules.values()):
        if getattr(mod, "__file__", None) == filename:
            return vars(mod)
    return None


def _depth() -> int:
    return torch._C._len_torch_function_stack()


def _pop():
    return torch._C._pop_torch_function_stack()


def _push(mode) -> None:
    torch._C._push_on_torch_function_stack(mode)


def _is_device_context(mode) -> bool:
    return type(mode).__name__ == "DeviceContext"
