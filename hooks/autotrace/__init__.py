"""Switch tracing on inside a script that knows nothing about steptrace.

Why: people debug the script they have, often pasted from a tutorial, and will not
edit it to try a tool. ``steptrace run script.py`` (:mod:`tracer.app.run`) therefore
traces whatever the script trains, and this package is the framework side of it.

How, without importing a framework the script does not use:

- :mod:`hooks.autotrace.imports`: a ``sys.meta_path`` finder notices when a watched
  module *finishes* loading (the script's own ``import tensorflow`` or
  ``import torch``). Modules already imported are handled at once.
- :mod:`hooks.autotrace.keras_fit`: when ``keras.src.models.model`` is loaded,
  ``Model.fit`` is replaced (on the class) by a wrapper that adds a guarded
  :class:`hooks.keras.TraceCallback` to each call. Each call is one run.
- :mod:`hooks.autotrace.torch_session`: when ``torch`` is loaded, one
  :func:`hooks.torch.trace_torch` session is entered and kept open until the script
  ends; each training loop it traced becomes a run then.
- :mod:`hooks.autotrace.numpy_session`: with ``--numpy-params``, the NumPy loop that
  updates those variables (found in the source by :mod:`hooks.autotrace.numpy_loop`) is
  followed by a ``sys.settrace`` function on that loop's frame only; each arrival at the
  loop's header is a step boundary (:mod:`hooks.autotrace.numpy_steps`).
- :mod:`hooks.autotrace.auto`: :class:`AutoTrace` ties them together, numbers the runs
  and hands each finished one over (:mod:`hooks.autotrace.runs`).

:meth:`AutoTrace.uninstall` undoes everything (the finder, the ``fit`` patch, the
torch session, the trace function), so the process is left as it was found. Nothing
here runs per training step except what the framework helpers themselves record (and,
for a NumPy loop, one call per line of the loop's own frame).
"""
from .auto import AutoTrace
from .runs import FinishedRun, describe_error

__all__ = ["AutoTrace", "FinishedRun", "describe_error"]
