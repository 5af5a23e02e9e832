"""``handoff estimate``: works with nothing reserved and without root, and the hint of a
load refused for want of a reservation points at it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.machine import INIT_SIZE, cli, dry, make_machine, use_machine

from handoff.kexec import checks, estimate

MiB = 1 << 20


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    m = make_machine(tmp_path, crash_size=0)
    # A machine where `handoff load` never ran: no runtime cached, so estimate uses the
    # typical one (the session's shared cache may or may not hold one, by test order).
    empty = tmp_path / "no-runtime-yet"
    empty.mkdir()
    use_machine(m, monkeypatch, empty)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not root
    (m.state / "runtime-cache").unlink()  # no runtime built here yet: the typical one
    return m


def test_nothing_reserved_not_root(bare) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = cli("estimate", "--json", "--root", str(bare.root))
    assert rc == 0, err
    doc = json.loads(out)
    assert (doc["schema_version"], doc["kind"], doc["reserved"]) == (1, "estimate", 0)
    wo, wi = doc["without_handoff"], doc["with_handoff"]
    assert wo["kernel"] == wi["kernel"] == INIT_SIZE  # the bzImage's init_size
    # the model of checks.estimate, recomputed from the parts it printed
    for d in (wo, wi):
        unpack = d["kernel"] + checks.UNPACK_OVERHEAD + d["initrd_compressed"] + \
            d["initrd_unpacked"]
        user = (d["kernel"] + checks.KERNEL_RUNTIME + d["initrd_unpacked"]
                + checks.USERSPACE_BASE + d["runtime_peak"] + checks.PER_DEVICE * d["devices"])
        assert d["required"] == int(max(unpack, user) * (1 + checks.HEADROOM))
        mb = -(-d["required"] // MiB)
        assert d["recommended_crashkernel"] == f"{-(-mb // 32) * 32}M"
    record = estimate.RECORD_PER_DEVICE * wi["devices"] + 4096
    assert wi["initrd_compressed"] == (wo["initrd_compressed"] + estimate.TYPICAL_RUNTIME_GZIP
                                       + record)
    assert (wo["runtime_peak"], wi["runtime_peak"]) == (0, estimate.TYPICAL_RUNTIME_PEAK)
    assert wi["devices"] == len(list((bare.sys / "bus/pci/devices").iterdir())) > 0
    assert doc["margin"] == -wi["required"]
    assert doc["next_step"].startswith(
        f"nothing is reserved: boot with crashkernel={wi['recommended_crashkernel']} (Debian:")


def test_a_cached_runtime_is_used(bare) -> None:  # type: ignore[no-untyped-def]
    d = bare.state / "runtime-cache" / "k"
    d.mkdir(parents=True)
    (d / "runtime.cpio").write_bytes(b"\0" * 3 * MiB)
    (d / "runtime.json").write_text(json.dumps({"unpacked_size": 9 * MiB, "peak_rss": 7 * MiB}))
    rc, out, err = cli("estimate", "--json", "--root", str(bare.root))
    assert rc == 0, err
    doc = json.loads(out)
    wo, wi = doc["without_handoff"], doc["with_handoff"]
    record = estimate.RECORD_PER_DEVICE * wi["devices"] + 4096
    assert wi["initrd_compressed"] == wo["initrd_compressed"] + 3 * MiB + record
    assert wi["initrd_unpacked"] == wo["initrd_unpacked"] + 9 * MiB + record
    assert wi["runtime_peak"] == 7 * MiB
    assert doc["runtime_source"] == f"the runtime `handoff load` built ({d})"


def test_text_names_reservation_and_margin(bare) -> None:  # type: ignore[no-untyped-def]
    (bare.root / "proc/cmdline").write_text("ro crashkernel=1G-4G:192M,4G-:256M\n")
    (bare.sys / "kernel/kexec_crash_size").write_text(f"{512 * MiB}\n")
    rc, out, err = cli("estimate", "--root", str(bare.root))
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == ("Reserved crashkernel:    512.0 MiB "
                        "(crashkernel=1G-4G:192M,4G-:256M on /proc/cmdline)")
    rc, js, _ = cli("estimate", "--json", "--root", str(bare.root))
    wi = json.loads(js)["with_handoff"]
    margin = (512 * MiB - wi["required"]) // MiB
    assert lines[-1] == f"the reservation fits with {margin} MiB to spare: `handoff load` (as root)"
    assert any(ln.startswith("margin now") and ln.endswith(f"{margin} MiB") for ln in lines)


def test_the_refused_loads_hint_points_at_a_command_that_works(bare, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    rc, _out, err, _ = dry(bare)
    assert rc == 4
    hint = err.splitlines()[1]
    assert "`handoff estimate` prints the size it needs" in hint
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    rc, out, err = cli("estimate", "--root", str(bare.root))
    assert rc == 0 and out.startswith("Reserved crashkernel:    none"), err


def test_a_missing_kernel_named_or_configured(bare) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = cli("estimate", "--root", str(bare.root), "--kernel", "/nonexistent")
    assert (rc, out) == (2, "")  # named by the user: usage
    assert err.splitlines() == ["handoff: error: --kernel /nonexistent: no such file",
                                "handoff: hint: check the path given to --kernel"]
    bare.kernel.unlink()  # the running kernel's image is gone: the environment
    rc, out, err = cli("estimate", "--root", str(bare.root))
    assert (rc, out) == (4, "")
    assert err.splitlines()[0] == (f"handoff: error: capture kernel {bare.kernel} does not "
                                   "exist (from running kernel 6.1.0-test)")


def test_kdump_tools_with_handoffs_dump_hook_counts_restore_alone(bare) -> None:  # type: ignore[no-untyped-def]
    """With contrib's kdump-tools-dump drop-in installed, load runs with --no-capture: restore
    has exited before udevd starts, so its peak and the initrd's userspace do not add up."""
    from helpers.machine import RELEASE

    etc = bare.root / "etc"
    (etc / "default").mkdir(parents=True)
    (etc / "default/kdump-tools").write_text(
        f"USE_KDUMP=1\nKDUMP_KERNEL=/boot/vmlinuz-{RELEASE}\n"
        f"KDUMP_INITRD=/boot/initrd.img-{RELEASE}\n")
    rc, out, err = cli("estimate", "--json", "--root", str(bare.root))
    assert rc == 0, err
    before = json.loads(out)["with_handoff"]
    assert before["capture"] is True
    dropin = etc / "systemd/system/kdump-tools-dump.service.d/handoff.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nExecStart=\nExecStart=/usr/lib/handoff/kdump-tools-dump\n")
    rc, out, err = cli("estimate", "--json", "--root", str(bare.root))
    assert rc == 0, err
    doc = json.loads(out)
    wi = doc["with_handoff"]
    assert wi["capture"] is False
    assert any("--no-capture" in n for n in doc["notes"])
    ours = wi["runtime_peak"] + checks.PER_DEVICE * wi["devices"]
    assert wi["userspace_peak"] == (wi["kernel"] + checks.KERNEL_RUNTIME + wi["initrd_unpacked"]
                                    + max(checks.USERSPACE_BASE, ours))
    assert wi["userspace_peak"] < before["userspace_peak"]
