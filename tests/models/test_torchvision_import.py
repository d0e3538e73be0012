"""A plain ``import torchvision`` works in symsweep's environment with the CPU torch (the registry's torchvision is
a CUDA build whose extension cannot load: "operator torchvision::nms does not exist"), and costs nothing until then.

Checked in fresh interpreters: after ``import workers``; and in a new virtual environment that sees the project's
packages, with symsweep installed into it by pip (editable and regular, offline, from a copy of this checkout), where
nothing but the installed ``symsweep-torchvision.pth`` can have applied the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAIN = """
import sys
assert "torch" not in sys.modules and "workers" not in sys.modules, "nothing imported at start"
import torchvision
from torchvision.transforms import functional
import torch

assert functional.hflip(torch.arange(4.0).view(1, 2, 2)).tolist() == [[[1.0, 0.0], [3.0, 2.0]]]
print("ok", sys.modules["symsweep_torchvision"].__file__)
"""


def python(executable: str, code: str, cwd: Path, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_workers_imports_nothing_heavy_and_makes_torchvision_importable(tmp_path):
    code = ("import sys, workers; assert 'torch' not in sys.modules; import torchvision; "
            "from torchvision import transforms; print('ok')")
    result = python(sys.executable, code, tmp_path, str(ROOT))
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


@pytest.mark.slow  # a new virtual environment and a pip install
@pytest.mark.parametrize("editable", [True, False], ids=["editable", "regular"])
def test_a_plain_import_works_where_symsweep_is_installed(tmp_path, editable):
    source = tmp_path / "checkout"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "symsweep_torchvision.py"):
        shutil.copy(ROOT / name, source / name)
    for name in ("orchestrator", "workers"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(next(venv.glob("lib/python*/site-packages")))
    (site / "project.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, torchvision: the project's
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                              "--no-deps", "--no-build-isolation", "--no-index", *(["-e"] if editable else []),
                              str(source)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    assert (site / "symsweep-torchvision.pth").is_file(), sorted(path.name for path in site.iterdir())

    result = python(str(venv / "bin" / "python"), PLAIN, tmp_path)  # no PYTHONPATH, another directory
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-3000:]
    installed = Path(result.stdout.split()[1])
    assert installed == (source if editable else site) / "symsweep_torchvision.py"

    from workers.models.compat import torchvision_extension_loads

    if not torchvision_extension_loads():  # the CPU torch (where the extension loads, the fix does nothing)
        (site / "symsweep-torchvision.pth").unlink()  # the proof: without it, the same import fails here
        failed = python(str(venv / "bin" / "python"), "import torchvision", tmp_path)
        assert failed.returncode != 0 and "torchvision::nms does not exist" in failed.stderr


def test_the_kuberay_image_copies_what_the_install_needs():
    """The image installs symsweep from the files it copies: setup.py (which writes the .pth) and the top-level
    module are among them."""
    text = (ROOT / "clusters" / "kuberay" / "Dockerfile").read_text()
    copied = {name for line in text.splitlines() if line.startswith("COPY ") for name in line.split()[2:-1]}
    assert {"pyproject.toml", "setup.py", "README.md", "symsweep_torchvision.py", "orchestrator", "workers"} <= copied
