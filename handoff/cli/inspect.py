"""``handoff inspect``: say what a file is and show every handoff record in it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from handoff.cli import Formatter

if TYPE_CHECKING:  # pragma: no cover
    from handoff.devices.model import OtherDevice, PciDevice, Snapshot

DESCRIPTION = """\
Recognise FILE by its content - a raw record, a note file, a two-slot region, an initrd
(concatenated cpio archives, raw or gzip/xz/bzip2/lzma/zstd), an ELF vmcore, or a makedumpfile
kdump-compressed or flattened dump - and show each handoff record in it: format version,
checksum results, producer, generation and device table. For a dump, also VMCOREINFO
(OSRELEASE, crash time) and the restore report notes. Reads only headers and notes of a dump,
never its memory, so a 64 GiB vmcore is as quick as a small one.
"""

EPILOG = """\
examples:
  handoff inspect /var/lib/handoff/record.bin
  handoff inspect /var/crash/202612061200/dump.202612061200 --json
  handoff inspect rec.bin -s 03:00.0 -xxx    # one device's saved config, as lspci -xxx

exit codes:
  0  every record found is valid (a truncated dump, or a record made on another kernel
     than the dump's OSRELEASE, is a warning on stderr and in the JSON's "warnings")
  1  a record is corrupt (the message names the failed check and offset), or the
     container is malformed
  2  FILE does not exist or is not a file
  3  FILE holds no handoff record
  4  FILE cannot be read (permission), or a needed tool (zstd) is missing
"""


def register(sub: Any) -> None:
    p = sub.add_parser("inspect", help="show what a file is and the handoff records in it",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=Formatter)
    p.add_argument("path", metavar="FILE", help="a record, note file, region, initrd or dump")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("-v", dest="verbose", action="count", default=0,
                   help="decode each saved config space, register by register and field by "
                        "field (the decoder `handoff diff` uses)")
    p.add_argument("-x", dest="hex", action="count", default=0,
                   help="dump each saved config space in hex as `lspci -x` does: -x the first "
                        "64 bytes, -xxx 256, -xxxx 4096 (what the snapshot holds)")
    from handoff.cli._select import add_selection

    add_selection(p)
    p.set_defaults(func=run)


# -- helpers -------------------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def _time_ns(ns: int) -> str:
    import time  # builtin; datetime would cost every inspect ~1.5 ms of start-up

    if ns <= 0:
        return "unknown"
    try:
        t = time.gmtime(ns // 1_000_000_000)
        if t.tm_year > 9999:
            raise ValueError(ns)
    except (OverflowError, OSError, ValueError):
        return f"{ns} ns"
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ns % 1_000_000_000:09d}Z"


def _time_s(s: int | None) -> str | None:
    return None if s is None else _time_ns(s * 1_000_000_000).replace(".000000000Z", "Z")


def checks(err: Any) -> dict[str, str]:
    """What the two checksums of §8 say, given the error a record failed with (None: valid)."""
    if err is None:
        return {"header_crc": "ok", "payload_digest": "ok"}
    c, msg = err.check, str(err)
    if c == "magic":
        return {"header_crc": "not checked", "payload_digest": "not checked"}
    if c == "truncated":
        crc = "not checked" if f"of {128} bytes" in msg else "ok"
        return {"header_crc": crc, "payload_digest": "not checked"}
    if c == "algorithm":
        if "header check" in msg:
            return {"header_crc": "unsupported", "payload_digest": "not checked"}
        return {"header_crc": "ok", "payload_digest": "unsupported"}
    if c == "header_crc":
        return {"header_crc": "mismatch", "payload_digest": "not checked"}
    if c in ("version", "header_size", "payload_size"):
        return {"header_crc": "ok", "payload_digest": "not checked"}
    if c == "digest":
        return {"header_crc": "ok", "payload_digest": "mismatch"}
    return {"header_crc": "ok", "payload_digest": "ok"}


def _snap(s: Snapshot | None) -> str | None:
    if s is None:
        return None
    return str(s.size) if s.length == s.size else f"{s.length}/{s.size}"


def _opaque_snap(s: Any) -> str | None:
    if not isinstance(s, dict):
        return None
    size, n = s.get("size"), s.get("len")
    return str(size) if n == size else f"{n}/{size}"


def device_rows(devices: list[PciDevice | OtherDevice]) -> list[dict[str, Any]]:
    """The device table: one row per device, from the typed model (a device of another bus
    from its opaque map)."""
    from handoff.devices import pciids
    from handoff.devices.model import PciDevice

    names = pciids.default()
    rows = []
    for d in devices:
        if not isinstance(d, PciDevice):
            rows.append(_opaque_row(d))
            continue
        ids = d.ids
        rows.append({
            "addr": d.addr,
            "ids": f"{ids.vendor:04x}:{ids.device:04x}",
            "class": f"{ids.class_code:06x}",
            "driver": d.driver,
            "early": d.early.source if d.early is not None else None,
            "live": _snap(d.live),
            "policy": d.policy,
            "name": names.vendor_device(ids.vendor, ids.device),  # lspci's, from pci.ids
        })
    return rows


def _opaque_row(o: OtherDevice) -> dict[str, Any]:
    """A device of another bus: the schema leaves it opaque (R20), so its map may hold any
    value where a PCI device has ids; they are shown as text rather than refused."""
    d = o.fields
    ids: dict[str, Any] = d["ids"] if isinstance(d.get("ids"), dict) else {}
    early = d.get("early")
    vendor, device = _hexid(ids.get("vendor"), 4), _hexid(ids.get("device"), 4)
    return {
        "addr": f"{o.bus}:{o.addr}",
        "ids": f"{vendor}:{device}" if vendor is not None and device is not None else None,
        "class": _hexid(ids.get("class"), 6),
        "driver": _text(d.get("driver")),
        "early": _text(early.get("src")) if isinstance(early, dict) else None,
        "live": _opaque_snap(d.get("live")),
        "policy": _text(d.get("policy")),
        "name": None,  # pci.ids names PCI ids only
    }


def _hexid(v: Any, width: int) -> str | None:
    """An id in hex; a device of another bus may hold any value there (the schema leaves
    other buses opaque, R20), shown as text rather than refused."""
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return f"{v:0{width}x}"
    return _text(v)


def _text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return repr(v)[:80]


def record_doc(f: Any, sel: Any = None,
               devices: list[PciDevice | OtherDevice] | None = None) -> dict[str, Any]:
    """The JSON of one record found; ``devices``: its selected devices, if already read."""
    from handoff.sources.model import error_json

    doc: dict[str, Any] = {"kind": f.kind, "location": f.location.to_json(),
                           "where": str(f.location), "valid": f.ok,
                           "checks": checks(f.error)}
    if f.error is not None:
        doc["error"] = error_json(f.error)
        return doc
    r = f.record
    doc.update({
        "version": r.version, "header_size": r.header_size, "payload_size": r.payload_size,
        "generation": r.generation, "created_ns": r.created_ns,
        "created": _time_ns(r.created_ns),
        "producer": {"kernel_release": r.kernel_release, "hostname": r.hostname,
                     "boot_id": r.boot_id, "machine_id": r.machine_id},
        "devices": device_rows(selected(r, sel) if devices is None else devices),
    })
    return doc


def selected(r: Any, sel: Any) -> list[PciDevice | OtherDevice]:
    """The devices of record ``r`` that ``sel`` (-s, -d) keeps, typed; a device of another
    bus is never selected (its ids mean nothing to lspci's patterns)."""
    from handoff.devices.model import PciDevice, devices_of

    devices = devices_of(r.devices)
    if not sel:
        return devices
    return [d for d in devices if isinstance(d, PciDevice) and sel.matches_device(d)]


def hex_dump(data: bytes, count: int) -> list[str]:
    """``lspci -x`` lines: 16 bytes a line, the offset in 2 hex digits (3 past 0xff), as
    pciutils' show_hex_dump() prints them; only bytes the snapshot holds."""
    out = []
    for off in range(0, min(count, len(data)), 16):
        row = data[off:off + 16]
        out.append(f"{off:02x}: " + " ".join(f"{b:02x}" for b in row))
    return out


def _device_blocks(devices: list[PciDevice | OtherDevice], verbose: int, hexdump: int,
                   w: Any) -> None:
    """-v and -x: a block per device, headed by lspci's line for it (names from pci.ids)."""
    from handoff.devices import pciids
    from handoff.devices.model import PciDevice
    from handoff.diff import decode_config

    names = pciids.default()
    for dev in devices:
        if not isinstance(dev, PciDevice):
            continue  # another bus: opaque to this reader, the table showed it
        ids = dev.ids
        w("\n" + names.line(dev.addr, ids.vendor, ids.device, ids.class_code, ids.revision)
          + "\n")
        snaps = [("live", dev.live)] + ([("early", dev.early)] if dev.early is not None else [])
        if verbose:
            for which, snap in snaps:
                part = f", partial: {snap.partial}" if snap.partial else ""
                w(f"\t{which} snapshot ({snap.source}, {len(snap.data)} of {snap.size} "
                  f"bytes{part}):\n")
                for label, off, width, value, text in decode_config(snap.data):
                    w(f"\t  {off:03x} {label:<28} {value:#0{2 + 2 * width}x}"
                      + (f"  {text}" if text else "") + "\n")
        if hexdump:
            # lspci: -x 64 bytes (128 for a CardBus bridge), -xxx 256, -xxxx 4096
            count = 4096 if hexdump >= 4 else 256 if hexdump == 3 else \
                (128 if dev.header_type == 2 else 64)
            for line in hex_dump(dev.live.data, count):
                w(line + "\n")


def container_doc(c: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": c.kind, "description": c.describe(), "size": c.size,
                         "details": c.details, "notes": [n.to_json() for n in c.notes]}
    if c.vmcoreinfo is not None:
        v = c.vmcoreinfo.essentials()
        v["crashtime_utc"] = _time_s(v["crashtime"])
        d["vmcoreinfo"] = v
    if c.reports:
        d["reports"] = [dict(r.to_json(), summary=r.summary()) for r in c.reports]
    if c.slots:
        d["slots"] = [s.to_json() for s in c.slots]
    if c.archives:
        d["archives"] = c.archives
    if c.problems:
        d["problems"] = [{"message": p.message, "offset": p.offset} for p in c.problems]
    return d


# -- text output ---------------------------------------------------------------------------------


def _print_container(c: Any, out: Any) -> None:
    from handoff.cli._output import table

    w = out.write
    w(f"{c.name}: {c.describe()}, {_size(c.size)}\n")
    d = c.details
    if "elf_class" in d:
        w(f"  ELF{d['elf_class']} {d['byte_order']}-endian {d['e_type']} {d['machine']}: "
          f"{d['phnum']} program headers ({d['pt_note']} PT_NOTE, {d['pt_load']} PT_LOAD, "
          f"{_size(d['memory'])} of memory)\n")
    if "header_version" in d:
        w(f"  kdump header version {d['header_version']}, block size {d['block_size']}, "
          f"dump level {d['dump_level']}, {d['nr_cpus']} CPUs, {d['machine']}, "
          f"kernel {d['release']} on {d['nodename']}, dumped {_time_s(d['timestamp'])}"
          + (" (INCOMPLETE dump)" if d.get("incomplete") else "") + "\n")
        if "note_area" in d:
            w(f"  note area: {d['note_area']}\n")
    if d.get("truncated"):
        w(f"  TRUNCATED: {d['truncated']}\n")
    if c.kind == "flattened":
        w(f"  offsets below are {d['offsets']}; {d['chunks_scanned']} chunks read\n")
    for a in c.archives:
        method = a["compression"] or "uncompressed"
        extra = "" if a.get("examined", True) else " (not examined)"
        w(f"  cpio archive {a['index']} at offset {a['offset']}: {method}, "
          f"{a['members']} members{extra}\n")
    for s in c.slots:
        w(f"  slot {s.slot} at offset {s.offset} ({s.size} bytes): {s.describe()}\n")
    if c.notes:
        w("  notes:\n")
        rows = [[n.owner, n.type_name, n.size, n.offset] + ([n.member] if n.member else [])
                for n in c.notes]
        members = any(n.member for n in c.notes)
        heads = ["OWNER", "TYPE", "SIZE", "OFFSET"] + (["MEMBER"] if members else [])
        for line in table(heads, [r + [None] * (len(heads) - len(r)) for r in rows]).splitlines():
            w(f"    {line}\n")
    if c.vmcoreinfo is not None:
        v = c.vmcoreinfo
        parts = [f"OSRELEASE {v.osrelease or '?'}"]
        if v.crashtime is not None:
            parts.append(f"crashed {_time_s(v.crashtime)} (CRASHTIME {v.crashtime})")
        else:
            parts.append("no CRASHTIME")
        if v.pagesize:
            parts.append(f"PAGESIZE {v.pagesize}")
        if v.build_id:
            parts.append(f"BUILD-ID {v.build_id}")
        w("  VMCOREINFO: " + ", ".join(parts) + "\n")
    for r in c.reports:
        w(f"  restore report at offset {r.offset}: {r.summary()}\n")
    for p in c.problems:
        w(f"  problem: {p.message}\n")


def _print_record(i: int, n: int, f: Any, out: Any, sel: Any = None, verbose: int = 0,
                  hexdump: int = 0, devices: list[PciDevice | OtherDevice] | None = None,
                  rows: list[dict[str, Any]] | None = None) -> None:
    """One record as text; ``devices`` and ``rows``: its selected devices and their table
    rows, if already made (record_doc made them)."""
    from handoff.cli._output import table

    w = out.write
    ck = checks(f.error)
    if f.error is not None:
        e = f.error
        w(f"\nrecord {i} of {n} at {f.location}: INVALID: {e} "
          f"(check {e.check}, offset {e.offset})\n")
        w(f"  header CRC: {ck['header_crc']}; payload digest: {ck['payload_digest']}\n")
        return
    r = f.record
    w(f"\nrecord {i} of {n} at {f.location}: valid\n")
    w(f"  format      {r.version} (header {r.header_size} bytes, payload {r.payload_size} bytes)\n")
    w(f"  checks      header CRC-32C {ck['header_crc']}, payload SHA-256 {ck['payload_digest']}\n")
    w(f"  producer    kernel {r.kernel_release or '?'} on {r.hostname or '?'}\n")
    w(f"  boot id     {r.boot_id or 'unknown'}\n")
    w(f"  machine id  {r.machine_id or 'unknown'}\n")
    w(f"  created     {_time_ns(r.created_ns)}\n")
    w(f"  generation  {r.generation}\n")
    if devices is None:
        devices = selected(r, sel)
    if rows is None:
        rows = device_rows(devices)
    shown = f"{len(rows)} of {len(r.devices)} selected by {sel.describe()}" if sel else \
        str(len(rows))
    w(f"  devices ({shown}):\n")
    if rows:
        keys = ["addr", "ids", "class", "driver", "early", "live", "policy", "name"]
        txt = table([k.upper() for k in keys], [[row[k] for k in keys] for row in rows])
        for line in txt.splitlines():
            w(f"    {line}\n")
    if verbose or hexdump:
        _device_blocks(devices, verbose, hexdump, w)


# -- command -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except BrokenPipeError:
        # `handoff inspect X | head`: stop quietly (Python docs, "Note on SIGPIPE").
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


class _Failure(Exception):
    """Why inspect stops early: exit code, message, hint, and the JSON's error detail."""

    def __init__(self, code: int, msg: str, hint: str | None, err: dict[str, Any]) -> None:
        super().__init__(msg)
        self.code, self.msg, self.hint, self.err = code, msg, hint, err


def _run(args: argparse.Namespace) -> int:
    from handoff.cli._output import emit_json

    doc: dict[str, Any] = {"path": args.path}
    try:
        c = _open(args.path)
        _show(c, args, doc)
        code, summary, hint = _verdict(args.path, c)
    except _Failure as f:
        sys.stderr.write(f"handoff: error: {f.msg}\n")
        if f.hint:
            sys.stderr.write(f"handoff: hint: {f.hint}\n")
        if args.json:
            doc.update({"result": f.err.get("result", "error"), "exit_code": f.code,
                        "error": f.msg, "hint": f.hint, "error_detail": f.err})
            emit_json("inspect", doc)
        return f.code
    if args.json:
        doc.update({"result": "invalid" if summary else "ok", "exit_code": code})
        if summary:
            doc.update({"error": summary, "hint": hint})
        emit_json("inspect", doc)
    else:
        sys.stdout.flush()
    if summary:
        sys.stderr.write(f"handoff: error: {summary}\nhandoff: hint: {hint}\n")
    return code


def _open(path: str) -> Any:
    """Recognise the file (sources.scan_path); what stops it is a :class:`_Failure`."""
    import os

    from handoff import errors as E
    from handoff import sources
    from handoff.sources.model import error_json

    if not os.path.lexists(path) or (os.path.islink(path) and not os.path.exists(path)):
        raise _Failure(E.EXIT_USAGE, f"{path}: no such file", "check the path",
                       {"type": "FileNotFoundError", "message": "no such file",
                        "result": "usage"})
    try:
        return sources.scan_path(path)
    except IsADirectoryError:
        raise _Failure(E.EXIT_USAGE, f"{path}: not a regular file",
                       "give a file, not a directory",
                       {"type": "IsADirectoryError", "message": "not a file",
                        "result": "usage"}) from None
    except PermissionError as e:
        raise _Failure(E.EXIT_ENVIRONMENT, f"{path}: {E.os_reason(e)}",
                       "run as root or fix permissions",
                       {"type": "PermissionError", "message": E.os_reason(e),
                        "result": "environment"}) from None
    except OSError as e:
        raise _Failure(E.EXIT_ENVIRONMENT, f"{path}: {E.os_reason(e)}", "check the file",
                       {"type": type(e).__name__, "message": str(e),
                        "result": "environment"}) from None
    except E.BadContainer as e:
        where = ""
        if e.offset is not None and f"offset {e.offset}" not in str(e):
            where = f" (offset {e.offset})"
        raise _Failure(E.EXIT_INVALID, f"{path}: {e}{where}", e.hint,
                       dict(error_json(e), result="bad-container")) from None


def _show(c: Any, args: argparse.Namespace, doc: dict[str, Any]) -> None:
    """Fill ``doc`` with the container and every record found; without --json print them,
    then the cross-check warnings."""
    from handoff.cli._select import selection
    from handoff.sources.crosscheck import warnings as cross_warnings

    doc["container"] = container_doc(c)
    sel = selection(args)
    # Each record's devices are read into the typed model once, for the JSON and the text.
    devices = [selected(f.record, sel) if f.error is None else [] for f in c.found]
    doc["records"] = [record_doc(f, sel, devs) for f, devs in zip(c.found, devices)]
    warnings = cross_warnings(c)
    if warnings:
        doc["warnings"] = warnings
    if not args.json:
        _print_container(c, sys.stdout)
        for i, (f, devs, rd) in enumerate(zip(c.found, devices, doc["records"]), 1):
            _print_record(i, len(c.found), f, sys.stdout, sel, args.verbose, args.hex,
                          devs, rd.get("devices"))
        sys.stdout.flush()
        for warning in warnings:
            sys.stderr.write(f"handoff: warning: {warning}\n")


def _verdict(path: str, c: Any) -> tuple[int, str | None, str | None]:
    """The exit code, and for corrupt records one line for all of them (the first names its
    check, the rest are counted) with its hint; no record at all is a :class:`_Failure`."""
    from handoff import errors as E
    from handoff import sources
    from handoff.sources.model import error_json

    try:
        found = sources.records_of(c)
    except E.HandoffError as e:
        code = e.exit_code
        result = {E.EXIT_NO_RECORD: "no-record", E.EXIT_ENVIRONMENT: "environment"}.get(
            code, "bad-container")
        msg = str(e)
        off = getattr(e, "offset", None)
        if off is not None and f"offset {off}" not in msg:
            msg += f" (offset {off})"
        sys.stdout.flush()
        raise _Failure(code, msg, e.hint, dict(error_json(e), result=result)) from None
    bad = [f for f in found if f.error is not None]
    if not bad:
        return E.EXIT_OK, None, None
    first = bad[0].error
    assert first is not None
    more = f" (and {len(bad) - 1} more corrupt record(s))" if len(bad) > 1 else ""
    summary = (f"{path}: corrupt record at {bad[0].location}: {first} "
               f"(check {first.check}, offset {first.offset}){more}")
    return E.EXIT_INVALID, summary, "stdout shows every record's checks"
