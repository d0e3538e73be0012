"""``sweep.compare`` with a stopping rule, without Ray: the design (which seeds each configuration needs), the
searcher Tune drives (on demand, FINISHED, concurrency, its checkpoint), the planned count the exit status reads
from the files, the refusals before Ray starts, the dry run and compare.csv. The real sweep: test_stopping_e2e."""

from __future__ import annotations

import json

import pytest

from orchestrator.analyses.sequential import Rule
from orchestrator.cli import main
from orchestrator.searcher import StoppingSearcher
from orchestrator.stopping import Design
from tests.orchestrator.fakes import FakeExperiment, base_config, mse_report

POINTS = [{"m": "ps", "n": 1}, {"m": "ga", "n": 1}, {"m": "ca", "n": 1}, {"m": "ps", "n": 2}]
CLEAR = [0.1, 0.11, 0.09, 0.105, 0.1]  # ps − ga: resolved at 4 pairs
TINY = ["task=nbody", "group=sn_e", "trainer.epochs=1", "symmetrizer.method=ps,ga,canonical", "sweep.seeds=2"]


def design(max_seeds: int = 6, initial: int = 4) -> Design:
    return Design(POINTS, "m", "ga", Rule("resolved", max_seeds), tuple(range(initial)))


def results(values: dict[int, list[float | None]]) -> dict:
    return {(point, seed): value for point, series in values.items() for seed, value in enumerate(series)}


def test_pairs_share_the_reference_and_each_asks_for_its_own_seeds():
    rule = design()
    assert rule.pairs == [(0, 1), (2, 1)]  # ps at n=2 has no reference partner: it runs the initial seeds
    ga = [1.0, 1.2, 0.9, 1.1]
    done = results({0: [g + d for g, d in zip(ga, CLEAR)], 1: ga, 2: ga, 3: [0.5] * 4})
    assert rule.needs(done) == [4, 5, 5, 4]  # ps resolved; ca equal to ga: one more seed to both sides
    done |= {(1, 4): 1.0, (2, 4): 1.0, (1, 5): 1.0, (2, 5): 1.0}
    assert rule.needs(done) == [4, 6, 6, 4]  # at max_seeds: decided
    assert rule.at_most() == 6 + 6 + 6 + 4
    failed = results({0: [1.1, 1.3, None, 1.2], 1: ga, 2: ga, 3: [0.5] * 4})
    assert design().needs(failed)[0] == 4  # a failed seed ends its pair there: nothing more is asked of it


def test_a_configuration_that_does_not_read_a_key_is_compared_with_every_value_of_it():
    from workers import UNUSED

    points = [{"m": "ps", "n": 1}, {"m": "ps", "n": 2}, {"m": "ga", "n": UNUSED}, {"m": "ca", "n": UNUSED}]
    assert Design(points, "m", "ga", Rule("resolved", 4), (0, 1)).pairs == [(0, 2), (1, 2), (3, 2)]
    assert Design(points, "m", "ps", Rule("resolved", 4), (0, 1)).pairs == [(2, 0), (2, 1), (3, 0), (3, 1)]


def tune_loop(searcher: StoppingSearcher, metric, concurrent: int | None = None, stop_after: int | None = None,
              ids: str = "t"):
    """Tune's part: ask for trials (each id new), run them (completing the oldest first), until FINISHED."""
    running, order, n = [], [], 0
    while True:
        while True:
            n += 1
            suggestion = searcher.suggest(f"{ids}{n}")
            if suggestion in (None, StoppingSearcher.FINISHED):
                break
            running.append((f"{ids}{n}", suggestion))
            order.append((suggestion["m"], suggestion["n"], suggestion["trainer.seed"]))
            assert concurrent is None or len(running) <= concurrent
        if suggestion == StoppingSearcher.FINISHED:
            return order
        if stop_after is not None and len(order) >= stop_after:
            return order
        trial_id, config = running.pop(0)
        searcher.on_trial_complete(trial_id, {"best_val_mse": metric(config)})


def mse(config: dict) -> float:
    seed = config["trainer.seed"]
    return 1.0 + 0.1 * seed + (CLEAR[seed] if config["m"] == "ps" and config["n"] == 1 else 0.0)


def test_the_searcher_suggests_on_demand_and_finishes_when_every_pair_is_decided(tmp_path):
    searcher = StoppingSearcher(design(max_seeds=6), "best_val_mse", max_concurrent=2)
    order = tune_loop(searcher, mse, concurrent=2)
    counts = {(m, n): sum(1 for o in order if o[:2] == (m, n)) for m, n in {o[:2] for o in order}}
    assert counts == {("ps", 1): 4, ("ga", 1): 6, ("ca", 1): 6, ("ps", 2): 4}
    assert order[:4] == [("ps", 1, 0), ("ga", 1, 0), ("ca", 1, 0), ("ps", 2, 0)]  # the first seeds first
    assert len(set(order)) == len(order)
    again = tune_loop(StoppingSearcher(design(max_seeds=6), "best_val_mse", max_concurrent=2), mse, concurrent=2)
    assert again == order  # deterministic


def test_the_searcher_state_survives_its_checkpoint_and_a_restore_is_reconciled(tmp_path):
    first = StoppingSearcher(design(max_seeds=6), "best_val_mse", max_concurrent=1)
    done = tune_loop(first, mse, concurrent=1, stop_after=16)  # 16 trials suggested, 15 of them complete
    first.save(str(tmp_path / "searcher.pkl"))
    second = StoppingSearcher(design(max_seeds=6), "best_val_mse", max_concurrent=1)
    second.restore(str(tmp_path / "searcher.pkl"))
    (live,) = first.live
    assert second.results == first.results and len(first.results) == 15 and second.live == {live}

    class Trial:  # a trial as Tune restores it
        def __init__(self, trial_id, status, config, last_result=None):
            self.trial_id, self.status, self.config, self.last_result = trial_id, status, config, last_result or {}

    def config_of(searcher, trial_id):
        point, seed = searcher.trials[trial_id]
        return {**searcher.design.points[point], "trainer.seed": seed}

    held = [Trial(t, "TERMINATED", config_of(first, t)) for t in first.trials if t != live]
    finished = Trial(live, "TERMINATED", config_of(first, live), {"best_val_mse": 1.3})  # the checkpoint missed it
    second.reconcile([*held, finished])
    assert second.live == set() and len(second.results) == 16
    rest = tune_loop(second, mse, concurrent=1, ids="resumed")
    assert len(done) + len(rest) == 20 and not set(done) & set(rest)

    # Tune's state newer than the searcher's: a trial the checkpoint never suggested is adopted, not run again;
    # the searcher's newer than Tune's: a trial Tune does not hold is forgotten and suggested again
    third = StoppingSearcher(design(max_seeds=6), "best_val_mse", max_concurrent=1)
    third.restore(str(tmp_path / "searcher.pkl"))
    adopted = Trial("newer", "RUNNING", config_of(first, live))
    third.reconcile([*[t for t in held if t.trial_id != held[-1].trial_id], adopted])
    assert third.trials["newer"] == first.trials[live] and live not in third.trials
    assert held[-1].trial_id not in third.trials and first.trials[held[-1].trial_id] not in third.results
    assert third.suggest("x") is None  # one trial runs (max_concurrent=1): the adopted one
    third.on_trial_complete("newer", {"best_val_mse": 1.3})
    assert third.suggest("y") is not None and third.trials["y"] == first.trials[held[-1].trial_id]  # back first


def rule_experiment(path, mse: dict, seeds: int = 2, max_seeds: int = 4) -> FakeExperiment:
    params = {"symmetrizer.method": {"grid": ["ps", "ga", "canonical"]}}
    config = base_config(path.parent, params, epochs=2, seeds=seeds, task="nbody")
    config["sweep"]["compare"] = {"key": "symmetrizer.method", "reference": "ga", "until": "resolved",
                                  "max_seeds": max_seeds}
    fake = FakeExperiment(path, config)
    for method, values in mse.items():
        for seed, value in enumerate(values):
            fake.trial({"symmetrizer.method": method, "trainer.seed": seed}, "TERMINATED", [mse_report(value)])
    fake.save_state()
    return fake


def test_compare_csv_says_the_seeds_the_rule_and_its_verdict(tmp_path):
    """compare.csv as the Python API gives it (``Experiment.comparisons``, the same table) and summary.md."""
    from orchestrator.results import load_experiment, report_markdown

    ga = [0.2, 0.25, 0.22, 0.21]
    path = rule_experiment(tmp_path / "cmp", {"ps": [g - d for g, d in zip(ga, CLEAR)], "ga": ga,
                                              "canonical": [0.3, 0.1, 0.25]}).path  # canonical's seed 3 missing
    experiment = load_experiment(path)
    rows = {row["value"]: row for row in experiment.comparisons.to_dict("records")}
    ps, canonical = rows["ps"], rows["canonical"]
    assert ps["verdict"] == "ps better than ga (95 % confidence sequence)" and ps["seeds_used"] == 4
    assert ps["cs_low"] < ps["mean_difference"] < ps["cs_high"] < 0 and "ci95_low" not in ps
    assert ps["rule"] == "until resolved (95 % confidence sequence), at most 4 seeds"
    assert canonical["pairs"] == 3 and canonical["verdict"] == "undecided after 3 seeds (the sweep stopped " \
        "before the rule did)"
    summary = report_markdown(experiment)
    assert "ps better than ga (95 % confidence sequence)" in summary and "anytime-valid" in summary


def test_the_planned_count_is_what_the_rule_asked_recomputed_from_the_files(tmp_path):
    from orchestrator.config import compose
    from orchestrator.plan import validate
    from orchestrator.records import load_trials
    from orchestrator.stopping import planned_trials

    ga = [0.2, 0.25, 0.22, 0.21]
    fake = rule_experiment(tmp_path / "e", {"ps": [0.1, 0.15], "ga": ga[:2], "canonical": [0.3, 0.1]})
    plan = validate(compose([f"storage={tmp_path}", *TINY, "sweep.compare={key: symmetrizer.method, reference: ga, "
                                                            "until: resolved, max_seeds: 4}"]))
    assert plan.n_trials == 6 and planned_trials(plan, load_trials(fake.path)) == 9  # both pairs undecided: +1
    fake = rule_experiment(tmp_path / "f", {"ps": [g - 0.1 for g in ga], "ga": ga, "canonical": [0.3, 0.1, 0.2, 0.4]})
    assert planned_trials(plan, load_trials(fake.path)) == 12  # at max_seeds


@pytest.mark.parametrize("setting, named", [
    ("sweep.compare={key: symmetrizer.method, reference: ga, max_seeds: 4}", "sweep.compare.max_seeds=4"),
    ("sweep.compare={key: symmetrizer.method, reference: ga, until: done, max_seeds: 4}", "sweep.compare.until='done'"),
    ("sweep.compare={key: symmetrizer.method, reference: ga, until: resolved, max_seeds: 1}",
     "sweep.compare.max_seeds=1"),
    ("sweep.compare={key: symmetrizer.method, reference: ga, until: resolved, max_seeds: 4, confidence: 1}",
     "sweep.compare.confidence=1"),
    ("sweep.compare={key: symmetrizer.method, reference: ga, until: resolved, max_seeds: 4, delta: 0}",
     "sweep.compare.delta=0"),
    ("sweep.compare={key: symmetrizer.method, reference: ga, until: resolved, max_seeds: 4} sweep.seeds=1",
     "sweep.seeds=1"),
    ("sweep.compare={key: symmetrizer.method, reference: ga, until: resolved, max_seeds: 3} sweep.seeds=4",
     "sweep.compare.max_seeds=3"),
    ("sweep.compare={key: symmetrizer.method, reference: ga, until: resolved, max_seeds: 4} sweep.scheduler=asha",
     "sweep.scheduler='asha'"),
    ("sweep.compare={key: symmetrizer.method, reference: ga, until: resolved, max_seeds: 4} sweep.search=optuna",
     "sweep.search='optuna'"),
])
def test_a_bad_rule_is_one_line_naming_the_key_before_ray_starts(tmp_path, capsys, setting, named):
    first, *rest = setting.split(" sweep.")
    overrides = [*TINY, first, *(f"sweep.{r}" for r in rest)]
    assert main(["launch", f"storage={tmp_path}", "name=bad", *overrides, "--dry-run"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines
    assert not (tmp_path / "bad").exists()


def test_the_dry_run_says_the_trials_at_start_and_at_most(tmp_path, capsys):
    rule = "sweep.compare={key: symmetrizer.method, reference: ga, until: resolved, max_seeds: 5, delta: 0.01}"
    assert main(["launch", f"storage={tmp_path}", "name=dry", *TINY, rule, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "trials: 6 at start = 3 configuration(s) x 2 seed(s) [0, 1]" in out
    assert "trials: at most 15: seeds are added one at a time to both sides of each of the 2 compared pair(s)" in out
    assert "equivalence within ±0.01" in out
    assert main(["launch", f"storage={tmp_path}", "name=dry", *TINY, rule, "--dry-run", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["n_trials"] == 6 and described["n_trials_at_most"] == 15 and described["compared_pairs"] == 2


def test_the_rule_reads_the_compared_metric_not_only_the_sweep_s(tmp_path):
    from orchestrator.config import compose
    from orchestrator.plan import validate
    from orchestrator.records import load_trials
    from orchestrator.stopping import planned_trials

    compare = "sweep.compare={key: symmetrizer.method, reference: ga, until: resolved, max_seeds: 4"
    plan = validate(compose([f"storage={tmp_path}", *TINY, compare + ", metric: best_test_mse}"]))
    assert plan.metric == "best_val_mse" and Design.of(plan).metric == "best_test_mse"
    fake = rule_experiment(tmp_path / "e", {"ps": [0.1, 0.15], "ga": [0.2, 0.25], "canonical": [0.3, 0.1]})
    for trial in fake.path.glob("trainable_*/result.json"):  # the compared metric missing: every trial failed it
        lines = [json.loads(line) for line in trial.read_text().splitlines()]
        trial.write_text("".join(json.dumps({k: v for k, v in line.items() if k != "best_test_mse"}) + "\n"
                                 for line in lines))
    assert planned_trials(plan, load_trials(fake.path)) == 6  # blocked at the first seed: nothing more asked


def test_a_trial_without_a_result_yet_leaves_its_pair_waiting_not_failed(tmp_path):
    from orchestrator.records import load_trials

    fake = rule_experiment(tmp_path / "e", {"ps": [0.1], "ga": [0.2, 0.25], "canonical": [0.3, 0.1]})
    fake.trial({"symmetrizer.method": "ps", "trainer.seed": 1}, "RUNNING", [mse_report(0.12)])
    fake.save_state()
    records = load_trials(fake.path)
    assert {r.state for r in records if r.params.get("trainer.seed") == 1 and r.params["symmetrizer.method"] == "ps"
            } == {"running"}
    design = Design([{"symmetrizer.method": m} for m in ("ps", "ga", "canonical")], "symmetrizer.method", "ga",
                    Rule("resolved", 4), (0, 1), "best_val_mse")
    results = design.results_of(records)
    assert (0, 1) not in results and results[(2, 1)] == 0.1
    assert design.needs(results) == [2, 3, 3]  # ps waits for its seed 1; canonical's pair asks a third seed


@pytest.mark.parametrize("rule", [{"until": "resolved", "max_seeds": "4"}, {"until": "soon", "max_seeds": 4},
                                  {"until": "resolved", "max_seeds": 4, "confidence": 1.5},
                                  {"until": "resolved", "max_seeds": 4, "delta": -1}])
def test_a_crafted_rule_in_a_saved_config_is_one_line_not_a_traceback(tmp_path, rule):
    from orchestrator.results import load_experiment

    fake = rule_experiment(tmp_path / "crafted", {"ps": [0.1], "ga": [0.2], "canonical": [0.3]})
    config = json.loads((fake.path / "config.json").read_text())
    config["sweep"]["compare"] = {"key": "symmetrizer.method", "reference": "ga", **rule}
    (fake.path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"sweep\.compare\.until does not have the shape symsweep launch writes"):
        load_experiment(fake.path)
