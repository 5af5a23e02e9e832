"""Assertions the tests share: an exception of exactly one type, not a subclass of it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def raises_exactly(exc: type[BaseException], match: str | None = None) -> Iterator[Any]:
    """``pytest.raises`` that also refuses a subclass of ``exc``: a UsageError where a plain
    ValueError is the contract (or the reverse) changes the exit code a user sees."""
    with pytest.raises(exc, match=match) as info:
        yield info
    assert type(info.value) is exc, f"{type(info.value).__name__}, not exactly {exc.__name__}"
