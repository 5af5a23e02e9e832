"""Every file handoff creates: no write through a planted symlink, no clobbering, no half files.

The rules are handoff.outfile's; these tests drive them through the commands that write
(save -o, restore --report, capture's dump and metadata, load's staging files) and check the
outcome on disk: the planted symlink's target is untouched, the refused file is unchanged, no
temporary file is left, and a full file system (a real tmpfs, in a user namespace) gives one
line that names the user's path.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import capture as TC
from helpers import fakesysfs as F
from helpers import recordgen as G
from helpers import restore as TR

from handoff import errors as E
from handoff import outfile
from handoff.capture import meta as M

REC = G.make_record()


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# --- the helper ---------------------------------------------------------------------------


def test_new_file_is_0600_and_no_temporary_is_left(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    assert outfile.write_file(out, REC, outfile.RECORD) == str(out)
    assert out.read_bytes() == REC
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert _files(tmp_path) == ["rec"]


def test_a_planted_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "rec"
    out.symlink_to(victim)
    with pytest.raises(E.UsageError, match=r"^refusing to write .*/rec: it is a symbolic link "
                       r"\(to .*/victim\), and handoff never writes through one$"):
        outfile.write_file(out, REC, outfile.RECORD)
    assert victim.read_bytes() == b"precious" and out.is_symlink()
    # --force replaces the link itself; the target is still untouched.
    outfile.write_file(out, REC, outfile.RECORD, force=True)
    assert not out.is_symlink() and out.read_bytes() == REC
    assert victim.read_bytes() == b"precious"
    assert _files(tmp_path) == ["rec", "victim"]


def test_a_dangling_symlink_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    out.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(E.UsageError, match="symbolic link"):
        outfile.write_file(out, REC, outfile.RECORD)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("kind,same,other", [
    (outfile.RECORD, REC, b"\x7fELF" + bytes(60)),
    (outfile.REPORT, b'{"kind": "handoff-restore-report", "v": 1}', b'{"kind": "x"}'),
    (outfile.META, b'{"kind": "handoff-capture"}', b"[1, 2]"),
])
def test_only_a_file_of_the_same_kind_is_replaced(tmp_path: Path, kind: outfile.Kind,
                                                  same: bytes, other: bytes) -> None:
    out = tmp_path / "f"
    out.write_bytes(same)
    outfile.write_file(out, b"new", kind)
    assert out.read_bytes() == b"new"
    out.write_bytes(other)
    with pytest.raises(E.UsageError, match=rf"^refusing to replace .*/f: it exists and is not "
                       rf"{kind.name} \({len(other)} bytes\)$") as ei:
        outfile.write_file(out, b"new", kind)
    assert ei.value.hint == "pass another path, or --force to replace it"
    assert out.read_bytes() == other
    out.write_bytes(b"")  # an empty file holds nothing to lose (mktemp)
    outfile.write_file(out, b"new", kind)
    assert out.read_bytes() == b"new"
    assert _files(tmp_path) == ["f"]


def test_an_error_inside_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    out.write_bytes(REC)
    with pytest.raises(RuntimeError), outfile.create(out, outfile.RECORD) as f:
        f.write(b"half")
        raise RuntimeError("stop")
    assert out.read_bytes() == REC and _files(tmp_path) == ["rec"]


def test_a_file_that_appears_meanwhile_is_not_clobbered(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    with pytest.raises(E.UsageError, match="appeared while handoff was writing it"), \
            outfile.create(out, outfile.RECORD) as f:
        f.write(REC)
        out.write_bytes(b"someone else's")
    assert out.read_bytes() == b"someone else's" and _files(tmp_path) == ["rec"]


def test_rename_noreplace(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1")
    b.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        outfile.rename_noreplace(str(a), str(b))
    assert a.exists() and not (tmp_path / "nowhere").exists()
    b.unlink()
    outfile.rename_noreplace(str(a), str(b))
    assert _files(tmp_path) == ["b"] and b.read_bytes() == b"1"


def test_directories_and_devices(tmp_path: Path) -> None:
    with pytest.raises(E.UsageError, match="it is a directory"):
        outfile.check(tmp_path, outfile.RECORD)
    with pytest.raises(E.UsageError, match="it is a device or FIFO"):
        outfile.check("/dev/null", outfile.RECORD)
    assert outfile.check("/dev/null", outfile.RECORD, special_ok=True) == "special"
    outfile.write_file("/dev/null", REC, outfile.RECORD, special_ok=True)
    with pytest.raises(E.EnvironmentProblem, match="is not a directory"):
        outfile.check(tmp_path / "no" / "rec", outfile.RECORD)


# --- the commands -------------------------------------------------------------------------


def test_save_refuses_to_replace_a_vmcore(tmp_path: Path) -> None:
    F.q35_tree(tmp_path)
    dump = tmp_path / "vmcore"
    TC.vmcore_like(dump)
    before = dump.read_bytes()
    argv = ["save", "--sysfs-root", str(tmp_path / "sys"), "-o", str(dump)]
    out, err, rc = TR.run_cli(argv)
    assert rc == E.EXIT_USAGE and out == ""
    assert err.splitlines() == [
        (f"handoff: error: refusing to replace {dump}: it exists and is not a handoff record "
         f"({len(before)} bytes)"),
        "handoff: hint: pass another path, or --force to replace it",
    ]
    assert dump.read_bytes() == before
    out, err, rc = TR.run_cli([*argv, "--force"])
    assert rc == 0, err
    assert dump.read_bytes()[:8] == b"HDOFREC\x00" or dump.read_bytes()[:4] != b"\x7fELF"


def test_save_refuses_a_planted_symlink(tmp_path: Path) -> None:
    F.q35_tree(tmp_path)
    victim = tmp_path / "shadow"
    victim.write_bytes(b"root:x:0:0")
    out_path = tmp_path / "rec.bin"
    out_path.symlink_to(victim)
    _out, err, rc = TR.run_cli(["save", "--sysfs-root", str(tmp_path / "sys"), "-o",
                                str(out_path)])
    assert rc == E.EXIT_USAGE and "never writes through one" in err
    assert victim.read_bytes() == b"root:x:0:0"


def test_restore_report_refused_before_anything_is_done(tmp_path: Path) -> None:
    rec, tree = TR.cli_setup(tmp_path)
    before = TR.digest(tree.root)
    rep = tmp_path / "notes.txt"
    rep.write_text("my notes\n")
    argv = ["restore", "--no-plugins", "--record", str(rec), "--sysfs-root", str(tree.root),
            "--proc-root", str(TR.proc_dir(tmp_path)), "--report", str(rep)]
    out, err, rc = TR.run_cli(argv)
    assert rc == E.EXIT_USAGE and out == ""
    assert err.splitlines() == [
        (f"handoff: error: refusing to replace {rep}: it exists and is not a handoff restore "
         "report (9 bytes)"),
        "handoff: hint: pass another path, or --force-report to replace it",
    ]
    assert rep.read_text() == "my notes\n" and TR.digest(tree.root) == before
    out, err, rc = TR.run_cli([*argv, "--force-report"])
    assert rc == 0, err
    doc = json.loads(rep.read_bytes())
    assert doc["kind"] == "handoff-restore-report"
    assert stat.S_IMODE(rep.stat().st_mode) == 0o600
    # A second run replaces its own report without --force-report.
    out, err, rc = TR.run_cli(argv)
    assert rc == 0, err


def test_restore_refusal_report_does_not_follow_a_symlink(tmp_path: Path) -> None:
    rec, tree = TR.cli_setup(tmp_path)
    bad = bytearray(rec.read_bytes())
    bad[-1] ^= 1
    rec.write_bytes(bad)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    rep = tmp_path / "report.json"
    rep.symlink_to(victim)
    _out, err, rc = TR.run_cli(["restore", "--record", str(rec), "--sysfs-root", str(tree.root),
                                "--proc-root", str(TR.proc_dir(tmp_path)), "--report", str(rep)])
    assert rc == E.EXIT_USAGE and "symbolic link" in err
    assert victim.read_text() == "keep" and rep.is_symlink()


def test_capture_never_writes_through_planted_symlinks(tmp_path: Path) -> None:
    inputs = {"vmcore": tmp_path / "vmcore", "record": tmp_path / "record.note",
              "report": tmp_path / "report.json", "dir": tmp_path / "crash"}
    TC.vmcore_like(inputs["vmcore"])
    inputs["record"].write_bytes(G.note(REC))
    inputs["report"].write_bytes(TC.REPORT)
    d = inputs["dir"]
    d.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("outside")
    # The names the old code used, and the metadata's own name.
    for name in (f"{M.META_NAME}.tmp.{os.getpid()}", M.META_NAME):
        (d / name).symlink_to(victim)
    res = TC.run_capture(inputs, subdir=False)
    assert victim.read_text() == "outside"
    assert res.meta is None
    assert res.warnings == [
        (f"no metadata saved: refusing to write {d / M.META_NAME}: it is a symbolic link (to "
         f"{victim}), and handoff never writes through one")]
    assert (d / "vmcore").is_file() and stat.S_IMODE((d / "vmcore").stat().st_mode) == 0o600
    assert sorted(_files(d)) == sorted([M.META_NAME, f"{M.META_NAME}.tmp.{os.getpid()}",
                                        "vmcore"])
    # --force replaces the link itself.
    (d / "vmcore").rename(tmp_path / "first")
    res = TC.run_capture(inputs, subdir=False, force=True)
    assert res.meta == str(d / M.META_NAME) and not (d / M.META_NAME).is_symlink()
    assert stat.S_IMODE((d / M.META_NAME).stat().st_mode) == 0o600
    assert victim.read_text() == "outside"


def test_capture_refuses_a_symlink_planted_at_the_dump_name(tmp_path: Path) -> None:
    inputs = {"vmcore": tmp_path / "vmcore", "record": tmp_path / "record.note",
              "report": tmp_path / "report.json", "dir": tmp_path / "crash"}
    TC.vmcore_like(inputs["vmcore"])
    inputs["record"].write_bytes(G.note(REC))
    inputs["report"].write_bytes(TC.REPORT)
    inputs["dir"].mkdir()
    victim = tmp_path / "victim"
    (inputs["dir"] / "vmcore.incomplete").symlink_to(victim)
    with pytest.raises(E.UsageError, match="already exists"):
        TC.run_capture(inputs, subdir=False)
    assert not victim.exists()


def test_load_staging_files_replace_links_never_follow_them(tmp_path: Path) -> None:
    from handoff.kexec import initrd

    orig = tmp_path / "initrd.img"
    orig.write_bytes(b"070701" + bytes(122))
    dest = tmp_path / "work" / "initrd-handoff.img"
    dest.parent.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    dest.symlink_to(victim)
    # load's own working files are always replaced: the link itself, never its target.
    a = initrd.append_copy(orig, dest, [("x", b"07070100")])
    assert not dest.is_symlink() and dest.stat().st_size == a.size
    assert victim.read_bytes() == b"keep"
    assert _files(dest.parent) == ["initrd-handoff.img"]


# --- a full file system -------------------------------------------------------------------

_UNSHARE = shutil.which("unshare")


def _in_small_tmpfs(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) with $FULL a tmpfs of 64 KiB that is already full."""
    if _UNSHARE is None:
        pytest.fail("unshare (util-linux) is needed for the full-disk tests")
    full = tmp_path / "full"
    full.mkdir()
    prog = (f"mount -t tmpfs -o size=64k tmpfs {full} && "
            f"(dd if=/dev/zero of={full}/filler bs=4k 2>/dev/null; true) && "
            f"FULL={full} && export FULL && {script}")
    argv = [_UNSHARE, "-Urm", "sh", "-c", prog] if os.geteuid() else \
        [_UNSHARE, "-m", "sh", "-c", prog]
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_enospc_save_names_the_path_and_leaves_nothing(tmp_path: Path) -> None:
    F.q35_tree(tmp_path)
    py = sys.executable
    p = _in_small_tmpfs(tmp_path, f"{py} -m handoff save --sysfs-root {tmp_path}/sys "
                                  f"-o $FULL/rec.bin; echo rc=$?; ls -a $FULL")
    assert p.returncode == 0, p.stderr
    full = tmp_path / "full"
    assert p.stderr.splitlines() == [
        f"handoff: error: cannot write {full}/rec.bin: No space left on device",
        f"handoff: hint: free space on the file system that holds {full}",
    ]
    assert p.stdout.split() == ["rc=4", ".", "..", "filler"]


def test_enospc_capture_leaves_no_temporary_and_warns(tmp_path: Path) -> None:
    TC.vmcore_like(tmp_path / "vmcore")
    (tmp_path / "record.note").write_bytes(G.note(REC))
    py = sys.executable
    p = _in_small_tmpfs(tmp_path, f"{py} -m handoff capture --vmcore {tmp_path}/vmcore "
                                  f"--record {tmp_path}/record.note --dump-dir $FULL "
                                  f"--no-subdir --no-progress; echo rc=$?; ls -a $FULL")
    assert p.returncode == 0, p.stderr
    full = tmp_path / "full"
    lines = p.stderr.splitlines()
    assert f"handoff: warning: no metadata saved: cannot write {full}/{M.META_NAME}: No space " \
        "left on device" in lines, p.stderr
    assert lines[-2].startswith(f"handoff: error: no space left writing {full}/vmcore"), lines
    assert p.stdout.split()[0] == "rc=4"
    # The partial dump is kept on purpose; no metadata temporary, no 0-byte file.
    assert p.stdout.split()[1:] == [".", "..", "filler", "vmcore.incomplete"]


def test_enospc_inject_notes_names_the_dump(tmp_path: Path) -> None:
    from helpers import elfwriter as W

    # The notes grow in place into the room after the note segment (docs/dumps.md); a record
    # larger than what is left of the notes' page needs new blocks there, which a full file
    # system refuses.
    big = G.make_record(G.sample_payload(40))
    assert len(big) > 8 << 10
    (tmp_path / "record.note").write_bytes(G.note(big))
    (tmp_path / "core").write_bytes(W.core_bytes(loads=[W.Load(0x1000, 8192,
                                                               data=bytes(range(256)) * 32)],
                                                 room=32 << 10))
    # neither the header nor the room is left changed: still these bytes
    before = (tmp_path / "core").read_bytes()
    py = sys.executable
    # --sparse=always: the room is a hole, as in what `handoff capture` saves
    p = _in_small_tmpfs(tmp_path, f"rm $FULL/filler && "
                                  f"cp --sparse=always {tmp_path}/core $FULL/vmcore && "
                                  f"(dd if=/dev/zero of=$FULL/filler bs=1k 2>/dev/null; true) && "
                                  f"{py} -m handoff inject-notes $FULL/vmcore "
                                  f"{tmp_path}/record.note; echo rc=$?; "
                                  f"cmp -n {len(before)} $FULL/vmcore {tmp_path}/core && echo same")
    assert p.returncode == 0, p.stderr
    full = tmp_path / "full"
    assert p.stderr.splitlines()[0] == (
        f"handoff: error: cannot write {full}/vmcore: No space left on device"), p.stderr
    assert p.stdout.split() == ["rc=4", "same"], p.stdout + p.stderr
    assert len(before) < 64 << 10
