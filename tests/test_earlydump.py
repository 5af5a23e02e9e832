"""The pci=earlydump log parser: joined dmesg rows, kmsg fragments, and damaged logs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.fakesysfs import Q35_CAPTURE

from handoff.devices import earlydump as ED

FIX = Path(__file__).parent / "fixtures" / "earlydump"
ADDRS = sorted(p.name[:-4] for p in Q35_CAPTURE.glob("*.bin"))


def expected(addr: str) -> bytes:
    return (Q35_CAPTURE / f"{addr}.bin").read_bytes()[:256]


@pytest.mark.parametrize("name", ["q35-dmesg.txt", "q35-kmsg.txt"])
def test_fixture_parses_every_device_exactly(name: str) -> None:
    log = ED.parse_file(FIX / name)
    assert sorted(log.dumps) == ADDRS
    for addr, dump in log.dumps.items():
        assert dump.data == expected(addr), addr
        assert dump.complete
    assert log.issues == []


def test_garbled_log_skips_with_reasons_and_keeps_prefixes() -> None:
    log = ED.parse_file(FIX / "garbled-dmesg.txt")
    lens = {a: len(d.data) for a, d in log.dumps.items()}
    # Cut mid-byte in row 0x30 at byte 0x3f: the 63 bytes before it are kept.
    assert lens["0000:00:01.0"] == 0x3F
    assert log.dumps["0000:00:01.0"].data == expected("0000:00:01.0")[:0x3F]
    assert lens["0000:00:02.0"] == 0x50  # bad token at 0x50
    assert lens["0000:00:03.0"] == 0x90  # another message after row 0x80
    assert lens["0000:00:04.0"] == 256  # a bad row in between is skipped, the rest is fine
    assert log.dumps["0000:00:04.0"].data == expected("0000:00:04.0")
    assert "0000:00:1e.0" not in log.dumps  # header without bytes
    # 00:00.0 is dumped twice; the first dump wins.
    assert log.dumps["0000:00:00.0"].data == expected("0000:00:00.0")
    reasons = [str(i) for i in log.issues]
    assert any("00:1e.0: header without any config bytes" in r for r in reasons)
    assert any("garbled token '0'" in r for r in reasons)
    assert any("garbled token '0g'" in r for r in reasons)
    assert any("row offset '1a0:'" in r for r in reasons)
    assert any("dumped again" in r for r in reasons)
    assert any("bytes missing from 0x90" in r for r in reasons)


def test_prefix_forms() -> None:
    cases = {
        "6,339,5140900,-;pci 0000:00:00.0 config space:": "pci 0000:00:00.0 config space:",
        "[    0.000000] pci 0000:00:00.0 config space:": "pci 0000:00:00.0 config space:",
        "Nov 25 18:04:00 host kernel: pci 0000:00:00.0 config space:":
            "pci 0000:00:00.0 config space:",
        "[    0.123456] host kernel:   00: 86": "  00: 86",
        "kern  :info  : [    0.000000]   10: 00": "  10: 00",
        "plain text": "plain text",
    }
    for line, text in cases.items():
        assert ED.strip_prefix(line) == text


def test_journal_and_hex_dump_forms() -> None:
    data = bytes(range(256))
    lines = ["Nov 25 18:04:00 h kernel: pci 0000:05:1f.7 config space:"]
    for off in range(0, 256, 16):
        lines.append(f"Nov 25 18:04:00 h kernel: {off:08x}: "
                     + " ".join(f"{b:02x}" for b in data[off:off + 16]))
    log = ED.parse_lines(lines)
    assert log.dumps["0000:05:1f.7"].data == data


def test_multiline_kmsg_record_with_escaped_newlines() -> None:
    row = " ".join("00" for _ in range(16))
    body = "\\x0a".join(f"  {o:02x}: {row}" for o in range(0, 256, 16))
    rec = f"6,1,0,-;pci 0000:00:02.0 config space:\\x0a{body}"
    log = ED.parse_lines([rec, " SUBSYSTEM=pci", " DEVICE=+pci:0000:00:02.0"])
    assert log.dumps["0000:00:02.0"].data == bytes(256)


@pytest.mark.parametrize("junk", [
    "", "\x00\xff", "pci 0000:zz:00.0 config space:", "  00:", "00: " + "ff " * 400,
    "pci 0000:00:00.0 config space:\n" + "  f0: " + "ab " * 40,
    "pci 0000:00:00.0 config space:\n  00: 86 80\n" * 3,
])
def test_never_crashes(junk: str) -> None:
    log = ED.parse_text(junk)
    for d in log.dumps.values():
        assert 0 < len(d.data) <= 256


def test_random_garbage_never_crashes() -> None:
    import random

    rng = random.Random(1234)
    base = (FIX / "q35-dmesg.txt").read_text().splitlines()
    for _ in range(200):
        lines = list(base)
        for _ in range(rng.randrange(1, 20)):
            i = rng.randrange(len(lines))
            ln = lines[i]
            op = rng.randrange(4)
            if op == 0:
                lines[i] = ln[: rng.randrange(len(ln) + 1)]
            elif op == 1:
                del lines[i]
            elif op == 2:
                lines.insert(i, ln)
            else:
                j = rng.randrange(len(ln) + 1)
                lines[i] = ln[:j] + chr(rng.randrange(32, 127)) + ln[j:]
        log = ED.parse_lines(lines)
        for d in log.dumps.values():
            assert len(d.data) <= 256


def test_read_kmsg_stops_at_eagain(tmp_path: Path) -> None:
    # A FIFO with O_NONBLOCK behaves like /dev/kmsg at the end of the buffer: EAGAIN.
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    wfd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # keep a writer so reads say EAGAIN
    try:
        os.write(wfd, b"6,1,0,-;pci 0000:00:00.0 config space:\n")
        recs = ED.read_kmsg(str(fifo))
    finally:
        os.close(wfd)
    assert recs == ["6,1,0,-;pci 0000:00:00.0 config space:"]


def test_real_kmsg_is_readable_without_blocking() -> None:
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg not readable here")
    recs = ED.read_kmsg()  # must return, not block
    assert isinstance(recs, list)


def test_real_kernel_output_from_the_qemu_guest() -> None:
    """dmesg of a Debian 6.1 kernel booted with pci=earlydump in the e2e guest (the q35
    machine of tests/fixtures/qemu-q35-kdump): 'pci 0000:00:1f.2: config space:' with a
    colon, then print_hex_dump rows '00000000: 86 80 ...'."""
    from pathlib import Path

    from handoff.devices import earlydump

    fix = Path(__file__).parent / "fixtures"
    log = earlydump.parse_file(fix / "earlydump" / "real-6.1-q35-dmesg.txt")
    assert log.issues == []
    live_dir = fix / "qemu-q35-kdump" / "first-kernel-before-crash"
    want = sorted(p.name[:-4] for p in live_dir.glob("*.bin"))
    assert sorted(log.dumps) == want
    for addr, dump in log.dumps.items():
        assert len(dump.data) == 256
        live = (live_dir / f"{addr}.bin").read_bytes()
        # Same function: vendor, device, revision/class and header type agree with the
        # config the production kernel read later; firmware-programmed state may differ.
        assert dump.data[0:4] == live[0:4], addr
        assert dump.data[8:12] == live[8:12], addr
        assert dump.data[0x0E] == live[0x0E], addr
