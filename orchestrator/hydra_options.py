"""Hydra's command-line habits, for the commands that take overrides (``launch``, ``train``, ``equivariance``):
``--cfg``/``--package`` print the composed config, ``--config-dir`` adds a directory of config groups and presets,
``-m``/``--multirun`` is accepted where the command sweeps, and ``--help`` lists the config groups and their options.
The composition itself is ``orchestrator.config``'s."""

from __future__ import annotations

import sys
import textwrap
from typing import Any

from orchestrator.config import CFG, GROUPS, check_config_dir, group_options


def add_hydra_options(parser, sweeps: bool) -> None:
    """Hydra's options that mean something for a command taking overrides: ``--cfg``/``--package`` (print the
    composed config), ``--config-dir`` (more config groups and presets) and ``-m``/``--multirun`` (``sweeps``:
    accepted, a no-op, since the command always sweeps; otherwise refused, naming ``symsweep launch``)."""
    parser.add_argument("--cfg", "-c", choices=(*CFG, "hydra"),
                        help="print the composed config (YAML; interpolations resolved) and exit: nothing is checked "
                             "beyond composition, started or written (job and all are the same here: symsweep "
                             "composes no hydra section)")
    parser.add_argument("--package", "-p", metavar="KEY",
                        help="with --cfg: print only this part of the config, e.g. sweep or trainer")
    parser.add_argument("--config-dir", "-cd", metavar="DIR",
                        help="a directory of config groups and presets searched before symsweep's configs/ (e.g. "
                             "DIR/experiment/my_sweep.yaml for experiment=my_sweep; a file of the same name replaces "
                             "symsweep's); hydra.searchpath=[file:///abs/dir] adds one searched after")
    parser.add_argument("--multirun", "-m", action="store_true",
                        help="accepted for Hydra users; not needed: every launch sweeps what a,b,c and sweep.params say"
                        if sweeps else "not for this command, which runs one configuration: sweep with symsweep launch")


def hydra_options(args, command: str) -> str | None:
    """Check the Hydra options of ``args`` before anything is composed: the ``--config-dir`` to compose with
    (None without one). ``-m`` is a note on stderr for a command that sweeps, an error otherwise."""
    if getattr(args, "multirun", False):
        if command != "launch":
            raise ValueError(f"-m/--multirun: symsweep {command} runs one configuration; allowed: no -m here, "
                             "sweeps run with symsweep launch (which needs no -m either)")
        print("symsweep launch: -m/--multirun is not needed: symsweep always sweeps what a,b,c and sweep.params say",
              file=sys.stderr)
    if args.cfg == "hydra":
        raise ValueError("--cfg hydra: symsweep composes no hydra section (Hydra's runtime settings do not apply: "
                         "results go to storage=/name=); allowed: --cfg job (the composed config) or --cfg all")
    if args.package is not None and args.cfg is None:
        raise ValueError(f"--package {args.package}: an option of --cfg; allowed: --cfg job --package {args.package}")
    return check_config_dir(args.config_dir)


def config_yaml(config: dict[str, Any], package: str | None = None) -> str:
    """``config`` (or its part at the dotted ``package``) as YAML, keys in composition order, as Hydra's ``--cfg``
    prints it (with a ``# @package`` line for a part)."""
    from omegaconf import OmegaConf

    node: Any = config
    for index, part in enumerate(package.split(".") if package else []):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(package.split(".")[:index]) or "the config"
            keys = ", ".join(map(str, node)) if isinstance(node, dict) else "none (a value)"
            raise ValueError(f"--package {package}: {where} has no key {part!r}; allowed: {keys}")
        node = node[part]
    body = OmegaConf.to_yaml(OmegaConf.create(node)) if isinstance(node, (dict, list)) else f"{node}\n"
    return f"# @package {package}\n{body}" if package else body


def config_groups_help(width: int = 100) -> str:
    """The config groups and their options (``configs/``), with the names a registry adds (``task.name``,
    ``group.name``, ``symmetrizer.method``, ``model.name``): the epilog of ``--help`` for the commands that take
    overrides. Imports the registries (torch), so it is built only when help is asked for."""
    registries: dict[str, tuple[str, list[str]]] = {}
    try:
        from workers.methods import method_names
        from workers.models.factory import MODELS
        from workers.symmetry.groups import group_spellings
        from workers.tasks import REGISTRY

        registries = {"task": ("task.name", sorted(REGISTRY)), "group": ("group.name", list(group_spellings())),
                      "symmetrizer": ("symmetrizer.method", list(method_names())),
                      "model": ("model.name", list(MODELS))}
        failed = ""
    except Exception as err:  # noqa: BLE001 - help never fails (e.g. a broken SYMSWEEP_PLUGINS module)
        failed = f"(registered names not listed: {str(err).splitlines()[0] if str(err) else type(err).__name__})"
    lines = ["config groups (GROUP=OPTION picks configs/GROUP/OPTION.yaml; --config-dir DIR adds DIR/GROUP/*.yaml;",
             "keys and values: README, Config reference):"]
    for group in GROUPS:
        options = group_options(group)
        text = f"{group}: {', '.join(options)}"
        name, names = registries.get(group, ("", []))
        if names and sorted(names) != options:
            text += f" ({name}: {', '.join(names)})"
        if group == "experiment":
            text += " (presets: README, Paper presets)"
        lines += textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False)
    if failed:
        lines.append(f"  {failed}")
    lines += ["overrides: KEY=VALUE sets a key, KEY=a,b,c sweeps it (README, Sweeps); --cfg job prints the result"]
    return "\n".join(lines) + "\n"
