"""setuptools, for one thing pyproject.toml cannot say: put ``symsweep-torchvision.pth`` into site-packages, in a
regular and in an editable install alike. At every interpreter start its one line installs ``symsweep_torchvision``'s
import hook (nothing else: no import of torch or of symsweep), so that a plain ``import torchvision`` works with the
CPU torch (README, Models). Everything else about the package is in pyproject.toml."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "symsweep-torchvision.pth"
# one line, run by `site` at start; nothing happens where the module is gone (an uninstalled checkout)
LINE = ('import importlib.util as _symsweep_util; _symsweep_util.find_spec("symsweep_torchvision") is None or '
        '__import__("symsweep_torchvision").install()\n')


class BuildPy(build_py):
    """build_py that also writes the .pth at the top of what becomes site-packages: ``build_lib`` for a wheel; for an
    editable wheel (where build_py copies nothing and only what lands in the wheel's folder, the ``install_lib`` of
    setuptools' ``editable_wheel``, is installed) that folder."""

    def run(self) -> None:
        super().run()
        target = Path(self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib)
        target.mkdir(parents=True, exist_ok=True)
        (target / PTH).write_text(LINE)


setup(cmdclass={"build_py": BuildPy})
