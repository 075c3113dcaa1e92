""":class:`AutoTrace`: trace whatever a running script trains: Keras, PyTorch, a NumPy loop.

Why one object: ``steptrace run`` needs a single switch that turns tracing on for the
frameworks the script imports (:mod:`hooks.autotrace.imports`), numbers the runs in the
order they start, records only the selected ones, and hands each finished run over at
once (so a script that crashes later still leaves it). The Keras side lives in
:mod:`hooks.autotrace.keras_fit`, the PyTorch side in :mod:`hooks.autotrace.torch_session`,
the NumPy loop named on the command line in :mod:`hooks.autotrace.numpy_session`;
every hook is reached through the :class:`tracer.source.TraceSource` protocol.
:meth:`AutoTrace.uninstall` undoes everything, so the process is left as it was found.
"""
from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import Any, Callable

from tracer.source import TraceSource

from ..patch import Patch
from . import keras_fit, torch_session
from .imports import PostImportFinder
from .numpy_loop import LoopSite
from .numpy_session import NumpySession
from .numpy_steps import LoopSteps, NumpyOptions
from .runs import FinishedRun, describe_error, warn

__all__ = ["AutoTrace"]

KERAS_MODEL_MODULE = "keras.src.models.model"
TORCH_MODULE = "torch"


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
    numpy:
        ``(site, options)``: the NumPy loop to trace (found in the script's source by
        :func:`hooks.autotrace.numpy_loop.find_loop`) and the names of its variables.
    store:
        A function returning a new :class:`tracer.store.StreamStore` for each run, so
        the steps of every run stream to disk as they complete (None: in memory).
    """

    def __init__(self, *, every: int = 1, capture: str = "full", max_bytes: int | None = None,
                 select: Callable[[int], bool] | None = None, frameworks: tuple[str, ...] = ("keras", "torch"),
                 on_finish: Callable[[FinishedRun], None] | None = None,
                 numpy: tuple[LoopSite, NumpyOptions] | None = None,
                 store: Callable[[], Any] | None = None) -> None:
        self.options = {"every": every, "capture": capture, "max_bytes": max_bytes, "store": store}
        self.select = select or (lambda number: True)
        self.frameworks = set(frameworks)
        self.on_finish = on_finish
        self.runs: list[FinishedRun] = []
        self.imported: list[str] = []          # frameworks the script imported
        self._next_number = 0
        self._finder: PostImportFinder | None = None
        self._patch = Patch()                  # the fit patch and the torch step-aside, removed at the end
        self._fit_depth = threading.local()
        self._torch = None                     # the open trace_torch session
        self._live: list[tuple[int, str, TraceSource]] = []   # (number, framework, source) for progress
        self._installed = False
        self._numpy = None                     # the NumPy loop session
        self._numpy_spec = numpy
        self.numpy_notes: list[str] = []       # what NumPy runs that recorded no step had to say

    # ------------------------------------------------------------ lifecycle
    def install(self) -> AutoTrace:
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
            self._finder = PostImportFinder(watch)
            sys.meta_path.insert(0, self._finder)
        if self._numpy_spec is not None:
            site, options = self._numpy_spec
            options.recorder = dict(self.options)
            self._numpy = NumpySession(site, options, self._numpy_run, self._numpy_started).install()
        return self

    @property
    def numpy_arrivals(self) -> int | None:
        """How often the NumPy loop's header was reached (None when no NumPy loop is traced)."""
        return None if self._numpy is None else self._numpy.arrivals

    def uninstall(self, error: BaseException | None = None) -> list[FinishedRun]:
        """Undo every patch, close the torch session, and return all finished runs.

        ``error`` is the exception the script ended with, if any (recorded on the
        runs that were still open).
        """
        if not self._installed:
            return self.runs
        self._installed = False
        if self._numpy is not None:
            self._numpy.uninstall(error)
        if self._finder is not None:
            try:
                sys.meta_path.remove(self._finder)
            except ValueError:
                pass
            self._finder = None
        self._close_torch(error)
        # never mask the script's own outcome: a failed undo is reported, the others still run
        self._patch.remove(on_error=lambda exc: warn(f"could not undo a patch: {exc}"))
        self._patch = Patch()
        return self.runs

    def __enter__(self) -> AutoTrace:
        return self.install()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
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
        rec = source.recorder
        return {"run": number, "framework": framework, "steps": rec.steps_seen, "epoch": rec.current_epoch}

    # ------------------------------------------------------------- numpy
    def _numpy_started(self, source: TraceSource) -> None:
        self._live.append((0, "numpy", source))

    def _numpy_run(self, steps: LoopSteps, error: str | None) -> None:
        tracer = steps.tracer
        self._live = [item for item in self._live if item[2] is not tracer]
        if tracer is None or steps.steps == 0:
            self.numpy_notes += [n for n in steps.notes if n not in self.numpy_notes]
            return
        number = self._new_number()
        if not self.select(number):
            return
        try:
            trace = tracer.trace
        except Exception as exc:  # tracing broke: say so, keep the script's outcome
            warn(f"run {number} (numpy loop): the trace could not be built: {exc}")
            return
        site = self._numpy.site
        label = f"numpy loop at line {site.line} training {', '.join(steps.options.params)}"
        self._finish(FinishedRun(number, "numpy", label, trace, error, list(steps.notes)))

    # ------------------------------------------------------------- keras
    def _on_keras(self, module: ModuleType) -> None:
        model_cls = getattr(module, "Model", None)
        if model_cls is None:
            return
        if "keras" not in self.imported:
            self.imported.append("keras")
        self._patch.add(keras_fit.patch_fit(model_cls, self._traced_fit))

    def _traced_fit(self, original_fit, model, args, kwargs):
        depth = getattr(self._fit_depth, "n", 0)
        if depth or not self._installed:          # super().fit from a subclass's fit: one run
            return original_fit(model, *args, **kwargs)
        number = self._new_number()
        if not self.select(number):
            return original_fit(model, *args, **kwargs)
        cb = keras_fit.users_trace_callback(args, kwargs)
        if cb is None:
            try:
                cb = keras_fit.guarded_callback_class()(**self.options)
            except Exception as exc:  # the boundary with the user's fit: it runs untraced
                warn(f"run {number} (keras fit) is not traced: {exc}")
                return original_fit(model, *args, **kwargs)
            args, kwargs = keras_fit.add_callback(args, kwargs, cb)
        # else: the script passes its own TraceCallback; two would fight over the
        # train function, so that one is the run's trace
        label = f"keras {getattr(model, 'name', 'model')}.fit"
        self._live.append((number, "keras", cb))
        self._fit_depth.n = depth + 1
        error = None
        try:
            return original_fit(model, *args, **kwargs)
        except BaseException as exc:  # noted on the run, then re-raised unchanged
            error = describe_error(exc)
            raise
        finally:
            self._fit_depth.n = depth
            self._live = [item for item in self._live if item[2] is not cb]
            self._finish_fit(cb, number, label, error)

    def _finish_fit(self, cb, number: int, label: str, error: str | None) -> None:
        try:
            trace = cb.trace
        except Exception as exc:  # tracing broke: say so, keep the script's outcome
            warn(f"run {number} ({label}): the trace could not be built: {exc}")
            trace = None
        failure = getattr(cb, "failure", None)
        notes = [failure] if failure else []
        if trace is not None:
            self._finish(FinishedRun(number, "keras", label, trace, error, notes))

    # ------------------------------------------------------------- torch
    def _on_torch(self, module: ModuleType) -> None:
        if "torch" not in self.imported:
            self.imported.append("torch")
        session = torch_session.open_session(self.options)
        if session is None:
            return
        self._torch = session
        self._live.append((0, "torch", session))
        patch = torch_session.step_aside(type(session), lambda: self._torch, lambda: self._close_torch(None))
        if patch is not None:
            self._patch.add(patch)

    def _close_torch(self, error: BaseException | None) -> None:
        session, self._torch = self._torch, None
        if session is None:
            return
        self._live = [item for item in self._live if item[2] is not session]
        for label, trace in torch_session.close_session(session, error):
            if trace.n_steps == 0:
                continue
            number = self._new_number()
            if not self.select(number):
                continue
            err = None if error is None else describe_error(error)
            self._finish(FinishedRun(number, "torch", label, trace, err))
