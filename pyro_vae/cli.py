"""The ``pyro-vae`` command line (also ``python -m pyro_vae``).

    pyro-vae train [--config FILE] [--overwrite] [--quiet] [--SECTION.KEY VALUE ...]
    pyro-vae sample RUN_DIR [-n 64] [--out FILE] [--seed N] [--device DEVICE]
    pyro-vae compare --objectives WORD [WORD ...] [--config FILE] [--seeds N] [--epochs N | --seconds S]
                     [--eval-samples K] [--eval-points N] [--out DIR] [--overwrite] [--quiet]
                     [--SECTION.KEY VALUE ...]

A problem with the user's input (config, data, device, run directory) is reported as
one line on stderr with exit status 2; nothing is written.
"""

import argparse
import sys
from pathlib import Path

from .config import Config, toml_value
from .errors import ConfigError, DataError, PyroVAEError
from .registry import REGISTRIES


def _flat_defaults(values: dict, prefix: str = "") -> list[str]:
    """``--model.prior.kind "normal"``-style lines for every key of a config, in TOML syntax."""
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            lines += _flat_defaults(value, f"{prefix}{key}.")
        else:
            lines.append(f"  --{prefix}{key} {'(unset)' if value is None else toml_value(value)}")
    return lines


def _kinds() -> list[str]:
    return [f"  {family}: {', '.join(r.names())}" for family, r in REGISTRIES.items()]


def _overrides(words: list[str]) -> dict[str, str]:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-vae",
        description="Variational autoencoders as Pyro programs: train, sample, compare objectives.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train a VAE as a config file describes (defaults: the digits dataset)",
        description="Train a VAE. Every config key can be overridden as --SECTION.KEY VALUE; "
        'values are read as TOML (5, 1e-3, true, [300, 300], "cuda") and otherwise as words.',
        epilog="\n".join(
            ["config keys and their defaults:", *_flat_defaults(Config().to_dict()), "", "kinds:", *_kinds()]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", type=Path, metavar="FILE", help="a .toml or .json config file")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in the run directory")
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

    evaluate = commands.add_parser(
        "evaluate",
        help="estimate log p(x) of a trained run by importance sampling, with error bars",
        description="Estimate log p(x) per data point of a split by importance sampling with the "
        "guide as proposal (the IWAE bound with K samples), print mean ± standard error and write "
        "JSON beside the run.",
    )
    evaluate.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    evaluate.add_argument(
        "--split",
        choices=["valid", "test", "train"],
        default="valid",
        help="valid (default), test (when the data file has a test array) or train",
    )
    evaluate.add_argument(
        "--estimator",
        choices=["is", "ais"],
        default="is",
        help="is: importance sampling; ais: annealed importance sampling (default is)",
    )
    evaluate.add_argument("--samples", type=int, default=5000, help="K, samples per point (default 5000)")
    evaluate.add_argument("--points", type=int, help="only the first N points of the split")
    evaluate.add_argument("--chunk-size", type=int, default=500, help="IS: samples per pass (default 500)")
    evaluate.add_argument("--steps", type=int, default=500, help="AIS: annealing steps (default 500)")
    evaluate.add_argument("--chains", type=int, default=16, help="AIS: chains per point (default 16)")
    evaluate.add_argument("--leapfrog", type=int, default=10, help="AIS: leapfrog steps (default 10)")
    evaluate.add_argument(
        "--step-size", type=float, default=0.05, help="AIS: initial HMC step (default 0.05)"
    )
    evaluate.add_argument("--batch-size", type=int, default=100, help="points per pass (default 100)")
    evaluate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    evaluate.add_argument(
        "--out", type=Path, metavar="FILE", help="default RUN_DIR/evaluation-ESTIMATOR-SPLIT.json"
    )
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")

    compare = commands.add_parser(
        "compare",
        help="train one VAE per objective and seed, and measure them all alike",
        description="Train one VAE per objective and seed with the same network, data, budget and "
        "initialization, then measure every one on the same validation points: log p(x) (the IWAE "
        "bound with K samples), the ELBO and its terms, active units, seconds per epoch, peak memory. "
        "Rerunning the same command reuses the runs that finished. Config keys can be overridden "
        "as --SECTION.KEY VALUE, as for train.",
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
    add("--eval-samples", type=int, default=5000, metavar="K", help="samples for log p(x) (default 5000)")
    add("--eval-points", type=int, metavar="N", help="measure on the first N validation points (default all)")
    add("--out", type=Path, metavar="DIR", help="where to write (default comparisons/<data>-<date>-<time>)")
    add("--overwrite", action="store_true", help="retrain runs in DIR whose recorded config differs")
    add("--quiet", action="store_true", help="no progress bar")
    return parser


def _train(args, extra: list[str]) -> None:
    from .training import train

    config = Config.load(args.config) if args.config else Config()
    config = config.override(_overrides(extra))
    run = train(config, overwrite=args.overwrite, quiet=args.quiet)
    print(run.dir)


def _compare(args, extra: list[str]) -> None:
    from .comparison import compare

    config = Config.load(args.config) if args.config else Config()
    config = config.override(_overrides(extra))
    result = compare(
        config,
        args.objectives,
        seeds=args.seeds,
        epochs=args.epochs,
        seconds=args.seconds,
        eval_samples=args.eval_samples,
        eval_points=args.eval_points,
        out_dir=args.out,
        overwrite=args.overwrite,
        quiet=args.quiet,
    )
    print(result.markdown)
    print(result.dir)


def _sample(args) -> None:
    import numpy as np
    import pyro

    from . import plots
    from .run import Run
    from .training import resolve_device

    if args.n < 1:
        raise ConfigError(f"-n {args.n} is not allowed: expected an integer >= 1")
    out = args.out or args.run_dir / f"samples-{args.n}.png"
    if out.suffix not in (".png", ".npy"):
        raise ConfigError(f"--out {str(out)!r}: unknown format {out.suffix!r}; allowed: .png, .npy")
    run = Run.load(args.run_dir, device=resolve_device(args.device, key="--device"))
    pyro.set_rng_seed(args.seed)
    x = run.vae.sample(args.n).cpu().numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, x)
    else:
        plots.image_grid(x, run.config.data.image_shape, out, title=f"{args.n} samples from p(x)")
    print(out)


def _evaluate(args) -> None:
    import json
    import time

    import pyro
    from tqdm.auto import tqdm

    from .ais import ais
    from .config import PositiveFloat, PositiveInt, check_value
    from .data import load_data
    from .evaluation import evaluate_elbo, log_marginal_likelihood, summarize
    from .run import Run, atomic_write
    from .training import resolve_device

    for flag in ("samples", "points", "chunk_size", "batch_size", "steps", "chains", "leapfrog"):
        if flag != "points" or args.points is not None:
            check_value(f"--{flag.replace('_', '-')}", getattr(args, flag), PositiveInt)
    out = args.out or args.run_dir / f"evaluation-{args.estimator}-{args.split}.json"
    device = resolve_device(args.device, key="--device")
    run = Run.load(args.run_dir, device=device)
    data = load_data(run.config.data)
    if getattr(data, args.split) is None:
        raise DataError(f"the data of this run has no {args.split} split; available: train, valid")
    x = getattr(data, args.split)[: args.points].to(device)  # (N, D)
    vae = run.vae
    pyro.set_rng_seed(args.seed)
    start = time.perf_counter()
    check_value("--step-size", args.step_size, PositiveFloat)
    with tqdm(total=len(x), unit="point", disable=args.quiet or not sys.stderr.isatty()) as bar:
        if args.estimator == "is":
            estimate = log_marginal_likelihood(
                vae.model,
                vae.guide,
                x,
                num_samples=args.samples,
                chunk_size=args.chunk_size,
                batch_size=args.batch_size,
                progress=bar.update,
            )
            method = f"importance sampling, K = {args.samples}"
        else:
            estimate = ais(
                vae.model,
                vae.guide,
                x,
                chains=args.chains,
                steps=args.steps,
                leapfrog=args.leapfrog,
                step_size=args.step_size,
                batch_size=args.batch_size,
                progress=bar.update,
            )
            method = (
                f"AIS, {args.chains} chains x {args.steps} steps, HMC acceptance {estimate.acceptance:.2f}"
            )
    seconds = time.perf_counter() - start
    elbo = summarize(evaluate_elbo(vae.model, vae.guide, x))
    result = {
        "run_dir": str(args.run_dir),
        "split": args.split,
        "points": len(x),
        "estimator": args.estimator,
        "num_samples": args.samples if args.estimator == "is" else None,
        "ais": {"chains": args.chains, "steps": args.steps, "leapfrog": args.leapfrog}
        if args.estimator == "ais"
        else None,
        "seed": args.seed,
        "log_px": estimate.mean,
        "log_px_stderr": estimate.stderr,
        "elbo": elbo["elbo"],
        "elbo_stderr": elbo["elbo_stderr"],
        "ess_mean": estimate.ess.mean().item(),
        "ess_min": estimate.ess.min().item(),
        "mc_stderr_mean": estimate.mc_stderr.mean().item(),
        "seconds": seconds,
        "device": str(device),
        "log_px_per_point": estimate.log_px.tolist(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
    print(
        f"log p(x) = {estimate.mean:.2f} ± {estimate.stderr:.2f} nats per point "
        f"({method}; {len(x)} {args.split} points; "
        f"ELBO {elbo['elbo']:.2f} ± {elbo['elbo_stderr']:.2f}; "
        f"ESS mean {result['ess_mean']:.1f}, min {result['ess_min']:.1f}; {seconds:.1f} s)"
    )
    print(out)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "train":
            _train(args, extra)
        elif args.command == "compare":
            _compare(args, extra)
        else:
            if extra:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            {"sample": _sample, "evaluate": _evaluate}[args.command](args)
    except PyroVAEError as e:
        print(f"pyro-vae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyro-vae: interrupted", file=sys.stderr)
        return 130
    return 0
