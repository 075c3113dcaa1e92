"""Shared test setup.

In CI (``STEPTRACE_NO_SKIP=1`` or ``CI=true``) a skipped test is turned into a failure:
a framework test that silently skips would hide a broken install.
"""
import os

import pytest

NO_SKIP = os.environ.get("STEPTRACE_NO_SKIP") == "1" or os.environ.get("CI") == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"
