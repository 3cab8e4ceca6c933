"""``pyro_vae.train``: resolve the run, build it (or restore it), loop, finish.

Training maximises a variational bound on Σ_n log p_θ(x_n) by stochastic variational
inference (Hoffman et al. 2013; Kingma & Welling 2014): minibatch steps of
:class:`~pyro_vae.step.TrainStep` inside the loop of :func:`~pyro_vae.loop.fit`, whose
callbacks write the metrics, checkpoints and figures of the run directory.

A resumed run (``resume=RUN_DIR``) rebuilds the same programs, loads the parameters, the
training state (optimizer, schedule, epoch, step, position within the epoch) and the RNG state
from the checkpoint, keeps the metrics rows up to it, and continues: on the same device, its
parameters and metrics are bitwise those of the run that was never interrupted.
"""

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

import pyro
import torch

from . import callbacks as cb
from . import interrupts
from .checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from .config import Config
from .data import Data, load_data
from .errors import ConfigError, DataError, RunDirError
from .loggers import check_loggers, open_loggers
from .loop import Diverged, TrainState, fit
from .model import VAE, load_weights
from .objectives import make_objective
from .resolve import place, resolve_config, resolve_device
from .run import (
    BEST,
    CHECKPOINT,
    CONFIG,
    EXTENDABLE,
    METRICS,
    Run,
    check_same_run,
    claim_run_dir,
    first_difference,
    read_metrics,
    resumable,
    write_metrics,
)
from .schedules import depends_on_epochs, make_lr_schedule
from .step import TrainStep, check_programs, declared_params, stepping


def train(
    config: Config | None = None,
    *,
    model=None,
    guide=None,
    data: Data | None = None,
    resume=None,
    overwrite: bool = False,
    quiet: bool = False,
) -> Run:
    """Train a VAE (or a user's own ``model``/``guide`` pair) as ``config`` describes.

    :param config: the run; ``Config()`` (digits, default VAE) when omitted, or with
        ``resume`` the config its checkpoint records.
    :param model, guide: optional Pyro programs ``model(x)``, ``guide(x)`` to train instead
        of the VAE that ``config.model`` describes; their sites must sit under one plate
        named ``"data"`` for the per-data-point metrics.
    :param data: optional :class:`~pyro_vae.data.Data` to use instead of ``config.data``.
    :param resume: a run directory to continue from its checkpoint; ``config`` may then
        differ from the recorded one only in keys that extend the run (``train.epochs``,
        ``train.max_seconds``, ``train.patience``, ``train.checkpoint_every``,
        ``train.loggers``, ``train.device``).
    :param overwrite: replace a run already in ``config.train.run_dir``.
    :param quiet: no progress bar or messages.
    :returns: a :class:`~pyro_vae.run.Run` with the trained VAE, its metrics and its directory.
    :raises pyro_vae.interrupts.Interrupted: on SIGINT or SIGTERM, after writing a checkpoint.
    """
    if (model is None) != (guide is None):
        raise ConfigError("pass both model and guide, or neither")
    if resume is not None and overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it: pass one of them")
    with contextlib.ExitStack() as hold, stepping():
        signals = hold.enter_context(interrupts.catching())
        # Resolve: everything a user can get wrong is checked before anything is written.
        payload = None
        if resume is not None:
            checkpoint = resumable(resume)
            hold.enter_context(claim_run_dir(Path(resume), resume=True))
            payload = load_checkpoint(checkpoint)
            check_same_run(Path(resume), payload)
            config = config or Config.from_dict(payload["config"])
            config = config.override({"train.run_dir": str(resume)})
        config = config or Config()
        device = resolve_device(config.train.device)
        data = data or load_data(config.data)
        config = resolve_config(config, data, custom_model=model is not None)
        if payload is not None:
            _check_resumable(config, Config.from_dict(payload["config"]), Path(resume))
        tc, run_dir = config.train, Path(config.train.run_dir)
        check_loggers(tc.loggers)

        # Build: the programs, the objective, the optimizer, its schedule and the step.
        pyro.set_rng_seed(tc.seed)
        vae = None if model is not None else _build_vae(config, data, device)
        if vae is not None:
            model, guide = vae.programs(param_sites=False)  # the optimizer holds vae.parameters()
        data = place(data, device)
        objective = make_objective(config.objective.kind, **config.objective.params)
        params = _parameters(vae, model, guide, objective, data.train[: tc.batch_size].to(device))
        optimizer = torch.optim.Adam(params.values(), lr=tc.lr)
        schedule = make_lr_schedule(tc.lr_schedule.kind, optimizer, epochs=tc.epochs, **tc.lr_schedule.params)
        state = TrainState(optimizer, schedule)
        step = TrainStep(objective, model, guide, optimizer, clip_norm=tc.clip_norm)
        history: list[dict] = []
        if payload is not None:
            _restore(payload, vae, params, state, device, where=str(run_dir / CHECKPOINT))
            history = _resumed_history(run_dir / METRICS, state)
        else:
            hold.enter_context(claim_run_dir(run_dir, overwrite=overwrite))
        config.save(run_dir / CONFIG)
        if payload is not None:
            write_metrics(run_dir / METRICS, history)
        _announce(config, data, device, state, run_dir, quiet)

        # Loop.
        programs = (vae.model, vae.guide) if vae is not None else (model, guide)  # for pyro.infer.SVI
        run = Run(config=config, dir=run_dir, model=programs[0], guide=programs[1], vae=vae)
        model_state = (
            vae.state_dict if vae is not None else (lambda: {k: p.detach() for k, p in params.items()})
        )

        def save(path: Path, state: TrainState) -> None:
            training = state.state_dict()
            save_checkpoint(
                path,
                config=config.to_dict(),
                model=model_state(),
                training=training,
                custom_model=vae is None,
            )

        callbacks = _callbacks(run, (model, guide), data, save, history, device, state, quiet)
        checkpoints = next(c for c in callbacks if isinstance(c, cb.Checkpoints))
        if payload is not None:
            set_rng_state(payload["rng"])  # last: building drew from the generators
        try:
            fit(
                state,
                step,
                data.train,
                epochs=tc.epochs,
                batch_size=tc.batch_size,
                seed=tc.seed,
                shuffle=config.data.shuffle,
                max_seconds=tc.max_seconds,
                device=device,
                callbacks=callbacks,
                signals=signals,
            )
        except interrupts.Interrupted as e:
            raise interrupts.Interrupted(
                f"{e}; checkpoint written to {run_dir / CHECKPOINT}; "
                f"resume with: pyro-vae train --resume {run_dir}",
                e.signum,
            ) from None
        except Diverged as e:
            kept = (
                f"the last good checkpoint is {run_dir / CHECKPOINT} (epoch {checkpoints.saved[0]})"
                if checkpoints.saved
                else "no checkpoint was written"
            )
            raise Diverged(f"{e}; {kept}") from None
    run.epoch = state.epoch
    # Finish: the metrics, checkpoint and figures are written by the callbacks.
    return run


def _check_resumable(config: Config, recorded: Config, run_dir: Path) -> None:
    """Refuse a change that would make the resumed run another run (model, objective, data …)."""
    differs = first_difference(recorded.to_dict(), config.to_dict(), ignore=EXTENDABLE)
    if differs:
        key = differs.split(" = ")[0]
        raise ConfigError(
            f"--{key} cannot change when resuming {str(run_dir)!r} ({differs}); only "
            f"{', '.join(sorted(k for k in EXTENDABLE if k != 'train.run_dir'))} may"
        )
    schedule = config.train.lr_schedule
    if config.train.epochs != recorded.train.epochs and depends_on_epochs(schedule.kind, schedule.params):
        raise ConfigError(
            f"--train.epochs cannot change when resuming {str(run_dir)!r}: its lr_schedule "
            f"{schedule.kind!r} spans train.epochs (a run with a fixed train.lr_schedule.period can be "
            "extended)"
        )


def _restore(payload: dict, vae, params: dict, state: TrainState, device, *, where: str) -> None:
    """The parameters and training state of a checkpoint, onto what was just built."""
    if vae is not None:
        load_weights(vae, payload["model"], where=where)
    else:
        saved = payload["model"]
        if set(saved) != set(params):
            raise RunDirError(
                f"{where} holds parameters {sorted(saved)}, the model declares {sorted(params)}"
            )
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])
    training = dict(payload["training"])
    if training["epoch_loss"] is not None:
        training["epoch_loss"] = training["epoch_loss"].to(device)
    state.load_state_dict(training)


def _resumed_history(path: Path, state: TrainState) -> list[dict]:
    """The metrics rows up to the checkpoint (later ones came after it and will be redone)."""
    rows = [row for row in read_metrics(path) if row["epoch"] <= state.epoch] if path.is_file() else []
    if [row["epoch"] for row in rows] != list(range(state.epoch + 1)):
        raise RunDirError(
            f"{str(path)!r} lacks rows for epochs 0 … {state.epoch} that the checkpoint has trained; "
            "the run cannot be resumed"
        )
    return rows


def _announce(config: Config, data: Data, device, state: TrainState, run_dir: Path, quiet: bool) -> None:
    if quiet:
        return
    doing = f"resuming from epoch {state.epoch}, step {state.step}" if state.step else "training"
    print(
        f"pyro-vae: {doing} on {config.data.name} ({len(data.train)} train / {len(data.valid)} valid "
        f"points, {data.dim} values each) on {device}, objective {config.objective.kind}; run: {run_dir}",
        file=sys.stderr,
    )


def _build_vae(config: Config, data: Data, device: torch.device) -> VAE:
    """The VAE of ``config.model``, checked against the data and started from it, on ``device``."""
    vae = VAE(config.model)
    for split in ("train", "valid"):
        try:
            vae.likelihood.check_data(getattr(data, split), f"the {split} data of {config.data.name!r}")
        except DataError as e:
            raise DataError(f"{e} (model.likelihood.kind = {config.model.likelihood.kind!r})") from None
    vae.initialize(data.train)
    return vae.to(device)


def _parameters(vae, model, guide, objective, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the optimizer trains: a VAE's parameters, or those a user's pair declares; either
    way after one loss with Pyro's validation on."""
    if vae is None:
        return declared_params(model, guide, objective, x)
    check_programs(model, guide, objective, x)
    return dict(vae.named_parameters())


def _callbacks(
    run: Run,
    programs: tuple[Callable, Callable],
    data: Data,
    save: Callable,
    history: list[dict],
    device,
    state: TrainState,
    quiet: bool,
) -> list:
    """Metrics first (the others read them), then checkpoints, early stopping, figures,
    trackers, the bar and messages."""
    tc, vae = run.config.train, run.vae
    # a fixed sample of training points, for a training ELBO comparable to the validation one
    splits = {"train": data.train[: len(data.valid)], "valid": data.valid}
    metrics = cb.Metrics(
        run.dir / METRICS,
        *programs,
        splits,
        batch_size=tc.eval_batch_size,
        device=device,
        seed=tc.seed,
        history=history,
    )
    run.history = metrics.history  # one list, filled as training goes
    layered = vae is not None and len(vae.config.layers) > 1
    every = tc.checkpoint_every
    loggers = open_loggers(tc.loggers, run.dir, start_epoch=state.epoch)
    return [
        metrics,
        cb.Checkpoints(
            run.dir / CHECKPOINT,
            run.dir / BEST,
            save,
            epochs=every.get("epochs"),
            seconds=every.get("seconds"),
        ),
        *([cb.EarlyStopping(tc.patience)] if tc.patience else []),
        *([cb.Figures(run, data)] if vae is not None else []),
        *([cb.Tracking(loggers, metrics, run.dir)] if loggers else []),
        cb.ProgressBar(tc.epochs, metrics, quiet=quiet),
        cb.Messages(metrics, run.dir, lr=tc.lr, layered=layered, quiet=quiet),
    ]
