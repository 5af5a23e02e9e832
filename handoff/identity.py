"""Where a record's producer identity and clock come from: one seam, so tests can pin them."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from handoff._slots import Slots
from handoff.record import Producer

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from pathlib import Path


class IdentitySource(Slots):
    """Reads boot id, machine id, kernel release and hostname from a root (``/`` by default).

    ``clock`` returns nanoseconds since the epoch. Tests pass a fixed root and clock so that
    records become byte-reproducible.
    """

    __slots__ = ("clock", "root")

    def __init__(self, root: Path | str = "/", clock: Callable[[], int] = time.time_ns) -> None:
        self.root = os.fspath(root)  # a string: no pathlib on the save path
        self.clock = clock

    def _read(self, rel: str) -> str:
        try:
            with open(os.path.join(self.root, rel), encoding="utf-8", errors="replace") as f:
                return f.read().strip()
        except OSError:
            return ""

    def boot_id(self) -> str:
        return self._read("proc/sys/kernel/random/boot_id")

    def machine_id(self) -> str:
        mid = self._read("etc/machine-id")
        return mid if len(mid) == 32 and all(c in "0123456789abcdef" for c in mid) else ""

    def kernel_release(self) -> str:
        return self._read("proc/sys/kernel/osrelease") or os.uname().release

    def hostname(self) -> str:
        return self._read("proc/sys/kernel/hostname") or os.uname().nodename

    def producer(self) -> Producer:
        return Producer(
            kernel_release=self.kernel_release()[:64],
            hostname=self.hostname()[:64],
            boot_id=self.boot_id(),
            machine_id=self.machine_id(),
            created_ns=self.clock(),
        )
