"""symsweep from Python (a notebook, a script): launch a sweep and get its results as DataFrames.

    from orchestrator.api import launch, load_experiment

    experiment = launch(["experiment=quickstart", "name=nb1"])                      # the command line's overrides
    experiment = launch(config={"defaults": [{"override /task": "nbody"}],          # or a preset, as a dict
                                "sweep": {"params": {"symmetrizer.method": {"grid": ["ps", "ga"]}}}})
    experiment.summary, experiment.comparisons                                       # as load_experiment gives them

``launch`` is ``symsweep launch``: the same composition, the same checks before anything starts (a refusal is
the CLI's one line, raised as a ValueError; nothing is written), the same ``orchestrator.experiment.run_experiment``
and the same files. It returns ``load_experiment`` of the finished experiment, with ``outcome`` the CLI's exit
status (0 every trial completed, 1 some failed, 130 stopped by a signal).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from orchestrator.results import Experiment, load_experiment

__all__ = ["launch", "load_experiment"]
PRESET = "_launch"  # the name a config dict gets as a preset (experiment=_launch)


def launch(overrides: Sequence[str] = (), *, config: Mapping[str, Any] | None = None,
           config_dir: str | os.PathLike | None = None, dry_run: bool = False) -> Experiment | dict[str, Any]:
    """Run a sweep as ``symsweep launch`` does and return its ``Experiment``.

    ``overrides``: the command line's ``key=value`` texts (Hydra's grammar: ``k=a,b`` sweeps, ``experiment=...``).
    ``config``: a preset given as a dict (what a file ``configs/experiment/<name>.yaml`` would hold, ``defaults``
    included); the overrides win over it, as over any preset. ``config_dir``: a folder of your own presets
    (``--config-dir``). ``dry_run``: check everything and return the plan (``launch --dry-run --json``'s object)."""
    from orchestrator.commands.launch import prepare
    from orchestrator.config import searchpath_override

    texts = [str(text) for text in overrides]
    if isinstance(overrides, (str, bytes)) or not all(isinstance(text, str) for text in overrides):
        raise ValueError(f"launch(overrides={overrides!r}): expected a list of key=value texts, e.g. ['task=nbody']")
    head: list[str] = []
    with tempfile.TemporaryDirectory(prefix="symsweep-launch-") as folder:
        if config is not None:
            if any(text.split("=", 1)[0].lstrip("+~") == "experiment" for text in texts):
                raise ValueError("launch(config=...) is a preset itself; allowed: config= or an experiment= "
                                 "override, not both")
            head += [searchpath_override(_preset(folder, config)), f"experiment={PRESET}"]
        plan, path, summary = prepare([*head, *texts], None if config_dir is None else str(config_dir))
    if dry_run:
        return {"experiment": str(path), **summary}
    from orchestrator.experiment import run_experiment
    from orchestrator.plan_text import plan_lines

    print(f"symsweep: {plan.checked} trial configuration(s) checked; experiment {path}", flush=True)
    print("\n".join(plan_lines(summary)), flush=True)
    outcome = run_experiment(plan, path, new=True)
    experiment = load_experiment(path)
    experiment.outcome = outcome
    return experiment


def _preset(folder: str, config: Mapping[str, Any]) -> str:
    """``config`` written as the preset ``experiment/_launch.yaml`` of a config folder; that folder."""
    import yaml

    if not isinstance(config, Mapping):
        raise ValueError(f"launch(config={config!r}): expected a mapping, as a preset file holds")
    try:
        text = yaml.safe_dump(_plain(config), sort_keys=False)
    except yaml.YAMLError as err:
        raise ValueError(f"launch(config=...): cannot be written as YAML ({err}); expected plain values") from None
    presets = Path(folder) / "experiment"
    presets.mkdir()
    (presets / f"{PRESET}.yaml").write_text("# @package _global_\n" + text)
    return folder


def _plain(node: Any) -> Any:
    """Mappings and sequences as the dicts and lists YAML writes (tuples, OmegaConf-like mappings)."""
    if isinstance(node, Mapping):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(value) for value in node]
    return node
