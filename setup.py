# Declares the cffi build, and builds the capture kernel's first hook (csrc/quiesce, linked
# with the same C core) into handoff/data/ for `handoff load` to pack; everything else is in
# pyproject.toml.
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
QUIESCER = HERE / "handoff" / "data" / "handoff-quiesce"


class BuildPyWithQuiescer(build_py):
    """Build handoff-quiesce before the package data is collected. Without a C compiler the
    package still installs; `handoff load` then warns that DMA stops only when restore runs."""

    def run(self) -> None:
        QUIESCER.parent.mkdir(exist_ok=True)
        proc = subprocess.run(["make", "-s", "-C", str(HERE / "csrc" / "quiesce"),
                               f"OUT={QUIESCER}"], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"warning: handoff-quiesce not built:\n{proc.stdout}{proc.stderr}")
        super().run()


setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"], cmdclass={"build_py": BuildPyWithQuiescer})
