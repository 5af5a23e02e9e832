"""The typed device model read from payload maps: snapshots decoded on first use, devices of
other buses kept opaque."""

from __future__ import annotations

import pytest

from handoff import payload as P
from handoff.devices.model import OtherDevice, PciDevice, Snapshot, devices_of

CONFIG = bytes(range(64)) + bytes(192)


def test_a_snapshot_from_a_record_decodes_on_first_use() -> None:
    m = P.snapshot("live", CONFIG[:100], 256, "not root")
    s = Snapshot.from_payload(m)
    assert s._data is None  # nothing expanded yet
    assert (s.length, s.complete, s.source, s.size, s.partial) == (
        100, False, "live", 256, "not root")
    assert s._data is None  # the length came from the map
    assert s.data == CONFIG[:100] and s._runs is None
    assert s == Snapshot("live", 256, CONFIG[:100], "not root")
    assert hash(s) == hash(Snapshot("live", 256, CONFIG[:100], "not root"))
    assert s != Snapshot("live", 256, CONFIG[:99], "not root")
    assert repr(s) == "Snapshot(partial='not root', size=256, source='live')"


def test_snapshot_replace_and_as_dict_use_the_bytes() -> None:
    s = Snapshot.from_payload(P.snapshot("collector", CONFIG, 256))
    assert s.as_dict() == {"data": CONFIG, "partial": None, "size": 256, "source": "collector"}
    t = s.replace(data=b"\x01" * 8)
    assert (type(t), t.data, t.length, t.source) == (Snapshot, b"\x01" * 8, 8, "collector")
    with pytest.raises(AttributeError, match="immutable"):
        s.size = 4096  # type: ignore[misc]


def test_devices_of_types_pci_and_keeps_other_buses_opaque() -> None:
    from helpers import recordgen as G

    usb = {"bus": "usb", "addr": "1-1", "ids": "not even a map"}
    pci = G.device("0000:00:03.0")
    got = devices_of([pci, usb])
    assert [type(d) for d in got] == [PciDevice, OtherDevice]
    assert got[0] == PciDevice.from_payload(pci) and got[0].to_payload() == pci
    assert (got[1].bus, got[1].addr, got[1].fields) == ("usb", "1-1", usb)
