"""Find the installed plugins: the built-ins and the ``handoff.plugins`` entry-point group.

A third-party plugin that fails to import, to instantiate or to pass the checks below is a
:class:`LoadProblem` in the registry, reported by ``handoff plugins`` and carried into the
restore report; it never stops the other plugins from loading. Built-ins load first and keep
their names: a plugin's name is its ext-section key, so two plugins may not share one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from handoff._slots import Frozen, Slots
from handoff.plugins.api import API_VERSION, NAME_RE, Match, Plugin

_set = object.__setattr__

if TYPE_CHECKING:  # pragma: no cover
    from handoff.devices.model import PciDevice

GROUP = "handoff.plugins"
BUILTIN = "built-in"
ENTRY_POINT = "entry point"


class PluginInfo(Frozen):
    """A loaded plugin and where it came from."""

    __slots__ = ("dist", "dist_version", "entry_point", "plugin", "source")
    plugin: Plugin
    source: str  # BUILTIN or ENTRY_POINT
    entry_point: str | None  # "name = module:attr"
    dist: str | None  # distribution that declared the entry point
    dist_version: str | None

    def __init__(self, plugin: Plugin, source: str, entry_point: str | None = None,
                 dist: str | None = None, dist_version: str | None = None) -> None:
        _set(self, "plugin", plugin)
        _set(self, "source", source)
        _set(self, "entry_point", entry_point)
        _set(self, "dist", dist)
        _set(self, "dist_version", dist_version)

    @property
    def name(self) -> str:
        return self.plugin.name

    def origin(self) -> str:
        if self.source == BUILTIN:
            return BUILTIN
        d = f"{self.dist} {self.dist_version}" if self.dist else "unknown distribution"
        return f"{d} ({self.entry_point})"

    def to_json(self) -> dict[str, Any]:
        p = self.plugin
        return {"name": p.name, "version": p.version, "description": p.description,
                "source": self.source, "entry_point": self.entry_point, "dist": self.dist,
                "dist_version": self.dist_version, "api_version": p.api_version,
                "ext_version": p.ext_version, "order": p.order, "hooks": list(p.hooks()),
                "matches": p.match.describe(), "requires": p.requires or None}


class LoadProblem(Frozen):
    """An entry point that did not give a usable plugin, and why."""

    __slots__ = ("dist", "entry_point", "error")
    entry_point: str
    dist: str | None
    error: str

    def __init__(self, entry_point: str, dist: str | None, error: str) -> None:
        _set(self, "entry_point", entry_point)
        _set(self, "dist", dist)
        _set(self, "error", error)

    def __str__(self) -> str:
        who = f" from {self.dist}" if self.dist else ""
        return f"plugin entry point {self.entry_point!r}{who}: {self.error}"

    def to_json(self) -> dict[str, Any]:
        return {"entry_point": self.entry_point, "dist": self.dist, "error": self.error}


class Selection(Slots):
    """The plugins offered one device: accepted, declined (with why) and those whose
    ``accepts`` raised (with the error)."""

    __slots__ = ("accepted", "declined", "errors")
    accepted: list[PluginInfo]
    declined: dict[str, str]
    errors: dict[str, str]

    def __init__(self, accepted: list[PluginInfo] | None = None,
                 declined: dict[str, str] | None = None,
                 errors: dict[str, str] | None = None) -> None:
        self.accepted = [] if accepted is None else accepted
        self.declined = {} if declined is None else declined
        self.errors = {} if errors is None else errors


class Registry:
    """Plugins in run order (``order``, then name) and the problems met loading them."""

    def __init__(self, plugins: Iterable[PluginInfo] = (),
                 problems: Iterable[LoadProblem] = ()) -> None:
        self.plugins = sorted(plugins, key=lambda i: (i.plugin.order, i.name))
        self.problems = list(problems)

    @classmethod
    def of(cls, *plugins: Plugin) -> Registry:
        """A registry of exactly these plugins (tests, or an engine that wants a subset)."""
        infos, problems = [], []
        for p in plugins:
            why = check_plugin(p)
            if why:
                problems.append(LoadProblem(repr(p), None, why))
            else:
                infos.append(PluginInfo(p, BUILTIN))
        return cls(infos, problems)

    def get(self, name: str) -> PluginInfo | None:
        return next((i for i in self.plugins if i.name == name), None)

    def names(self) -> list[str]:
        return [i.name for i in self.plugins]

    def select(self, device: PciDevice) -> Selection:
        sel = Selection()
        for info in self.plugins:
            if not info.plugin.match.matches(device):
                continue
            try:
                why = info.plugin.accepts(device)
            except Exception as e:  # noqa: BLE001 - a plugin bug: reported, device offered on
                sel.errors[info.name] = f"accepts() raised {type(e).__name__}: {e}"
                continue
            if why is None:
                sel.accepted.append(info)
            else:
                sel.declined[info.name] = str(why)
        return sel


def check_plugin(p: object) -> str | None:
    """Why ``p`` cannot be used as a plugin, or None."""
    if not isinstance(p, Plugin):
        return (f"{type(p).__name__} is not a handoff.plugins.Plugin (subclass it and point the "
                "entry point at the class)")
    if not isinstance(p.name, str) or not NAME_RE.match(p.name):
        return (f"name {p.name!r} is not a valid ext-section key (lower-case letters, digits, "
                "'.', '_', '-'; at most 64)")
    if not isinstance(p.match, Match):
        return f"{p.name}: 'match' is a {type(p.match).__name__}, not a Match"
    if not isinstance(p.api_version, int) or p.api_version > API_VERSION:
        return (f"{p.name} needs plugin API {p.api_version}; this handoff provides "
                f"{API_VERSION}: upgrade handoff")
    if not isinstance(p.ext_version, int) or p.ext_version < 0:
        return f"{p.name}: ext_version {p.ext_version!r} is not an unsigned integer"
    if not p.hooks():
        return f"{p.name} implements no hook (save, quiesce, reset, restore or verify)"
    return None


def builtin_plugins() -> list[Plugin]:
    from handoff.plugins.builtin import BUILTINS

    return [cls() for cls in BUILTINS]


def load(*, builtins: bool = True, entry_points: bool = True, group: str = GROUP,
         extra: Iterable[Plugin] = ()) -> Registry:
    """Load the built-ins, then every entry point of ``group``, then ``extra``."""
    infos: list[PluginInfo] = []
    problems: list[LoadProblem] = []
    taken: dict[str, str] = {}

    def add(info: PluginInfo, where: str) -> None:
        why = check_plugin(info.plugin)
        if why is None and info.name in taken:
            why = f"name {info.name!r} is already taken by {taken[info.name]}"
        if why is not None:
            problems.append(LoadProblem(where, info.dist, why))
            return
        taken[info.name] = info.origin()
        infos.append(info)

    if builtins:
        for p in builtin_plugins():
            add(PluginInfo(p, BUILTIN), f"built-in {p.name}")
    if entry_points:
        _load_entry_points(group, add, problems)
    for p in extra:
        add(PluginInfo(p, BUILTIN), repr(p))
    return Registry(infos, problems)


def declares_group(group: str = GROUP, path: Iterable[object] | None = None) -> bool:
    """Whether some distribution on ``path`` (default ``sys.path``) may declare an entry point
    of ``group``: a cheap look before :mod:`importlib.metadata` is asked.

    Importing ``importlib.metadata`` (with ``email``, ``zipfile``, ...) and letting it parse the
    metadata of every installed distribution cost ~40 ms of every restore, most often to find
    no plugin at all. This looks where ``importlib.metadata``'s path finder looks: the
    ``*.dist-info`` and ``*.egg-info`` directories (and an ``.egg``'s ``EGG-INFO``) directly
    in each ``sys.path`` directory, and reads only their ``entry_points.txt``. True as soon
    as one names ``group``, and also whenever this look cannot be sure (a zip file on the
    path, a path entry that is not a string, a meta-path finder of its own that finds
    distributions): then ``importlib.metadata`` does the full search, as it always did.
    """
    import sys
    from importlib.machinery import PathFinder

    if any(getattr(f, "find_distributions", None) is not None and f is not PathFinder
           for f in sys.meta_path):
        return True
    needle = group.encode()
    for entry in sys.path if path is None else path:
        if not isinstance(entry, str):
            return True
        root = entry or "."
        try:
            names = os.listdir(root)
        except NotADirectoryError:
            members = _zip_names(root)
            if members is None:
                return True  # a zip archive not yet read: importlib.metadata looks inside it
            if any(n.endswith("/entry_points.txt") and n.count("/") == 1 and
                   n.split("/")[0].lower().endswith((".dist-info", ".egg-info")) and
                   needle in _zip_read(root, n) for n in members):
                return True
            continue
        except OSError:
            continue  # missing or unreadable: importlib.metadata finds nothing there either
        egg = root.lower().endswith(".egg")
        for name in names:
            low = name.lower()
            if not (low.endswith((".dist-info", ".egg-info")) or (egg and low == "egg-info")):
                continue
            try:
                with open(os.path.join(root, name, "entry_points.txt"), "rb") as f:
                    if needle in f.read():
                        return True
            except OSError:
                continue  # no entry points (or an .egg-info file): nothing declared
    return False


def _zip_names(path: str) -> list[str] | None:
    """Member names of a zip on sys.path, from the directory zipimport already read for it
    (the capture runtime serves handoff from one); None when zipimport has no importer for it.

    ``zipimporter._files`` is zipimport's table of contents (3.8 to 3.13); without it this
    answers None and the caller asks importlib.metadata.
    """
    import sys

    files = getattr(sys.path_importer_cache.get(path), "_files", None)
    return list(files) if isinstance(files, dict) else None


def _zip_read(path: str, name: str) -> bytes:
    import sys

    try:
        return bytes(sys.path_importer_cache[path].get_data(name))  # type: ignore[union-attr]
    except (OSError, KeyError, AttributeError):
        return b""


def _load_entry_points(group: str, add: Any, problems: list[LoadProblem]) -> None:
    if not declares_group(group):
        return
    from importlib import metadata

    try:
        eps = list(metadata.entry_points(group=group))
    except Exception as e:  # noqa: BLE001 - broken metadata on sys.path is reported
        problems.append(LoadProblem(f"[{group}]", None,
                                    f"listing entry points failed: {type(e).__name__}: {e}"))
        return
    seen: set[tuple[str, str]] = set()
    for ep in eps:
        if (ep.name, ep.value) in seen:  # one distribution found twice on sys.path
            continue
        seen.add((ep.name, ep.value))
        dist = getattr(ep, "dist", None)
        dname = getattr(dist, "name", None)
        dver = getattr(dist, "version", None)
        where = f"{ep.name} = {ep.value}"
        try:
            obj = ep.load()
            plugin = obj() if isinstance(obj, type) else obj
        except (Exception, SystemExit) as e:  # noqa: BLE001 - one broken plugin is reported
            problems.append(LoadProblem(where, dname, f"loading failed: {type(e).__name__}: {e}"))
            continue
        add(PluginInfo(plugin, ENTRY_POINT, where, dname, dver), where)


_default: Registry | None = None
_default_lock = threading.Lock()


def default_registry(*, refresh: bool = False) -> Registry:
    """The process-wide registry (built-ins and entry points), loaded once."""
    global _default
    with _default_lock:
        if _default is None or refresh:
            _default = load()
        return _default
