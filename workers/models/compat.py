"""``import torchvision`` (and timm) on a CPU-only torch. The one place in symsweep that deals with it.

The torchvision wheel on the package index is built for CUDA. With a CPU build of torch its C
extension (``torchvision/_C.so``) cannot load, and ``import torchvision`` then fails while it
registers fake kernels for ``torchvision::nms``/``torchvision::qnms``: "operator torchvision::nms does
not exist". symsweep never calls those detection ops, so when — and only when — the extension fails
to load, we declare the two operator schemas ourselves before torchvision is imported; the import
then succeeds and everything timm needs (pure-Python transforms and models) works. Where the
extension loads (a matching CUDA or CPU build), this is a no-op.

When it runs: ``import_timm()`` applies it before importing timm. For any other ``import torchvision``,
the finder ``symsweep_torchvision.Deferred`` (put first on ``sys.meta_path`` by ``install()``) applies it the first
time torchvision is looked for. ``import workers`` calls ``install()``; so does, at every interpreter start, the
installed package's ``symsweep-torchvision.pth`` (the top-level ``symsweep_torchvision`` imports nothing until then),
so a plain ``import torchvision`` works anywhere in the project's environment. Importing this module costs nothing:
torch is imported when the fix is asked for.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from types import ModuleType

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # keeps the schema registration alive for the life of the process


def torchvision_extension_loads() -> bool:
    """Whether torchvision's compiled extension loads against this torch (True if not installed). Looked up on
    ``sys.path`` directly (``PathFinder``), not through ``sys.meta_path``, where ``TorchvisionHook`` waits."""
    import torch

    spec = importlib.machinery.PathFinder.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True
    for name in os.listdir(spec.submodule_search_locations[0]):
        if name.startswith("_C.") and name.endswith((".so", ".pyd")):
            try:
                torch.ops.load_library(os.path.join(spec.submodule_search_locations[0], name))
                return True
            except (OSError, RuntimeError):
                return False
    return False


def ensure_torchvision_importable() -> bool:
    """Declare the missing op schemas if torchvision's extension cannot load; True if it did so."""
    global _library
    if _library is not None or "torchvision" in sys.modules or torchvision_extension_loads():
        return False
    import torch

    library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        library.define(schema)
    _library = library
    return True


def install() -> None:
    """Make torchvision importable when it is first looked for (once; nothing if it is imported already), through
    the one finder there is, ``symsweep_torchvision.Deferred`` (the installed ``.pth`` puts the same one in place)."""
    try:
        import symsweep_torchvision
    except ImportError:  # workers/ shipped alone (a runtime_env's py_modules): import_timm still applies the fix
        return
    symsweep_torchvision.install()


def import_timm() -> ModuleType:
    """``import timm`` after the compatibility step."""
    ensure_torchvision_importable()
    import timm

    return timm
