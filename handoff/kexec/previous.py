"""Who loaded the kexec kernel that ``handoff load`` is about to replace, and how to go back.

The kernel keeps one crash image (kexec_crash_image) and one kexec image; loading another
frees the old one first (kernel/kexec.c do_kexec_load(), kernel/kexec_file.c). The kernel does not
say who loaded it or from which files, so this reads what the loaders leave: handoff's own
loaded.json for this boot, else the distro's kdump configuration (kdump-tools' or kdumpctl's)
and what it would load. Nothing here writes or runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handoff.errors import HandoffError
from handoff.kexec import cmdline, config, state


@dataclass
class Previous:
    """A loaded kernel handoff did not load. ``kernel``/``initrd``/``cmdline`` are what its
    loader is configured with (the kernel does not keep the names), None when unknown."""

    mode: str  # "crash" or "reboot"
    owner: str
    evidence: str
    kernel: str | None
    initrd: str | None
    cmdline: str | None
    how_back: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        """What ``load`` prints: who, which files, that it is replaced, how to go back."""
        what = "crash kernel" if self.mode == "crash" else "kexec kernel"
        out = [(f"a {what} is already loaded by {self.owner} ({self.evidence}); "
                "it will be replaced")]
        for k, v in (("kernel", self.kernel), ("initrd", self.initrd),
                     ("cmdline", self.cmdline)):
            if v:
                out.append(f"  its {k}: {v}")
        out.append(f"  to go back: {self.how_back}")
        return out


def loaded_by_other(host: config.Host, mode: str) -> Previous | None:
    """The kernel loaded now in ``mode``, if there is one and handoff did not load it."""
    flag = "kexec_crash_loaded" if mode == "crash" else "kexec_loaded"
    if state.loaded_flag(host, mode) is not True:
        return None
    try:
        mine = state.read_state(host)
    except HandoffError:
        mine = None
    if mine is not None and mine.mode == mode and (not mine.boot_id
                                                   or mine.boot_id == state.boot_id(host)):
        return None
    evidence = f"{flag} = 1"
    if mode == "reboot":
        return Previous(mode, "another program (not handoff)", evidence, None, None, None,
                        "`handoff unload --kexec-reboot`, then load that kernel again with "
                        "`kexec -l`")
    release = host.kernel_release
    tools, ctl = host.p(config.KDUMP_TOOLS_CONF), host.p(config.KDUMPCTL_CONF)
    try:
        if tools.is_file():
            cfg = config._from_kdump_tools(host, tools, release)
            owner = f"kdump-tools ({config.KDUMP_TOOLS_CONF})"
            back = "`handoff unload && kdump-config load` (or `systemctl restart kdump-tools`)"
        elif ctl.is_file():
            cfg = config._from_kdumpctl(host, ctl, release)
            owner = f"kdumpctl ({config.KDUMPCTL_CONF})"
            back = "`handoff unload && kdumpctl restart` (or `systemctl restart kdump`)"
        else:
            return Previous(mode, "another program (not handoff; no kdump-tools or kdumpctl "
                                  "configuration here)", evidence, None, None, None,
                            "`handoff unload`, then load that kernel again with `kexec -p`")
    except HandoffError as e:
        return Previous(mode, f"the distro's kdump ({e})", evidence, None, None, None,
                        "`handoff unload`, then restart the distro's kdump service")
    base = cfg.base_cmdline if cfg.base_cmdline is not None else \
        (host.read_text("/proc/cmdline") or "")
    kernel_words, init = cmdline.parse(base)
    words = cmdline.remove(kernel_words, cfg.remove) + cmdline.split(cfg.append)
    line = " ".join(words + (["--", *init] if init else []))
    return Previous(mode, owner, evidence, str(cfg.kernel),
                    str(cfg.initrd) if cfg.initrd else None, line or None, back)
