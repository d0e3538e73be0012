"""``symsweep compare EXP_A EXP_B [--key NAME] [--metric M] [--out DIR]``: two experiments side by side.

Each configuration of B is paired with the configuration of A that has the same swept values (a key only one of
them sweeps has its config value in the other; a key a configuration does not read matches any value), and each
completed seed with the same ``trainer.seed``: the differences B − A of the metric give, per configuration, the
mean, standard error, 95 % t-interval and verdict of ``sweep.compare`` (the same table and forest plot). Use it for
before/after a code change, or the same sweep on two clusters. Configurations only one experiment ran are listed
as unmatched, and keys whose config values differ outside the swept ones are named.

Both experiments are inputs, maybe someone else's: they are only read (``orchestrator.folder``), never written.
The outputs (``compare.csv``, ``unmatched.csv``, ``compare.md``, ``plots/compare_<metric>.png``) go to ``--out DIR``,
by default a new folder ``./compare-<A>-vs-<B>`` (numbered when taken), printed at the end.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("compare", help="pair two experiments' configurations and seeds: B − A",
                                   description=__doc__)
    parser.add_argument("a", metavar="EXP_A", help="the reference experiment directory (<storage>/<name>)")
    parser.add_argument("b", metavar="EXP_B", help="the experiment compared with it (differences are B − A)")
    parser.add_argument("--key", default="experiment", metavar="NAME",
                        help="what differs between the two, the name of the table's key column (default: experiment; "
                             "e.g. code_version); its values are the experiments' names")
    parser.add_argument("--metric", metavar="M", help="the metric compared (default: the experiments' sweep metric)")
    parser.add_argument("--out", metavar="DIR",
                        help="where the tables and the plot go (default: a new ./compare-<A>-vs-<B>); never inside "
                             "EXP_A or EXP_B")
    parser.set_defaults(func=run)


def new_folder(name: str) -> Path:
    """A directory ``./<name>`` that did not exist (``-2``, ``-3``, ... appended when taken), made now."""
    from orchestrator.figures import safe_name

    base = Path.cwd() / safe_name(name)
    for index in range(1, 1000):
        path = base if index == 1 else base.with_name(f"{base.name}-{index}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise ValueError(f"{path} cannot be made ({err.strerror or err}); choose a directory with --out DIR"
                             ) from None
    raise ValueError(f"{base}-2 ... {base}-999 all exist; choose a directory with --out DIR")


def run(args: argparse.Namespace) -> int:
    from orchestrator.comparison import compare_experiments
    from orchestrator.folder import Folder
    from orchestrator.results import load_experiment

    folders = Folder(args.a), Folder(args.b)
    comparison = compare_experiments(load_experiment(folders[0]), load_experiment(folders[1]), args.key, args.metric)
    for folder in folders:
        folder.warn_skipped("compare")
    first, second = comparison.labels
    out = Path(args.out) if args.out else new_folder(f"compare-{first}-vs-{second}")
    files = comparison.write(out)
    print(comparison.markdown())
    paired = sum(1 for c in comparison.found if c.pairs)
    print(f"{len(comparison.found)} matching configuration(s) ({paired} with paired seeds), "
          f"{len(comparison.unmatched)} unmatched; wrote {len(files)} file(s) in {out.resolve()}")
    return 0
