"""Shared test setup.

Layout: tests mirror the code (``tests/tracer/``, ``tests/hooks/``, ``tests/reports/``,
``tests/app/``); whole scenarios run end to end in ``tests/scenarios/``; ``tests/scripts/``
holds training scripts run through ``steptrace run``. The helpers ``_trace_factories``,
``_torch_scenarios`` and ``_lo`` live in ``tests/`` itself, which is put on ``sys.path``
here so every test module imports them by name, wherever it sits. The test folders have
no ``__init__.py``: test module names must therefore be unique across folders.

In CI (``STEPTRACE_NO_SKIP=1`` or ``CI=true``) a skipped test is turned into a failure:
a framework test that silently skips would hide a broken install.
"""
import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

NO_SKIP = os.environ.get("STEPTRACE_NO_SKIP") == "1" or os.environ.get("CI") == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"
