"""Why kexec failed: its stderr and the kernel log lines it caused, turned into what to do.

Measured messages (lockdown-measured.md): under lockdown both syscalls fail with
"kexec_load failed: Operation not permitted" / "kexec_file_load failed: Operation not
permitted", exit 255, and the kernel logs "Lockdown: kexec: kexec of unsigned images is
restricted; see man kernel_lockdown.7".
"""

from __future__ import annotations

import errno
import os
import re

from handoff.errors import EnvironmentProblem, HandoffError
from handoff.kexec.runner import Result, format_argv

LOCKDOWN_LINE = "kexec of unsigned images is restricted"

KEYRING_HINT = (
    "the kernel image must be signed by a key in the kernel's keyrings (.builtin_trusted_keys, "
    ".secondary_trusted_keys, or .platform, which holds the UEFI db and the MOK list: enroll a "
    "key with `mokutil --import` and sign the image with sbsign), and it must be loaded with "
    "kexec_file_load (`handoff load --syscall file`, kexec -s); the distribution's signed "
    "kernel works when its signing CA is in one of those keyrings"
)


class KernelLog:
    """New kernel log lines since construction, from /dev/kmsg (or a file standing in for it).

    Reading /dev/kmsg needs no privilege beyond root's and leaves the log untouched; the
    reader is positioned at the end first, so only lines caused by what runs afterwards show.
    """

    def __init__(self, path: str) -> None:
        self.fd: int | None
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.fd = None

    def new_lines(self) -> list[str]:
        if self.fd is None:
            return []
        out: list[str] = []
        try:
            while len(out) < 1000:
                try:
                    chunk = os.read(self.fd, 8192)
                except OSError as e:
                    if e.errno == errno.EPIPE:  # records were overwritten; keep reading
                        continue
                    break  # EAGAIN: no more records
                if not chunk:
                    break
                for line in chunk.decode("utf-8", "replace").splitlines():
                    if not line or line.startswith(" "):
                        continue  # /dev/kmsg continuation lines hold key=value metadata
                    out.append(re.sub(r"^\d+,\d+,\d+,[^;]*;", "", line))
        finally:
            os.close(self.fd)
            self.fd = None
        return out


def explain(res: Result, log: list[str], *, lockdown: str | None, syscall_flag: str | None,
            recommended_crashkernel: str | None = None) -> HandoffError:
    """The error to raise for a failed kexec run; always quotes kexec and the kernel."""
    text = (res.stderr + "\n" + res.stdout).strip()
    said = "; ".join(line.strip() for line in text.splitlines()[-4:] if line.strip())
    klog = [line for line in log if "kexec" in line.lower() or "lockdown" in line.lower()
            or "PEFILE" in line or "Crash" in line or "crash" in line]
    detail = f"kexec exited {res.returncode}" + (f": {said}" if said else "")
    if klog:
        detail += "; kernel: " + " | ".join(klog[-4:])
    eperm = "Operation not permitted" in text
    locked = any(LOCKDOWN_LINE in line for line in log) or lockdown not in (None, "none")

    if eperm and locked:
        mode = f" (lockdown: {lockdown})" if lockdown else ""
        first = "" if syscall_flag == "-s" else (
            "kexec_load is always refused under lockdown, so use --syscall file; then ")
        return EnvironmentProblem(
            f"the kernel refused the capture kernel: kexec of unsigned images is restricted"
            f"{mode} [{detail}]",
            hint=first + KEYRING_HINT,
        )
    if any(s in text for s in ("Key was rejected", "Required key not available",
                               "Bad message")) or any(
            "signature verification failed" in line for line in log):
        return EnvironmentProblem(
            f"the kernel could not verify the capture kernel's signature [{detail}]",
            hint=KEYRING_HINT,
        )
    if eperm:
        return EnvironmentProblem(
            f"kexec is not permitted [{detail}]",
            hint="run as root with CAP_SYS_BOOT (not in an unprivileged container), and check "
                 "that kernel.kexec_load_disabled is 0",
        )
    if any(s in text for s in ("Could not find a free area", "Cannot allocate memory",
                               "Cannot assign requested address", "Not enough memory",
                               "Cannot load")):
        size = f"crashkernel={recommended_crashkernel}" if recommended_crashkernel else \
            "a larger crashkernel="
        return EnvironmentProblem(
            f"the capture kernel and initrd do not fit in the reserved crash memory [{detail}]",
            hint=f"boot with {size}, or use a smaller capture initrd",
        )
    if "Device or resource busy" in text:
        return EnvironmentProblem(
            f"another kexec load or a crash dump is in progress [{detail}]",
            hint="wait for it to finish (systemctl status kdump / kdump-tools) and retry",
        )
    if "Cannot determine the file type" in text or "Invalid argument" in text:
        return EnvironmentProblem(
            f"kexec did not accept the capture kernel or its arguments [{detail}]",
            hint="check that --kernel is a bzImage/vmlinuz for this architecture; with "
                 "--syscall file the image must be a PE/bzImage the kernel can verify",
        )
    return EnvironmentProblem(
        f"kexec failed [{detail}]",
        hint=f"the command was: {format_argv(res.argv)}; run it by hand with -d for details",
    )
