"""The words of the ``pyro-vae`` command line: its parser, ``--SECTION.KEY VALUE`` overrides,
``KEY=VALUE`` options, and the plugins to import before the parser lists the estimators.

A flag that several commands take is declared once, in :data:`FLAGS`, and each command's
parser is composed from those and its own. Only the chosen command's parser is built: the
others are listed by name and one line of help, so that ``pyro-vae --help`` and ``pyro-vae
data list`` import neither torch nor the config nor the registries, which the parsers of
``train``, ``evaluate`` and ``compare`` need for their choices and their lists of defaults.

What each command then does is :mod:`pyro_vae.cli.main`'s. A usage error is a :class:`ConfigError`
(one line), not argparse's usage text and ``SystemExit``.
"""

import argparse
from collections.abc import Callable
from pathlib import Path

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import parse_value, show

RAW = argparse.RawDescriptionHelpFormatter
WHERE = "where datasets are kept (default: $PYRO_VAE_DATA, else ~/.cache/pyro-vae)"

#: every flag that more than one command takes: name -> (the flag, ``add_argument``'s keywords);
#: a command may change a keyword (its own help, say) where it adds the flag
FLAGS: dict[str, tuple[str, dict]] = {
    "run_dir": ("run_dir", {"type": Path, "metavar": "RUN_DIR"}),
    "config": ("--config", {"type": Path, "metavar": "FILE"}),
    "split": ("--split", {"default": "valid"}),
    "out": ("--out", {"type": Path, "metavar": "FILE"}),
    "seed": ("--seed", {"type": int, "default": 0, "help": "random seed (default 0)"}),
    "device": ("--device", {"default": "cpu", "help": "cpu, cuda or cuda:N (default cpu)"}),
    "checkpoint": (
        "--checkpoint",
        {"default": "checkpoint.pt", "help": "checkpoint.pt (default: the last) or best.pt"},
    ),
    "estimator": ("--estimator", {"default": "is", "help": "the log p(x) estimator (default is)"}),
    "option": (
        "--option",
        {"action": "append", "metavar": "KEY=VALUE", "help": "an estimator option (repeatable)"},
    ),
    "overwrite": ("--overwrite", {"action": "store_true"}),
    "quiet": ("--quiet", {"action": "store_true", "help": "no progress bar"}),
    "dir": ("--dir", {"type": Path, "metavar": "DIR", "help": WHERE}),
}


def add_flags(parser: argparse.ArgumentParser, *names: str, **changes) -> None:
    """Add the shared flags ``names`` to ``parser``, in that order, with ``changes`` to their
    keywords (``help="..."`` for one flag given alone)."""
    for name in names:
        flag, keywords = FLAGS[name]
        parser.add_argument(flag, **{**keywords, **changes})


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (a :class:`ConfigError`) instead of the usage
    text and ``SystemExit``."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see {self.prog} --help)")


def _flat_defaults(values: dict, prefix: str = "") -> list[str]:
    """``--model.prior.kind "normal"``-style lines for every key of a config."""
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            lines += _flat_defaults(value, f"{prefix}{key}.")
        else:
            lines.append(f"  --{prefix}{key} {'(unset)' if value is None else show(value)}")
    return lines


def _train(commands, help: str) -> None:
    from pyro_vae.config.run_config import Config
    from pyro_vae.core.registry import REGISTRIES

    kinds = [f"  {family}: {', '.join(r.names())}" for family, r in REGISTRIES.items()]
    keys = ["config keys and their defaults:", *_flat_defaults(Config().to_dict())]
    train = commands.add_parser(
        "train",
        help=help,
        description="Train a VAE. Every config key can be overridden as --SECTION.KEY VALUE; "
        'values are read as TOML (5, 1e-3, true, [300, 300], "cuda") and otherwise as words.',
        epilog="\n".join([*keys, "", "kinds:", *kinds]),
        formatter_class=RAW,
    )
    add_flags(train, "config", help="a .toml or .json config file")
    add_flags(train, "overwrite", help="replace a run already in the run directory")
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its checkpoint, exactly; --train.epochs, "
        "--train.max_seconds, --train.patience, --train.checkpoint_every, --train.loggers and "
        "--train.device may change",
    )
    add_flags(train, "quiet", help="no progress bar or messages")


def _sample(commands, help: str) -> None:
    sample = commands.add_parser("sample", help=help)
    add_flags(sample, "run_dir")
    sample.add_argument("-n", type=int, default=64, help="how many samples (default 64)")
    add_flags(sample, "out", help="a .png grid, or .npy of the values (default RUN_DIR/samples-N.png)")
    add_flags(sample, "seed", "device", "checkpoint")
    sample.add_argument(
        "--given",
        nargs="+",
        default=[],
        metavar="NAME=CLASS",
        help="a declared graph's class held fixed (--given y=3); without it, a row for each class",
    )


def _interpolate(commands, help: str) -> None:
    interpolate = commands.add_parser(
        "interpolate",
        help=help,
        description="Decode E[x|z] along the straight line (and, for a Gaussian prior, the spherical "
        "path) between the latent codes of pairs of data points, drawn at random with different labels "
        "where the data have them; the two points at the ends of each row.",
    )
    add = interpolate.add_argument
    add_flags(interpolate, "run_dir")
    add("--pairs", type=int, default=8, help="how many pairs (default 8)")
    add("--steps", type=int, default=10, help="points on each path, ends included (default 10)")
    add(
        "--path",
        choices=["linear", "spherical"],
        action="append",
        help="linear or spherical; repeat for both (default: every path the prior allows)",
    )
    add_flags(interpolate, "split", help="train, valid or test (default valid)")
    add_flags(interpolate, "out", help="a .png (default RUN_DIR/interpolation-PAIRS.png)")
    add_flags(interpolate, "seed", help="seed of the choice of pairs (default 0)")
    add_flags(interpolate, "device", "checkpoint")


def _evaluate(commands, help: str) -> None:
    from pyro_vae.cli import estimator_flags

    evaluate = commands.add_parser(
        "evaluate",
        help=help,
        description="Estimate log p(x) per data point of a split with a registered estimator (is: "
        "importance sampling with the guide as proposal, the IWAE bound with K samples; ais: annealed "
        "importance sampling), print mean ± standard error and write JSON beside the run. An "
        "estimator's options are flags (--samples 5000) or --option KEY=VALUE.",
        epilog=estimator_flags.epilog(),
        formatter_class=RAW,
    )
    add = evaluate.add_argument
    add_flags(evaluate, "run_dir")
    add_flags(evaluate, "estimator", choices=estimator_flags.names())
    add_flags(evaluate, "split", choices=["valid", "test", "train"], help="valid (default), test or train")
    add("--points", type=int, help="only the first N points of the split")
    add("--batch-size", type=int, default=100, help="points per pass (default 100)")
    add_flags(evaluate, "seed", "device", "checkpoint")
    add_flags(evaluate, "out", help="default RUN_DIR/evaluation-ESTIMATOR-SPLIT.json")
    add_flags(evaluate, "option")
    add("--plugins", nargs="+", default=[], metavar="FILE", help="files that register estimators")
    add_flags(evaluate, "quiet")
    estimator_flags.add_option_flags(evaluate)


def _compare(commands, help: str) -> None:
    from pyro_vae.cli import estimator_flags

    compare = commands.add_parser(
        "compare",
        help=help,
        description="Train one VAE per objective and seed with the same network, data, budget and "
        "initialization, then measure every one on the same validation points: log p(x) (by default "
        "the IWAE bound with K samples), the ELBO and its terms, active units, seconds per epoch, peak "
        "memory. Rerunning the same command reuses the runs that finished. Config keys can be "
        "overridden as --SECTION.KEY VALUE, as for train.",
        epilog="objective words: NAME or NAME:key=value[,key=value...], k meaning particles, e.g. "
        "elbo meanfield iwae:k=5 iwae_dreg:k=5 renyi:alpha=0.5,k=10 beta:beta=4",
        allow_abbrev=False,  # --seed must not pass for --seeds
    )
    add = compare.add_argument
    add_flags(compare, "config", help="the base config (.toml or .json)")
    add("--objectives", nargs="+", required=True, metavar="WORD", help="objectives to compare")
    add("--seeds", type=int, default=1, metavar="N", help="runs per objective (default 1)")
    add("--epochs", type=int, metavar="N", help="epochs per run (default: train.epochs)")
    add("--seconds", type=float, metavar="S", help="seconds of training per run")
    add_flags(compare, "estimator", choices=estimator_flags.names())
    add_flags(compare, "option")
    add("--eval-samples", type=int, default=5000, metavar="K", help="the estimator's samples (default 5000)")
    add("--eval-points", type=int, metavar="N", help="measure on the first N validation points (default all)")
    where = "where to write (default comparisons/<data>-<date>-<time>)"
    add_flags(compare, "out", metavar="DIR", help=where)
    add_flags(compare, "overwrite", help="retrain runs in DIR whose recorded config differs")
    add("--retry-diverged", action="store_true", help="retrain runs in DIR recorded as diverged")
    add_flags(compare, "quiet", help="no progress bar (a run that diverges is still said)")


def _data(commands, help: str) -> None:
    data = commands.add_parser(
        "data",
        help=help,
        description="Fetch datasets into the cache (default $PYRO_VAE_DATA, else "
        "$XDG_CACHE_HOME/pyro-vae, else ~/.cache/pyro-vae), checked against their published "
        "sizes and checksums; training with data.name = NAME reads them there. Mirrors in "
        "$PYRO_VAE_DATA_MIRROR (base URLs serving NAME/FILE) are tried first.",
    )
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    get = actions.add_parser("get", help="fetch datasets (what the cache holds already is kept)")
    get.add_argument("names", nargs="+", metavar="NAME", help="datasets to fetch (pyro-vae data list)")
    add_flags(get, "dir", "quiet")
    shown = actions.add_parser("list", help="every dataset pyro-vae can fetch: size, whether cached, where")
    add_flags(shown, "dir")
    for action in (get, shown):  # a plugin's datasets, as the config's `plugins` names them for train
        action.add_argument(
            "--plugins", nargs="+", default=[], metavar="FILE", help="plugin files registering datasets"
        )


def _graph(commands, help: str) -> None:
    graph = commands.add_parser(
        "graph",
        help=help,
        description="Draw a config's model and its guide as graphs of their sites (Pyro's "
        "render_model, through Graphviz): the model to --out, the guide beside it (FILE-guide). "
        "Config keys can be overridden as for train (--data.name digits).",
    )
    graph.add_argument("config", type=Path, metavar="CONFIG", help="a .toml or .json config file")
    add_flags(graph, "out", help="a .png, .svg, .pdf, or .gv for the DOT source (default graph.png)")


#: the commands, as ``pyro-vae --help`` lists them: name -> (one line of help, the function
#: that adds the command's full parser, given the subparsers and that line)
COMMANDS: dict[str, tuple[str, Callable]] = {
    "train": ("train a VAE as a config file describes (defaults: the digits dataset)", _train),
    "sample": ("decode draws from the prior of a trained run", _sample),
    "interpolate": (
        "decode the paths between the codes of pairs of data points of a trained run",
        _interpolate,
    ),
    "evaluate": ("estimate log p(x) of a trained run, with error bars", _evaluate),
    "compare": ("train one VAE per objective and seed, and measure them all alike", _compare),
    "data": ("fetch the datasets data.name can name, or list them", _data),
    "graph": ("draw a config's model and guide as graphs of their sites", _graph),
}


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``pyro-vae`` parser, with the full parser of ``command`` (the first word of the
    command line); every other command is only listed, by name and help."""
    parser = _Parser(
        prog="pyro-vae",
        description="Variational autoencoders as Pyro programs: train, evaluate, sample, compare objectives.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help, build) in COMMANDS.items():
        if name == command:
            build(commands, help)
        else:
            commands.add_parser(name, help=help)
    return parser


def overrides(words: list[str]) -> dict[str, str]:
    """``--train.epochs 5 --model.latent_dim=2`` -> ``{"train.epochs": "5", "model.latent_dim": "2"}``."""
    overrides, i = {}, 0
    while i < len(words):
        word = words[i]
        key, eq, value = word[2:].partition("=")
        if not word.startswith("--") or ("." not in key and key != "plugins"):
            raise ConfigError(f"unrecognized argument {word!r}; overrides look like --train.epochs 5")
        if not eq:
            if i + 1 >= len(words):
                raise ConfigError(f"--{key} needs a value")
            value, i = words[i + 1], i + 1
        overrides[key] = value
        i += 1
    return overrides


def key_values(pairs: list[str] | None, flag: str) -> dict:
    """``["samples=100", "adapt=false"]`` -> ``{"samples": 100, "adapt": False}`` (TOML values)."""
    out = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = parse_value(value.strip())
    return out


def preload_plugins(argv: list[str]) -> None:
    """Import the plugins ``evaluate`` and ``compare`` may name estimators from, before the
    parser lists the estimators: ``--plugins FILE ...``, a run's own, a base config's."""
    if len(argv) < 2 or argv[0] not in ("evaluate", "compare"):
        return
    from pyro_vae.config.run_config import read_config_file
    from pyro_vae.core.plugins import import_plugins

    names, i = [], 1
    while i < len(argv):
        if argv[i] == "--plugins":
            while i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                names.append(argv[i + 1])
                i += 1
        elif argv[i] == "--config" and i + 1 < len(argv) and Path(argv[i + 1]).is_file():
            names += read_config_file(argv[i + 1]).get("plugins", [])
        i += 1
    if argv[0] == "evaluate" and (Path(argv[1]) / "config.toml").is_file():
        names += read_config_file(Path(argv[1]) / "config.toml").get("plugins", [])
    import_plugins(names)
