"""The trial side: tasks, models, the symmetry library and the training loop (no orchestrator imports)."""

UNUSED = "—"  # a swept key's value in a configuration that does not read it (see ``workers.settings.unused_keys``)
