"""The trial side: tasks, models, the symmetry library and the training loop (no orchestrator imports)."""

from workers.models import compat

compat.install()  # a plain `import torchvision` works with the CPU torch (nothing is imported until it is asked for)

UNUSED = "—"  # a swept key's value in a configuration that does not read it (see ``workers.settings.unused_keys``)
