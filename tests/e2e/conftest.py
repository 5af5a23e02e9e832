"""Fixtures for the QEMU end-to-end tests: host readiness and a timing report."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_harness import (
    Result,
    host,
)

_RESULTS = pytest.StashKey[list[Result]]()

# The cache holds unpacked Debian trees, CPython's own test suite among them.
collect_ignore = ["cache", "e2e_harness", "scenarios"]


@pytest.fixture(scope="session")
def qemu_ready() -> None:
    """Skip, loudly, only when QEMU cannot run here; fail when other host tools are missing."""
    missing, log = host.ensure_tools()
    reason = host.qemu_unusable()
    if reason:
        pytest.skip(
            f"E2E TESTS SKIPPED: QEMU CANNOT RUN ON THIS HOST: {reason}; "
            f"`bash .ci/e2e-deps` did not fix it.\n{log}"
        )
    if missing:
        pytest.fail(
            f"host tools missing for the e2e tests: {', '.join(missing)}; "
            f"run `bash .ci/e2e-deps` as root.\n{log}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def e2e_report(request: pytest.FixtureRequest) -> Callable[[Result], None]:
    """Record a Result so its stage timings are printed in the terminal summary."""
    store = request.config.stash.setdefault(_RESULTS, [])

    def report(result: Result) -> None:
        store.append(result)
        print(f"\n{result.table()}")

    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    terminalreporter.section("handoff e2e: stage wall times (QEMU TCG)")
    for result in results:
        terminalreporter.write_line(result.table())
        terminalreporter.write_line(
            f"  timings JSON: {result.out_dir.parent.parent.parent}/timings-{result.scenario}.json"
        )
