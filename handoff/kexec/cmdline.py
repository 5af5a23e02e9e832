"""Capture kernel command line: parsed as the kernel parses it, then distro base, removals,
kdump additions and handoff parameters.

The rules are the kernel's own. lib/cmdline.c ``next_arg()`` splits at unquoted white space
(the kernel's ``isspace()``: ``\\t \\n \\v \\f \\r``, space and 0xa0); a double quote toggles
quoting anywhere in a word; a word that starts with ``"`` loses that quote and its closing
one; ``name="v a l"`` loses the quotes around the value. kernel/params.c ``parse_args()``
stops at the first bare ``--``, and init/main.c ``start_kernel()`` hands everything after it
to init as arguments. So handoff's own parameters always go before the ``--``, and the
arguments after it are carried through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# The kernel's isspace() (lib/ctype.c _ctype: _S for 9-13, _SP for 32 and 160).
_SPACE = frozenset("\t\n\v\f\r \xa0")

# Dropped whatever the source of the base line: initrd= names the first kernel's image (the
# boot loader's business), and rdinit= would run another program than the capture initrd's
# /init, so neither handoff's restore hooks nor the distro's dump would run.
ALWAYS_REMOVE = ("initrd", "rdinit")


def split(cmdline: str) -> list[str]:
    """The words of ``cmdline`` as ``next_arg()`` delimits them, quotes kept."""
    out: list[str] = []
    i, n = 0, len(cmdline)
    while i < n:
        while i < n and cmdline[i] in _SPACE:
            i += 1
        if i >= n:
            break
        start = i
        in_quote = cmdline[i] == '"'
        if in_quote:
            i += 1
        while i < n and (in_quote or cmdline[i] not in _SPACE):
            if cmdline[i] == '"':
                in_quote = not in_quote
            i += 1
        out.append(cmdline[start:i])
    return out


def param(word: str) -> tuple[str, str | None]:
    """``(name, value)`` of one word as ``next_arg()`` returns them (value None: no ``=``)."""
    quoted = word.startswith('"')
    a = list(word[1:] if quoted else word)
    n = len(a)
    # next_arg() records the first '=' after position 0 ("equals == 0" means "none yet").
    equals = next((j for j in range(1, n) if a[j] == "="), 0)
    val_at = None
    if equals:
        a[equals] = "\0"
        val_at = equals + 1
        if val_at < n and a[val_at] == '"':  # "Don't include quotes in value."
            val_at += 1
            if a[n - 1] == '"':
                a[n - 1] = "\0"
    if quoted and n > 0 and a[n - 1] == '"':
        a[n - 1] = "\0"
    text = "".join(a)

    def cstr(at: int) -> str:  # up to the first NUL, as C reads it
        return text[at:].split("\0", 1)[0]

    return cstr(0), None if val_at is None else cstr(val_at)


def parse(cmdline: str) -> tuple[list[str], list[str]]:
    """``(kernel words, init words)``: ``parse_args()`` stops at the first bare ``--``."""
    words = split(cmdline)
    for i, w in enumerate(words):
        if param(w) == ("--", None):
            return words[:i], words[i + 1:]
    return words, []


def name(word: str) -> str:
    """Parameter name; the kernel treats '-' and '_' alike in names (parameq())."""
    return param(word)[0].replace("-", "_")


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

    ``base``'s kernel part loses ``remove_names`` and :data:`ALWAYS_REMOVE`; then ``append``
    (the distro's or kdump's additions) and ``extra`` (the user's ``--append``) follow; then
    ``reset_devices`` (always: drivers reset what they find), ``handoff`` parameters and
    ``module_blacklist``, all before the ``--``. The init arguments of ``base``, ``append``
    and ``extra`` (what follows a ``--`` in each) follow one ``--`` at the end, in that order.
    A flag already present is not repeated; a ``handoff.*`` parameter replaces an earlier one;
    ``module_blacklist`` is merged into one parameter, because the kernel keeps only the last
    occurrence (core_param charp in kernel/module/main.c).
    """
    kernel, init = parse(base)
    params = remove(kernel, tuple(remove_names) + ALWAYS_REMOVE)
    more: list[str] = []
    for line in (append, extra):
        k, i = parse(line)
        more += remove(k, ALWAYS_REMOVE)
        init += i
    for p in more + ["reset_devices"] + list(handoff):
        _add(params, p)
    modules: list[str] = []
    for p in params:
        n, v = param(p)
        if n.replace("-", "_") == "module_blacklist" and v:
            modules += [m for m in v.split(",") if m]
    modules += list(blacklist)
    params = [p for p in params if name(p) != "module_blacklist"]
    if modules:
        params.append("module_blacklist=" + ",".join(_unique(modules)))
    return " ".join(params + (["--", *init] if init else []))


def _add(params: list[str], p: str) -> None:
    n, v = param(p)
    if v is None:
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
