"""The work one reading of one input may cost: a few times the file's size plus a constant.

Every structure a container parser walks (notes in every PT_NOTE segment, overlapping or not;
members of every cpio archive; chunks of a flattened dump; bytes out of every decompression
level; member data held in memory) spends units from one :class:`Budget` made for the whole
input, so no nesting or repetition multiplies the cost. A unit is about one byte processed or
held; a structure that costs Python objects is charged more than its bytes (``*_COST``).
docs/limits.md lists the numbers. Exceeding the budget raises :class:`BudgetExceeded`, one
line naming the limit.
"""

from __future__ import annotations

from handoff.errors import BadContainer

FACTOR = 8  # units per byte of input
CONSTANT = 64 << 20  # plus this much, so that a small file still reads normally
NOTE_COST = 256  # per ELF note parsed (header, Python objects), plus its descriptor's bytes
MEMBER_COST = 1024  # per cpio member (parsing one costs as much as ~1 KiB of output), + name
CHUNK_COST = 128  # per flattened-dump chunk header scanned


class BudgetExceeded(BadContainer):
    """The input costs more to read than its size allows (a decompression bomb, overlapping
    note segments, millions of empty cpio members or flattened chunks)."""


class Budget:
    """Units left for one reading of one input of ``size`` bytes."""

    __slots__ = ("left", "limit", "size")

    def __init__(self, size: int, *, factor: int = FACTOR, constant: int = CONSTANT) -> None:
        self.size = size
        self.limit = factor * max(size, 0) + constant
        self.left = self.limit

    def spend(self, units: int, what: str, offset: int | None = None) -> None:
        """Charge ``units`` for ``what`` (a phrase: "notes", "cpio members")."""
        self.left -= units
        if self.left < 0:
            raise BudgetExceeded(
                f"reading this {self.size}-byte input would cost more than its budget of "
                f"{self.limit} units ({FACTOR} per input byte + {CONSTANT >> 20} MiB; "
                f"exhausted by {what}): not a real dump or initrd",
                offset=offset,
                hint="docs/limits.md lists the limits; a real dump or initrd stays far below",
            )

    @property
    def used(self) -> int:
        return self.limit - self.left


def spend(budget: Budget | None, units: int, what: str, offset: int | None = None) -> None:
    """:meth:`Budget.spend` when there is a budget (library callers may pass none)."""
    if budget is not None:
        budget.spend(units, what, offset)
