"""The words of the ``pyro-vae`` command line: its parser, ``--SECTION.KEY VALUE`` overrides,
``KEY=VALUE`` options, and the plugins to import before the parser lists the estimators.

What each command then does is :mod:`pyro_vae.cli.main`'s. A usage error is a :class:`ConfigError`
(one line), not argparse's usage text and ``SystemExit``.
"""

import argparse
from pathlib import Path

from pyro_vae.config.run_config import Config, read_config_file
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import checkable, describe, parse_value, show
from pyro_vae.core.plugins import import_plugins
from pyro_vae.core.registry import REGISTRIES
from pyro_vae.inference.estimators import ESTIMATORS


def _flat_defaults(values: dict, prefix: str = "") -> list[str]:
    """``--model.prior.kind "normal"``-style lines for every key of a config."""
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            lines += _flat_defaults(value, f"{prefix}{key}.")
        else:
            lines.append(f"  --{prefix}{key} {'(unset)' if value is None else show(value)}")
    return lines


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


def _estimator_flags() -> dict[str, tuple[str, str]]:
    """Every option of every registered estimator that a flag can set: flag -> (option, help)."""
    flags: dict[str, tuple[str, list[str], str]] = {}
    for name in ESTIMATORS.names():
        for option, param in ESTIMATORS.options(name).items():
            if checkable(param.annotation):
                _, users, _ = flags.setdefault(
                    option.replace("_", "-"), (option, [], describe(param.annotation))
                )
                users.append(name)
    return {flag: (option, f"{', '.join(users)}: {words}") for flag, (option, users, words) in flags.items()}


def _estimators_epilog() -> str:
    lines = ["estimators and their options (defaults):"]
    for name in ESTIMATORS.names():
        options = ESTIMATORS.options(name)
        shown = [
            f"--{k.replace('_', '-')} {show(p.default)}"
            for k, p in options.items()
            if checkable(p.annotation)
        ]
        lines.append(f"  {name}: {' '.join(shown) or '(no options)'}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (a :class:`ConfigError`) instead of the usage
    text and ``SystemExit``."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see {self.prog} --help)")


def parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pyro-vae",
        description="Variational autoencoders as Pyro programs: train, evaluate, sample, compare objectives.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    kinds = [f"  {family}: {', '.join(r.names())}" for family, r in REGISTRIES.items()]
    train = commands.add_parser(
        "train",
        help="train a VAE as a config file describes (defaults: the digits dataset)",
        description="Train a VAE. Every config key can be overridden as --SECTION.KEY VALUE; "
        'values are read as TOML (5, 1e-3, true, [300, 300], "cuda") and otherwise as words.',
        epilog="\n".join(
            ["config keys and their defaults:", *_flat_defaults(Config().to_dict()), "", "kinds:", *kinds]
        ),
        formatter_class=raw,
    )
    train.add_argument("--config", type=Path, metavar="FILE", help="a .toml or .json config file")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in the run directory")
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its checkpoint, exactly; --train.epochs, "
        "--train.max_seconds, --train.patience, --train.checkpoint_every, --train.loggers and "
        "--train.device may change",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar or messages")

    sample = commands.add_parser("sample", help="decode draws from the prior of a trained run")
    sample.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    sample.add_argument("-n", type=int, default=64, help="how many samples (default 64)")
    sample.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="a .png grid, or .npy of the values (default RUN_DIR/samples-N.png)",
    )
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    sample.add_argument(
        "--checkpoint", default="checkpoint.pt", help="checkpoint.pt (default: the last) or best.pt"
    )

    interpolate = commands.add_parser(
        "interpolate",
        help="decode the paths between the codes of pairs of data points of a trained run",
        description="Decode E[x|z] along the straight line (and, for a Gaussian prior, the spherical "
        "path) between the latent codes of pairs of data points, drawn at random with different labels "
        "where the data have them; the two points at the ends of each row.",
    )
    interpolate.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    interpolate.add_argument("--pairs", type=int, default=8, help="how many pairs (default 8)")
    interpolate.add_argument(
        "--steps", type=int, default=10, help="points on each path, ends included (default 10)"
    )
    interpolate.add_argument(
        "--path",
        choices=["linear", "spherical"],
        action="append",
        help="linear or spherical; repeat for both (default: every path the prior allows)",
    )
    interpolate.add_argument("--split", default="valid", help="train, valid or test (default valid)")
    interpolate.add_argument(
        "--out", type=Path, metavar="FILE", help="a .png (default RUN_DIR/interpolation-PAIRS.png)"
    )
    interpolate.add_argument("--seed", type=int, default=0, help="seed of the choice of pairs (default 0)")
    interpolate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    interpolate.add_argument(
        "--checkpoint", default="checkpoint.pt", help="checkpoint.pt (default: the last) or best.pt"
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="estimate log p(x) of a trained run, with error bars",
        description="Estimate log p(x) per data point of a split with a registered estimator (is: "
        "importance sampling with the guide as proposal, the IWAE bound with K samples; ais: annealed "
        "importance sampling), print mean ± standard error and write JSON beside the run. An "
        "estimator's options are flags (--samples 5000) or --option KEY=VALUE.",
        epilog=_estimators_epilog(),
        formatter_class=raw,
    )
    add = evaluate.add_argument
    add("run_dir", type=Path, metavar="RUN_DIR")
    add("--estimator", choices=ESTIMATORS.names(), default="is", help="the log p(x) estimator (default is)")
    add("--split", choices=["valid", "test", "train"], default="valid", help="valid (default), test or train")
    add("--points", type=int, help="only the first N points of the split")
    add("--batch-size", type=int, default=100, help="points per pass (default 100)")
    add("--seed", type=int, default=0, help="random seed (default 0)")
    add("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    add("--checkpoint", default="checkpoint.pt", help="checkpoint.pt (default: the last) or best.pt")
    add("--out", type=Path, metavar="FILE", help="default RUN_DIR/evaluation-ESTIMATOR-SPLIT.json")
    add("--option", action="append", metavar="KEY=VALUE", help="an estimator option (repeatable)")
    add("--plugins", nargs="+", default=[], metavar="FILE", help="files that register estimators")
    add("--quiet", action="store_true", help="no progress bar")
    group = evaluate.add_argument_group("estimator options (see below for each estimator's)")
    for flag, (option, words) in _estimator_flags().items():
        group.add_argument(f"--{flag}", dest=f"opt_{option}", metavar="VALUE", help=words)

    compare = commands.add_parser(
        "compare",
        help="train one VAE per objective and seed, and measure them all alike",
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
    add("--config", type=Path, metavar="FILE", help="the base config (.toml or .json)")
    add("--objectives", nargs="+", required=True, metavar="WORD", help="objectives to compare")
    add("--seeds", type=int, default=1, metavar="N", help="runs per objective (default 1)")
    add("--epochs", type=int, metavar="N", help="epochs per run (default: train.epochs)")
    add("--seconds", type=float, metavar="S", help="seconds of training per run")
    add("--estimator", choices=ESTIMATORS.names(), default="is", help="the log p(x) estimator (default is)")
    add("--option", action="append", metavar="KEY=VALUE", help="an estimator option (repeatable)")
    add("--eval-samples", type=int, default=5000, metavar="K", help="the estimator's samples (default 5000)")
    add("--eval-points", type=int, metavar="N", help="measure on the first N validation points (default all)")
    add("--out", type=Path, metavar="DIR", help="where to write (default comparisons/<data>-<date>-<time>)")
    add("--overwrite", action="store_true", help="retrain runs in DIR whose recorded config differs")
    add("--quiet", action="store_true", help="no progress bar")

    data = commands.add_parser(
        "data",
        help="fetch the datasets data.name can name, or list them",
        description="Fetch datasets into the cache (default $PYRO_VAE_DATA, else "
        "$XDG_CACHE_HOME/pyro-vae, else ~/.cache/pyro-vae), checked against their published "
        "sizes and checksums; training with data.name = NAME reads them there. Mirrors in "
        "$PYRO_VAE_DATA_MIRROR (base URLs serving NAME/FILE) are tried first.",
    )
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    where = "where datasets are kept (default: $PYRO_VAE_DATA, else ~/.cache/pyro-vae)"
    get = actions.add_parser("get", help="fetch datasets (what the cache holds already is kept)")
    get.add_argument("names", nargs="+", metavar="NAME", help="datasets to fetch (pyro-vae data list)")
    get.add_argument("--dir", type=Path, metavar="DIR", help=where)
    get.add_argument("--quiet", action="store_true", help="no progress bar")
    shown = actions.add_parser("list", help="every dataset pyro-vae can fetch: size, whether cached, where")
    shown.add_argument("--dir", type=Path, metavar="DIR", help=where)
    return parser


def preload_plugins(argv: list[str]) -> None:
    """Import the plugins ``evaluate`` and ``compare`` may name estimators from, before the
    parser lists the estimators: ``--plugins FILE ...``, a run's own, a base config's."""
    if len(argv) < 2 or argv[0] not in ("evaluate", "compare"):
        return
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
