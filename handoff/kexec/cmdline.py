"""Capture kernel command line: distro base, removals, kdump additions and handoff parameters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def split(cmdline: str) -> list[str]:
    """Split like the kernel's next_arg(): spaces separate, double quotes group (and stay)."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in cmdline.strip():
        if ch == '"':
            quoted = not quoted
        if ch.isspace() and not quoted:
            if cur:
                out.append("".join(cur))
                cur = []
            continue
        cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def name(param: str) -> str:
    """Parameter name; the kernel treats '-' and '_' alike in names (parameq())."""
    return param.split("=", 1)[0].replace("-", "_")


def remove(params: Iterable[str], names: Iterable[str]) -> list[str]:
    drop = {n.replace("-", "_") for n in names}
    return [p for p in params if name(p) not in drop]


def handoff_params(generation: int, boot_id: str) -> list[str]:
    """The parameters that tell the capture side which record it was loaded with."""
    out = [f"handoff.generation={generation}"]
    if boot_id:
        out.append(f"handoff.boot_id={boot_id}")
    return out


def assemble(
    base: str,
    *,
    remove_names: Sequence[str] = (),
    append: str = "",
    extra: str = "",
    handoff: Sequence[str] = (),
    blacklist: Sequence[str] = (),
) -> str:
    """Build the capture command line.

    ``base`` loses ``remove_names``; then ``append`` (the distro's or kdump's additions) and
    ``extra`` (the user's ``--append``) follow; then ``reset_devices`` (always: drivers reset
    what they find), ``handoff`` parameters and ``module_blacklist``. A flag already present
    is not repeated; a ``handoff.*`` parameter replaces an earlier one; ``module_blacklist``
    is merged into one parameter, because the kernel keeps only the last occurrence
    (core_param charp in kernel/module/main.c).
    """
    params = remove(split(base), remove_names)
    for p in split(append) + split(extra) + ["reset_devices"] + list(handoff):
        _add(params, p)
    modules: list[str] = []
    for p in params:
        if name(p) == "module_blacklist" and "=" in p:
            modules += [m for m in p.split("=", 1)[1].split(",") if m]
    modules += list(blacklist)
    params = [p for p in params if name(p) != "module_blacklist"]
    if modules:
        params.append("module_blacklist=" + ",".join(_unique(modules)))
    return " ".join(params)


def _add(params: list[str], p: str) -> None:
    n = name(p)
    if "=" not in p:
        if p not in params:
            params.append(p)
        return
    if n.startswith("handoff."):
        params[:] = [q for q in params if name(q) != n]
    params.append(p)


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        seen.setdefault(i.replace("-", "_"), None)
    return list(seen)
