"""handoff.capture.addnotes.add_notes, the library call `handoff inject-notes` wraps."""

from __future__ import annotations

from pathlib import Path

from helpers import elfwriter as W
from helpers import recordgen as G
from helpers.asserts import raises_exactly

from handoff import errors as E
from handoff import sources
from handoff.capture.addnotes import add_notes


def test_add_notes_puts_the_record_in_the_dump_and_says_what_it_did(tmp_path: Path) -> None:
    dump = tmp_path / "vmcore"
    dump.write_bytes(W.core_bytes(W.default_notes()))
    rec = tmp_path / "rec.bin"
    rec.write_bytes(G.make_record(generation=4, kernel_release="6.1.0-28-amd64"))  # the dump's
    done = add_notes(str(dump), str(rec))
    assert done.target == str(dump) and done.record.generation == 4 and done.warnings == []
    assert [t for t, _ in done.result.added] == [G.R.NT_HANDOFF_RECORD]
    (found,) = [f for f in sources.read_path(str(dump)) if f.record is not None]
    assert found.record.raw == rec.read_bytes()


def test_a_missing_dump_is_a_usage_error_and_nothing_is_written(tmp_path: Path) -> None:
    rec = tmp_path / "rec.bin"
    rec.write_bytes(G.make_record())
    with raises_exactly(E.UsageError, match=f"^dump {tmp_path}/nope: no such file$"):
        add_notes(str(tmp_path / "nope"), str(rec))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.bin"]


def test_a_record_of_another_kernel_is_added_with_a_warning(tmp_path: Path) -> None:
    dump = tmp_path / "vmcore"
    dump.write_bytes(W.core_bytes(W.default_notes()))
    rec = tmp_path / "rec.bin"
    rec.write_bytes(G.make_record(generation=4, kernel_release="6.1.0-test-amd64"))
    done = add_notes(str(dump), str(rec))
    assert done.warnings == [
        ("the record (generation 4) was made on kernel 6.1.0-test-amd64, but the dump is of "
        "kernel 6.1.0-28-amd64 (VMCOREINFO OSRELEASE): the record may belong to another crash")]
    assert done.dump_osrelease == "6.1.0-28-amd64" and len(done.result.added) == 1
