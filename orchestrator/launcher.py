"""Ray: start or attach, check resources, build the Tuner, run it, restore it.

Without ``cluster.address`` the driver starts an embedded local Ray (``address="local"``: never a
running cluster by accident) and stops it at the end; ``auto`` or ``ray://host:port`` attaches to a
cluster (also when this command is the entrypoint of ``ray job submit``). The experiment directory
is ``<storage>/<name>``; Ray Tune keeps its state there, so ``symsweep resume`` continues a sweep
after a crash of the driver or the whole cluster.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from orchestrator.config import trial_config
from orchestrator.folder import MISSING, Folder, FolderError
from orchestrator.sweep import collapse, metric_and_mode, search_space, trial_resources


def experiment_dir(config: Mapping[str, Any]) -> Path:
    name = config["name"] or f"{config['task']['name']}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "://" in config["storage"]:  # Path() would turn s3://b/x into a local directory ./s3:/b/x
        raise ValueError(f"storage={config['storage']!r}: URI storage (s3://, gs://, ...) is not supported yet; "
                         "allowed: a directory path, on a multi-node cluster one every node mounts (NFS, EFS, "
                         "Filestore), e.g. storage=/mnt/shared/runs")
    if len(name) > MAX_NAME:  # the trial directories below it need room within the file system's 255 bytes
        raise ValueError(f"name={name[:40]!r}... has {len(name)} characters; allowed: at most {MAX_NAME}")
    storage = Path(config["storage"]).expanduser().resolve()
    if storage.exists() and not storage.is_dir():
        raise ValueError(f"storage={config['storage']!r}: {storage} is a file; expected a directory (new or "
                         "existing) for the experiments")
    return storage / name


MAX_NAME = 100


SOCKET_LIMIT = 107  # bytes in an AF_UNIX socket path (Linux)
# what Ray puts below a node's temporary root: session_<date>_<time>_<microseconds>_<pid ≤ 7 digits>/sockets/…
SESSION_SOCKET = len("/session_2026-11-22_20-20-20_123456_1234567/sockets/plasma_store")


def socket_safe_base(preferred: str, below: int) -> str:
    """``preferred`` when a Ray node whose temporary root is ``below`` characters longer than it keeps its
    socket paths within the AF_UNIX limit, else ``/tmp``: in a deep workspace (a CI checkout with
    ``RAY_TMPDIR`` inside it) ``ray start``/``ray.init`` would otherwise fail with an OSError."""
    room = SOCKET_LIMIT - SESSION_SOCKET - below
    for base in (preferred, "/tmp"):
        if len(os.path.abspath(base)) <= room:
            return base
    raise RuntimeError(f"no temporary folder is short enough for Ray's sockets: {preferred!r} and /tmp must be "
                       f"at most {room} characters long; set RAY_TMPDIR to a shorter folder")


def start_ray(cluster: Mapping[str, Any]) -> bool:
    """Start an embedded local Ray or attach to ``cluster.address``; True when started here."""
    import ray

    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": bool(cluster["dashboard"]), "dashboard_host": "127.0.0.1",
                               "log_to_driver": True, "configure_logging": False}
    if cluster["address"] is None:  # Ray's own default temp root is <RAY_TMPDIR or TMPDIR or /tmp>/ray
        preferred = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or tempfile.gettempdir()
        options["_temp_dir"] = os.path.join(socket_safe_base(preferred, len("/ray")), "ray")
        loopback_only()
        ray.init(address="local", num_cpus=cluster["num_cpus"], **options)
        return True
    check_reachable(cluster["address"])
    try:
        ray.init(address=cluster["address"], log_to_driver=True)
    except ConnectionError as err:  # Ray's own message is a traceback; the usual cause is authentication
        raise ValueError(f"cluster.address={cluster['address']!r}: cannot connect ({err}); check the address, and "
                         "for a cluster with token authentication set RAY_AUTH_MODE=token (an explicit address "
                         "never turns it on by itself) with the cluster's token in ~/.ray/auth_token, "
                         "RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN") from None
    return False


def loopback_only() -> None:
    """Make the embedded Ray reachable from this machine only: node address 127.0.0.1, and with it every port
    of its control store, raylet, agents, driver and workers bound to loopback.

    ``ray.init(_node_ip_address="127.0.0.1")`` does not do it: Ray replaces a loopback node address by the
    machine's address. Ray's own switch for single-machine use (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the
    default on macOS and Windows) does; it is set for this process and inherited by the Ray processes it
    starts (the constant is also set in case Ray was imported before)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds, in one line, when ``host:port`` (or ``ray://host:port``) accepts no connection: Ray itself
    retries an unreachable address for minutes. ``auto`` is resolved by Ray (it fails fast on its own)."""
    import socket

    target = address.split("://", 1)[-1]
    if address == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise ValueError(f"cluster.address={address!r}: cannot connect to {target} within {timeout:g} s ({reason}); "
                         "check that the cluster's head node is running and the address and port are right (for a "
                         "cluster with token authentication also set RAY_AUTH_MODE=token)") from None


def _capacity(node: Mapping[str, float], worker: Mapping[str, float]) -> int:
    """How many device workers (or single-device trials) of ``worker``'s size one node holds at once."""
    counts = [int(node.get("CPU", 0) / worker["cpus"] + 1e-9)]
    if worker["gpus"]:
        counts.append(int(node.get("GPU", 0) / worker["gpus"] + 1e-9))
    return min(counts)


def check_resources(config: Mapping[str, Any]) -> None:
    """Fail now, with a clear message, if no node can ever hold one trial (Ray would wait forever).

    A trial (each device worker of a sharded one) must fit on ONE node: CPUs and GPUs of that node
    together. The cluster is checked as it is now, so an autoscaling cluster must keep one node of
    each needed kind running."""
    import ray

    _, worker = trial_resources(config)
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    hint = "" if config["cluster"]["address"] is None else (
        " (this cluster's live nodes were checked: keep one node of the needed kind running, e.g. min_workers: 1)")
    capacity = [_capacity(node, worker) for node in nodes]
    if not any(capacity):
        most_cpus = max((node.get("CPU", 0) for node in nodes), default=0)
        most_gpus = max((node.get("GPU", 0) for node in nodes), default=0)
        if worker["gpus"] > most_gpus:
            where = ("no node of this cluster has a GPU" if most_gpus == 0
                     else f"the largest node has {most_gpus:g} GPUs")
            raise ValueError(f"cluster.gpus_per_trial={worker['gpus']:g} cannot be satisfied: {where}; allowed here: "
                             f"at most {most_gpus:g} (0 trains on CPUs){hint}")
        if worker["cpus"] > most_cpus:
            raise ValueError(f"cluster.cpus_per_trial={worker['cpus']:g} cannot be satisfied: the largest node has "
                             f"{most_cpus:g} CPUs; allowed here: at most {most_cpus:g}{hint}")
        shapes = ", ".join(sorted({f"{node.get('CPU', 0):g} CPUs + {node.get('GPU', 0):g} GPUs" for node in nodes}))
        raise ValueError(f"cluster.cpus_per_trial={worker['cpus']:g} with cluster.gpus_per_trial={worker['gpus']:g} "
                         f"cannot be satisfied: no node has both (nodes: {shapes}); allowed here: what one node "
                         f"holds{hint}")
    devices = int(config["trainer"]["devices"])
    if devices > 1 and devices > sum(capacity):
        raise ValueError(f"trainer.devices={devices} with cluster.cpus_per_trial={worker['cpus']:g} and "
                         f"cluster.gpus_per_trial={worker['gpus']:g}: the nodes of this cluster hold at most "
                         f"{sum(capacity)} such workers at once; allowed here: trainer.devices ≤ {sum(capacity)}"
                         f"{hint}")


def wrapped_trainable(config: Mapping[str, Any], path: Path, scratch: str | None = None):
    from ray import tune

    from orchestrator.recovery import no_retry_of_deterministic_failures
    from workers.trial import trainable

    keep_trial_directories()
    no_retry_of_deterministic_failures()
    trial_side, worker = trial_resources(config)
    return tune.with_resources(tune.with_parameters(trainable, base=trial_config(dict(config)), resources=worker,
                                                    experiment_dir=str(path), scratch=scratch), trial_side)


def keep_trial_directories() -> None:
    """Let a trial that Tune starts again use its existing directory.

    Ray Tune names a trial's directory when the trial first starts; a trial restored before it had a name,
    or planned again by the restored search algorithm, gets a NEW name — and when that name is taken, Tune
    appends a random suffix (``_create_unique_logdir_name``). With ``trial_dirname`` the name is the
    trial's identity (id and swept values), so an existing directory of that name IS this trial's: it is
    kept, and the trial continues from its checkpoints there. Checked by tests/orchestrator/test_ray_format.py."""
    from ray.tune.experiment import trial as trial_module

    trial_module._create_unique_logdir_name = _same_logdir  # noqa: SLF001


def _same_logdir(root: str, relative_logdir: str) -> str:
    return relative_logdir


def callbacks(config: Mapping[str, Any], path: Path) -> list:
    from orchestrator.progress import Progress, safe_wandb

    metric, mode = metric_and_mode(config)
    out = [Progress(metric, mode, epochs=config["trainer"]["epochs"])] if config["logging"]["progress"] else []
    wandb = safe_wandb(config["logging"]["wandb"], path.name, path)
    return out + ([wandb] if wandb else [])


def run_config(config: Mapping[str, Any], path: Path):
    from ray import tune

    return tune.RunConfig(
        name=path.name, storage_path=str(path.parent),
        failure_config=tune.FailureConfig(max_failures=int(config["cluster"]["max_failures"])),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=callbacks(config, path), verbose=0)


def asha_epochs(trainer: Mapping[str, Any]) -> tuple[int, int]:
    """(grace period, max_t) of ASHA, in epochs: a trial runs at least to its first evaluation."""
    epochs = max(1, int(trainer["epochs"]))
    return min(max(1, int(trainer["eval_every"])), epochs), epochs


def make_scheduler(config: Mapping[str, Any]):
    """ASHA on the epoch (every report carries it): rungs, ``max_t`` and the grace period are epochs, so
    ``trainer.eval_every`` > 1 does not shift them (a count of reports would)."""
    from ray.tune.schedulers import ASHAScheduler

    grace, max_t = asha_epochs(config["trainer"])
    return ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=grace)


def make_tuner(config: Mapping[str, Any], path: Path, scratch: str | None = None):
    """A Tuner for a new experiment."""
    from ray import tune

    metric, mode = metric_and_mode(config)
    sweep = config["sweep"]
    search_alg, scheduler = None, None
    if sweep["search"] == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric=metric, mode=mode, seed=int(config["trainer"]["seed"]))
        if sweep["max_concurrent"]:
            search_alg = ConcurrencyLimiter(search_alg, max_concurrent=sweep["max_concurrent"])
    collapsed = collapse(config)
    samples = int(sweep["num_samples"])
    if collapsed is not None and collapsed.collapsed:  # the distinct configurations, each with every seed
        from ray.tune.search import BasicVariantGenerator

        search_alg = BasicVariantGenerator(points_to_evaluate=collapsed.points,
                                           max_concurrent=sweep["max_concurrent"] or 0)
        samples = len(collapsed.points)
    if sweep["scheduler"] == "asha":
        scheduler = make_scheduler(config)
    use_metric = sweep["search"] == "optuna" or scheduler is not None
    tune_config = tune.TuneConfig(
        metric=metric if use_metric else None, mode=mode if use_metric else None, search_alg=search_alg,
        scheduler=scheduler, num_samples=samples, reuse_actors=True,
        max_concurrent_trials=sweep["max_concurrent"] if search_alg is None else None,
        trial_dirname_creator=trial_dirname)
    return tune.Tuner(wrapped_trainable(config, path, scratch), param_space=search_space(config),
                      tune_config=tune_config,
                      run_config=run_config(config, path))


def trial_dirname(trial) -> str:
    """``trainable_<trial id>_<index>_<swept values>``: Ray's default name without its creation time, so a trial
    that a restored experiment starts again keeps its directory (and its checkpoints) instead of getting a
    new one next to it."""
    name = re.sub(r'[/()<>:"\\|?*\s]', "_", f"{trial.trainable_name}_{trial.trial_id}_{trial.experiment_tag}")
    return name[:MAX_TRIAL_DIRNAME]


MAX_TRIAL_DIRNAME = 130


def restore_tuner(config: Mapping[str, Any], path: Path, restart_errored: bool, scratch: str | None = None):
    """The Tuner of an existing experiment: finished trials are kept, the others continue.

    The callbacks pickled in ``tuner.pkl`` point at the directory the experiment was launched in; they are
    replaced by this directory's, so a moved or copied experiment writes only into itself."""
    from ray import tune

    tuner = tune.Tuner.restore(str(path), trainable=wrapped_trainable(config, path, scratch), resume_unfinished=True,
                               resume_errored=not restart_errored, restart_errored=restart_errored)
    tuner._local_tuner._run_config.callbacks = callbacks(config, path)  # noqa: SLF001 - see the docstring
    return tuner


def save_config(config: Mapping[str, Any], path: Path) -> None:
    temporary = path / ".config.json.tmp"
    temporary.write_text(json.dumps(config, indent=2, sort_keys=True))
    os.replace(temporary, path / "config.json")


def load_config(path: Path) -> dict[str, Any]:
    """The experiment's ``config.json`` for ``resume``, read as any file of a folder (``orchestrator.folder``)."""
    folder = Folder(path)
    file = folder.path / "config.json"
    if folder.kind("config.json") == MISSING:
        raise ValueError(f"{path} is not a symsweep experiment: expected a directory with config.json written by "
                         "symsweep launch")
    try:
        config = folder.read_json("config.json")
    except FolderError as err:
        raise ValueError(f"{err}; it is written by symsweep launch and must not be edited: restore it from a copy "
                         "of the experiment") from None
    if not isinstance(config, dict) or not all(isinstance(config.get(key), dict) for key in ("cluster", "sweep")):
        raise ValueError(f"{file} is not a symsweep configuration (a JSON object with cluster and sweep sections); "
                         "restore it from a copy of the experiment")
    return config
