"""Framework hooks: Keras, PyTorch and NumPy training turned into :class:`tracer.Recorder` calls.

Why a package of its own: every framework import of steptrace lives here, so ``tracer``
and ``reports`` load anywhere. Importing ``hooks`` loads no framework; each hook does,
when it is imported itself:

- :mod:`hooks.numpy` - ``NumpyTracer`` for hand-written NumPy loops;
- :mod:`hooks.keras` - ``TraceCallback`` for ``model.fit``;
- :mod:`hooks.torch` - ``trace_torch`` for PyTorch loops, with or without an optimizer;
- :mod:`hooks.autotrace` - tracing switched on inside an unmodified script (``steptrace run``).
- :mod:`hooks._busy` - the guard that keeps one hook off another framework's training
  (Keras on its torch backend is not a torch loop).

Every hook is a :class:`tracer.source.TraceSource`, undoes its patches with
:class:`hooks.patch.Patch`, and finds batch rows by content with :mod:`hooks.rows` where
the framework does not say which they are.
"""
