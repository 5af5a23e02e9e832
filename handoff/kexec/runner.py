"""Run external tools (kexec, the dynamic loader, strip) from an argv list, never a shell."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from handoff.errors import EnvironmentProblem, os_reason


@dataclass(frozen=True)
class Result:
    """What a tool did. ``dry_run`` results were printed, not run, and report success."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def format_argv(argv: Sequence[str]) -> str:
    """The argv as a shell would need it typed (for display only; nothing is run by a shell)."""
    return shlex.join(argv)


@dataclass
class Runner:
    """Runs tools, or with ``dry_run`` prints the argv through ``echo`` and runs nothing.

    :meth:`run` is for tools that change the machine (kexec); :meth:`query` is for tools that
    only read (``ld.so --list``, strip on our own copies) and runs even in dry-run mode,
    because what it returns decides what the dry run prints. ``path`` is the PATH used to
    find tools (the process's PATH when None).
    """

    dry_run: bool = False
    echo: Callable[[str], None] | None = None
    path: str | None = None
    timeout: float = 600.0

    def which(self, tool: str, *, hint: str | None = None) -> str:
        """Absolute path of ``tool`` on PATH, or EnvironmentProblem (exit 4)."""
        found = shutil.which(tool, path=self.search_path)
        if not found:
            raise EnvironmentProblem(
                f"{tool} not found on PATH ({self.search_path or 'empty'})",
                hint=hint or f"install {tool} or put it on PATH",
            )
        return os.path.abspath(found)

    @property
    def search_path(self) -> str:
        return os.environ.get("PATH", os.defpath) if self.path is None else self.path

    def run(self, argv: Sequence[str]) -> Result:
        argv = tuple(argv)
        if self.dry_run:
            if self.echo:
                self.echo(format_argv(argv))
            return Result(argv, 0, dry_run=True)
        return self._exec(argv)

    def query(self, argv: Sequence[str]) -> Result:
        return self._exec(tuple(argv))

    def _exec(self, argv: tuple[str, ...]) -> Result:
        env = dict(os.environ, PATH=self.search_path)
        env.setdefault("LC_ALL", "C")  # tool messages are parsed; keep them untranslated
        try:
            proc = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                errors="replace",
                env=env,
                timeout=self.timeout,
                check=False,
                shell=False,
            )
        except FileNotFoundError:
            raise EnvironmentProblem(
                f"{argv[0]}: not found", hint=f"install {os.path.basename(argv[0])}"
            ) from None
        except PermissionError as e:
            raise EnvironmentProblem(f"{argv[0]}: cannot execute: {os_reason(e)}") from None
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(
                f"{format_argv(argv)} did not finish within {self.timeout:.0f} s"
            ) from None
        return Result(argv, proc.returncode, proc.stdout, proc.stderr)
