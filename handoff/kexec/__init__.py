"""Loading a capture kernel that carries a handoff record: kexec-tools wrapper and runtime packer.

- :mod:`handoff.kexec.config`: where the capture kernel, initrd and command line come from
  (explicit options, Debian kdump-tools, Fedora kdumpctl, or the running kernel).
- :mod:`handoff.kexec.checks`: preflight checks (``EnvironmentProblem``) and the memory estimate.
- :mod:`handoff.kexec.cmdline`: capture command line assembly.
- :mod:`handoff.kexec.imports`: the capture side's import set, computed by dry runs.
- :mod:`handoff.kexec.runtime`: the capture-side Python runtime, packed as a compressed cpio.
- :mod:`handoff.kexec.hooks`: the dracut and initramfs-tools hooks and capture.conf.
- :mod:`handoff.kexec.initrd`: listing an initrd; appending to a copy of it.
- :mod:`handoff.kexec.load`: the load / unload pipeline.
- :mod:`handoff.kexec.explain`: why kexec failed, from its stderr and the kernel log.
- :mod:`handoff.kexec.state`: what was loaded (``loaded.json``) and whether it is stale.
- :mod:`handoff.kexec.runner`: external tools from an argv list, with dry-run.
"""
