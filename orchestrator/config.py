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
        key = getattr(cause, "full_key", None)
        message = str(cause).splitlines()[0]
        if "not in struct" in str(cause) and key:
            section = key.rsplit(".", 1)[0] if "." in key else None
            raise ValueError(f"{key} is not a config key; check the spelling (README, Config reference)"
                             + (f"; keys of {section}: {', '.join(_keys(composed_keys(plain), section))}" if section else "")
                             ) from None
        raise ValueError(f"invalid override{f' of {key}' if key else ''}: {message}") from None
    config = OmegaConf.to_container(composed, resolve=True)
    params = flatten_params(config["sweep"].get("params") or {})
    for key, values in sweeps.items():
        params[key] = {"grid": values}
    config["sweep"]["params"] = params
    return config


def composed_keys(plain: list[str]):
    """The config composed without key overrides (to list the keys a section has)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    groups = [o for o in plain if "=" in o and o.split("=", 1)[0].lstrip("+~") in GROUPS]
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            return hydra_compose("config", overrides=groups)
    except Exception:  # noqa: BLE001 - only used to enrich an error message
        return None


def _keys(config, section: str) -> list[str]:
    node = config
    for part in section.split("."):
        node = node.get(part) if node is not None and hasattr(node, "get") else None
    return sorted(node.keys()) if node is not None and hasattr(node, "keys") else []


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``sweep.params`` with dotted keys: ``{symmetrizer: {noise_scale: {grid: [..]}}}`` (as written
    on the command line, ``+sweep.params.symmetrizer.noise_scale=...``) becomes
    ``{"symmetrizer.noise_scale": {grid: [..]}}``. A domain is a mapping with one domain key."""
    from orchestrator.sweep import DOMAINS

    flat: dict[str, Any] = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and not (len(value) == 1 and next(iter(value)) in DOMAINS):
            flat.update(flatten_params(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def trial_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of the config a trial sees (no sweep, cluster or logging sections)."""
    return {key: config[key] for key in ("task", "group", "symmetrizer", "model", "trainer", "remul") if key in config}
