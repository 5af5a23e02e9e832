"""QEMU end-to-end harness: boot a Debian kernel, crash it into a kdump capture kernel, and
bring back what both wrote. Entry points: Scenario, run, run_scenario."""

from .qemu import StageError, StageTime
from .scenario import Result, Scenario, run, run_scenario

__all__ = ["Result", "Scenario", "StageError", "StageTime", "run", "run_scenario"]
