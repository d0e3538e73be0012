"""The sweep runs what the command line says: Hydra's precedence over a preset's sweep, Hydra's sweep
functions, ``launch --dry-run``, one metric and mode resolved at launch, ASHA counted in epochs, and
one override parser for every command."""

from __future__ import annotations

import csv
import json

import pytest

from orchestrator.cli import main
from orchestrator.config import compose
from orchestrator.plan import validate
from orchestrator.plan_text import describe


def metric_and_mode(config: dict) -> tuple[str, str]:
    plan = validate(config)
    return plan.metric, plan.mode


# -- precedence -----------------------------------------------------------------------------------------
def test_a_command_line_value_pins_a_key_the_preset_sweeps():
    config = compose(["experiment=quickstart", "symmetrizer.noise_scale=0.5"])
    assert "symmetrizer.noise_scale" not in config["sweep"]["params"]
    assert config["symmetrizer"]["noise_scale"] == 0.5
    assert validate(config).checked == 4  # 2 methods x 2 sample counts


def test_a_pinned_invalid_value_is_refused_like_any_other(tmp_path, capsys):
    status = main(["launch", f"storage={tmp_path}", "name=x", "experiment=quickstart", "symmetrizer.noise_scale=-1"])
    err = capsys.readouterr().err
    assert status == 2 and "symmetrizer.noise_scale=-1" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_pinning_the_method_of_a_preset_runs_only_that_method():
    config = compose(["experiment=ps_nbody_cpu", "symmetrizer.method=ps"])
    assert "symmetrizer.method" not in config["sweep"]["params"]
    assert config["symmetrizer"]["method"] == "ps"


def test_pinning_the_compared_key_drops_the_comparison_and_the_plan_says_what_runs(capsys, tmp_path):
    assert compose(["experiment=ps_nbody_cpu"])["sweep"]["compare"]["key"] == "symmetrizer.method"
    assert compose(["experiment=ps_nbody_cpu", "symmetrizer.method=ps"])["sweep"]["compare"] is None
    assert compose(["experiment=ps_nbody_cpu", "~sweep.params.symmetrizer.method"])["sweep"]["compare"] is None
    dims = compose(["experiment=candidate_nbody_dims_cpu", "model.name=gnn"])["sweep"]
    assert dims["compare"] is None and dims["derived"] == []
    kept = compose(["experiment=candidate_nbody_dims_cpu", "task.dim=3"])["sweep"]  # another key: kept
    assert kept["compare"]["key"] == "model.name" and len(kept["derived"]) == 1
    # a comparison the command line asks for is kept, and refused when its key is not swept
    status = main(["launch", f"storage={tmp_path}", "experiment=ps_nbody_cpu", "symmetrizer.method=ps",
                   "sweep.compare={key: symmetrizer.method, reference: ga}", "--dry-run"])
    assert status == 2 and "sweep.compare.key='symmetrizer.method'" in capsys.readouterr().err
    assert main(["launch", f"storage={tmp_path}", "experiment=ps_nbody_cpu", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "compare: symmetrizer.method: every value against ga, paired by seed, on best_test_mse" in out
    assert main(["launch", f"storage={tmp_path}", "experiment=ps_nbody_cpu", "symmetrizer.method=ps",
                 "--dry-run"]) == 0
    assert "compare:" not in capsys.readouterr().out


def test_a_command_line_sweep_replaces_the_preset_domain():
    config = compose(["experiment=quickstart", "symmetrizer.noise_scale=0.5,2"])
    assert config["sweep"]["params"]["symmetrizer.noise_scale"] == {"grid": [0.5, 2]}


def test_a_swept_key_is_removed_with_a_tilde():
    config = compose(["experiment=quickstart", "~sweep.params.symmetrizer.noise_scale"])
    assert list(config["sweep"]["params"]) == ["symmetrizer.method", "symmetrizer.train_samples"]
    assert config["symmetrizer"]["noise_scale"] == 1.0  # the base value


def test_removing_a_key_that_is_not_swept_names_the_swept_ones():
    with pytest.raises(ValueError, match=r"~sweep.params.trainer.lr: .*symmetrizer.method"):
        compose(["experiment=quickstart", "~sweep.params.trainer.lr"])


def test_later_wins_between_command_line_overrides():
    config = compose(["experiment=quickstart", "symmetrizer.noise_scale=0.5,2", "symmetrizer.noise_scale=3"])
    assert "symmetrizer.noise_scale" not in config["sweep"]["params"] and config["symmetrizer"]["noise_scale"] == 3
    config = compose(["experiment=quickstart", "symmetrizer.noise_scale=3", "symmetrizer.noise_scale=0.5,2"])
    assert config["sweep"]["params"]["symmetrizer.noise_scale"] == {"grid": [0.5, 2]}
    config = compose(["trainer.lr=0.1,0.2", "~sweep.params.trainer.lr"])
    assert config["sweep"]["params"] == {}


def test_later_wins_between_a_pin_and_a_sweep_params_entry(capsys):
    entry = "+sweep.params.symmetrizer.noise_scale={grid: [0.1, 1]}"
    config = compose(["experiment=quickstart", "symmetrizer.noise_scale=0.5", entry])
    assert config["sweep"]["params"]["symmetrizer.noise_scale"] == {"grid": [0.1, 1]}
    config = compose(["experiment=quickstart", entry, "symmetrizer.noise_scale=0.5"])
    assert "symmetrizer.noise_scale" not in config["sweep"]["params"] and config["symmetrizer"]["noise_scale"] == 0.5
    config = compose(["trainer.lr=0.1,0.2", "+sweep.params={trainer.lr: {grid: [0.3]}}"])  # a whole mapping too
    assert config["sweep"]["params"] == {"trainer.lr": {"grid": [0.3]}}
    assert main(["launch", "--dry-run", "--json", "experiment=quickstart", "symmetrizer.noise_scale=0.5", entry]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "symmetrizer.noise_scale" not in shown["pinned"], shown["pinned"]


# -- Hydra's sweep functions ----------------------------------------------------------------------------
DOMAINS = [
    ("trainer.lr=0.1,0.01", {"grid": [0.1, 0.01]}),
    ("trainer.lr=choice(0.1,0.01)", {"grid": [0.1, 0.01]}),
    ("trainer.lr=tag(sample,choice(0.1,0.01))", {"choice": [0.1, 0.01]}),
    ("trainer.epochs=range(1,4)", {"grid": [1, 2, 3]}),
    ("trainer.lr=interval(1e-4,1e-2)", {"uniform": [1e-4, 1e-2]}),
    ("trainer.lr=tag(log,interval(1e-4,1e-2))", {"loguniform": [1e-4, 1e-2]}),
    ("trainer.epochs=tag(int,interval(1,3))", {"randint": [1, 3]}),
]


@pytest.mark.parametrize("override,domain", DOMAINS)
def test_hydra_sweep_functions_become_tune_domains(override, domain):
    config = compose([override])
    key = override.split("=")[0]
    assert config["sweep"]["params"][key] == domain
    validate(config)


BAD_TEXT = ["trainer.lr=glob(*)", "trainer.lr=tag(foo,interval(1,2))", "trainer.lr=interval(1e-4,1e-2",
            "trainer.lr=1,2)", "group.name=S_n x E(3)", "'=x'", "a=${", "trainer.lr=[1,", "symmetrizer=ps,ga",
            "+sweep.params.x=1,2", "trainer.epochs=tag(int,interval(1.5,3))", "~sweep.params.nothing",
            "trainer.lr=tag(log,range(1,3))", "sweep.params=x", "trainer.lr=interval(1e-2,1e-4)", "~sweep",
            "~task.name", "logging.wandb=3", "task=", "experiment=nope", "task.name=${oc.env:NOPE}",
            "model.widths={a: 1}", "trainer.lr=choice()"]


@pytest.mark.parametrize("override", BAD_TEXT)
def test_no_override_text_gives_a_traceback(override, tmp_path, capsys):
    import ray

    status = main(["launch", f"storage={tmp_path}", "name=x", override])
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == [] and not ray.is_initialized()


def test_a_deleted_setting_takes_the_schemas_default(tmp_path, capsys):
    """``~trainer.epochs`` leaves the key out; like a plain-dict config, it then has the schema's one default."""
    from workers.schema import TrainerSettings

    assert main(["launch", "--dry-run", "--json", f"storage={tmp_path}", "~trainer.epochs"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == TrainerSettings().epochs


# -- --dry-run ------------------------------------------------------------------------------------------
def test_dry_run_prints_the_trials_and_writes_nothing(tmp_path, capsys):
    import ray

    status = main(["launch", f"storage={tmp_path}", "name=dry", "experiment=quickstart", "--dry-run", "--json"])
    out = capsys.readouterr().out
    assert status == 0
    summary = json.loads(out)
    assert summary["metric"] == "best_val_mse" and summary["mode"] == "min"
    assert summary["n_trials"] == len(summary["configurations"]) * 2 and summary["seeds"] == [0, 1]
    assert {"symmetrizer.method", "symmetrizer.train_samples"} <= set(summary["configurations"][0])
    assert summary["resources_per_trial"] == {"cpus": 1.0, "gpus": 0.0}
    assert list(tmp_path.iterdir()) == [] and not ray.is_initialized()


def test_dry_run_text_shows_plan_and_table(tmp_path, capsys):
    status = main(["launch", f"storage={tmp_path}", "experiment=ps_nbody_cpu", "symmetrizer.method=ps",
                   "trainer.lr=tag(log,interval(1e-4,1e-2))", "--dry-run"])
    out = capsys.readouterr().out
    assert status == 0
    assert "pinned: symmetrizer.method=ps" in out and "swept:  trainer.lr: loguniform [0.0001, 0.01]" in out
    assert "| # | trainer.lr | seeds |" in out and "metric: best_val_mse (min)" in out
    assert list(tmp_path.iterdir()) == []


def test_dry_run_fails_exactly_as_launch(tmp_path, capsys):
    args = [f"storage={tmp_path}", "name=x", "experiment=quickstart", "trainer.epochs=0"]
    assert main(["launch", *args, "--dry-run"]) == 2
    dry = capsys.readouterr().err
    assert main(["launch", *args]) == 2
    assert capsys.readouterr().err == dry and "trainer.epochs=0" in dry


# -- one metric and mode ------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric,mode", [("train_loss", "min"), ("mc_equivariance_error", "min"), ("elapsed_s", "min"),
                                         ("samples_per_s", "max"), ("best_val_mse", "min"),
                                         ("best_test_mse_transformed", "min")])
def test_loop_metrics_are_minimised_and_task_metrics_follow_the_task(metric, mode):
    config = compose(["task=nbody", "group=sn_e", f"sweep.metric={metric}"])
    assert metric_and_mode(config) == (metric, mode)
    classify = compose(["sweep.metric=best_val_accuracy"])
    assert metric_and_mode(classify) == ("best_val_accuracy", "max")


def test_sweep_mode_overrides_the_direction():
    config = compose(["task=nbody", "group=sn_e", "sweep.metric=mc_equivariance_error", "sweep.mode=max"])
    assert metric_and_mode(config) == ("mc_equivariance_error", "max")


def test_a_metric_the_trials_do_not_report_is_refused_with_the_list():
    config = compose(["task=nbody", "group=sn_e", "sweep.metric=bogus_metric", "sweep.scheduler=asha"])
    with pytest.raises(ValueError, match=r"^sweep.metric='bogus_metric' .*best_val_mse.*train_loss"):
        validate(config)


def test_only_a_task_with_an_ood_split_offers_its_ood_metrics(tmp_path, capsys):
    """n-body has val and test splits only: best_test_ood_mse would fail in every trial, so it is refused."""
    from workers.reporting import reported_metrics
    from workers.tasks import get_task, task_class

    assert main(["launch", "--dry-run", f"storage={tmp_path}", "task=nbody", "group=sn_e", "symmetrizer.method=ga",
                 "sweep.metric=best_test_ood_mse"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "sweep.metric='best_test_ood_mse'" in line and "best_val_mse" in line and "ood" not in line.split(":")[-1]
    gravity = compose(["experiment=remul_gravity_cpu", "sweep.metric=best_test_ood_mse"])
    validate(gravity)
    assert metric_and_mode(gravity) == ("best_test_ood_mse", "min")
    for name in ("nbody", "nbody_gravity"):  # the offered splits are the splits a trial evaluates
        data = get_task(name, train_size=2, eval_size=2).load(tmp_path / "cache")
        offered = {m[len("best_"):-len("_mse")] for m in reported_metrics(task_class(name))
                   if m.startswith("best_") and m.endswith("_mse")}
        assert offered == set(data.splits) - {"train"}, name


def test_launch_writes_the_resolved_metric_and_mode_into_config_json(tmp_path, monkeypatch):
    """What the Tuner, ASHA, Optuna, the progress line, the summary and status read."""
    import orchestrator.experiment as experiment
    from orchestrator.stored_config import save_config

    def run_experiment(plan, path, **options):
        path.mkdir(parents=True)
        save_config(plan.config, path)
        return 0

    monkeypatch.setattr(experiment, "run_experiment", run_experiment)
    assert main(["launch", f"storage={tmp_path}", "name=m", "task=nbody", "group=sn_e",
                 "sweep.metric=mc_equivariance_error"]) == 0
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (saved["sweep"]["metric"], saved["sweep"]["mode"]) == ("mc_equivariance_error", "min")


def test_the_summary_ranks_by_the_saved_mode():
    from orchestrator.aggregate import sweep_metric

    config = compose(["task=nbody", "group=sn_e", "sweep.metric=elapsed_s"])
    validate(config)  # resolves metric and mode into the config (config.json)
    assert sweep_metric(config) == ("elapsed_s", "min")
    config["sweep"]["mode"] = "max"  # what config.json says wins
    assert sweep_metric(config) == ("elapsed_s", "max")


def test_a_config_without_a_mode_is_ranked_by_its_tasks_vocabulary():
    from orchestrator.aggregate import sweep_metric

    config = compose(["sweep.metric=mc_equivariance_error"])  # EXP-classify: the task maximises accuracy
    assert config["sweep"]["mode"] is None
    assert sweep_metric(config) == ("mc_equivariance_error", "min")


def test_asha_and_optuna_need_the_metric_in_the_first_report():
    config = compose(["task=nbody", "group=sn_e", "sweep.scheduler=asha", "trainer.eval_every=4",
                      "trainer.checkpoint_every=2"])
    with pytest.raises(ValueError, match=r"^trainer.checkpoint_every=2 "):
        validate(config)


# -- ASHA in epochs --------------------------------------------------------------------------------------
class _Trial:
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def test_asha_stops_trials_at_epoch_rungs_with_eval_every():
    """eval_every = 3, 12 epochs: reports at epochs 3, 6, 9, 12. ASHA's grace period is the first
    evaluation (epoch 3) and max_t the last epoch, both in epochs: the worst trials stop at epoch 3,
    the others run to epoch 12."""
    from ray.tune.schedulers import TrialScheduler

    from orchestrator.tuner import make_scheduler

    plan = validate(compose(["task=nbody", "group=sn_e", "sweep.scheduler=asha", "trainer.epochs=12",
                             "trainer.eval_every=3", "trainer.checkpoint_every=3"]))
    metric = plan.metric
    scheduler = make_scheduler(plan.trainer)
    scheduler.set_search_properties(metric, plan.mode)
    assert (scheduler._time_attr, scheduler._max_t) == ("epoch", 12)
    trials = [_Trial(f"t{i}") for i in range(8)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    stopped: dict[str, int] = {}
    for epoch in (3, 6, 9, 12):
        for index, trial in enumerate(trials):
            if trial.trial_id in stopped:
                continue
            result = {"epoch": epoch, "training_iteration": epoch // 3, metric: float(index)}  # t0 best
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                stopped[trial.trial_id] = epoch
    assert set(stopped.values()) <= {3, 12}
    assert stopped["t0"] == 12 and stopped["t7"] == 3


# -- one override parser ---------------------------------------------------------------------------------
def test_data_generate_reads_numbers_as_launch_does(capsys):
    assert main(["data", "generate", "task=nbody", "train_size=1e2"]) == 2
    data = capsys.readouterr().err
    assert main(["launch", "task=nbody", "group=sn_e", "task.train_size=1e2", "--dry-run"]) == 2
    launch = capsys.readouterr().err
    assert "task.train_size=100.0" in data and "task.train_size=100.0" in launch


# -- no trial for a key that does not matter -----------------------------------------------------------
def test_the_quickstart_runs_ga_once_per_sample_count():
    from orchestrator.tuner import search_space

    plan = validate(compose(["experiment=quickstart"]))
    assert plan.before == 8 and len(plan.points) == 6
    assert plan.describe_collapse() == ("16 configurations -> 12 distinct trials "
                                        "(symmetrizer.noise_scale is not used by ga)")
    ga = [point.values for point in plan.points if point.values["symmetrizer.method"] == "ga"]
    assert [point["symmetrizer.noise_scale"] for point in ga] == ["—", "—"]
    assert search_space(plan)["trainer.seed"] == {"grid_search": [0, 1]}  # seeds are never collapsed


def test_sweeps_without_unused_keys_are_not_collapsed():
    repeated = validate(compose(["experiment=quickstart", "sweep.search=random", "sweep.num_samples=2"]))
    assert repeated.collapsed and repeated.n_trials == 24  # each of the 12 distinct runs twice, the seeds crossed


COMPARE = "sweep.compare={key: symmetrizer.method, reference: ga}"
RATIO = ("sweep.derived=[{name: ga_over_ps, metric: best_val_mse, key: symmetrizer.method, numerator: ga, "
         "denominator: ps}]")


def test_configurations_differing_only_in_unused_keys_run_once(tmp_path, capsys):
    """Was ``test_collapse_e2e.py::test_configurations_differing_only_in_unused_keys_run_once`` (a whole sweep).
    PS and GA at two noise scales, two seeds: the launch says 6 distinct trials; Tune's search, given the plan's
    points and search space as ``make_tuner`` gives them, creates one trial per distinct configuration and seed,
    GA's noise scale "—" (its trial runs with the base value: tests/train/test_trial.py); the report shows GA
    once with "—" and pairs it with PS at each noise scale in derived.csv and compare.csv. A collapsed sweep
    whose driver is killed resumes without running a configuration twice: test_faults.py."""
    from ray.tune.experiment import Experiment
    from ray.tune.search import BasicVariantGenerator

    from orchestrator.results import write_report
    from orchestrator.tuner import search_space
    from tests.orchestrator.fakes import FakeExperiment, mse_report

    overrides = ["task=nbody", "group=sn_e", "trainer.epochs=2", "symmetrizer.method=ps,ga",
                 "symmetrizer.noise_scale=0.1,1.0", RATIO, COMPARE, "sweep.seeds=2"]
    plan = validate(compose([f"storage={tmp_path}", *overrides]))
    said = "8 configurations -> 6 distinct trials (symmetrizer.noise_scale is not used by ga)"  # two seeds each
    assert plan.describe_collapse() == said and plan.n_trials == 6
    assert main(["launch", f"storage={tmp_path}", "name=dry", *overrides, "--dry-run"]) == 0
    assert said in capsys.readouterr().out

    def trainable(config):
        return None

    searcher = BasicVariantGenerator(points_to_evaluate=[dict(point.values) for point in plan.points])
    searcher.add_configurations([Experiment("collapsed", trainable, config=search_space(plan),
                                            num_samples=len(plan.points), storage_path=str(tmp_path / "tune"))])
    trials = []
    while (trial := searcher.next_trial()) is not None:
        trials.append(trial)
    assert sorted((t.config["symmetrizer.method"], t.config["symmetrizer.noise_scale"], t.config["trainer.seed"])
                  for t in trials) == [("ga", "—", 0), ("ga", "—", 1), ("ps", 0.1, 0), ("ps", 0.1, 1), ("ps", 1.0, 0),
                                       ("ps", 1.0, 1)]

    config = json.loads(json.dumps(plan.config))  # what launch saves, the metric and mode resolved
    config["name"] = "collapsed"
    fake = FakeExperiment(tmp_path / "collapsed", config)
    for values, mse in (({"symmetrizer.method": "ps", "symmetrizer.noise_scale": 0.1}, 0.1),
                        ({"symmetrizer.method": "ps", "symmetrizer.noise_scale": 1.0}, 0.2),
                        ({"symmetrizer.method": "ga", "symmetrizer.noise_scale": "—"}, 0.4)):
        for seed in (0, 1):
            fake.trial({**values, "trainer.seed": seed}, "TERMINATED", [mse_report(mse + 0.01 * seed)])
    fake.save_state()
    write_report(fake.path)
    summary = (fake.path / "summary.md").read_text()
    assert "| ga | — |" in summary and "against ga, paired by seed" in summary
    with (fake.path / "derived.csv").open() as handle:
        ratios = list(csv.DictReader(handle))
    assert sorted((row["symmetrizer.noise_scale"], round(float(row["ratio"]), 6)) for row in ratios) == [
        ("0.1", round(0.405 / 0.105, 6)), ("1.0", round(0.405 / 0.205, 6))]
    with (fake.path / "compare.csv").open() as handle:
        compared = list(csv.DictReader(handle))
    assert sorted((row["value"], row["symmetrizer.noise_scale"], row["pairs"]) for row in compared) == [
        ("ps", "0.1", "2"), ("ps", "1.0", "2")]


def test_sampled_sweeps_and_sweeps_without_unused_keys_are_not_collapsed():
    """A grid repeated by random search collapses as the grid does; a sampled key and keys every point reads do not."""
    repeated = validate(compose(["experiment=quickstart", "sweep.search=random", "sweep.num_samples=2"]))
    assert repeated.n_trials == 2 * validate(compose(["experiment=quickstart"])).n_trials == 24  # GA's noise: once
    assert not validate(compose(["trainer.lr=interval(0.001,0.01)"])).collapsed
    assert not validate(compose(["experiment=quickstart", "symmetrizer.method=ps"])).collapsed
    only_ga = validate(compose(["experiment=quickstart", "symmetrizer.method=ga"]))
    assert only_ga.n_trials == 4  # the two noise scales run once: 2 sample counts x 2 seeds
    no_duplicate = validate(compose(["experiment=quickstart", "symmetrizer.noise_scale=0.5"]))
    assert no_duplicate.n_trials == 8 and describe(no_duplicate)["collapsed"] is None


def test_a_collapsed_configuration_stands_for_every_value_in_derived_results_and_plots():
    from orchestrator.aggregate import Configuration, Summary, expand_unused

    config = {"sweep": {"params": {"symmetrizer.method": {"grid": ["ps", "ga"]},
                                   "symmetrizer.noise_scale": {"grid": [0.1, 1.0]}}}}
    rows = [Configuration({"symmetrizer.method": "ps", "symmetrizer.noise_scale": 0.1}, [], {"m": (1.0, 0.0)}),
            Configuration({"symmetrizer.method": "ps", "symmetrizer.noise_scale": 1.0}, [], {"m": (2.0, 0.0)}),
            Configuration({"symmetrizer.method": "ga", "symmetrizer.noise_scale": "—"}, [], {"m": (4.0, 0.0)})]
    summary = Summary("x", ["symmetrizer.method", "symmetrizer.noise_scale"], frozenset(), ["m"], "m", "min", rows, {})
    expanded = expand_unused(summary, config)
    assert [(c.values["symmetrizer.method"], c.values["symmetrizer.noise_scale"], c.stats["m"][0])
            for c in expanded.configurations] == [("ps", 0.1, 1.0), ("ps", 1.0, 2.0), ("ga", 0.1, 4.0),
                                                  ("ga", 1.0, 4.0)]


# -- the plan is built once ----------------------------------------------------------------------------------
def test_a_launch_reads_each_section_once_and_checks_each_configuration_once(tmp_path, monkeypatch):
    """``validate`` loads the sweep, cluster and logging sections once, resolves the metric once, runs the trial's
    own ``check_config`` once per configuration of the grid and ``unused_keys`` once per checked configuration
    (its collapse); what the launch prints afterwards reads only the plan."""
    from collections import Counter

    import orchestrator.plan
    import workers.schema
    import workers.settings
    from orchestrator.commands.launch import prepare

    counts: Counter = Counter()

    def counting(module, name, key=None):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            counts[key(*args) if key else name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counting(workers.schema, "load", key=lambda cls, given, where: where)
    counting(orchestrator.plan, "load", key=lambda cls, given, where: where)
    counting(workers.settings, "load", key=lambda cls, given, where: where)
    counting(workers.settings, "check_config")
    counting(workers.settings, "unused_keys")
    counting(orchestrator.plan, "_metric")
    plan, _, summary = prepare(["experiment=quickstart", f"storage={tmp_path}"])
    assert (counts["sweep"], counts["cluster"], counts["logging"], counts["_metric"]) == (1, 1, 1, 1)
    assert counts["check_config"] == counts["unused_keys"] == plan.checked == 8
    assert counts["trainer"] == plan.checked + 1  # each configuration's, and the base trainer settings
    assert summary["n_trials"] == plan.n_trials == 12


# -- a draw is shared by its seeds --------------------------------------------------------------------------------
def test_each_draw_of_a_sampled_domain_runs_on_every_seed():
    """Random search with seeds: the plan draws ``num_samples`` values (from trainer.seed) and hands them to Tune
    as points, each crossed with every seed and grid value; the dry run lists exactly those values."""
    from orchestrator.tuner import search_space

    overrides = ["task=nbody", "group=sn_e", "symmetrizer.method=ps,ga", "sweep.seeds=3", "sweep.num_samples=4",
                 "sweep.search=random", "+sweep.params.trainer.lr={loguniform: [1.0e-4, 1.0e-2]}"]
    plan = validate(compose(overrides))
    lrs = [point.values["trainer.lr"] for point in plan.points]
    assert len(plan.points) == 8 and len(set(lrs)) == 4 and all(1e-4 <= lr <= 1e-2 for lr in lrs)
    assert plan.explicit and plan.n_trials == 24 and all(point.trial is not None for point in plan.points)
    assert [point.values for point in validate(compose(overrides)).points] == [p.values for p in plan.points]
    space = search_space(plan)
    assert space["trainer.seed"] == {"grid_search": [0, 1, 2]}
    assert describe(plan)["configurations"] == [point.values for point in plan.points]
    other = validate(compose([*overrides, "trainer.seed=5"]))
    assert [p.values["trainer.lr"] for p in other.points] != lrs  # the draws follow trainer.seed
