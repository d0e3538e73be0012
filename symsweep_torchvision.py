"""What the installed package's ``symsweep-torchvision.pth`` runs at every interpreter start (setup.py writes it into
site-packages): a plain ``import torchvision`` then works with the CPU torch anywhere in the project's environment
(scripts, notebooks, Ray's workers), through ``workers.models.compat``, the one place that holds the fix.

Nothing is imported at start, neither torch nor ``workers`` (importing the package there would fix which checkout
``workers`` comes from before a script's own directory is on ``sys.path``): ``install()`` only puts ``Deferred`` on
``sys.meta_path``, and the first time torchvision is looked for it hands over to ``workers.models.compat``
(``import workers`` installs this same finder, through ``compat.install``)."""

from __future__ import annotations

import sys


class Deferred:
    """A ``sys.meta_path`` finder that finds nothing: the first time torchvision is looked for, it has
    ``workers.models.compat`` make torchvision importable; the usual finders do the rest."""

    done = False

    @classmethod
    def find_spec(cls, name: str, path=None, target=None) -> None:
        if name == "torchvision" and not cls.done:
            cls.done = True
            try:
                from workers.models.compat import ensure_torchvision_importable

                ensure_torchvision_importable()
            except Exception:  # noqa: BLE001 - never break an import (e.g. symsweep uninstalled meanwhile)
                pass
        return None


def install() -> None:
    if not Deferred.done and "torchvision" not in sys.modules and Deferred not in sys.meta_path:
        sys.meta_path.insert(0, Deferred)
