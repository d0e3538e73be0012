"""A results folder is untrusted input: reading one that someone shared (``symsweep report``, ``status``,
``evaluate``, ``resume``'s checks) never reads or writes outside it, never runs code from it, never hangs and
never ends in a traceback.

Each test crafts an experiment folder by hand, the way ``FakeExperiment`` (tests/orchestrator/fakes.py) writes one
(no Ray), plants one attack in it, snapshots a "victim" directory beside it (every entry's type, mode, mtime and bytes,
links not followed), runs the real command line in a subprocess — under a time limit and an address-space
limit, so that a hang or an unbounded read fails the test instead of the machine — and checks that the victim
is byte-identical afterwards.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import pickle
import re
import resource
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orchestrator.fakes import STAMP, FakeExperiment, base_config

ROOT = Path(__file__).resolve().parents[2]
MEMORY = 3 << 30  # address space of a command under test: an unbounded read fails fast instead of swapping
METHOD, SIZE = "symmetrizer.method", "task.train_size"
OUTPUTS = ("trials.csv", "summary.csv", "summary.md", "compare.csv", "derived.csv", "fits.csv", "eval_samples.csv")
SECRET = "SECRET-0451"  # in the victim's files: it must never appear in what a command writes or prints
SECRET_VALUE = 451451.25
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # each command has its own time limit too (``cli``)


def cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``symsweep <argv>`` in a subprocess, as a user runs it."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))

    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit, env={**os.environ, "PYTHONPATH": str(ROOT)})


def finished(result: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def refused(result: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 2 with one line naming ``names``."""
    finished(result, 2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert all(name in lines[0] for name in names), lines[0]
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below ``root`` (links not followed) -> (type, mode, mtime, bytes or link target)."""
    found = {}
    for directory, names, files in os.walk(root):
        for name in sorted(names + files):
            path = Path(directory, name)
            info = path.lstat()
            content = (os.readlink(path) if stat.S_ISLNK(info.st_mode)
                       else path.read_bytes() if stat.S_ISREG(info.st_mode) else None)
            found[path.relative_to(root).as_posix()] = (stat.S_IFMT(info.st_mode), info.st_mode, info.st_mtime_ns,
                                                        content)
    return found


def report(mse: float, **extra) -> dict:
    """One report of a trial of one epoch, with its evaluation-sample curve."""
    curve = {"test_mse": {"1": {"mean": mse, "std": 0.01}, "2": {"mean": mse / 2, "std": 0.01}}}
    return {"epoch": 1, "train_loss": mse, "val_mse": mse, "test_mse": mse, "best_val_mse": mse, "best_test_mse": mse,
            "elapsed_s": 1.0, "eval_samples_curve": curve, **extra}


def experiment(storage: Path, directory: str = "crafted", **changes) -> FakeExperiment:
    """Two methods × two training sizes × two seeds, completed, asking for every output (compare, derived,
    loglog, sample-count curves); the state file is saved by the caller (after adding its trials)."""
    params = {METHOD: {"grid": ["ps", "ga"]}, SIZE: {"grid": [10, 20]}}
    config = base_config(storage, params, epochs=1, seeds=2, task="nbody")
    config["sweep"].update(metric="best_val_mse", mode="min", compare={"key": METHOD, "reference": "ga"},
                           derived=[{"name": "ratio", "metric": "best_test_mse", "key": METHOD, "numerator": "ps",
                                     "denominator": "ga"}],
                           loglog=[{"metric": "best_test_mse", "key": SIZE}])
    config.update(changes)
    fake = FakeExperiment(storage / directory, config)
    for method, size, seed in itertools.product(("ps", "ga"), (10, 20), (0, 1)):
        mse = (0.1 if method == "ps" else 0.2) * 10 / size + 0.01 * seed
        fake.trial({METHOD: method, SIZE: size, "trainer.seed": seed}, "TERMINATED", [report(mse)])
    return fake


def retarget(fake: FakeExperiment, logdir: str) -> None:
    """The last trial of the state file names ``logdir`` as its directory."""
    trial = json.loads(fake.entries[-1][0])
    fake.entries[-1][0] = json.dumps({**trial, "relative_logdir": logdir})


def trial_dir(fake: FakeExperiment, index: int) -> Path:
    return next(fake.path.glob(f"trainable_abcde_{index:05d}_*"))


def written(path: Path) -> str:
    """Everything the report wrote into the experiment (tables and Markdown)."""
    return "".join((path / name).read_text(encoding="utf-8") for name in OUTPUTS if (path / name).is_file())


def secret_trial(directory: Path) -> Path:
    """A trial directory with the victim's secrets in its files."""
    directory.mkdir(parents=True)
    (directory / "params.json").write_text(json.dumps({METHOD: SECRET, SIZE: 10, "trainer.seed": 0}))
    (directory / "result.json").write_text(json.dumps({**report(0.5), "secret_metric": SECRET_VALUE,
                                                       "trial_id": SECRET}) + "\n")
    (directory / "error.txt").write_text(f"SecretError: {SECRET}\n")
    (directory / "eval_samples.json").write_text(json.dumps({"test_mse": {"7": {"mean": SECRET_VALUE}}}))
    return directory


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    (tmp_path / "storage").mkdir()
    return tmp_path / "storage"


@pytest.fixture
def victim(storage: Path) -> Path:
    """``<storage>/outside``: what a crafted folder beside it would like to read or overwrite."""
    outside = storage / "outside"
    (outside / "pictures").mkdir(parents=True)
    (outside / "bashrc").write_text("# the user's shell start-up file\nexport PATH=$HOME/bin:$PATH\n")
    (outside / "secret.txt").write_text(f"{SECRET}\n")
    for name in ("a.png", "b.png", "notes.txt"):
        (outside / "pictures" / name).write_bytes(b"\x89PNG kept " + name.encode())
    secret_trial(outside / "evil")
    for path in outside.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    return outside


def assert_clean(fake: FakeExperiment, result: subprocess.CompletedProcess) -> None:
    """Nothing of the victim's secrets reached the outputs or the terminal."""
    for text in (written(fake.path), result.stdout):
        assert SECRET not in text and str(SECRET_VALUE) not in text and "451451" not in text


# -- writing: never through a link, never outside ------------------------------------------------------------
def test_report_replaces_links_at_its_outputs_instead_of_writing_through_them(storage, victim):
    fake = experiment(storage)
    fake.save_state()
    for name in OUTPUTS:
        (fake.path / name).symlink_to(victim / "bashrc")
    before = snapshot(victim)
    finished(cli("report", str(fake.path)))
    assert snapshot(victim) == before
    for name in OUTPUTS:
        assert not (fake.path / name).is_symlink() and (fake.path / name).is_file(), name
    assert (fake.path / "summary.md").read_text().startswith("# fake\n")


def test_report_replaces_a_plots_link_by_a_directory_and_deletes_nothing_through_it(storage, victim):
    fake = experiment(storage)
    fake.save_state()
    (fake.path / "plots").symlink_to(victim / "pictures")
    before = snapshot(victim)
    finished(cli("report", str(fake.path)))
    assert snapshot(victim) == before
    plots = fake.path / "plots"
    assert not plots.is_symlink() and plots.is_dir()
    assert "learning_curves.png" in {file.name for file in plots.iterdir()}
    (plots / "old.png").symlink_to(victim / "pictures" / "a.png")  # an old figure that is a link: the link goes
    finished(cli("report", str(fake.path)))
    assert snapshot(victim) == before and not os.path.lexists(plots / "old.png")


def test_a_name_with_shell_lines_cannot_start_a_line_of_summary_md(storage, victim):
    """The audit's case: summary.md a link to the user's ~/.bashrc, and a name holding a command line."""
    marker = storage / "PWNED"
    payload = f"x\ntouch {marker}\n# $\\frac{{$"  # and TeX-like math a figure title must not parse
    fake = experiment(storage, name=payload)
    fake.trial({METHOD: "ga\r\ntouch pwned | x", SIZE: 10, "trainer.seed": 0}, "TERMINATED", [report(0.3)])
    fake.save_state()
    (fake.path / "summary.md").symlink_to(victim / "bashrc")
    before = snapshot(victim)
    result = finished(cli("report", str(fake.path)))
    assert snapshot(victim) == before and not marker.exists()
    summary = (fake.path / "summary.md").read_text(encoding="utf-8")
    for text in (summary, result.stdout):
        assert not [line for line in re.split(r"[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]", text)
                    if line.lstrip().startswith("touch")]
        assert f"touch {marker}" in text  # shown, inside its own line
        table = [line for line in text.splitlines() if line.startswith("|")]
        cells = {len(re.split(r"(?<!\\)\|", line)) for line in table[:2 + 5]}  # header, rule, 5 configurations
        assert len(cells) == 1  # an escaped "|" in a value does not add a column


def test_csv_cells_cannot_be_spreadsheet_formulas_or_break_lines(storage):
    fake = experiment(storage)
    values = ['=HYPERLINK("example.invalid")', "+1+1", "@SUM(A1)", "-cmd", "a\rb\x1b[31mc\x07"]
    for value in values:
        fake.trial({METHOD: value, SIZE: 10, "trainer.seed": 0}, "TERMINATED", [report(0.3, train_loss=-1.5)])
    fake.trial({METHOD: "ps", SIZE: "—", "trainer.seed": 0}, "TERMINATED", [report(0.3)])  # symsweep's own marker
    fake.save_state()
    finished(cli("report", str(fake.path)))
    for name in ("trials.csv", "summary.csv", "compare.csv", "eval_samples.csv"):
        with (fake.path / name).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        for cell in itertools.chain(*rows):
            assert not re.match(r"[=+@]|-[^0-9]", cell) and not re.search(r"[\x00-\x1f\x7f]", cell), (name, cell)
    rows = list(csv.DictReader((fake.path / "trials.csv").open(newline="", encoding="utf-8")))
    methods = {row[METHOD] for row in rows}
    assert {"'=HYPERLINK(\"example.invalid\")", "'+1+1", "'@SUM(A1)", "'-cmd"} <= methods
    assert {"-1.5"} == {row["train_loss"] for row in rows if row[METHOD].startswith("'")}  # numbers stay numbers
    assert ("", SIZE) in {(row[SIZE], row["unused"]) for row in rows}  # symsweep's marker: a missing value, named


def test_implausible_metric_names_and_keys_are_ignored(storage):
    """Names from a folder reach table headers and plot file names only when they look like identifiers."""
    params = {"trainer.lr": {"grid": [0.1, 0.2]}}
    config = base_config(storage, params, epochs=1, seeds=1, task="nbody")
    config["sweep"].update(metric="best_val_mse", mode="min")
    fake = FakeExperiment(storage / "names", config)
    key, metric = "k" * 130, "m" * 300
    weird = {"=cmd|' /C calc'!A0": 1.0, "x\ny": 2.0, "../../up": 3.0}
    for lr, value in ((0.1, 1), (0.2, 2)):
        curve = {"test_mse": {"1": {"mean": 0.1, "std": 0.0}}, metric: {"1": {"mean": 0.1, "std": 0.0}}}
        fake.trial({"trainer.lr": lr, key: value}, "TERMINATED", [{**report(0.3 * lr, **weird),
                                                                   "eval_samples_curve": curve}])
    fake.save_state()
    finished(cli("report", str(fake.path)))
    header = next(csv.reader((fake.path / "trials.csv").open(newline="", encoding="utf-8")))
    assert "trainer.lr" in header and "best_val_mse" in header
    assert not {key, *weird} & set(header)
    plots = {file.name for file in (fake.path / "plots").iterdir()}
    assert "eval_samples_test_mse.png" in plots and "metrics_vs_trainer.lr.png" in plots
    assert not [name for name in plots if key in name or metric in name]


# -- reading: nothing from outside -----------------------------------------------------------------------------
def test_report_and_status_never_read_trial_directories_outside(storage, victim):
    """``relative_logdir`` from the state file going up or absolute, and a trial directory that is a link."""
    fake = experiment(storage)
    secret_trial(victim / "evil2")
    fake.trial({METHOD: "ps", SIZE: 10, "trainer.seed": 5}, "TERMINATED", [], directory=False)
    retarget(fake, "../outside/evil")
    fake.trial({METHOD: "ps", SIZE: 10, "trainer.seed": 6}, "TERMINATED", [], directory=False)
    retarget(fake, str(victim / "evil2"))
    fake.save_state()
    (fake.path / "trainable_fffff_00099_99_linked").symlink_to(victim / "evil")
    before = snapshot(victim)
    result = finished(cli("report", str(fake.path)))
    assert snapshot(victim) == before
    assert_clean(fake, result)
    assert "skipped" in result.stderr and "../outside/evil" in result.stderr
    status = finished(cli("status", str(fake.path), "--json"))
    assert SECRET not in status.stdout and "451451" not in status.stdout


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint of the training loop (nbody, one epoch): what evaluate would load."""
    from tests.train.helpers import NBODY_MLP, collector, compose_trial
    from workers.train import run

    root = tmp_path_factory.mktemp("checkpoint")
    run(compose_trial(*NBODY_MLP, "trainer.epochs=1"), collector()[1], root)
    return root / "checkpoint_000001"


def test_evaluate_never_writes_outside(storage, victim, checkpoint):
    """Completed trials whose directories (going up, absolute) hold a loadable checkpoint are skipped."""
    fake = FakeExperiment(storage / "crafted", base_config(storage, {}, epochs=1, seeds=1, task="nbody"))
    secret_trial(victim / "evil2")
    for evil, seed in ((victim / "evil", 0), (victim / "evil2", 1)):
        shutil.copytree(checkpoint, evil / checkpoint.name)
        fake.trial({"trainer.seed": seed}, "TERMINATED", [report(0.4)], directory=False)
    retarget(fake, str(victim / "evil2"))
    fake.entries[0][0] = json.dumps({**json.loads(fake.entries[0][0]), "relative_logdir": "../outside/evil"})
    fake.save_state()
    before = snapshot(victim)
    result = cli("evaluate", str(fake.path), "--eval-samples", "1", "--split", "test", "--repeats", "1")
    assert snapshot(victim) == before
    finished(result, 1)  # no trial evaluated
    assert result.stdout.count("skipped") == 2
    assert_clean(fake, result)


def test_trial_files_that_are_links_are_not_followed(storage, victim):
    fake = experiment(storage)
    fake.save_state()  # trial 0 is in the state file; trial 8 is found on disk only (its params.json is read)
    listed, found = trial_dir(fake, 0), fake.path / "trainable_abcde_00008_8_found"
    found.mkdir()
    for directory in (listed, found):
        for name in ("result.json", "params.json", "error.txt", "eval_samples.json"):
            (directory / name).unlink(missing_ok=True)
            (directory / name).symlink_to(victim / "evil" / name)
    before = snapshot(victim)
    result = finished(cli("report", str(fake.path)))
    assert snapshot(victim) == before
    assert_clean(fake, result)
    assert f"skipped {listed.name}/result.json" in result.stderr
    assert f"skipped {found.name}/params.json" in result.stderr


# -- damaged files: skipped quickly, said once, no traceback ------------------------------------------------------
def damage(fake: FakeExperiment, how: str) -> str:
    """Damage one file of the experiment ``how``; the experiment-relative name it has."""
    target = trial_dir(fake, 1) / "result.json"
    if how.startswith("state"):
        target = fake.path / f"experiment_state-{STAMP}.json"
    target.unlink()
    if how in ("dev_zero", "state_dev_zero"):
        target.symlink_to("/dev/zero")
    elif how == "fifo":
        os.mkfifo(target)
    elif how == "nested":
        target.write_text(json.dumps(report(0.1)) + "\n" + "[" * 100_000 + "\n")
    elif how == "sparse":
        with target.open("wb") as handle:
            handle.truncate(1 << 30)
    elif how == "state_nested":
        fake.entries[1][0] = "[" * 100_000
        fake.save_state()
    return target.relative_to(fake.path).as_posix()


@pytest.mark.parametrize("how", ["dev_zero", "fifo", "nested", "sparse", "state_dev_zero", "state_nested"])
def test_a_damaged_file_is_skipped_quickly_and_said_once(storage, how):
    fake = experiment(storage)
    fake.save_state()
    name = damage(fake, how)
    for command in ("report", "status"):
        result = finished(cli(command, str(fake.path), timeout=60))
        notes = [line for line in result.stderr.splitlines() if "skipped" in line]
        assert len(notes) == 1 and notes[0].startswith(f"symsweep {command}: skipped {name}"), result.stderr
    rows = list(csv.DictReader((fake.path / "trials.csv").open(newline="", encoding="utf-8")))
    assert len(rows) == 8  # every trial shows, the damaged one as it can


@pytest.mark.parametrize("how", ["link", "nested", "shape"])
def test_a_damaged_config_json_is_one_line_quickly(storage, victim, how):
    fake = experiment(storage)
    fake.save_state()
    config = fake.path / "config.json"
    if how == "link":  # a valid config, outside
        config.rename(victim / "config.json")
        config.symlink_to(victim / "config.json")
    elif how == "nested":
        config.write_text("[" * 100_000)
    else:
        config.write_text(json.dumps({**json.loads(config.read_text()), "sweep": ["grid"]}))
    (fake.path / "tuner.pkl").write_bytes(pickle.dumps({"never": "unpickled by the checks"}))
    for command in ("report", "status", "evaluate", "resume"):
        refused(cli(command, str(fake.path)), str(config))


@pytest.mark.parametrize("how", ["dev_zero", "fifo"])
def test_resume_refuses_an_unreadable_state_file_quickly(storage, how):
    fake = experiment(storage)
    state = fake.save_state()
    (fake.path / "tuner.pkl").write_bytes(pickle.dumps({"never": "unpickled by the checks"}))
    state.unlink()
    state.symlink_to("/dev/zero") if how == "dev_zero" else os.mkfifo(state)
    refused(cli("resume", str(fake.path)), str(state))


# -- resume's own files: the lock and the set-aside directory ---------------------------------------------------
def test_a_planted_lock_link_is_refused_and_not_written_through(storage, victim):
    from orchestrator.recovery import LOCK_FILE, ExperimentLock

    fake = experiment(storage)
    fake.save_state()
    (fake.path / LOCK_FILE).symlink_to(victim / "bashrc")
    before = snapshot(victim)
    with pytest.raises(ValueError, match=re.escape(str(fake.path / LOCK_FILE))) as refusal:
        ExperimentLock(fake.path).acquire("resume")
    assert snapshot(victim) == before and "\n" not in str(refusal.value)


def test_errored_trials_are_set_aside_inside_the_experiment_only(storage, victim):
    from orchestrator.recovery import RESTARTED, set_aside_errored

    fake = FakeExperiment(storage / "errored", base_config(storage, {}, epochs=3, seeds=1))
    fake.trial({"trainer.seed": 0}, "ERROR", [report(0.5)], error="RuntimeError: boom\n")
    fake.save_state()
    errored = trial_dir(fake, 0)
    (victim / errored.name).mkdir()
    (victim / errored.name / "kept.txt").write_text("the victim's own directory of that name\n")
    (fake.path / RESTARTED).symlink_to(victim)
    before = snapshot(victim)
    moved = set_aside_errored(fake.path)
    assert snapshot(victim) == before
    restarted = fake.path / RESTARTED
    assert not restarted.is_symlink() and moved == [restarted / errored.name]
    assert (restarted / errored.name / "result.json").is_file() and not errored.exists()
