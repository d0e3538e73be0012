"""Hydra composition on the driver: command-line overrides -> one plain dict (and the sweeps).

Only the driver composes: trials receive plain dicts (never call ``@hydra.main``, ``HydraConfig``
or ``GlobalHydra`` inside Ray actors). Hydra's sweep syntax on the command line
(``symmetrizer.noise_scale=0.1,1,10``, ``trainer.lr=range(...)``) becomes grid entries of
``sweep.params``; the config is composed with the remaining overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
GROUPS = ("task", "group", "symmetrizer", "model", "trainer", "sweep", "cluster", "logging", "experiment")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[Any]]]:
    """Plain overrides, and command-line sweeps as ``{key: [values]}`` (grid)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as err:
        raise ValueError(f"cannot parse the overrides {' '.join(overrides)!r}: {str(err).splitlines()[0]}; "
                         "quote values with spaces or parentheses, e.g. group.name='S_n x E(d)'") from None
    plain, sweeps = [], {}
    for override, text in zip(parsed, overrides):
        key = override.key_or_group
        if override.is_sweep_override():
            if key in GROUPS:
                raise ValueError(f"{text}: sweeping over whole config groups is not supported; sweep one of "
                                 f"their keys instead, e.g. symmetrizer.method=ps,ga or group.name=S_n,'S_n x E(d)'")
            sweeps[key] = list(override.sweep_iterator())
        else:
            plain.append(text)
    return plain, sweeps


def compose(overrides: list[str]) -> dict[str, Any]:
    """The composed config as a plain dict; command-line sweeps are merged into ``sweep.params``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    plain, sweeps = split_overrides(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            composed = hydra_compose("config", overrides=plain)
    except MissingConfigException as err:
        group = next((g for g in GROUPS if f"'{g}/" in str(err) or f"{g}=" in str(err)), None)
        allowed = f"; allowed {group}: {', '.join(_options(group))}" if group else ""
        raise ValueError(f"{str(err).splitlines()[0]}{allowed}") from None
    except (ConfigCompositionException, OmegaConfBaseException) as err:
        cause = err.__cause__ or err
        message = str(cause).splitlines()[0]
        if "not in struct" in str(cause) or "Key '" in message:
            message += "; add new keys only under sweep.params, or check the spelling (README, Config reference)"
        raise ValueError(f"invalid override: {message}") from None
    config = OmegaConf.to_container(composed, resolve=True)
    params = dict(config["sweep"].get("params") or {})
    for key, values in sweeps.items():
        params[key] = {"grid": values}
    config["sweep"]["params"] = params
    return config


def trial_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of the config a trial sees (no sweep, cluster or logging sections)."""
    return {key: config[key] for key in ("task", "group", "symmetrizer", "model", "trainer", "remul") if key in config}
