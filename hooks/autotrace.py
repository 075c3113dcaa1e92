"""Switch tracing on inside a script that knows nothing about steptrace.

Why: people debug the script they have, often pasted from a tutorial, and will not
edit it to try a tool. ``steptrace run script.py`` (:mod:`tracer.app.run`) therefore
traces whatever the script trains, and this module is the framework side of it.

How, without importing a framework the script does not use:

- :class:`_PostImportFinder` sits on ``sys.meta_path`` and notices when a watched
  module *finishes* loading (the script's own ``import tensorflow`` or
  ``import torch``). Modules already imported are handled at once.
- Keras: when ``keras.src.models.model`` is loaded, ``Model.fit`` is replaced (on
  the class, so every Sequential/functional/subclassed model inherits it) by a
  wrapper that adds a :class:`hooks.keras.TraceCallback` to each call. Each call is
  one run. The callback is guarded: if tracing fails, the failure is reported and
  the user's ``fit`` goes on untraced. A fit that already has the script's own
  ``TraceCallback`` keeps it (two would fight over the train function), and its
  trace is the run's.
- PyTorch: when ``torch`` is loaded, one :func:`hooks.torch.trace_torch` session is
  entered and kept open until the script ends; it starts a new trace whenever a loop
  trains other tensors, and each becomes a run when the script ends. Should the
  script open its own ``trace_torch`` block, ours closes first (only one may be active).

:meth:`AutoTrace.uninstall` undoes everything (the finder, the ``fit`` patch, the
torch session), so the process is left as it was found. Nothing here runs per
training step except what the framework helpers themselves record.
"""
from __future__ import annotations

import importlib.abc
import sys
import threading
from dataclasses import dataclass, field

from .patch import Patch, set_attr

__all__ = ["AutoTrace", "FinishedRun", "describe_error"]

KERAS_MODEL_MODULE = "keras.src.models.model"
TORCH_MODULE = "torch"


@dataclass
class FinishedRun:
    """One training run the script made: its number, framework, a label and the trace.

    ``error`` is set when the run ended with an exception (the trace then holds the
    steps completed before it); ``notes`` holds what went wrong with tracing itself.
    """

    number: int
    framework: str
    label: str
    trace: object
    error: str | None = None
    notes: list = field(default_factory=list)


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
        except Exception as exc:  # never turn the script's import into a failure
            _warn(f"tracing for {module.__name__} could not be switched on: {type(exc).__name__}: {exc}")


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` entry that calls ``callbacks[name](module)`` after ``name`` loads.

    It never finds anything itself: for a watched name it asks the finders after it
    and wraps the loader they return; every other import is declined at once.
    """

    def __init__(self, callbacks: dict):
        self.callbacks = dict(callbacks)
        self._busy = threading.local()

    def find_spec(self, fullname, path, target=None):
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


def describe_error(exc: BaseException) -> str:
    """How a run ended, in a few words: ``ValueError: ...`` or ``sys.exit(3)``."""
    if isinstance(exc, SystemExit):
        return f"sys.exit({exc.code!r})" if exc.code is not None else "sys.exit()"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _warn(message: str) -> None:
    print(f"steptrace: {message}", file=sys.stderr, flush=True)


class AutoTrace:
    """Traces every Keras ``fit`` call and the PyTorch training of the running process.

    Parameters
    ----------
    every, capture, max_bytes:
        Passed to each framework helper (and so to :class:`tracer.Recorder`).
    select:
        ``select(run_number) -> bool``: which runs to record (numbers from 1, in the
        order the runs start). Keras calls that are not selected run untouched.
    frameworks:
        The frameworks to trace, a subset of ``{"keras", "torch"}``.
    on_finish:
        Called with each :class:`FinishedRun` as soon as the run ends (so it can be
        saved at once: a script that crashes later still leaves it on disk).
    """

    def __init__(self, *, every: int = 1, capture: str = "full", max_bytes: int | None = None,
                 select=None, frameworks=("keras", "torch"), on_finish=None):
        self.options = {"every": every, "capture": capture, "max_bytes": max_bytes}
        self.select = select or (lambda number: True)
        self.frameworks = set(frameworks)
        self.on_finish = on_finish
        self.runs: list[FinishedRun] = []
        self.imported: list[str] = []          # frameworks the script imported
        self._next_number = 0
        self._finder: _PostImportFinder | None = None
        self._patch = Patch()                  # the fit patch and the torch step-aside, removed at the end
        self._fit_depth = threading.local()
        self._torch = None                     # the open trace_torch session
        self._live = []                        # (number, framework, recorder-ish) for progress
        self._installed = False

    # ------------------------------------------------------------ lifecycle
    def install(self) -> "AutoTrace":
        """Start watching imports (frameworks already imported are hooked at once)."""
        if self._installed:
            return self
        self._installed = True
        watch = {}
        if "keras" in self.frameworks:
            if KERAS_MODEL_MODULE in sys.modules:
                self._on_keras(sys.modules[KERAS_MODEL_MODULE])
            else:
                watch[KERAS_MODEL_MODULE] = self._on_keras
        if "torch" in self.frameworks:
            if TORCH_MODULE in sys.modules:
                self._on_torch(sys.modules[TORCH_MODULE])
            else:
                watch[TORCH_MODULE] = self._on_torch
        if watch:
            self._finder = _PostImportFinder(watch)
            sys.meta_path.insert(0, self._finder)
        return self

    def uninstall(self, error: BaseException | None = None) -> list[FinishedRun]:
        """Undo every patch, close the torch session, and return all finished runs.

        ``error`` is the exception the script ended with, if any (recorded on the
        runs that were still open).
        """
        if not self._installed:
            return self.runs
        self._installed = False
        if self._finder is not None:
            try:
                sys.meta_path.remove(self._finder)
            except ValueError:
                pass
            self._finder = None
        self._close_torch(error)
        # never mask the script's own outcome: a failed undo is reported, the others still run
        self._patch.remove(on_error=lambda exc: _warn(f"could not undo a patch: {exc}"))
        self._patch = Patch()
        return self.runs

    def __enter__(self):
        return self.install()

    def __exit__(self, exc_type, exc, tb):
        self.uninstall(exc)
        return False

    # -------------------------------------------------------------- runs
    def _new_number(self) -> int:
        self._next_number += 1
        return self._next_number

    def _finish(self, run: FinishedRun) -> None:
        self.runs.append(run)
        if self.on_finish is not None:
            self.on_finish(run)

    def progress(self) -> dict | None:
        """What is being recorded right now: run number, framework, steps, epoch (or None).

        Read from another thread by the progress line; it only reads counters.
        """
        if not self._live:
            return None
        number, framework, source = self._live[-1]
        rec = _recorder_of(source)
        if rec is None:
            return {"run": number, "framework": framework, "steps": None, "epoch": None}
        return {"run": number, "framework": framework, "steps": getattr(rec, "steps_seen", None),
                "epoch": _current_epoch(source, rec)}

    # ------------------------------------------------------------- keras
    def _on_keras(self, module) -> None:
        model_cls = getattr(module, "Model", None)
        if model_cls is None:
            return
        if "keras" not in self.imported:
            self.imported.append("keras")
        original_fit = model_cls.fit
        auto = self

        def fit(self, *args, **kwargs):
            return auto._traced_fit(original_fit, self, args, kwargs)

        fit.__doc__ = getattr(original_fit, "__doc__", None)
        fit.__wrapped__ = original_fit
        fit.__name__ = "fit"
        fit.__qualname__ = getattr(original_fit, "__qualname__", "Model.fit")
        self._patch.add(set_attr(model_cls, "fit", fit, only_if_current=True))

    def _traced_fit(self, original_fit, model, args, kwargs):
        depth = getattr(self._fit_depth, "n", 0)
        if depth or not self._installed:          # super().fit from a subclass's fit: one run
            return original_fit(model, *args, **kwargs)
        number = self._new_number()
        if not self.select(number):
            return original_fit(model, *args, **kwargs)
        cb = _users_trace_callback(args, kwargs)
        if cb is None:
            try:
                cb = _guarded_callback_class()(**self.options)
            except Exception as exc:
                _warn(f"run {number} (keras fit) is not traced: {exc}")
                return original_fit(model, *args, **kwargs)
            args, kwargs = _add_callback(args, kwargs, cb)
        # else: the script passes its own TraceCallback; two would fight over the
        # train function, so that one is the run's trace
        label = f"keras {getattr(model, 'name', 'model')}.fit"
        self._live.append((number, "keras", cb))
        self._fit_depth.n = depth + 1
        error = None
        try:
            return original_fit(model, *args, **kwargs)
        except BaseException as exc:
            error = describe_error(exc)
            raise
        finally:
            self._fit_depth.n = depth
            self._live = [item for item in self._live if item[2] is not cb]
            try:
                trace = cb.trace
            except Exception as exc:  # tracing broke: say so, keep the script's outcome
                _warn(f"run {number} ({label}): the trace could not be built: {exc}")
                trace = None
            failure = getattr(cb, "failure", None)
            notes = [failure] if failure else []
            if trace is not None:
                self._finish(FinishedRun(number, "keras", label, trace, error, notes))

    # ------------------------------------------------------------- torch
    def _on_torch(self, module) -> None:
        if "torch" not in self.imported:
            self.imported.append("torch")
        try:
            from hooks.torch import trace_torch
        except Exception as exc:
            _warn(f"PyTorch training is not traced: hooks.torch failed to import ({exc})")
            return
        try:
            session = trace_torch(**self.options)
            session.__enter__()
        except Exception as exc:
            _warn(f"PyTorch training is not traced: {exc}")
            return
        self._torch = session
        self._live.append((0, "torch", session))
        self._step_aside_for_users_torch_tracer(type(session))

    def _step_aside_for_users_torch_tracer(self, tracer_cls) -> None:
        """A script that opens its own ``trace_torch`` block would find ours active (only
        one may be): close ours at that moment (keeping what it recorded as a run) and
        let the script's block trace the rest."""
        original_enter = tracer_cls.__dict__.get("__enter__")
        if original_enter is None:
            return
        auto = self

        def __enter__(tracer):
            if auto._torch is not None and tracer is not auto._torch:
                auto._close_torch(None)
            return original_enter(tracer)

        __enter__.__doc__ = original_enter.__doc__
        self._patch.add(set_attr(tracer_cls, "__enter__", __enter__, only_if_current=True))

    def _close_torch(self, error) -> None:
        session, self._torch = self._torch, None
        if session is None:
            return
        self._live = [item for item in self._live if item[2] is not session]
        try:
            if error is None:
                session.__exit__(None, None, None)
            else:
                session.__exit__(type(error), error, error.__traceback__)
        except Exception as exc:
            _warn(f"closing the PyTorch trace failed: {exc}")
        traces = _torch_traces(session)
        for label, trace in traces:
            if _n_steps(trace) == 0:
                continue
            number = self._new_number()
            if not self.select(number):
                continue
            err = None if error is None else describe_error(error)
            self._finish(FinishedRun(number, "torch", label, trace, err))


# ----------------------------------------------------------------- helpers
def _add_callback(args: tuple, kwargs: dict, cb):
    """Append ``cb`` to fit's ``callbacks`` (6th positional or keyword) without
    mutating the user's list."""
    position = 5   # fit(x, y, batch_size, epochs, verbose, callbacks, ...)
    if len(args) > position:
        args = list(args)
        args[position] = _with(args[position], cb)
        return tuple(args), kwargs
    kwargs = dict(kwargs)
    kwargs["callbacks"] = _with(kwargs.get("callbacks"), cb)
    return args, kwargs


def _with(callbacks, cb):
    if callbacks is None:
        return [cb]
    if isinstance(callbacks, (list, tuple)):
        return list(callbacks) + [cb]
    if hasattr(callbacks, "append"):         # a keras CallbackList
        callbacks.append(cb)
        return callbacks
    return [callbacks, cb]


def _users_trace_callback(args: tuple, kwargs: dict):
    """The script's own ``hooks.keras.TraceCallback`` in this fit call, if any."""
    callbacks = args[5] if len(args) > 5 else kwargs.get("callbacks")
    if not callbacks or not isinstance(callbacks, (list, tuple)):
        return None
    try:
        from hooks.keras import TraceCallback
    except Exception:
        return None
    for cb in callbacks:
        if isinstance(cb, TraceCallback):
            return cb
    return None


_GUARDED = None


def _guarded_callback_class():
    """``TraceCallback`` that never breaks the user's ``fit``: on any error in a hook
    it stops tracing (restoring Keras's own train function), remembers why and lets
    training go on."""
    global _GUARDED
    if _GUARDED is not None:
        return _GUARDED
    from hooks.keras import TraceCallback

    class GuardedTraceCallback(TraceCallback):
        failure = None

        def _guard(self, name, *args):
            if self.failure is not None:
                return None
            try:
                return getattr(super(GuardedTraceCallback, self), name)(*args)
            except Exception as exc:
                self.failure = f"tracing stopped in {name}: {type(exc).__name__}: {exc}"
                _warn(self.failure)
                try:
                    self._restore()
                except Exception:
                    pass
                return None

        def on_train_begin(self, logs=None):
            return self._guard("on_train_begin", logs)

        def on_epoch_begin(self, epoch, logs=None):
            return self._guard("on_epoch_begin", epoch, logs)

        def on_train_batch_end(self, batch, logs=None):
            return self._guard("on_train_batch_end", batch, logs)

        def on_epoch_end(self, epoch, logs=None):
            return self._guard("on_epoch_end", epoch, logs)

        def on_train_end(self, logs=None):
            try:
                return super().on_train_end(logs)
            except Exception as exc:
                _warn(f"tracing: on_train_end failed: {exc}")
                return None

    _GUARDED = GuardedTraceCallback
    return _GUARDED


def _recorder_of(source):
    """The :class:`tracer.Recorder` behind a framework helper (for the progress line)."""
    for attr in ("recorder", "_recorder", "_rec"):
        rec = getattr(source, attr, None)
        if rec is not None and hasattr(rec, "steps_seen"):
            return rec
    return None


def _current_epoch(source, rec):
    """The epoch of the last recorded step (None before the first one)."""
    return getattr(rec, "current_epoch", None)


def _n_steps(trace) -> int:
    try:
        return int(trace.n_steps)
    except Exception:
        return 0


def _torch_traces(session) -> list:
    """The traces a finished torch session made, one per training loop: ``[(label, trace)]``.

    ``trace_torch`` starts a new trace when a loop trains other tensors (``traces``);
    a session without that list gives its single ``trace``.
    """
    for attr in ("traces", "runs"):
        value = getattr(session, attr, None)
        if value is None:
            continue
        try:
            items = list(value() if callable(value) else value)
        except Exception as exc:
            _warn(f"reading the PyTorch runs failed: {exc}")
            return []
        out = []
        for item in items:
            trace = getattr(item, "trace", item)
            out.append((getattr(item, "label", None) or _torch_label(trace), trace))
        return out
    try:
        trace = session.trace
        return [(_torch_label(trace), trace)]
    except Exception as exc:
        _warn(f"reading the PyTorch trace failed: {exc}")
        return []


def _torch_label(trace) -> str:
    """``torch loop training w, b (optimizer)``: what a user recognises in the summary."""
    try:
        names = list(trace.param_names)
        mode = (trace.meta.get("torch") or {}).get("mode")
    except Exception:
        return "torch training"
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    how = {"optimizer": "torch.optim step", "manual": "hand-written update"}.get(mode)
    return "torch loop training " + (shown or "?") + (f" ({how})" if how else "")
