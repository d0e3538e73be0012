"""``import_timm`` makes timm (and torchvision) importable on a CPU-only torch. Checked in a fresh
interpreter, so the result does not depend on what earlier tests imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from workers.models import compat

already = "torchvision" in sys.modules
loads = compat.torchvision_extension_loads()
first = compat.ensure_torchvision_importable()
assert first == (not already and not loads), (first, already, loads)
assert compat.ensure_torchvision_importable() is False  # idempotent
timm = compat.import_timm()
import torch
import torchvision  # noqa: F401

model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, img_size=32, num_classes=0)
assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 192)
assert compat.ensure_torchvision_importable() is False
print("ok")
"""


@pytest.mark.slow  # a fresh interpreter importing timm
def test_timm_and_torchvision_import_and_build_a_vit():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
