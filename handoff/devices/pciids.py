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
import re

# A line that ends a vendor block: another vendor, or a section (C classes, ...).
_NEXT_BLOCK = re.compile(r"\n(?=[^\t#\n])")

PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")


class PciIds:
    """The names of one pci.ids file (None: the first of :data:`PATHS` that exists).

    The file (about 1.3 MB) is read once as text; a vendor's devices are found by searching
    for its line, not by parsing every line (a full parse costs ~25 ms, a lookup ~0.1 ms), and
    only the class section at the end is parsed whole."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path if path is not None else next(
            (p for p in PATHS if os.path.isfile(p)), None)
        self._text: str | None = None
        self._vendors: dict[int, tuple[str, int, int] | None] = {}
        self._classes: dict[int, str] | None = None
        self._subclasses: dict[int, str] = {}
        self._progifs: dict[int, str] = {}
        # (vendor, device) -> name: a record repeats a few ids many times, and finding a
        # device in a large vendor block (8086) scans tens of KiB each time
        self._names: dict[tuple[int, int], str] = {}

    def _read(self) -> str:
        if self._text is None:
            self._text = ""
            if self.path is not None:
                try:
                    with open(self.path, encoding="utf-8", errors="replace") as f:
                        self._text = "\n" + f.read()
                except OSError:
                    pass
        return self._text

    def _vendor(self, vendor: int) -> tuple[str, int, int] | None:
        """The vendor's name and the span of its block: its ``vvvv  name`` line and the
        ``\tdddd  name`` device lines under it, up to the next vendor or section."""
        if vendor in self._vendors:
            return self._vendors[vendor]
        text = self._read()
        found = None
        at = text.find(f"\n{vendor:04x}  ")
        if at >= 0:
            end = text.find("\n", at + 1)
            end = len(text) if end < 0 else end
            nxt = _NEXT_BLOCK.search(text, end)
            found = (text[at + 7:end].strip(), end, nxt.start() if nxt else len(text))
        self._vendors[vendor] = found
        return found

    def _load_classes(self) -> None:
        if self._classes is not None:
            return
        self._classes = {}
        text = self._read()
        at = text.find("\nC ")
        if at < 0:
            return
        cls: int | None = None
        sub: int | None = None
        for line in text[at + 1:].splitlines():
            if not line or line.startswith("#"):
                continue
            try:
                if line.startswith("C "):  # C cc  name
                    cls, sub = int(line[2:4], 16), None
                    self._classes[cls] = line[4:].strip()
                elif line.startswith("\t\t"):
                    if cls is not None and sub is not None:  # prog-if: \t\tpp  name
                        self._progifs[cls << 16 | sub << 8 | int(line[2:4], 16)] = \
                            line[4:].strip()
                elif line.startswith("\t"):
                    if cls is not None:  # sub-class: \tss  name
                        sub = int(line[1:3], 16)
                        self._subclasses[cls << 8 | sub] = line[3:].strip()
                else:  # the class section ended
                    cls = sub = None
            except ValueError:
                continue  # a malformed line names nothing

    def vendor_device(self, vendor: int, device: int) -> str:
        name = self._names.get((vendor, device))
        if name is None:
            name = self._names[vendor, device] = self._vendor_device(vendor, device)
        return name

    def _vendor_device(self, vendor: int, device: int) -> str:
        found = self._vendor(vendor)
        if found is None:
            return f"Device {vendor:04x}:{device:04x}"
        v, start, stop = found
        text = self._read()
        at = text.find(f"\n\t{device:04x}  ", start, stop)  # one tab: not a subsystem line
        if at < 0:
            return f"{v} Device {device:04x}"
        end = text.find("\n", at + 1, stop)
        return f"{v} {text[at + 8:stop if end < 0 else end].strip()}"

    def class_name(self, class_code: int) -> str:
        """From base << 16 | sub << 8 | prog-if (the prog-if is not part of the name)."""
        self._load_classes()
        assert self._classes is not None
        cs = class_code >> 8
        name = self._subclasses.get(cs)
        if name is not None:
            return name
        base = self._classes.get(cs >> 8)
        return f"{base} [{cs:04x}]" if base is not None else f"Class {cs:04x}"

    def progif_name(self, class_code: int) -> str | None:
        self._load_classes()
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
