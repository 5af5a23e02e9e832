"""Shared fixtures for the unit tests; the builders they use live in tests/helpers/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import elfwriter, fakebar, fakesysfs, kdumpwriter, recordgen
from helpers.machine import Machine, make_machine, shared_runtime_cache, use_machine

# The builders' old flat names (``import fakesysfs``), kept importable for tests written
# against them on branches not yet merged. New code imports them from helpers.
for _module in (elfwriter, fakebar, fakesysfs, kdumpwriter, recordgen):
    sys.modules.setdefault(_module.__name__.rpartition(".")[2], _module)


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            tmp_path_factory: pytest.TempPathFactory) -> Machine:
    """A fake machine (helpers/machine.py) with only its fake kexec on PATH."""
    m = make_machine(tmp_path)
    use_machine(m, monkeypatch, shared_runtime_cache(tmp_path_factory))
    return m
