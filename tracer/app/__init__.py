"""The application layer: the ``steptrace`` command line, ``steptrace run`` and the demo.

Why a layer of its own: the library below it (``tracer``: Trace, Recorder, checker,
math) must load anywhere without a framework or a report writer, so a trace saved on
a training machine can be checked on any other. The programs people start from a shell
need all of it at once - hooks to record, reports to write - so they live here, and
``tracer.app`` is the only part of ``tracer`` that may import ``hooks`` or ``reports``
(``tests/tracer/test_layers.py`` enforces it).

- :mod:`tracer.app.cli` - ``steptrace demo/check/export/explain/report`` (and dispatch to run).
- :mod:`tracer.app.run` - ``steptrace run SCRIPT``: trace a script without editing it.
- :mod:`tracer.app.examples` - the built-in scenario S0, for the demo and the tests.
- :mod:`tracer.app.exit_codes` - the exit codes, defined once.
"""
