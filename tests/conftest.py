"""Suite-wide reporting: `make test` ends with one line naming every suite it skipped and why,
and under CI (CI=true, as .ci/run sets it) a skipped sandbox or adversarial suite is a failure,
so a machine that cannot sandbox never goes green."""
from __future__ import annotations

import os
from collections import Counter

import pytest

# `course check --only` leaves a kept-warm helper behind (minutes, a kernel): not in the
# suite, except where tests/test_check_helper.py asks for it in a folder of its own
os.environ.setdefault("COURSE_CHECK_COLD", "1")

# Skips CI may not take: the suites that prove the sandbox holds.
REQUIRED_MODULES = ("test_adversarial.py", "test_boundary.py", "test_hostile_class.py",
                    "test_reaping.py")
REQUIRED_REASON = "bubblewrap"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_reason(report) -> str:
    """The reason pytest recorded for a skip, without its "Skipped: " prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ").strip()


def required_in_ci(nodeid: str, reason: str) -> bool:
    module = os.path.basename(nodeid.split("::")[0])
    return module in REQUIRED_MODULES or REQUIRED_REASON in reason.lower()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, a required suite's skip becomes a failure that says why it was skipped."""
    report = yield
    if (in_ci() and report.skipped and not hasattr(report, "wasxfail")
            and required_in_ci(report.nodeid, skip_reason(report))):
        report.outcome = "failed"
        report.longrepr = (f"CI requires this suite, but it was skipped: {skip_reason(report)} "
                           "(.ci/system-packages installs what it needs)")
    return report


def skipped_suites(reports) -> str:
    """'tests/test_hub.py: 3 tests (needs root)' per module and reason, or 'none'."""
    counts = Counter((r.nodeid.split("::")[0], skip_reason(r)) for r in reports
                     if not hasattr(r, "wasxfail"))
    if not counts:
        return "none"
    return "; ".join(f"{module}: {n} test{'s' * (n > 1)} ({reason})"
                     for (module, reason), n in sorted(counts.items()))


def pytest_sessionfinish(session):
    session.config._course_reporter = session.config.pluginmanager.get_plugin("terminalreporter")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """The last line of the run (after pytest's own totals): what was skipped, and why."""
    reporter = getattr(config, "_course_reporter", None)
    if reporter is None or hasattr(config, "workerinput"):
        return
    skipped = reporter.stats.get("skipped", [])
    reporter.write_line(f"skipped suites: {skipped_suites(skipped)}")
