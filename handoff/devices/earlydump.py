"""Parse ``pci=earlydump`` config-space dumps out of kernel log text.

With ``pci=earlydump`` on x86, ``early_dump_pci_devices()`` (arch/x86/pci/early.c, called
from ``setup_arch``) prints every function's first 256 bytes through port-0xCF8 config
accesses, before any PCI driver or quirk ran. Its printk sequence is::

    printk(KERN_INFO "pci 0000:%02x:%02x.%d config space:", bus, slot, func);
    for (i = 0; i < 256; i += 4) {
        if (!(i & 0x0f))
            printk("\\n  %02x:", i);
        val = read_pci_config(bus, slot, func, i);
        for (j = 0; j < 4; j++) { printk(" %02x", val & 0xff); val >>= 8; }
    }
    printk("\\n");

How that lands in the log depends on the printk of the kernel: as one line per 16 bytes
(``  00: 86 80 c0 29 ...``), or, since Linux 4.9 made un-marked continuations start new
records, as fragments (``  00:`` and `` 86`` as separate records, each with its own prefix).
Later kernels may use ``print_hex_dump`` (``00000000: 86 80 ...``). This parser accepts all
of them: after a header it reads a stream of offset tokens (``XX:``) and byte tokens (``XX``)
across records, whatever the line breaks, until a record that is not part of a dump.

Input may be ``dmesg`` output (with or without ``[ timestamp]``), ``journalctl -k`` output,
``/dev/kmsg`` records (``pri,seq,ts,flags;text``), or bare message text. Lines that look
like a dump but are not well formed are skipped with a reason; nothing here raises on bad
input.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable

from handoff._slots import Frozen, Slots

EARLYDUMP_BYTES = 256  # early_dump_pci_device prints exactly 256 bytes

_HEADER = re.compile(
    # 6.1 prints "pci 0000:00:1f.2: config space:" (dev_info style, colon after the address)
    r"pci ([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7]):? config space:\s*$")
# Prefixes a log line can carry before the message text.
_KMSG = re.compile(r"^<?\d+>?,\d+,\d+,[^;]*;")  # /dev/kmsg: "6,339,5140900,-;"
_DMESG_TS = re.compile(r"^\[\s*\d+\.\d+\] ?")  # dmesg: "[    0.000000] "
_DMESG_LVL = re.compile(r"^(?:kern|user|daemon|syslog)\s*:\s*\w+\s*: ")  # dmesg -x
_SYSLOG = re.compile(  # journalctl short / syslog: "Nov 25 18:04:00 host kernel: "
    r"^(?:\w{3} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\dT[\d:.,]+(?:[+-]\d\d:?\d\d|Z)?)"
    r" \S+ kernel: ")
_JOURNAL_MONO = re.compile(r"^\[\s*\d+\.\d+\] \S+ kernel: ")  # journalctl -o short-monotonic
_OFFSET = re.compile(r"^(?:[0-9a-fA-F]{2}|[0-9a-fA-F]{8}):$")  # "%02x:" or print_hex_dump
_BYTE = re.compile(r"^[0-9a-fA-F]{2}$")
_HEXCOLON = re.compile(r"^[0-9a-fA-F]+:$")
_KMSG_DICT = re.compile(r"^ [A-Z_]+=")  # /dev/kmsg dictionary line: " SUBSYSTEM=pci"


class Issue(Frozen):
    """A line the parser skipped or a dump it could not use, and why."""

    __slots__ = ("line", "reason", "text")
    line: int  # 1-based line (record) number in the input; 0 for a whole-dump issue
    reason: str
    text: str

    def __init__(self, line: int, reason: str, text: str = "") -> None:
        object.__setattr__(self, "line", line)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "text", text)

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        shown = f" ({self.text[:60]!r})" if self.text else ""
        return f"{where}{self.reason}{shown}"


class Dump(Slots):
    """One device's early config bytes: ``data`` is the contiguous prefix that was printed."""

    __slots__ = ("addr", "data", "line")
    addr: str
    data: bytes
    line: int

    def __init__(self, addr: str, data: bytes, line: int) -> None:
        self.addr = addr
        self.data = data
        self.line = line

    @property
    def complete(self) -> bool:
        return len(self.data) >= EARLYDUMP_BYTES


class EarlyLog(Slots):
    """All dumps found in a log, keyed by address, and every issue met on the way."""

    __slots__ = ("dumps", "issues", "source")
    dumps: dict[str, Dump]
    issues: list[Issue]
    source: str

    def __init__(self, dumps: dict[str, Dump] | None = None, issues: list[Issue] | None = None,
                 source: str = "") -> None:
        self.dumps = {} if dumps is None else dumps
        self.issues = [] if issues is None else issues
        self.source = source

    def __bool__(self) -> bool:
        return bool(self.dumps)


def strip_prefix(line: str) -> str:
    """The message text of one log line, without kmsg/dmesg/journal prefixes."""
    m = _KMSG.match(line)
    if m:
        return line[m.end():].replace("\\x0a", "\n")
    m = _JOURNAL_MONO.match(line) or _SYSLOG.match(line)
    if m:
        return line[m.end():]
    m = _DMESG_LVL.match(line)
    if m:
        line = line[m.end():]
    m = _DMESG_TS.match(line)
    if m:
        return line[m.end():]
    return line


class _Current:
    def __init__(self, addr: str, line: int):
        self.addr = addr
        self.line = line
        self.buf = bytearray(EARLYDUMP_BYTES)
        self.have = [False] * EARLYDUMP_BYTES
        self.pos: int | None = None  # None until the first offset token


def parse_lines(lines: Iterable[str], *, source: str = "") -> EarlyLog:
    """Parse log lines (or kmsg records); see the module docstring for accepted forms."""
    out = EarlyLog(source=source)
    cur: _Current | None = None
    for lineno, raw in enumerate(lines, 1):
        if _KMSG_DICT.match(raw):
            continue
        # A record can hold several lines (kmsg escapes them as \x0a): take each in turn.
        for text in strip_prefix(raw.rstrip("\r\n")).split("\n"):
            h = _HEADER.search(text)
            if h:
                if cur is not None:
                    _finish(cur, out)
                addr = f"{h.group(1)}:{h.group(2)}:{h.group(3)}.{h.group(4)}".lower()
                cur = _Current(addr, lineno)
                continue
            if cur is None or not text.strip():
                continue  # blank: the leading "\n" of a fragment record, or a journal gap
            if not _consume(cur, text, lineno, out):
                # Not part of a dump: the dump has ended (another message followed it).
                _finish(cur, out)
                cur = None
            elif cur.pos == EARLYDUMP_BYTES and all(cur.have):
                _finish(cur, out)  # all 256 bytes are in: whatever follows is not ours
                cur = None
    if cur is not None:
        _finish(cur, out)
    return out


def _consume(cur: _Current, text: str, lineno: int, out: EarlyLog) -> bool:
    """Feed one record's tokens into the dump; False when the record is not dump text."""
    tokens = text.split()
    if not tokens:
        return True
    # A record belongs to the dump when it starts like one (a row offset or a byte); a garbled
    # token later in such a record is skipped with a reason.
    if not (_OFFSET.match(tokens[0]) or _BYTE.match(tokens[0])):
        if _HEXCOLON.match(tokens[0]):
            out.issues.append(Issue(lineno, f"{cur.addr}: row offset {tokens[0]!r} is not the "
                                             "two hex digits earlydump prints; row skipped",
                                    text.strip()))
            cur.pos = None
            return True
        return False
    for i, t in enumerate(tokens):
        if _OFFSET.match(t) and i == 0:
            off = int(t[:-1], 16)
            if off >= EARLYDUMP_BYTES or off % 16:
                out.issues.append(Issue(lineno, f"offset {off:#x} is not a 16-byte row of "
                                                 "the 256 bytes earlydump prints", text.strip()))
                cur.pos = None
                return True
            cur.pos = off
        elif _BYTE.match(t):
            if cur.pos is None:
                out.issues.append(Issue(lineno, f"{cur.addr}: byte before any row offset, "
                                                 "skipped", text.strip()))
                continue
            if cur.pos >= EARLYDUMP_BYTES:
                out.issues.append(Issue(lineno, f"{cur.addr}: more than 256 bytes, extra "
                                                 "skipped", text.strip()))
                cur.pos = None
                continue
            cur.buf[cur.pos] = int(t, 16)
            cur.have[cur.pos] = True
            cur.pos += 1
        else:
            out.issues.append(Issue(lineno, f"{cur.addr}: garbled token {t!r} skipped; the "
                                             "rest of this row is not trusted", text.strip()))
            cur.pos = None  # bytes after a bad token would land at the wrong offset
            return True
    return True


def _finish(cur: _Current, out: EarlyLog) -> None:
    n = 0
    while n < EARLYDUMP_BYTES and cur.have[n]:
        n += 1
    if n == 0:
        out.issues.append(Issue(cur.line, f"{cur.addr}: header without any config bytes"))
        return
    if n < EARLYDUMP_BYTES:
        missing = [i for i in range(n, EARLYDUMP_BYTES) if not cur.have[i]]
        out.issues.append(Issue(cur.line, f"{cur.addr}: dump incomplete, bytes missing from "
                                          f"{missing[0]:#x}; kept the first {n} bytes"))
    if cur.addr in out.dumps:
        out.issues.append(Issue(cur.line, f"{cur.addr}: dumped again; keeping the first dump "
                                          f"(line {out.dumps[cur.addr].line})"))
        return
    out.dumps[cur.addr] = Dump(cur.addr, bytes(cur.buf[:n]), cur.line)


def parse_text(text: str, *, source: str = "") -> EarlyLog:
    """Parse a whole log held in a string (a saved ``dmesg`` or ``journalctl -k``)."""
    return parse_lines(text.splitlines(), source=source)


def parse_file(path: str | os.PathLike[str]) -> EarlyLog:
    """Parse a saved log file; undecodable bytes are replaced, never fatal."""
    with open(path, "rb") as f:
        data = f.read(64 * 1024 * 1024)
    return parse_text(data.decode("utf-8", "replace"), source=str(path))


def read_kmsg(path: str = "/dev/kmsg", *, max_records: int = 1 << 20) -> list[str]:
    """Every record now in the kernel ring buffer, read without blocking.

    ``/dev/kmsg`` returns one record per ``read``; with ``O_NONBLOCK`` the read fails with
    EAGAIN once the buffer is drained, which is where we stop (Documentation/ABI/testing/
    dev-kmsg). EPIPE means records were overwritten while we read: keep going.
    """
    records: list[str] = []
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while len(records) < max_records:
            try:
                rec = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:
                    continue
                if e.errno in (errno.EAGAIN, errno.EINVAL):
                    break
                raise
            if not rec:
                break
            records.append(rec.decode("utf-8", "replace").rstrip("\n").split("\n", 1)[0])
    finally:
        os.close(fd)
    return records


def kmsg_seq(record: str) -> int | None:
    """The sequence number of a /dev/kmsg record ("pri,seq,ts,flags;text"), or None."""
    m = _KMSG.match(record)
    if not m:
        return None
    try:
        return int(record.split(",", 2)[1])
    except (IndexError, ValueError):
        return None


def parse_kmsg(path: str = "/dev/kmsg") -> EarlyLog:
    """Parse the dumps currently in the kernel ring buffer."""
    return parse_lines(read_kmsg(path), source=path)
