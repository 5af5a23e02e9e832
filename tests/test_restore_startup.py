"""What keeps ``handoff restore`` fast in the capture kernel (docs/performance.md §4), and that
each shortcut gives the answer the slow way gave: long-lived plugin worker threads (replaced
only when a step is abandoned), the cheap look for third-party entry points before
importlib.metadata, one plugin selection per device, memoized register layouts, and string
paths spelled as pathlib spells them."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import threading
import time
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from helpers import fakesysfs as F
from helpers.restore import (
    capture_tree,
    plan_for,
    proc_dir,
    record_of,
    saved_devices,
)

from handoff.plugins import Deadline, Match, Plugin, PluginStep, Registry, run_step
from handoff.plugins import runner as runner_mod
from handoff.plugins.builtin import E1000, Msix, Nvme, Virtio
from handoff.plugins.registry import declares_group, load
from handoff.restore import pciregs as R
from handoff.restore.apply import rehearse
from handoff.restore.pluginpass import PluginRuntime
from handoff.sysfs import paths as _paths

ROOT = Path(__file__).resolve().parents[1]


# --- plugin worker threads ---------------------------------------------------------------------


def _step(body, timeout_s: float = 1.0) -> PluginStep:  # type: ignore[no-untyped-def]
    return PluginStep("s", "a step", body, timeout_s=timeout_s, plugin="p",
                      addr="0000:00:00.0", phase="quiesce")


def test_steps_reuse_one_worker_thread() -> None:
    idents: list[int] = []

    def body(ctx) -> str:  # type: ignore[no-untyped-def]
        idents.append(threading.get_ident())
        return "ran"

    before = threading.active_count()
    results = [run_step(_step(body), None, Deadline.never()) for _ in range(50)]
    assert all(r.outcome == "ok" and r.message == "ran" for r in results)
    assert threading.get_ident() not in idents  # isolated: not the caller's thread
    assert len(set(idents)) == 1  # and not a new thread per step
    assert threading.active_count() <= before + 1


def test_an_abandoned_worker_is_replaced_and_ends_when_its_body_returns() -> None:
    go = threading.Event()
    idents: list[int] = []

    def stuck(ctx) -> str:  # type: ignore[no-untyped-def]
        idents.append(threading.get_ident())
        go.wait(10)
        return "late"

    def quick(ctx) -> str:  # type: ignore[no-untyped-def]
        idents.append(threading.get_ident())
        return "ran"

    run_step(_step(quick), None, Deadline.never())
    t0 = time.monotonic()
    r = run_step(_step(stuck, timeout_s=0.1), None, Deadline.never(), grace_s=0.05)
    assert r.outcome == "timeout" and time.monotonic() - t0 < 10  # returns, not how fast
    assert "abandoned" in r.message
    r2 = run_step(_step(quick), None, Deadline.never())
    assert r2.outcome == "ok"
    assert idents[0] == idents[1] != idents[2]  # the stuck worker is never given a job again
    stuck_thread = next(t for t in threading.enumerate() if t.ident == idents[1])
    go.set()
    stuck_thread.join(2.0)
    assert not stuck_thread.is_alive()


def test_concurrent_callers_get_their_own_workers() -> None:
    gate = threading.Barrier(2, timeout=5)
    seen: list[int] = []

    def body(ctx) -> str:  # type: ignore[no-untyped-def]
        seen.append(threading.get_ident())
        gate.wait()  # both bodies run at once, or this times out
        return "ok"

    out: list[str] = []
    callers = [threading.Thread(target=lambda: out.append(
        run_step(_step(body, timeout_s=5), None, Deadline.never()).outcome)) for _ in range(2)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(10)
    assert out == ["ok", "ok"] and len(set(seen)) == 2


def test_unbounded_steps_still_run() -> None:
    r = run_step(_step(lambda ctx: "ran", timeout_s=float("inf")), None, Deadline.never())
    assert (r.outcome, r.message) == ("ok", "ran")


# --- entry points: the cheap look before importlib.metadata --------------------------------------


def _dist(site: Path, name: str, entry_points: str | None) -> None:
    d = site / f"{name}-1.0.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    if entry_points is not None:
        (d / "entry_points.txt").write_text(entry_points)


def test_declares_group_reads_only_entry_points_txt(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _dist(site, "nothing", None)
    _dist(site, "scripts", "[console_scripts]\nx = x:main\n")
    assert not declares_group("handoff.plugins", [str(site), str(tmp_path / "missing")])
    _dist(site, "Acme", "[handoff.plugins]\nacme = acme:Plugin\n")
    assert declares_group("handoff.plugins", [str(site)])
    egg = tmp_path / "old.egg"
    (egg / "EGG-INFO").mkdir(parents=True)
    (egg / "EGG-INFO" / "entry_points.txt").write_text("[handoff.plugins]\nold = old:P\n")
    assert declares_group("handoff.plugins", [str(egg)])


def test_declares_group_leaves_what_it_cannot_see_to_importlib_metadata(tmp_path: Path) -> None:
    z = tmp_path / "plugins.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("zipped-1.0.dist-info/entry_points.txt", "[handoff.plugins]\nz = z:P\n")
    assert declares_group("handoff.plugins", [str(z)])  # a zip: the full search looks inside
    assert declares_group("handoff.plugins", [b"/bytes"])  # not a str: likewise


def test_declares_group_reads_a_zip_zipimport_has_opened(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The capture runtime serves handoff from a zip: zipimport's directory of it answers."""
    import zipimport

    plain, plugins = tmp_path / "runtime.zip", tmp_path / "plugins.zip"
    with zipfile.ZipFile(plain, "w") as f:
        f.writestr("handoff/__init__.py", "")
        f.writestr("other-1.0.dist-info/entry_points.txt", "[console_scripts]\nx = x:m\n")
    with zipfile.ZipFile(plugins, "w") as f:
        f.writestr("zipped-1.0.dist-info/entry_points.txt", "[handoff.plugins]\nz = z:P\n")
    for z in (plain, plugins):
        monkeypatch.setitem(sys.path_importer_cache, str(z), zipimport.zipimporter(str(z)))
    assert not declares_group("handoff.plugins", [str(plain)])
    assert declares_group("handoff.plugins", [str(plain), str(plugins)])


def test_load_skips_importlib_metadata_when_no_distribution_declares_plugins() -> None:
    code = ("import sys; from handoff.plugins import load; reg = load(); "
            "print(reg.names(), [str(p) for p in reg.problems], "
            "'importlib.metadata' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       check=True)
    assert r.stdout.split("]")[0] == "['e1000', 'nvme', 'virtio', 'msix'"
    assert r.stdout.strip().endswith("[] False")


def test_a_declared_plugin_still_loads_through_importlib_metadata(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    (site / "acme_x").mkdir(parents=True)
    (site / "acme_x" / "__init__.py").write_text(
        "from handoff.plugins import Match, Plugin\n"
        "class P(Plugin):\n    name = 'acme-x'\n    match = Match.of(ids=['8086:100e'])\n"
        "    def verify(self, device, state):\n        return []\n")
    _dist(site, "acme_x", "[handoff.plugins]\nacme-x = acme_x:P\n")
    monkeypatch.syspath_prepend(str(site))
    try:
        reg = load()
        info = reg.get("acme-x")
        assert info is not None and (info.dist, info.dist_version) == ("acme_x", "1.0")
        assert info.entry_point == "acme-x = acme_x:P"
    finally:
        sys.modules.pop("acme_x", None)


# --- the restore command's own start-up ------------------------------------------------------------


def test_restore_dry_run_imports_neither_metadata_nor_pathlib(tmp_path: Path) -> None:
    """The capture kernel pays for every module: no importlib.metadata (no third-party plugin
    is installed here), no pathlib (restore builds its paths as strings), no dataclasses or
    queue. Run as the capture runtime runs it: no site (-S), packages on sys.path directly."""
    rec = tmp_path / "rec.bin"
    rec.write_bytes(record_of(saved_devices(tmp_path)))
    tree = capture_tree(tmp_path)
    proc = proc_dir(tmp_path)
    code = ("import sys; sys.path.insert(0, sys.argv[4]); sys.path += sys.argv[5:]; "
            "from handoff.cli import main; "
            "rc = main(['restore', '--record', sys.argv[1], '--sysfs-root', sys.argv[2], "
            "'--proc-root', sys.argv[3], '--dry-run']); "
            "print(rc, sorted(m for m in ('importlib.metadata', 'pathlib', 'dataclasses', "
            "'queue') if m in sys.modules), file=sys.stderr)")
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    r = subprocess.run([sys.executable, "-S", "-c", code, str(rec), str(tree.root), str(proc),
                        str(ROOT), *site], check=False, capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.stderr.strip().splitlines()[-1] == "0 []", r.stderr


# --- one selection per device -------------------------------------------------------------------


class Counting(Virtio):
    name = "counting"
    asked = 0

    def accepts(self, device):  # type: ignore[no-untyped-def]
        Counting.asked += 1
        return super().accepts(device)


def test_plugins_are_selected_once_per_device(tmp_path: Path) -> None:
    Counting.asked = 0
    plan, tree = plan_for(tmp_path, registry=Registry.of(Counting(), Nvme(), E1000(), Msix()))
    planned = Counting.asked
    offered = [d for d in plan.devices if d.selection is not None
               and Counting.match.matches(d.match.current)]
    assert offered and planned == len(offered)  # once per device, not once per phase
    assert any("counting" in d.plugins for d in offered)
    rehearse(plan, plugins=PluginRuntime(tree=tree))
    assert Counting.asked == planned  # running the phases asked no plugin again
    ops = [o for d in offered for o in d.plugin_ops if o.plugin == "counting"]
    assert ops and all(o.status == "planned" for o in ops)


# --- memoized layouts ---------------------------------------------------------------------------


def test_layout_memo_gives_what_a_fresh_walk_gives(tmp_path: Path) -> None:
    root = F.build_tree(tmp_path / "sys", F.Q35_CAPTURE)
    configs = [p.read_bytes() for p in sorted((root / "devices").rglob("config"))]
    assert len(configs) > 3
    # MSI with and without per-vector masking, a 64-bit BAR turned 32-bit: the flags and
    # type bits the layout depends on change while the capability list stays
    variants = []
    for c in configs:
        b = bytearray(c)
        for cap in R.find_caps(c):
            if not cap.extended and cap.id == R.CAP_MSI:
                b[cap.offset + 3] ^= 0x01
        b[0x10] ^= 0x04
        variants.append(bytes(b))
    images = configs + variants + [c[:64] for c in configs] + [c[:256] for c in configs]
    for c in images:
        R._LAYOUTS.clear()
        fresh = R.layout(c)
        again = R.layout(c)
        assert again == fresh and again is not fresh  # callers get their own list
    R._LAYOUTS.clear()
    cached = [_shape(R.layout(c)) for c in images]  # one memo over all of them
    R._LAYOUTS.clear()
    assert len(R._LAYOUTS) == 0
    assert cached == [_shape(R._layout(c, c[0x0E] & 0x7F, R.bar_layout(c, c[0x0E] & 0x7F),
                                       R.find_caps(c))) for c in images]


def _shape(placed: list[R.Placed]) -> list[tuple[object, ...]]:
    """A layout without the identity of its field formatters (MSI's are made per call)."""
    return [(p.offset, p.label, p.reg.name, p.reg.width, p.reg.rule, p.rw_mask, p.keep_mask,
             p.cap, tuple((f.name, f.shift, f.width, f.kind, f.why) for f in p.reg.fields))
            for p in placed]


# --- paths spelled as pathlib spells them ----------------------------------------------------------


@pytest.mark.parametrize("p", ["/sys", "/sys/", "//sys", "///sys", "sys", "./sys", "sys/.",
                               ".", "", "a//b/./c/", "/", "../x", "/a/../b"])
def test_pathstr_and_join_spell_paths_as_pathlib(p: str) -> None:
    assert _paths.pathstr(p) == str(PurePosixPath(p))  # "" is "." for both
    root = _paths.pathstr(p)
    assert _paths.join(root, "bus", "pci") == str(PurePosixPath(root) / "bus" / "pci")


def test_resolve_is_realpath(tmp_path: Path) -> None:
    (tmp_path / "real" / "dev").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for p in (tmp_path / "link" / "dev", tmp_path / "link", tmp_path / "nope" / "x",
              tmp_path / "link" / ".." / "link"):
        assert _paths.resolve(str(p)) == os.path.realpath(p)
    assert _paths.inside(_paths.resolve(str(tmp_path / "link" / "dev")),
                         os.path.realpath(tmp_path))
    assert not _paths.inside("/ab", "/a") and _paths.inside("/a", "/a")


def test_worker_pool_is_module_state() -> None:
    """Guard for the fork hook: the idle list exists and holds live threads only."""
    assert all(w.thread.is_alive() for w in runner_mod._idle)
    assert Match.of(ids=["1af4:1041"]) == Match.of(ids=["1af4:1041"])
    assert isinstance(Plugin(), Plugin)
