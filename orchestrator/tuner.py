"""Ray Tune: the Tuner of a new experiment and of a restored one, built from the ``SweepPlan``.

The trainable is ``workers.trial.trainable`` with the trial's base config and resources; the search space is
one Tune domain per swept key plus the seeds (a collapsed grid runs its distinct points through
``points_to_evaluate``); ASHA counts epochs; each trial's directory is named by its identity so that a restored
trial keeps it. ``restore_tuner`` replaces what ``tuner.pkl`` pickled with this folder's trainable and callbacks,
so a moved or copied experiment writes only into itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from orchestrator.plan import SEED_KEY, SweepPlan
from workers.schema import TrainerSettings


def wrapped_trainable(plan: SweepPlan, path: Path, scratch: str | None = None):
    from ray import tune

    from orchestrator import tune_patches
    from orchestrator.recovery import no_retry_of_deterministic_failures
    from workers.trial import trainable

    keep_trial_directories()
    no_retry_of_deterministic_failures()
    tune_patches.atomic_storage()
    tune_patches.rebase_restored_searchers()
    trial_side, worker = plan.resources()
    return tune.with_resources(tune.with_parameters(trainable, base=plan.base, resources=worker,
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


def callbacks(plan: SweepPlan, path: Path) -> list:
    from orchestrator.progress import Progress
    from orchestrator.wandb_runs import safe_wandb

    out = [Progress(plan.metric, plan.mode, epochs=plan.trainer.epochs, total=plan.n_trials, experiment=path)
           ] if plan.logging.progress else []
    wandb = safe_wandb(plan.logging.wandb, path.name, path, base=plan.base)
    return out + ([wandb] if wandb else [])


def run_config(plan: SweepPlan, path: Path):
    from ray import tune

    return tune.RunConfig(
        name=path.name, storage_path=str(path.parent),
        failure_config=tune.FailureConfig(max_failures=plan.cluster.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=callbacks(plan, path), verbose=0)


def asha_epochs(trainer: TrainerSettings) -> tuple[int, int]:
    """(grace period, max_t) of ASHA, in epochs: a trial runs at least to its first evaluation."""
    epochs = max(1, trainer.epochs)
    return min(max(1, trainer.eval_every), epochs), epochs


def make_scheduler(trainer: TrainerSettings):
    """ASHA on the epoch (every report carries it): rungs, ``max_t`` and the grace period are epochs, so
    ``trainer.eval_every`` > 1 does not shift them (a count of reports would)."""
    from ray.tune.schedulers import ASHAScheduler

    grace, max_t = asha_epochs(trainer)
    return ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=grace)


def search_space(plan: SweepPlan) -> dict[str, Any]:
    """Tune's param_space: one domain per swept dotted key, plus the seeds. The values of explicit points (a
    collapsed grid, draws shared by the seeds) come from ``points_to_evaluate``: each key is then a choice of the
    values its points hold (``UNUSED`` included), which those points fill in."""
    from ray import tune

    if plan.explicit:
        space: dict[str, Any] = {}
        for key in plan.domains:
            values = {json.dumps(p.values[key], sort_keys=True, default=str): p.values[key] for p in plan.points}
            space[key] = tune.choice(list(values.values()))
    else:
        space = {key: domain.tune() for key, domain in plan.domains.items()}
    if len(plan.seeds) > 1:
        space[SEED_KEY] = tune.grid_search(list(plan.seeds))
    return space


def make_tuner(plan: SweepPlan, path: Path, scratch: str | None = None):
    """A Tuner for a new experiment."""
    from ray import tune

    sweep = plan.sweep
    search_alg, scheduler, samples = None, None, sweep.num_samples
    if sweep.search == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric=plan.metric, mode=plan.mode, seed=plan.trainer.seed)
        if sweep.max_concurrent:
            search_alg = ConcurrencyLimiter(search_alg, max_concurrent=sweep.max_concurrent)
    if plan.explicit:  # the distinct configurations, or the draws, each with every seed
        from ray.tune.search import BasicVariantGenerator

        search_alg = BasicVariantGenerator(points_to_evaluate=[dict(point.values) for point in plan.points],
                                           max_concurrent=sweep.max_concurrent or 0)
        samples = len(plan.points)
    rule = stopping_design(plan)
    if rule is not None:  # seeds added on demand until every comparison is resolved (orchestrator.stopping)
        from orchestrator.searcher import StoppingSearcher

        search_alg, samples = StoppingSearcher(rule, rule.metric, sweep.max_concurrent), rule.at_most()
    if sweep.scheduler == "asha":
        scheduler = make_scheduler(plan.trainer)
    use_metric = sweep.search == "optuna" or scheduler is not None
    tune_config = tune.TuneConfig(
        metric=plan.metric if use_metric else None, mode=plan.mode if use_metric else None, search_alg=search_alg,
        scheduler=scheduler, num_samples=samples, reuse_actors=True,
        max_concurrent_trials=sweep.max_concurrent if search_alg is None else None,
        trial_dirname_creator=trial_dirname)
    space = {} if rule is not None else search_space(plan)  # the searcher's suggestions hold every swept value
    return tune.Tuner(wrapped_trainable(plan, path, scratch), param_space=space, tune_config=tune_config,
                      run_config=run_config(plan, path))


def stopping_design(plan: SweepPlan):
    from orchestrator.stopping import Design

    return Design.of(plan)


def trial_dirname(trial) -> str:
    """``trainable_<trial id>_<index>_<swept values>``: Ray's default name without its creation time, so a trial
    that a restored experiment starts again keeps its directory (and its checkpoints) instead of getting a
    new one next to it."""
    name = re.sub(r'[/()<>:"\\|?*\s]', "_", f"{trial.trainable_name}_{trial.trial_id}_{trial.experiment_tag}")
    return name[:MAX_TRIAL_DIRNAME]


MAX_TRIAL_DIRNAME = 130


def restore_tuner(plan: SweepPlan, path: Path, restart_errored: bool, scratch: str | None = None):
    """The Tuner of an existing experiment: finished trials are kept, the others continue.

    The callbacks pickled in ``tuner.pkl`` point at the directory the experiment was launched in; they are
    replaced by this directory's, so a moved or copied experiment writes only into itself."""
    from ray import tune

    tuner = tune.Tuner.restore(str(path), trainable=wrapped_trainable(plan, path, scratch), resume_unfinished=True,
                               resume_errored=not restart_errored, restart_errored=restart_errored)
    tuner._local_tuner._run_config.callbacks = callbacks(plan, path)  # noqa: SLF001 - see the docstring
    return tuner
