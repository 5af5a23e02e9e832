"""Vendor, device and class names from the system's pci.ids, spelled as lspci spells them.

pciutils' lib/names.c ``pci_lookup_name()`` rules: a known vendor and device give
"Vendor Device"; a known vendor only, "Vendor Device dddd"; neither, "Device vvvv:dddd". A
known sub-class gives its name; a known base class only, "Name [ccss]"; neither,
"Class ccss". Without a pci.ids file (the pciutils/pci.ids packages) every name is the
numeric form, so output stays useful on a bare machine. The file is read once, lazily, and
only the lines a lookup needs are kept.
"""

from __future__ import annotations

import os

PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")


class PciIds:
    """The names of one pci.ids file (None: the first of :data:`PATHS` that exists)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path if path is not None else next(
            (p for p in PATHS if os.path.isfile(p)), None)
        self._vendors: dict[int, str] | None = None
        self._devices: dict[tuple[int, int], str] = {}
        self._classes: dict[int, str] = {}
        self._subclasses: dict[int, str] = {}
        self._progifs: dict[int, str] = {}

    def _load(self) -> None:
        if self._vendors is not None:
            return
        self._vendors = {}
        if self.path is None:
            return
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return
        vendor: int | None = None
        cls: int | None = None
        sub: int | None = None
        for line in lines:
            if not line or line.startswith("#"):
                continue
            try:
                if line.startswith("C "):  # C cc  name
                    cls, vendor, sub = int(line[2:4], 16), None, None
                    self._classes[cls] = line[4:].strip()
                elif line.startswith("\t\t"):
                    if cls is not None and sub is not None:  # prog-if: \t\tpp  name
                        self._progifs[cls << 16 | sub << 8 | int(line[2:4], 16)] = \
                            line[4:].strip()
                    # subsystem lines (\t\tssss dddd  name) are not shown by lspci -x
                elif line.startswith("\t"):
                    if cls is not None:  # sub-class: \tss  name
                        sub = int(line[1:3], 16)
                        self._subclasses[cls << 8 | sub] = line[3:].strip()
                    elif vendor is not None:  # device: \tdddd  name
                        self._devices[(vendor, int(line[1:5], 16))] = line[5:].strip()
                elif len(line) > 6 and line[4] == " ":  # vendor: vvvv  name
                    vendor, cls = int(line[0:4], 16), None
                    self._vendors[vendor] = line[4:].strip()
                else:  # another section (e.g. known device classes ended): stop scoping
                    vendor = cls = sub = None
            except ValueError:
                continue  # a malformed line names nothing

    def vendor_device(self, vendor: int, device: int) -> str:
        self._load()
        assert self._vendors is not None
        v = self._vendors.get(vendor)
        if v is None:
            return f"Device {vendor:04x}:{device:04x}"
        d = self._devices.get((vendor, device))
        return f"{v} {d}" if d is not None else f"{v} Device {device:04x}"

    def class_name(self, class_code: int) -> str:
        """From base << 16 | sub << 8 | prog-if (the prog-if is not part of the name)."""
        self._load()
        cs = class_code >> 8
        name = self._subclasses.get(cs)
        if name is not None:
            return name
        base = self._classes.get(cs >> 8)
        return f"{base} [{cs:04x}]" if base is not None else f"Class {cs:04x}"

    def progif_name(self, class_code: int) -> str | None:
        self._load()
        return self._progifs.get(class_code)

    def line(self, addr: str, vendor: int, device: int, class_code: int, revision: int, *,
             domain: bool = False) -> str:
        """lspci's one line: ``00:1f.2 SATA controller: Intel ... (rev 02)``; the domain is
        shown when it is not 0000 or ``domain`` asks for it (lspci -D)."""
        slot = addr if domain or not addr.startswith("0000:") else addr[5:]
        rev = f" (rev {revision:02x})" if revision else ""
        return f"{slot} {self.class_name(class_code)}: {self.vendor_device(vendor, device)}{rev}"


_DEFAULT: PciIds | None = None


def default() -> PciIds:
    """The system's pci.ids, loaded on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PciIds()
    return _DEFAULT
