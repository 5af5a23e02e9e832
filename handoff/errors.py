"""The exception hierarchy of handoff, and the CLI exit code each one maps to."""

from __future__ import annotations

# Documented exit codes (README "Exit codes", `handoff --help`).
EXIT_OK = 0
EXIT_INVALID = 1  # invalid input or a failed check
EXIT_USAGE = 2  # wrong arguments
EXIT_NO_RECORD = 3  # no record found where one was looked for
EXIT_ENVIRONMENT = 4  # missing tool, not root, no crashkernel, refused by the kernel


class HandoffError(Exception):
    """Base of every error handoff raises on purpose.

    ``hint`` says what the user can do next; the CLI prints it after the message.
    """

    exit_code = EXIT_INVALID

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidRecord(HandoffError, ValueError):
    """A record failed one of the checks of spec/format.md §8.

    ``check`` names the failed check (stable, machine-readable: "header_crc", "digest", ...),
    ``offset`` is the byte offset of the record (or of the bad byte) in its container.
    """

    def __init__(
        self,
        message: str,
        *,
        check: str,
        offset: int | None = None,
        expected: object = None,
        actual: object = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.check = check
        self.offset = offset
        self.expected = expected
        self.actual = actual


class TruncatedRecord(InvalidRecord):
    """The buffer ends before the header or payload does."""


class BadMagic(InvalidRecord):
    """The bytes do not start with the record magic."""


class UnsupportedAlgorithm(InvalidRecord):
    """The header names a check or digest algorithm this reader does not implement (R23)."""


class HeaderChecksumMismatch(InvalidRecord):
    """header_crc does not match the fixed header (R12)."""


class UnsupportedVersion(InvalidRecord):
    """The record's major version differs from the reader's (R14)."""


class BadHeaderSize(InvalidRecord):
    """header_size is out of range or misaligned (R8)."""


class PayloadTooLarge(InvalidRecord):
    """payload_size exceeds the limit of R9."""


class DigestMismatch(InvalidRecord):
    """payload_digest does not match (R13)."""


class BadTextField(InvalidRecord):
    """A header text field breaks R3."""


class TrailingData(InvalidRecord):
    """Bytes follow the record in a raw record file."""


class BadCBOR(InvalidRecord):
    """The payload breaks the CBOR rules R15, R16, R18 or R19."""


class SchemaViolation(InvalidRecord):
    """The payload is valid CBOR but does not follow payload.cddl (R20, R21)."""


class BadContainer(HandoffError, ValueError):
    """A file that should hold a record (ELF, kdump, cpio, region) is malformed or hostile."""

    def __init__(self, message: str, *, offset: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.offset = offset


class RegionError(BadContainer):
    """A two-slot region's header or layout is invalid, or it holds no valid record."""


class NoRecordFound(HandoffError):
    """The input was readable but holds no handoff record."""

    exit_code = EXIT_NO_RECORD


class EnvironmentProblem(HandoffError):
    """The machine cannot do what was asked: missing tool, not root, no crashkernel, lockdown."""

    exit_code = EXIT_ENVIRONMENT


class UsageError(HandoffError):
    """The command line or a configuration file is wrong."""

    exit_code = EXIT_USAGE


class MissingInput(UsageError):
    """A path named on the command line does not exist or is the wrong kind of file."""


def os_reason(e: OSError) -> str:
    """An OSError as the C library says it ("No such file or directory"), never
    ``[Errno 2] ...`` and never ``None`` (an OSError raised without an errno has no strerror)."""
    return e.strerror or str(e) or type(e).__name__


class InvalidArgument(HandoffError, ValueError):
    """A caller passed a value the C core refuses (HANDOFF_E_INVAL): a programming error."""


class NoSpace(InvalidArgument):
    """The destination is too small for the record: an output buffer or a region slot."""


class UpdateInterrupted(HandoffError):
    """A region update stopped part-way (HANDOFF_E_INTERRUPTED, the fault-injection budget).

    The region still holds its previous record (R26).
    """
