"""CI (``.ci/run``) runs the README's full test command, and the README's quick run is that command without the
tests marked ``slow``."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_test_commands() -> list[str]:
    section = ROOT.joinpath("README.md").read_text().split("## Run the tests", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_ci_runs_the_readmes_full_test_command_and_the_quick_run_leaves_out_slow_tests():
    quick, full = readme_test_commands()
    ci = [line.strip() for line in ROOT.joinpath(".ci/run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == full, (ci[-1], full)
    assert shlex.split(quick) == shlex.split(full) + ["-m", "not slow"]


def test_slow_is_declared_and_a_misspelt_marker_is_an_error():
    import tomllib

    options = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(marker.startswith("slow:") for marker in options["markers"])
    assert "--strict-markers" in options["addopts"].split()  # @pytest.mark.slwo would silently join the quick run
