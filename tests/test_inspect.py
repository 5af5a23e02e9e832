"""`handoff inspect`: output, JSON document and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import elfwriter as W
from helpers import kdumpwriter as K
from helpers import recordgen as G

from handoff import record as R
from handoff.cli import main
from handoff.devices.pciids import PciIds

ROOT = Path(__file__).resolve().parents[1]
REC = G.make_record()
REPORT = b'{"summary": "restored 2 of 2 devices", "devices": [1, 2]}'


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["inspect", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def write(tmp_path: Path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_valid_vmcore_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the dump's kernel is the record's (else inspect warns: test_release_mismatch_warns)
    vmci = W.vmcoreinfo("6.1.0-test-amd64")
    p = write(tmp_path, "vmcore", W.core_bytes(W.default_notes(vmci=vmci) + [
        G.note(REC), G.note(REPORT, R.NT_HANDOFF_REPORT)]))
    from handoff import sources

    c = sources.scan_path(p)
    rec_at, rep_at = c.found[0].location.offset, c.reports[0].offset
    rc, out, err = run(capsys, p)
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{p}: an ELF vmcore with 5 notes, 68.0 KiB"
    assert lines[1] == ("  ELF64 little-endian ET_CORE x86-64: 2 program headers (1 PT_NOTE, "
                        "1 PT_LOAD, 64.0 KiB of memory)")
    assert ("  VMCOREINFO: OSRELEASE 6.1.0-test-amd64, crashed 2023-11-14T22:13:20Z "
            "(CRASHTIME 1700000000), PAGESIZE 4096, BUILD-ID "
            "0123456789abcdef0123456789abcdef01234567") in lines
    assert f"  restore report at offset {rep_at}: restored 2 of 2 devices; 2 devices" in lines
    i = lines.index(f"record 1 of 1 at offset {rec_at}: valid")
    # names as lspci spells them from this system's pci.ids (numeric without one)
    n41, n42 = (PciIds().vendor_device(0x1AF4, d) for d in (0x1041, 0x1042))
    assert lines[i + 1 : i + 12] == [
        "  format      1.0 (header 256 bytes, payload 609 bytes)",
        "  checks      header CRC-32C ok, payload SHA-256 ok",
        "  producer    kernel 6.1.0-test-amd64 on testhost",
        "  boot id     8c6f3d2a-1b4e-4f5a-9c7d-0e1f2a3b4c5d",
        "  machine id  0123456789abcdef0123456789abcdef",
        "  created     2023-11-14T22:13:20.123456789Z",
        "  generation  1",
        "  devices (2):",
        "    ADDR          IDS        CLASS   DRIVER      EARLY      LIVE  POLICY   NAME",
        f"    0000:00:03.0  1af4:1041  020000  virtio-pci  collector  256   quiesce  {n41}",
        f"    0000:00:04.0  1af4:1042  020000  virtio-pci  collector  256   quiesce  {n42}",
    ]


@pytest.mark.parametrize("kind", ["elf", "kdump"])
def test_release_mismatch_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                kind: str) -> None:
    """A record made on another kernel than the dump's OSRELEASE: valid, exit 0, a warning."""
    notes = W.default_notes() + [G.note(REC)]  # OSRELEASE 6.1.0-28-amd64
    p = write(tmp_path, "d", W.core_bytes(notes) if kind == "elf" else K.kdump_bytes(notes))
    want = ("the record (generation 1) was made on kernel 6.1.0-test-amd64, but the dump is "
            "of kernel 6.1.0-28-amd64 (VMCOREINFO OSRELEASE): the record may belong to "
            "another crash")
    rc, out, err = run(capsys, p)
    assert (rc, err) == (0, f"handoff: warning: {want}\n")
    rc, out, err = run(capsys, p, "--json")
    assert (rc, err) == (0, "")
    assert json.loads(out)["warnings"] == [want]


@pytest.mark.parametrize("kind", ["elf", "kdump"])
def test_truncated_dump_is_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   kind: str) -> None:
    vmci = W.vmcoreinfo("6.1.0-test-amd64")
    notes = W.default_notes(vmci=vmci) + [G.note(REC)]
    whole = W.core_bytes(notes) if kind == "elf" else K.kdump_bytes(notes)
    p = write(tmp_path, "d", whole[:-100])
    end = len(whole)
    what = "its segments end" if kind == "elf" else "the bitmaps end"
    want = (f"the dump is truncated: {what} at offset {end}, but the file has only "
            f"{end - 100} bytes (100 missing)")
    rc, out, err = run(capsys, p)
    assert rc == 0  # the record in it is whole and valid
    assert f"  TRUNCATED: {want}" in out.splitlines()
    assert err == f"handoff: warning: {p}: {want}\n"
    rc, out, err = run(capsys, p, "--json")
    doc = json.loads(out)
    assert doc["container"]["details"]["truncated"] == want
    assert doc["warnings"] == [f"{p}: {want}"]
    p2 = write(tmp_path, "whole", whole)
    rc, out, err = run(capsys, p2, "--json")
    assert json.loads(out)["container"]["details"]["truncated"] is None and err == ""


def test_notes_crash_cannot_read_are_flagged(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """An ELF dump whose note segment an older handoff moved past the memory data: crash
    reads only the header area before it (issue 13); inspect says so, and how to repair it."""
    import struct

    vmci = W.vmcoreinfo("6.1.0-test-amd64")
    data = bytearray(W.core_bytes(W.default_notes(vmci=vmci) + [G.note(REC)]))
    ph = struct.Struct("<IIQQQQQQ")
    p = list(ph.unpack_from(data, 64))
    first_load = ph.unpack_from(data, 64 + 56)[2]
    end = len(data)
    data += data[p[2]:p[2] + p[5]]  # the notes, copied to the end, as handoff did
    p[2] = end
    ph.pack_into(data, 64, *p)
    path = write(tmp_path, "old", bytes(data))
    rc, _, err = run(capsys, path)
    assert rc == 0
    assert err == (f"handoff: warning: crash cannot read the notes of {path}: its notes end at "
                   f"offset {end + p[5]}, past the header area crash reads (up to the first "
                   f"PT_LOAD's data, offset {first_load}); `handoff inject-notes --output NEW "
                   f"{path} {path}` writes a copy it reads\n")
    fixed = tmp_path / "fixed"
    assert main(["inject-notes", "--output", str(fixed), path, path]) == 0
    capsys.readouterr()
    rc, _, err = run(capsys, str(fixed))
    assert (rc, err) == (0, "")


def test_json_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, "k.kdump", K.kdump_bytes(W.default_notes() + [G.note(REC)]))
    rc, out, err = run(capsys, p, "--json")
    assert (rc, err) == (0, "")
    doc = json.loads(out)
    assert doc["schema_version"] == 1 and doc["kind"] == "inspect"
    assert (doc["result"], doc["exit_code"]) == ("ok", 0)
    c = doc["container"]
    assert c["kind"] == "kdump-compressed" and c["details"]["header_version"] == 6
    assert c["vmcoreinfo"]["osrelease"] == "6.1.0-28-amd64"
    assert c["vmcoreinfo"]["crashtime_utc"] == "2023-11-14T22:13:20Z"
    assert [n["type_name"] for n in c["notes"]][-1] == "NT_HANDOFF_RECORD"
    (r,) = doc["records"]
    assert r["valid"] and r["checks"] == {"header_crc": "ok", "payload_digest": "ok"}
    assert r["producer"] == {"kernel_release": "6.1.0-test-amd64", "hostname": "testhost",
                             "boot_id": "8c6f3d2a-1b4e-4f5a-9c7d-0e1f2a3b4c5d",
                             "machine_id": "0123456789abcdef0123456789abcdef"}
    assert r["devices"][0] == {"addr": "0000:00:03.0", "ids": "1af4:1041", "class": "020000",
                               "driver": "virtio-pci", "early": "collector", "live": "256",
                               "policy": "quiesce",
                               "name": PciIds().vendor_device(0x1AF4, 0x1041)}


def test_corrupt_record_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = bytearray(REC)
    bad[300] ^= 0x55
    p = write(tmp_path, "notes", G.note(bytes(bad)))
    rc, out, err = run(capsys, p)
    assert rc == 1
    assert ("record 1 of 1 at offset 20: INVALID: payload digest mismatch (SHA-256 of bytes "
            "128..865) (check digest, offset 68)") in out
    assert "  header CRC: ok; payload digest: mismatch" in out
    assert err == (f"handoff: error: {p}: corrupt record at offset 20: payload digest mismatch "
                   "(SHA-256 of bytes 128..865) (check digest, offset 68)\n"
                   "handoff: hint: stdout shows every record's checks\n")
    rc, out, _ = run(capsys, p, "--json")
    doc = json.loads(out)
    assert (rc, doc["result"], doc["exit_code"]) == (1, "invalid", 1)
    assert doc["records"][0]["error"] == {
        "type": "DigestMismatch", "message": "payload digest mismatch (SHA-256 of bytes 128..865)",
        "check": "digest", "offset": 68}
    assert doc["records"][0]["checks"] == {"header_crc": "ok", "payload_digest": "mismatch"}


def test_header_crc_failure_names_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = bytearray(REC)
    bad[30] ^= 1
    p = write(tmp_path, "r", bytes(bad))
    rc, _, err = run(capsys, p)
    assert rc == 1
    assert err.startswith(f"handoff: error: {p}: corrupt record at offset 0: header checksum "
                          "mismatch: ")
    assert err.endswith("(check header_crc, offset 0)\nhandoff: hint: stdout shows every "
                        "record's checks\n")


def test_no_record_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, "vmcore", W.core_bytes())
    rc, out, err = run(capsys, p)
    assert rc == 3
    assert err == f"handoff: error: no handoff record in {p} (an ELF vmcore with 3 notes)\n"
    assert out.startswith(f"{p}: an ELF vmcore with 3 notes")  # the container is still shown
    rc, out, _ = run(capsys, p, "--json")
    doc = json.loads(out)
    assert (rc, doc["result"], doc["records"]) == (3, "no-record", [])
    assert len(doc["container"]["notes"]) == 3


def test_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, str(tmp_path / "nope"))
    assert (rc, out) == (2, "")
    assert err == (f"handoff: error: {tmp_path / 'nope'}: no such file\n"
                   "handoff: hint: check the path\n")
    rc, _, _ = run(capsys, str(tmp_path))
    assert rc == 2


def test_unreadable_file_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, "r", REC)
    if os.geteuid() == 0:  # root reads anything: make open() refuse as it would for a user
        from handoff.sources import blob

        def refuse(self: object, path: str) -> None:
            raise PermissionError(13, "Permission denied", path)

        monkeypatch.setattr(blob.FileBlob, "__init__", refuse)
    else:
        os.chmod(p, 0)
    rc, out, err = run(capsys, p)
    assert (rc, out) == (4, "")
    assert err == (f"handoff: error: {p}: Permission denied\n"
                   "handoff: hint: run as root or fix permissions\n")


def test_bad_container_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    core = bytearray(W.core_bytes())
    core[0x38:0x3A] = (40000).to_bytes(2, "little")  # e_phnum
    p = write(tmp_path, "vmcore", bytes(core))
    rc, out, err = run(capsys, p)
    assert (rc, out) == (1, "")
    assert err == (f"handoff: error: {p}: 40000 program headers of 56 bytes at offset 64 extend "
                   "past the end of the file (69632 bytes)\n")
    rc, out, _ = run(capsys, p, "--json")
    assert json.loads(out)["error_detail"]["type"] == "BadContainer"


def test_region_and_initrd_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, write(tmp_path, "region", G.region(REC, None, slot_size=4096)))
    assert rc == 0
    assert "  slot 0 at offset 4096 (4096 bytes): valid, generation 1 (current)" in out
    assert "  slot 1 at offset 8192 (4096 bytes): empty" in out
    assert "record 1 of 1 at slot 0, offset 4096: valid" in out
    from handoff.formats import cpio

    w = cpio.Writer()
    w.file("handoff/record.note", G.note(REC), parents=True)
    import gzip

    rc, out, _ = run(capsys, write(tmp_path, "initrd", gzip.compress(w.finish(), mtime=0)))
    assert rc == 0
    assert "  cpio archive 1 at offset 0: gzip, 2 members" in out
    assert ("record 1 of 1 at cpio member handoff/record.note (archive 1, gzip, at offset 0), "
            "note at member offset 20: valid") in out


def test_cli_does_not_import_pyelftools(tmp_path: Path) -> None:
    """inspect's own path stays light: no pyelftools anywhere, and running it adds no
    decompressor, subprocess or thread modules for a vmcore (other commands' registration is
    measured separately by bench/inspect_sparse.py)."""
    p = write(tmp_path, "vmcore", W.core_bytes(W.default_notes() + [G.note(REC)]))
    code = ("import sys; from handoff.cli import build_parser, main; build_parser(); "
            "before = set(sys.modules); rc = main(['inspect', sys.argv[1]]); "
            "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
            "('elftools', 'cbor2', 'drgn', 'lzma', 'bz2', 'subprocess', 'threading')), rc, "
            "'elftools' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, p], capture_output=True, text=True,
                       cwd=ROOT, check=True)
    assert r.stdout.splitlines()[-1] == "[] 0 False"


def test_python_m_handoff_inspect(tmp_path: Path) -> None:
    p = write(tmp_path, "r", REC)
    r = subprocess.run([sys.executable, "-m", "handoff", "inspect", p, "--json"],
                       check=False, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and json.loads(r.stdout)["container"]["kind"] == "raw"


def test_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    """`handoff inspect FILE | head -1` exits quietly."""
    p = write(tmp_path, "r", G.make_record(G.sample_payload(1500)))  # > a 64 KiB pipe
    proc = subprocess.Popen([sys.executable, "-m", "handoff", "inspect", p], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert (proc.wait(timeout=60), err) == (0, b"")
