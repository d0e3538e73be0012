"""Hydra composition on the driver: command-line overrides -> one plain dict (and the sweeps).

Only the driver composes: trials receive plain dicts (never call ``@hydra.main``, ``HydraConfig``
or ``GlobalHydra`` inside Ray actors). Hydra's sweep syntax on the command line
(``symmetrizer.noise_scale=0.1,1,10``, ``trainer.lr=tag(log,interval(1e-4,1e-2))``) becomes entries
of ``sweep.params``; the config is composed with the remaining overrides. The command line wins over
a preset's ``sweep.params`` (see ``compose``).

Hydra's own command-line habits work where they mean something here (``orchestrator.hydra_options``): ``--cfg job``
prints the composed config, ``--config-dir DIR`` (or ``hydra.searchpath=[file://DIR]``) adds a directory of
config groups and presets, ``-m`` is accepted (symsweep always sweeps). Hydra's runtime settings (``hydra.run.dir``,
launchers, sweepers) have no effect on symsweep and are refused in one line naming the symsweep key to use.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from orchestrator.domains import KINDS

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
TRIAL_SECTIONS = ("task", "group", "symmetrizer", "model", "trainer", "remul")  # what a trial runs with
GROUPS = ("task", "group", "symmetrizer", "model", "trainer", "sweep", "cluster", "logging", "experiment")
SEARCHPATH = "hydra.searchpath"  # the one Hydra setting symsweep reads: more config directories (appended)
CFG = ("job", "all")  # --cfg: what Hydra's --cfg prints; symsweep composes no hydra section, so both are the job's

# the keys that make a section your own (README, Your own model and data): its group's YAML no longer applies
OWN = {"task": ("target",), "model": ("target",), "group": ("target", "generators")}


def group_options(group: str, config_dir: str | None = None, plain: list[str] | tuple = ()) -> list[str]:
    """The options of config group ``group``: symsweep's files, a ``--config-dir``'s and those of the
    ``hydra.searchpath`` overrides in ``plain``, as Hydra's own repository finds them."""
    searchpath = [override for override in plain if override.lstrip("+").split("=", 1)[0] == SEARCHPATH]
    try:
        with hydra_context(config_dir):
            from hydra.core.global_hydra import GlobalHydra

            loader = GlobalHydra.instance().config_loader()
            return sorted(loader.get_group_options(group, config_name="config", overrides=searchpath))
    except Exception:  # noqa: BLE001 - only used to enrich a message: symsweep's own files then
        return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@contextlib.contextmanager
def hydra_context(config_dir: str | os.PathLike | None = None) -> Iterator[None]:
    """Hydra initialised on symsweep's ``configs/``, with ``config_dir`` (``--config-dir``) searched first, as
    Hydra's own ``--config-dir`` does: its groups and presets add to symsweep's, and a file of the same name
    replaces symsweep's. Hydra's global state is restored afterwards (what ``initialize_config_dir`` does;
    that public context manager takes one directory only)."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    try:
        version.setbase(None)
        search_path = create_config_search_path(search_path_dir=str(CONFIG_DIR))
        if config_dir is not None:
            search_path.prepend(provider="command-line", path=f"file://{Path(config_dir).resolve()}")
        Hydra.create_main_hydra2(task_name="symsweep", config_search_path=search_path)
        yield
    finally:
        restore_gh_from_backup(backup)


def searchpath_override(directory: str) -> str:
    """The override that adds ``directory`` to Hydra's config search path, after symsweep's ``configs/``
    (``hydra.searchpath``): e.g. a preset written for ``orchestrator.api.launch(config=...)``."""
    return f"{SEARCHPATH}=[file://{Path(directory).resolve()}]"


def check_config_dir(config_dir: str | os.PathLike | None) -> str | None:
    """``--config-dir DIR`` as an absolute path; anything but a directory is a one-line error."""
    if config_dir is None:
        return None
    path = Path(config_dir).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"--config-dir {config_dir}: {'not a directory' if path.exists() else 'does not exist'}; "
                         "expected a directory of config groups and presets, e.g. DIR/experiment/my_sweep.yaml")
    return str(path)


SWEEP_PARAMS = "sweep.params."
SWEEP_FUNCTIONS = ("a,b,c (grid)", "choice(a,b) (grid)", "tag(sample, choice(a,b)) (choice)",
                   "range(start,stop[,step]) (grid)", "interval(lo,hi) (uniform)",
                   "tag(log, interval(lo,hi)) (loguniform)", "tag(int, interval(lo,hi)) (randint)")


@dataclass
class CommandLine:
    """The overrides of one command, sorted by what they do to the sweep (Hydra's "later wins")."""

    plain: list[str] = field(default_factory=list)  # passed to Hydra's compose as they are
    plain_keys: set[str] = field(default_factory=set)  # the keys (or groups) those overrides name
    pinned: dict[str, Any] = field(default_factory=dict)  # key=value: the value, and the key leaves sweep.params
    sweeps: dict[str, dict[str, list]] = field(default_factory=dict)  # key=a,b / choice(...) / ...: its domain
    unswept: dict[str, bool] = field(default_factory=dict)  # ~sweep.params.<key>: it leaves sweep.params
    # (True: the key must be swept by the config; False: an earlier command-line sweep of it is undone)
    own: set[str] = field(default_factory=set)  # sections given your own code (model.target=...): see own_overrides


def _refuse_sweep(text: str, what: str) -> None:
    raise ValueError(f"{text}: {what}; allowed sweep forms: {'; '.join(SWEEP_FUNCTIONS)}")


def sweep_domain(override, text: str) -> dict[str, list]:
    """A Hydra sweep override as a ``sweep.params`` domain: ``a,b``, ``choice(...)`` and ``range(...)``
    are grids (every value, as Hydra's own sweeper runs them), ``tag(sample, choice(...))`` a sampled
    choice, ``interval(lo, hi)`` uniform, with ``tag(log, ...)`` loguniform and ``tag(int, ...)`` randint
    (both ends included). Anything else (``glob``, other tags) is refused in one line."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    value = override.value()
    tags = set(getattr(value, "tags", set()) or set())
    if isinstance(value, (ChoiceSweep, RangeSweep)):
        if tags - {"sample"} or (tags and isinstance(value, RangeSweep)):
            _refuse_sweep(text, f"tags {sorted(tags)} are not understood here")
        values = list(override.sweep_iterator())
        if not values:
            _refuse_sweep(text, "the sweep has no values")
        return {"choice" if "sample" in tags else "grid": values}
    if isinstance(value, IntervalSweep):
        if tags - {"log", "int"} or len(tags) > 1:
            _refuse_sweep(text, f"tags {sorted(tags)} are not understood here (one of log, int)")
        low, high = value.start, value.end
        if "int" in tags:
            if low != int(low) or high != int(high):
                _refuse_sweep(text, f"tag(int, interval({low:g},{high:g})) needs whole-number ends")
            return {"randint": [int(low), int(high)]}
        return {"loguniform" if "log" in tags else "uniform": [low, high]}
    _refuse_sweep(text, f"{type(value).__name__.lower()}(...) is not a sweep symsweep can run")
    raise AssertionError  # unreachable


def parse_command_line(overrides: list[str]) -> CommandLine:
    """Sort the command-line overrides (Hydra's grammar; any text: a ValueError, never a traceback)."""
    from hydra.core.override_parser.types import OverrideType

    from orchestrator.overrides import parse_hydra

    parsed = parse_hydra(list(overrides))
    line = CommandLine()
    for override, text in zip(parsed, overrides):
        key = override.key_or_group
        if key.split(".", 1)[0].split("/", 1)[0] == "hydra" and key != SEARCHPATH:
            _refuse_hydra(key, text)
        if _own_key(key) and override.type != OverrideType.DEL:
            line.own.add(key.split(".")[0])
        if override.type == OverrideType.DEL and key.startswith(SWEEP_PARAMS):
            swept = key[len(SWEEP_PARAMS):]
            line.unswept[swept] = line.sweeps.pop(swept, None) is None
        elif override.is_sweep_override():
            if key in GROUPS:
                raise ValueError(f"{text}: sweeping over whole config groups is not supported; sweep one of "
                                 f"their keys instead, e.g. symmetrizer.method=ps,ga or group.name=S_n,'S_n x E(d)'")
            if override.type != OverrideType.CHANGE or key.startswith("sweep.") or override.package:
                raise ValueError(f"{text}: a command-line sweep sets an existing trial key, e.g. "
                                 "symmetrizer.noise_scale=0.1,1,10")
            line.sweeps[key] = sweep_domain(override, text)
            line.pinned.pop(key, None)
        else:
            line.plain.append(text)
            line.plain_keys.add(key)
            if override.type == OverrideType.DEL or key in GROUPS or key.startswith("hydra."):
                continue
            if not key.startswith("sweep."):
                line.pinned[key] = override.value()
                line.sweeps.pop(key, None)
            for swept in _swept_by(key, override.value()):  # +sweep.params.<key>={...}: an earlier pin is undone
                line.pinned.pop(swept, None)
                line.sweeps.pop(swept, None)
                line.unswept.pop(swept, None)
    line.plain = own_overrides(line.plain, line.own, parsed=dict(zip(overrides, parsed)))
    return line


HYDRA_INSTEAD = (  # Hydra's runtime settings -> what does that job in symsweep
    (("hydra.run", "hydra.sweep", "hydra.output_subdir", "hydra.job.chdir"),
     "symsweep does not use Hydra's output directories; results go to <storage>/<name>: set storage=DIR and name=NAME"),
    (("hydra.mode",), "symsweep always sweeps what a,b,c and sweep.params say (-m/--multirun is not needed)"),
    (("hydra/launcher", "hydra.launcher", "hydra/sweeper", "hydra.sweeper"),
     "trials run on Ray Tune: choose where with cluster= or cluster.address=, how to search with sweep.search="),
)


def _refuse_hydra(key: str, text: str) -> None:
    """A ``hydra.*`` override other than ``hydra.searchpath``: it would be accepted by Hydra and ignored by
    symsweep, so it is refused in one line naming what does the job here."""
    instead = next((why for prefixes, why in HYDRA_INSTEAD if any(key == p or key.startswith(p + ".")
                                                                   for p in prefixes)), None)
    raise ValueError(f"{text}: {instead or 'symsweep does not read Hydra runtime settings (hydra.*)'}; allowed "
                     f"hydra keys: {SEARCHPATH}=[file:///abs/dir] (or --config-dir DIR)")


def _own_key(key: str) -> bool:
    section, _, rest = key.partition(".")
    return section in OWN and rest.split(".")[0] in OWN[section]


def own_overrides(plain: list[str], own: set[str], parsed: dict | None = None) -> list[str]:
    """The plain overrides with your own sections' keys made Hydra's "set or add" (``++model.hidden=32``): the
    keyword arguments of your own class are not in any YAML file. A section made your own on this command line
    (``model.target=...``) also drops its group's YAML (``~model``) unless a ``model=`` override names one."""
    from hydra.core.override_parser.types import OverrideType

    from orchestrator.overrides import parse_hydra

    if not own:
        return plain
    parsed = parsed or dict(zip(plain, parse_hydra(list(plain))))
    named = {parsed[text].key_or_group for text in plain if parsed[text].key_or_group in GROUPS}
    out = [f"~{section}" for section in sorted(own) if section not in named and f"~{section}" not in plain]
    keyed = {parsed[text].key_or_group.partition(".")[0] for text in plain if "." in parsed[text].key_or_group}
    out += [f"++{section}.target=null" for section in sorted(own - keyed)]  # swept only: the section exists
    for text in plain:
        override = parsed[text]
        section = override.key_or_group.partition(".")[0]
        forced = (section in own and "." in override.key_or_group and override.type == OverrideType.CHANGE
                  and not text.lstrip().startswith("+"))
        out.append(f"++{text.lstrip()}" if forced else text)
    return out


def _swept_by(key: str, value: Any) -> list[str]:
    """The keys an override of ``sweep.params`` (or of one of its entries) gives a domain."""
    if key == SWEEP_PARAMS[:-1] and isinstance(value, dict):
        return list(flatten_params(value))
    if key.startswith(SWEEP_PARAMS):
        return list(flatten_params({key[len(SWEEP_PARAMS):]: value}))
    return []


def compose(overrides: list[str], config_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The composed config as a plain dict. Later wins, as in Hydra: a preset's ``sweep.params`` entry
    is replaced by a command-line sweep of its key, removed by a command-line ``key=value`` (the key is
    pinned to that value) or by ``~sweep.params.<key>`` (the key keeps its base value). ``config_dir``
    (``--config-dir``) is searched before symsweep's ``configs/``."""
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    line = parse_command_line(overrides)
    plain = line.plain
    config_dir = check_config_dir(config_dir)
    try:
        try:
            composed = _hydra(plain, config_dir)
        except ConfigCompositionException as err:  # a new key of a preset's own section (model.depth=3)?
            own = _preset_own(plain, config_dir) - line.own
            if not own or "not in struct" not in str(err.__cause__ or err):
                raise
            plain = own_overrides(plain, own)
            composed = _hydra(plain, config_dir)
        config = OmegaConf.to_container(composed, resolve=True)
    except MissingConfigException as err:
        group = next((g for g in GROUPS if f"'{g}/" in str(err) or f"{g}=" in str(err)), None)
        allowed = f"; allowed {group}: {', '.join(group_options(group, config_dir, plain))}" if group else ""
        raise ValueError(f"{str(err).splitlines()[0]}{allowed}") from None
    except (ConfigCompositionException, OmegaConfBaseException, HydraException) as err:
        cause = err.__cause__ or err
        key = getattr(cause, "full_key", None)
        message = str(cause).splitlines()[0]
        if "not in struct" in str(cause) and key:
            section = key.rsplit(".", 1)[0] if "." in key else None
            known = (f"; keys of {section}: {', '.join(_keys(composed_keys(plain, config_dir), section))}"
                     if section else "")
            raise ValueError(f"{key} is not a config key; check the spelling (README, Config reference){known}"
                             ) from None
        raise ValueError(f"invalid override{f' of {key}' if key else ''}: {message}") from None
    for section in GROUPS[:-1]:  # every group but the optional experiment
        if not isinstance(config.get(section), dict):
            raise ValueError(f"{section}={config.get(section)!r} is not allowed; expected the {section} settings "
                             f"(a mapping, e.g. {section}={group_options(section)[0]}); ~{section} deletes all of them")
    params = config["sweep"].get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"sweep.params={params!r} is not allowed; expected a mapping of dotted keys to domains, "
                         "e.g. {symmetrizer.noise_scale: {grid: [0.1, 1.0]}}")
    params = flatten_params(params)
    for key, required in line.unswept.items():
        if key not in params and not required:
            continue
        if key not in params:
            raise ValueError(f"~sweep.params.{key}: {key!r} is not swept here; allowed: one of the swept keys "
                             f"({', '.join(params) or 'none'})")
        del params[key]
    for key in line.pinned:
        params.pop(key, None)
    params.update(line.sweeps)
    config["sweep"]["params"] = params
    from orchestrator.analyses import unswept_analyses

    unswept_analyses(config["sweep"], set(line.pinned) | set(line.unswept), line.plain_keys)
    return config


def _refuse_missing_searchpath(caught: list[warnings.WarningMessage]) -> None:
    """Hydra only warns about a ``hydra.searchpath`` entry it cannot read; here it is a one-line error."""
    for warning in caught:
        message = str(warning.message)
        if "is not available" in message and "path=" in message:
            path = message.split("path=", 1)[1].removesuffix(" is not available.")
            raise ValueError(f"{SEARCHPATH}: {path} is not available; expected existing config directories, "
                             f"e.g. {SEARCHPATH}=[file:///abs/dir] or pkg://my_package.configs")


def _hydra(plain: list[str], config_dir: str | None = None):
    """Hydra's composition of ``plain``, with ``--config-dir`` searched first; a ``hydra.searchpath`` entry Hydra
    cannot read is an error (Hydra only warns), any other warning is shown as Hydra would have shown it."""
    from hydra import compose as hydra_compose

    with hydra_context(config_dir), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        composed = hydra_compose("config", overrides=plain)
    _refuse_missing_searchpath(caught)
    for warning in caught:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return composed


def _preset_own(plain: list[str], config_dir: str | None = None) -> set[str]:
    """The sections that the chosen config groups (a preset: ``override /model: null`` and ``model: {target:
    ...}``) make your own."""
    composed = composed_keys(plain, config_dir)
    if composed is None:
        return set()
    return {section for section, keys in OWN.items() if any(composed.get(section, {}).get(key) is not None
                                                            for key in keys)}


def composed_keys(plain: list[str], config_dir: str | os.PathLike | None = None):
    """The config composed without key overrides (to list the keys a section has, and the defaults of the
    chosen groups); the config groups, presets and search path of ``plain`` are kept."""
    from hydra import compose as hydra_compose

    groups = [o for o in plain if "=" in o and o.split("=", 1)[0].lstrip("+~") in (*GROUPS, SEARCHPATH)]
    groups += [o for o in plain if o.startswith("~") and o[1:] in GROUPS]  # a section made your own drops its YAML
    try:
        with hydra_context(config_dir), warnings.catch_warnings():
            warnings.simplefilter("ignore")
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
    flat: dict[str, Any] = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and not (len(value) == 1 and next(iter(value)) in KINDS):
            flat.update(flatten_params(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def trial_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of the config a trial sees (no sweep, cluster or logging sections)."""
    return {key: config[key] for key in TRIAL_SECTIONS if key in config}
