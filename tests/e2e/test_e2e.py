"""End-to-end: a real Debian kernel under QEMU crashes into a kdump capture kernel.

The baseline runs on each Debian 12 kernel line (config.KERNEL_LINES: [6.1], [6.12]); it is
also the bench's peer for that line's handoff-kdump."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from e2e_harness import Result, Scenario, run
from e2e_harness.config import kernel_lines

pytestmark = pytest.mark.e2e

ET_CORE = 4


# Kernel lines that build virtio_pci in: its functions are bound before the capture hooks.
VIRTIO_PCI_BUILTIN = {"6.1": False, "6.12": True}


@pytest.fixture(scope="module", params=kernel_lines())
def baseline(
    request: pytest.FixtureRequest, qemu_ready: None, e2e_report: Callable[[Result], None]
) -> Result:
    """The round trip without handoff: kexec -p by hand, perturb, crash, capture."""
    result = run(Scenario.from_dir("baseline", kernel=request.param))
    e2e_report(result)
    return result


def test_baseline_reaches_every_stage_in_order(
    baseline: Result, record_property: Callable[[str, object], None]
) -> None:
    expected = [s.name for s in Scenario.from_dir("baseline").stages()]
    assert [s.name for s in baseline.stages] == expected
    for s in baseline.stages:
        record_property(f"stage:{s.name}", round(s.host_s, 3))
    assert int(baseline.text("first/kexec_crash_size")) == 128 << 20  # config.CRASHKERNEL


def test_baseline_vmcore_is_an_elf_core_with_vmcoreinfo(baseline: Result) -> None:
    vmcore = baseline.files["capture/vmcore"]
    with vmcore.open("rb") as f:
        ehdr = f.read(64)
    assert ehdr[:4] == b"\x7fELF" and ehdr[4] == 2  # ELFCLASS64
    assert int.from_bytes(ehdr[16:18], "little") == ET_CORE
    # 512 MiB of guest memory less the 160 MiB reserved for the capture kernel, roughly.
    assert 300 << 20 < vmcore.stat().st_size < 512 << 20
    notes = subprocess.run(
        ["readelf", "-n", str(vmcore)], capture_output=True, text=True, check=True
    ).stdout
    assert "VMCOREINFO" in notes
    assert "NT_PRSTATUS" in notes


def test_baseline_command_register_carries_into_the_capture_kernel(baseline: Result) -> None:
    bdf, before, after = baseline.text("first/perturbed").split()
    assert before != after
    first = baseline.read(f"first/config-before-crash/{bdf}.bin")
    capture = baseline.read(f"capture/config-before-drivers/{bdf}.bin")
    assert int.from_bytes(first[4:6], "little") == int(after, 16)
    # Nothing resets a driverless function across kdump: the capture kernel sees the
    # perturbed COMMAND register, which is what handoff has to deal with.
    assert int.from_bytes(capture[4:6], "little") == int(after, 16)
    lspci_line = next(
        line
        for line in baseline.text("first/lspci-xxxx.txt").splitlines()
        if line.startswith(bdf.removeprefix("0000:"))
    )
    assert lspci_line
    # pci=earlydump logged the boot-time config space (below the console loglevel).
    assert f"pci {bdf}: config space:" in baseline.text("first/dmesg.txt")
    # Only the PCIe port driver is bound when the pre-udev hooks run, and virtio-pci (on the
    # three virtio functions) where it is built in.
    bound = dict(line.split() for line in baseline.text("capture/drivers-before").splitlines())
    virtio = {a: d for a, d in bound.items() if d != "pcieport"}
    if VIRTIO_PCI_BUILTIN[baseline.kernel_line]:
        assert virtio == dict.fromkeys(("0000:02:00.0", "0000:03:00.0", "0000:04:00.0"),
                                       "virtio-pci"), bound
    else:
        assert virtio == {}, bound


@pytest.fixture(scope="module")
def handoff_smoke(qemu_ready: None, e2e_report: Callable[[Result], None]) -> Result:
    """The working tree's handoff installed in the guest and run there."""
    result = run(Scenario.from_dir("handoff-smoke"))
    e2e_report(result)
    return result


def test_working_tree_handoff_runs_in_the_first_kernel(handoff_smoke: Result) -> None:
    assert handoff_smoke.text("first/handoff-path").strip() == "/opt/handoff/bin/handoff"
    assert handoff_smoke.text("first/handoff-version").startswith("handoff ")
    # vmcore = "head": the first MiB still holds the ELF headers and every note.
    notes = subprocess.run(
        ["readelf", "-n", str(handoff_smoke.files["capture/vmcore"])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "VMCOREINFO" in notes
