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
    assert wi["initrd_compressed"] > wo["initrd_compressed"] + estimate.TYPICAL_RUNTIME_GZIP
    assert (wo["runtime_peak"], wi["runtime_peak"]) == (0, estimate.TYPICAL_RUNTIME_PEAK)
    assert wi["devices"] == len(list((bare.sys / "bus/pci/devices").iterdir())) > 0
    assert doc["margin"] == -wi["required"]
    assert doc["next_step"].startswith(
        f"nothing is reserved: boot with crashkernel={wi['recommended_crashkernel']} (Debian:")


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


def test_missing_kernel_is_an_environment_error(bare) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = cli("estimate", "--root", str(bare.root), "--kernel", "/nonexistent")
    assert rc == 4 and out == ""
    assert err.splitlines()[0].startswith("handoff: error: capture kernel ")
    assert "/nonexistent does not exist" in err.splitlines()[0]
