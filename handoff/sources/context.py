"""The state one scan shares across nested containers: its decompression budget and depth."""

from __future__ import annotations

from handoff._slots import Slots
from handoff.budget import Budget
from handoff.errors import BadContainer

MAX_DECOMPRESSED = 1 << 30  # total decompressed output across one scan


class MissingTool(BadContainer):
    """A helper program (zstd) is needed to look inside part of the input."""


def find_zstd() -> str | None:
    import shutil

    return shutil.which("zstd")


class Context(Slots):
    """State shared by one scan: the decompression budget, nesting depth, and the work
    budget of the whole input (:mod:`handoff.budget`, None: unbounded)."""

    __slots__ = ("_zstd", "budget", "depth", "limit", "work")
    limit: int
    budget: int
    depth: int
    work: Budget | None
    _zstd: str | None | bool  # False: not looked up yet

    def __init__(
        self,
        limit: int | None = None,
        budget: int = -1,
        depth: int = 0,
        _zstd: str | None | bool = False,
        work: Budget | None = None,
    ) -> None:
        self.limit = MAX_DECOMPRESSED if limit is None else limit
        self.budget = budget
        self.depth = depth
        self.work = work
        self._zstd = _zstd
        self.__post_init__()

    def __post_init__(self) -> None:
        if self.budget < 0:
            self.budget = self.limit

    def zstd(self) -> str | None:
        if self._zstd is False:
            self._zstd = find_zstd()
        return self._zstd  # type: ignore[return-value]
