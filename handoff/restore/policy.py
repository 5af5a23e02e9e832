"""Restore policy: which action each device gets, from a TOML file and written-down defaults.

A policy file (docs/policy.md) holds an ordered list of rules; the first rule whose criteria
all match a device decides its action. Devices no rule matches get the action the record
carries (chosen at save time, by the same defaults), else :func:`default_action`. Mistakes
in the file are a :class:`~handoff.errors.UsageError` naming the line and the key.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from handoff._slots import Frozen
from handoff.devices.model import PciDevice
from handoff.devices.patterns import (  # noqa: F401  (re-exported: the old import names)
    ACTIONS,
    QUIESCE,
    RESET,
    RESTORE_EARLY,
    RESTORE_LIVE,
    SKIP,
    ClassPattern,
    IdPattern,
    default_action,
    default_rule,
    is_bridge,
    parse_address,
    parse_class,
    parse_driver,
    parse_id,
)
from handoff.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

_set = object.__setattr__

# drivers/pci/pci.c pci_reset_fn_methods[] names, as sysfs reset_method accepts them.
RESET_METHODS = ("device_specific", "acpi", "flr", "af_flr", "pm", "bus", "cxl_bus")
# What restore may do instead when the kernel refuses what the action needs (docs/lockdown.md).
FALLBACKS = ("reset", "rescan", "skip")
# What restore does with a difference in a resource the kernel placed (a BAR, the ROM, bus
# numbers, a window; restore/owners.py): report it (the default: never move a resource), or
# write the saved value and remove + rescan so the kernel reads it again (docs/policy.md).
REPORT, RESCAN_OWNED = "report", "rescan"
KERNEL_OWNED = (REPORT, RESCAN_OWNED)
POLICY_VERSION = 1
_PLUGIN_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # handoff.plugins.api.NAME_RE

# plugins: True (every installed plugin that takes the device), False, or the names allowed.
Plugins = bool | tuple[str, ...]

_MODULE = re.compile(r"^[A-Za-z0-9_\-]+$")


class Rule(Frozen):
    __slots__ = (
        "action",
        "address",
        "cls",
        "driver",
        "fallback",
        "id",
        "index",
        "kernel_owned",
        "line",
        "plugins",
        "reset_method",
        "why",
    )
    index: int  # 1-based position among the rules
    line: int  # line of its [[rule]] header in the file, 0 when not from a file
    action: str
    address: str | None
    id: IdPattern | None
    cls: ClassPattern | None
    driver: str | None
    reset_method: str | None
    why: str | None
    plugins: Plugins | None  # None: the policy's top-level setting
    fallback: tuple[str, ...] | None
    kernel_owned: str | None  # None: the policy's top-level setting

    def __init__(self, index: int, line: int, action: str, address: str | None = None,
                 id: IdPattern | None = None, cls: ClassPattern | None = None,
                 driver: str | None = None, reset_method: str | None = None,
                 why: str | None = None, plugins: Plugins | None = None,
                 fallback: tuple[str, ...] | None = None,
                 kernel_owned: str | None = None) -> None:
        _set(self, "index", index)
        _set(self, "line", line)
        _set(self, "action", action)
        _set(self, "address", address)
        _set(self, "id", id)
        _set(self, "cls", cls)
        _set(self, "driver", driver)
        _set(self, "reset_method", reset_method)
        _set(self, "why", why)
        _set(self, "plugins", plugins)
        _set(self, "fallback", fallback)
        _set(self, "kernel_owned", kernel_owned)

    def matches(self, dev: PciDevice) -> bool:
        if self.address is not None and not fnmatch.fnmatchcase(dev.addr, self.address):
            return False
        if self.id is not None and not self.id.matches(dev.ids.vendor, dev.ids.device):
            return False
        if self.cls is not None and not self.cls.matches(dev.ids.class_code):
            return False
        return self.driver is None or self.driver == (dev.driver or "")

    def describe(self) -> str:
        crit = [f"{k}={v}" for k, v in (
            ("address", self.address), ("id", self.id and self.id.text),
            ("class", self.cls and self.cls.text), ("driver", self.driver)) if v is not None]
        where = f" (line {self.line})" if self.line else ""
        return f"rule {self.index}{where}: {' '.join(crit)}"


class Decision(Frozen):
    __slots__ = (
        "action",
        "fallback",
        "fallback_source",
        "kernel_owned",
        "plugins",
        "reset_method",
        "rule",
        "source",
        "why",
    )
    action: str
    why: str
    rule: Rule | None
    reset_method: str | None
    source: str  # "rule", "policy default", "record" or "default"
    plugins: Plugins
    fallback: tuple[str, ...] | None  # None: the built-in default for the device kind
    fallback_source: str | None  # "rule 2 (line 9)", "policy fallback"
    kernel_owned: str  # report or rescan

    def __init__(self, action: str, why: str, rule: Rule | None = None,
                 reset_method: str | None = None, source: str = "default", plugins: Plugins = True,
                 fallback: tuple[str, ...] | None = None,
                 fallback_source: str | None = None, kernel_owned: str = REPORT) -> None:
        _set(self, "action", action)
        _set(self, "why", why)
        _set(self, "rule", rule)
        _set(self, "reset_method", reset_method)
        _set(self, "source", source)
        _set(self, "plugins", plugins)
        _set(self, "fallback", fallback)
        _set(self, "fallback_source", fallback_source)
        _set(self, "kernel_owned", kernel_owned)


class Policy(Frozen):
    __slots__ = ("blacklist", "default", "fallback", "kernel_owned", "plugins", "rules",
                 "source")
    rules: tuple[Rule, ...]
    blacklist: tuple[str, ...]
    default: str | None  # action for devices no rule matches (None: record, defaults)
    source: str
    plugins: Plugins  # top-level ``plugins``
    fallback: tuple[str, ...] | None  # top-level ``fallback`` (never for bridges)
    kernel_owned: str  # top-level ``kernel_owned`` (never for bridges)

    def __init__(self, rules: tuple[Rule, ...] = (), blacklist: tuple[str, ...] = (),
                 default: str | None = None, source: str = "built-in defaults",
                 plugins: Plugins = True, fallback: tuple[str, ...] | None = None,
                 kernel_owned: str = REPORT) -> None:
        _set(self, "rules", rules)
        _set(self, "blacklist", blacklist)
        _set(self, "default", default)
        _set(self, "source", source)
        _set(self, "plugins", plugins)
        _set(self, "fallback", fallback)
        _set(self, "kernel_owned", kernel_owned)

    def check_plugins(self, known: Iterable[str]) -> None:
        """Refuse a plugin name that no installed plugin has: a typo ("nvmee") would silently
        run no plugin on the devices it was meant for."""
        names = set(known)
        where = [(None, self.plugins)] + [(r, r.plugins) for r in self.rules]
        for rule, setting in where:
            if isinstance(setting, bool) or setting is None:
                continue
            bad = [n for n in setting if n not in names]
            if bad:
                at = (f"{self.source}:{rule.line}: rule {rule.index}" if rule and rule.line
                      else f"{self.source}: " + (f"rule {rule.index}" if rule else "top level"))
                raise UsageError(
                    f"{at}, key 'plugins': no installed plugin is named "
                    f"{', '.join(repr(n) for n in bad)} (installed: "
                    f"{', '.join(sorted(names)) or 'none'})",
                    hint="fix the name; `handoff plugins` lists the installed plugins")

    def decide(self, dev: PciDevice, recorded: str | None = None) -> Decision:
        """Rule, then the policy's ``default``, then the record's action, then defaults.
        A rule's ``plugins``, ``fallback`` and ``kernel_owned`` win over the top-level ones."""
        d = self._decide(dev, recorded)
        ko = self._kernel_owned(dev, d.rule)
        if ko == d.kernel_owned:
            return d
        return Decision(d.action, d.why, d.rule, d.reset_method, d.source, d.plugins,
                        d.fallback, d.fallback_source, ko)

    def _kernel_owned(self, dev: PciDevice, rule: Rule | None) -> str:
        if rule is not None and rule.kernel_owned is not None:
            return rule.kernel_owned
        # As with fallback: removing a bridge removes everything behind it, so only a rule
        # that matches the bridge itself can ask for that.
        return REPORT if is_bridge(dev) else self.kernel_owned

    def _decide(self, dev: PciDevice, recorded: str | None) -> Decision:
        for r in self.rules:
            if r.matches(dev):
                why = r.why or f"policy {r.describe()}"
                fb, src = self._fallback(dev, r)
                return Decision(r.action, why, r, r.reset_method, "rule",
                                self.plugins if r.plugins is None else r.plugins, fb, src)
        fb, src = self._fallback(dev, None)
        if self.default is not None:
            return Decision(self.default, f"policy default = {self.default!r}",
                            source="policy default", plugins=self.plugins, fallback=fb,
                            fallback_source=src)
        d = default_decision(dev, blacklist=self.blacklist)
        if recorded in ACTIONS:
            why = d.why if d.action == recorded else "chosen at save time"
            return Decision(recorded, f"recorded: {why}", source="record",
                            plugins=self.plugins, fallback=fb, fallback_source=src)
        return Decision(d.action, d.why, source=d.source, plugins=self.plugins, fallback=fb,
                        fallback_source=src)

    def _fallback(self, dev: PciDevice, rule: Rule | None) -> tuple[tuple[str, ...] | None,
                                                                    str | None]:
        if rule is not None and rule.fallback is not None:
            where = f" (line {rule.line})" if rule.line else ""
            return rule.fallback, f"rule {rule.index}{where}"
        # The top-level list never reaches a bridge: removing one removes everything behind
        # it. Only a rule that matches the bridge itself can ask for that.
        if self.fallback is not None and not is_bridge(dev):
            return self.fallback, "policy fallback"
        return None, None

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "rules": len(self.rules),
                "blacklist": list(self.blacklist), "default": self.default,
                "plugins": self.plugins if isinstance(self.plugins, bool)
                else list(self.plugins),
                "fallback": list(self.fallback) if self.fallback else None,
                "kernel_owned": self.kernel_owned}


def default_decision(dev: PciDevice, *, blacklist: Iterable[str] = ()) -> Decision:
    """The built-in defaults (docs/policy.md, "Default policy"), first match wins."""
    action, why = default_rule(dev, blacklist)
    return Decision(action, why)


# --- the file ------------------------------------------------------------------------------

_TOP_KEYS = ("version", "blacklist", "default", "plugins", "fallback", "kernel_owned", "rule")
_RULE_KEYS = ("address", "id", "class", "driver", "action", "reset_method", "plugins",
              "fallback", "kernel_owned", "why")
_LIST_KEYS = ("plugins", "fallback")  # the rule keys that are not strings


def load_policy(path: str | Path) -> Policy:
    from pathlib import Path  # only with a policy file: pathlib costs every start-up otherwise

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        from handoff.errors import os_reason

        raise UsageError(f"cannot read policy file {p}: {os_reason(e)}",
                         hint="pass --policy with a readable TOML file") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"cannot read policy file {p}: not UTF-8 text ({e.reason} at byte "
                         f"{e.start})",
                         hint="pass --policy with a readable TOML file") from None
    return parse_policy(text, str(p))


def parse_policy(text: str, name: str = "<policy>") -> Policy:
    """Parse a policy file's text; errors name ``name:line`` and the key."""
    try:
        import tomllib  # only when a policy file is read: it costs every start-up otherwise

        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        where = f"{name}:{m.group(1)}" if m else name
        raise UsageError(f"{where}: not valid TOML: {e}",
                         hint="fix the syntax; see docs/policy.md for the format") from None
    loc = _Locator(text, name)
    for key in doc:
        if key not in _TOP_KEYS:
            raise loc.error(None, key, f"unknown key (expected one of {', '.join(_TOP_KEYS)})")
    version = doc.get("version", POLICY_VERSION)
    if version != POLICY_VERSION:
        raise loc.error(None, "version", f"policy version {version!r} is not {POLICY_VERSION}")
    bl = doc.get("blacklist", [])
    if not isinstance(bl, list) or not all(isinstance(m, str) and _MODULE.match(m) for m in bl):
        raise loc.error(None, "blacklist", "expected a list of module names "
                                           "(e.g. blacklist = [\"mlx5_core\"])")
    default = doc.get("default")
    if default is not None and default != "auto" and default not in ACTIONS:
        raise loc.error(None, "default", f"unknown action {default!r} "
                                         f"(expected auto or one of {', '.join(ACTIONS)})")
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        raise loc.error(None, "rule", "rules are tables: write each one as [[rule]]")
    rules = tuple(_rule(i, r, loc) for i, r in enumerate(raw_rules))
    plugins = _plugins(doc["plugins"], loc, None) if "plugins" in doc else True
    fallback = _fallback(doc["fallback"], loc, None) if "fallback" in doc else None
    ko = _kernel_owned(doc["kernel_owned"], loc, None) if "kernel_owned" in doc else REPORT
    return Policy(rules, tuple(bl), None if default in (None, "auto") else default, name,
                  plugins, fallback, ko)


def _kernel_owned(v: Any, loc: _Locator, rule: int | None) -> str:
    if v not in KERNEL_OWNED:
        raise loc.error(rule, "kernel_owned", f"expected \"report\" or \"rescan\", got {v!r}")
    return str(v)


def _plugins(v: Any, loc: _Locator, rule: int | None) -> Plugins:
    """``true``, ``false`` or a list of plugin names (``handoff plugins`` lists them)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, list) and all(isinstance(n, str) and _PLUGIN_NAME.match(n) for n in v):
        return tuple(dict.fromkeys(v))
    raise loc.error(rule, "plugins", "expected true, false or a list of plugin names "
                                     "(e.g. plugins = [\"nvme\", \"msix\"])")


def _fallback(v: Any, loc: _Locator, rule: int | None) -> tuple[str, ...]:
    """An ordered list of fallbacks, each at most once; ``skip`` ends the list if given."""
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise loc.error(rule, "fallback", "expected a non-empty list, e.g. "
                                          "fallback = [\"reset\", \"rescan\", \"skip\"]")
    for x in v:
        if x not in FALLBACKS:
            raise loc.error(rule, "fallback", f"unknown fallback {x!r} "
                                              f"(expected some of {', '.join(FALLBACKS)})")
    if len(set(v)) != len(v):
        raise loc.error(rule, "fallback", "each fallback may appear once")
    if "skip" in v and v[-1] != "skip":
        raise loc.error(rule, "fallback", "'skip' always succeeds: it can only come last")
    return tuple(v)


def _rule(i: int, r: dict[str, Any], loc: _Locator) -> Rule:
    for key, v in r.items():
        if key not in _RULE_KEYS:
            raise loc.error(i, key, f"unknown key (expected one of {', '.join(_RULE_KEYS)})")
        if key not in _LIST_KEYS and not isinstance(v, str):
            raise loc.error(i, key, f"expected a string, got {type(v).__name__}")
    if "action" not in r:
        raise loc.error(i, None, "missing key 'action' "
                                 f"(one of {', '.join(ACTIONS)})")
    action = r["action"]
    if action not in ACTIONS:
        raise loc.error(i, "action", f"unknown action {action!r} "
                                     f"(expected one of {', '.join(ACTIONS)})")
    if not any(k in r for k in ("address", "id", "class", "driver")):
        raise loc.error(i, None, "a rule needs at least one of address, id, class, driver "
                                 "(use the top-level 'default' for every other device)")
    kw: dict[str, Any] = {}
    for key, parse in (("address", parse_address), ("id", parse_id), ("class", parse_class),
                       ("driver", parse_driver)):
        if key in r:
            try:
                kw["cls" if key == "class" else key] = parse(r[key])
            except ValueError as e:
                raise loc.error(i, key, str(e)) from None
    rm = r.get("reset_method")
    if rm is not None:
        if action != RESET:
            raise loc.error(i, "reset_method", "only a rule with action = \"reset\" takes "
                                               "a reset_method")
        if rm not in RESET_METHODS:
            raise loc.error(i, "reset_method", f"unknown reset method {rm!r} "
                                               f"(expected one of {', '.join(RESET_METHODS)})")
    if "plugins" in r:
        kw["plugins"] = _plugins(r["plugins"], loc, i)
    if "fallback" in r:
        kw["fallback"] = _fallback(r["fallback"], loc, i)
    if "kernel_owned" in r:
        kw["kernel_owned"] = _kernel_owned(r["kernel_owned"], loc, i)
    return Rule(i + 1, loc.rule_line(i), action, reset_method=rm,
                why=r.get("why"), **kw)


class _Locator:
    """Finds the line of a key by scanning the text: tomllib reports lines only for syntax."""

    def __init__(self, text: str, name: str) -> None:
        self.text = text
        self.name = name
        self._rules: list[int] = []  # line of each [[rule]] header
        lines = self.text.splitlines()
        self._top_end = len(lines)
        for n, line in enumerate(lines, 1):
            s = line.strip()
            if s.startswith("["):
                self._top_end = min(self._top_end, n - 1)
                if re.match(r"^\[\[\s*rule\s*\]\]", s):
                    self._rules.append(n)
        self.lines = lines

    def rule_line(self, i: int) -> int:
        return self._rules[i] if i < len(self._rules) else 0

    def key_line(self, rule: int | None, key: str | None) -> int:
        if rule is None:
            start, end = 0, self._top_end
        else:
            start = self.rule_line(rule)
            later = [n for n in self._rules if n > start] + [
                n for n, ln in enumerate(self.lines, 1) if n > start and ln.strip().startswith("[")]
            end = min(later) - 1 if later else len(self.lines)
            if key is None:
                return start
        if key is None:
            return 0
        pat = re.compile(rf"^\s*(\"{re.escape(key)}\"|'{re.escape(key)}'|{re.escape(key)})\s*=")
        for n in range(start + 1 if rule is not None else 1, end + 1):
            if pat.match(self.lines[n - 1]):
                return n
        for n, line in enumerate(self.lines, 1):  # e.g. [[rule]] written as a table header
            if re.match(rf"^\s*\[+\s*{re.escape(key)}\s*\]+", line):
                return n
        return start

    def error(self, rule: int | None, key: str | None, msg: str) -> UsageError:
        line = self.key_line(rule, key)
        where = f"{self.name}:{line}" if line else self.name
        what = f"rule {rule + 1}" if rule is not None else "top level"
        k = f", key {key!r}" if key else ""
        return UsageError(f"{where}: {what}{k}: {msg}",
                          hint="fix the policy file; docs/policy.md describes every key")


DEFAULT_POLICY = Policy()
