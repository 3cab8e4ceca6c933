"""The ``pyro-vae`` command line (also ``python -m pyro_vae``): it parses and prints.

    pyro-vae train [--config FILE] [--overwrite] [--quiet] [--SECTION.KEY VALUE ...]
    pyro-vae train --resume RUN_DIR [--train.epochs N ...] [--quiet]
    pyro-vae evaluate RUN_DIR [--estimator NAME] [--OPTION VALUE ...] [--option KEY=VALUE ...]
                      [--split valid|test|train] [--points N] [--batch-size N] [--seed N]
                      [--device DEVICE] [--out FILE] [--plugins FILE ...] [--quiet]
    pyro-vae sample RUN_DIR [-n 64] [--out FILE] [--seed N] [--device DEVICE]
    pyro-vae interpolate RUN_DIR [--pairs 8] [--steps 10] [--path linear|spherical ...]
                         [--split valid] [--out FILE] [--seed N] [--device DEVICE]
    pyro-vae compare --objectives WORD [WORD ...] [--config FILE] [--seeds N] [--epochs N | --seconds S]
                     [--estimator NAME] [--option KEY=VALUE ...] [--eval-samples K] [--eval-points N]
                     [--out DIR] [--overwrite] [--retry-diverged] [--quiet] [--SECTION.KEY VALUE ...]
    pyro-vae data get NAME [NAME ...] [--dir DIR] [--quiet] [--plugins FILE ...]
    pyro-vae data list [--dir DIR] [--plugins FILE ...]

Estimators and their options come from the registry (:mod:`pyro_vae.inference.estimators`), so one a
user registers in a plugin file (the run's ``plugins``, or ``--plugins FILE``) is a choice
here too. A problem with the user's input (config, data, device, run directory) is reported
as one line on stderr with exit status 2; nothing is written. SIGINT (Ctrl-C) or SIGTERM
during training writes a checkpoint and exits with 130 or 143 and one line naming the
command that resumes the run.

Under ``torchrun`` (``torchrun --nproc-per-node N -m pyro_vae train ...``) every process runs
the command and rank 0 prints; a process that fails, or is lost, is reported once, by name
(:func:`pyro_vae.core.distributed.failure_line`), and the others stop with it.
"""

import os
import signal
import sys

from pyro_vae.cli import arguments
from pyro_vae.core.errors import ConfigError, PyroVAEError
from pyro_vae.core.interrupts import Interrupted


def _train(args, extra: list[str]) -> None:
    from pyro_vae.config.run_config import load_config
    from pyro_vae.core import distributed
    from pyro_vae.training.run import checkpoint_config
    from pyro_vae.training.trainer import train

    if args.resume is None:
        config = load_config(args.config, arguments.overrides(extra))
    elif args.config is not None:
        raise ConfigError("--resume continues a run with its own config: pass --config or --resume, not both")
    else:
        config = checkpoint_config(args.resume).override(arguments.overrides(extra))
    run = train(config, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)
    if distributed.world().main:
        print(run.dir)


def _compare(args, extra: list[str]) -> None:
    from pyro_vae.comparison.comparison import compare
    from pyro_vae.config.run_config import load_config
    from pyro_vae.core import distributed

    result = compare(
        load_config(args.config, arguments.overrides(extra)),
        args.objectives,
        seeds=args.seeds,
        epochs=args.epochs,
        seconds=args.seconds,
        estimator=args.estimator,
        estimator_options=arguments.key_values(args.option, "--option"),
        eval_samples=args.eval_samples,
        eval_points=args.eval_points,
        out_dir=args.out,
        overwrite=args.overwrite,
        retry_diverged=args.retry_diverged,
        quiet=args.quiet,
    )
    if distributed.world().main:
        print(result.markdown)
        print(result.dir)


def _sample(args) -> None:
    from pyro_vae.core import distributed
    from pyro_vae.evaluation.evaluate import sample_run

    if not distributed.writes():
        return  # one process draws
    given = arguments.key_values(args.given, "--given")
    out = sample_run(
        args.run_dir,
        args.n,
        out=args.out,
        seed=args.seed,
        device=args.device,
        checkpoint=args.checkpoint,
        given=given,
    )
    print(out)


def _interpolate(args) -> None:
    from pyro_vae.core import distributed
    from pyro_vae.evaluation.evaluate import interpolate_run

    if not distributed.writes():
        return  # one process draws
    out = interpolate_run(
        args.run_dir,
        args.pairs,
        steps=args.steps,
        paths=args.path,
        split=args.split,
        out=args.out,
        seed=args.seed,
        device=args.device,
        checkpoint=args.checkpoint,
    )
    print(out)


def _evaluate(args) -> None:
    from tqdm.auto import tqdm

    from pyro_vae.cli.estimator_flags import chosen_options
    from pyro_vae.core import distributed
    from pyro_vae.evaluation.evaluate import evaluate_run
    from pyro_vae.evaluation.summary import summary

    options = chosen_options(args)  # refused in the words of the flags
    quiet = args.quiet or not distributed.writes() or not sys.stderr.isatty()
    with tqdm(unit="point", disable=quiet) as bar:  # rank 0's share, with several processes
        r, out = evaluate_run(
            args.run_dir,
            split=args.split,
            points=args.points,
            estimator=args.estimator,
            options=options,
            seed=args.seed,
            batch_size=args.batch_size,
            device=args.device,
            out=args.out,
            progress=bar.update,
            checkpoint=args.checkpoint,
        )
    if not distributed.world().main:
        return
    print(summary(r))
    print(out)


def _data(args) -> None:
    from pyro_vae.core.plugins import import_plugins
    from pyro_vae.data import catalog

    if not _writes():
        return  # one process fetches
    import_plugins(args.plugins)  # the datasets they register
    if args.data_command == "list":
        for row in catalog.listing(args.dir):
            partly = f"{row.present} of {row.files} files"
            state = {0: "not cached", row.files: "cached"}.get(row.present, partly)
            print(f"{row.name:<16} {row.size / 1e6:>4.0f} MB  {state:<12} {row.folder}")
        return
    for name in args.names:
        catalog.get_download(name)  # every name is known before anything is fetched
    for name in args.names:
        print(catalog.fetch_dataset(name, args.dir, progress=not args.quiet and sys.stderr.isatty()))


def _graph(args, extra: list[str]) -> None:
    from pyro_vae.config.run_config import load_config
    from pyro_vae.evaluation.graph_picture import graph_pictures

    for path in graph_pictures(load_config(args.config, arguments.overrides(extra)), args.out or "graph.png"):
        print(path)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "WORLD_SIZE" in os.environ:  # under torchrun (only there is its module, and torch, loaded)
        from pyro_vae.core import distributed

        if distributed.launched() > 1:
            # torchrun sends SIGTERM to every process when one fails: the failure is learnt from
            # the collective it breaks, and said once, rather than each process dying without a word
            signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        arguments.preload_plugins(argv)
        parser = arguments.parser(argv[0] if argv else None)  # the chosen command's, in full
        args, extra = parser.parse_known_args(argv)
        if args.command == "train":
            _train(args, extra)
        elif args.command == "compare":
            _compare(args, extra)
        elif args.command == "graph":
            _graph(args, extra)
        else:
            if extra:
                raise ConfigError(
                    f"unrecognized arguments: {' '.join(extra)} (see pyro-vae {args.command} --help)"
                )
            {
                "sample": _sample,
                "interpolate": _interpolate,
                "evaluate": _evaluate,
                "data": _data,
            }[args.command](args)
        if (d := _distributed()) is not None:
            d.world().barrier()  # several processes end the command together (rank 0 wrote)
    except Interrupted as e:
        _say(e, "pyro-vae: ")
        return e.exit_status
    except PyroVAEError as e:
        _say(e, "pyro-vae: error: ")
        return 2
    except KeyboardInterrupt:
        print("pyro-vae: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        d = _distributed()
        if d is None or not d.lost_peer(e) or d.world().size == 1:
            raise
        _say(e, "pyro-vae: error: ")  # another process stopped: the job stops
        return 1
    finally:
        if (d := _distributed()) is not None:
            d.leave()
    return 0


def _distributed():
    """:mod:`pyro_vae.core.distributed` where the command loaded it, else None. A process joins
    the others of a torchrun job only through that module (which loads torch), so one that never
    loaded it (``--help``, ``data list``) is alone: it has none to wait for, leave or tell."""
    return sys.modules.get("pyro_vae.core.distributed")


def _writes() -> bool:
    """Whether this process writes (:func:`pyro_vae.core.distributed.writes`); without torchrun's
    ``RANK`` it is the only process, which is known without loading torch."""
    if "RANK" not in os.environ:
        return True
    from pyro_vae.core import distributed

    return distributed.writes()


def _say(error: BaseException, prefix: str) -> None:
    """The error's line, printed by the one process of several that should say it."""
    d = _distributed()
    line = str(error) if d is None else d.failure_line(error, d.world())
    if line is not None:
        print(f"{prefix}{line}", file=sys.stderr)
