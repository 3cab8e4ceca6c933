"""``pyro_vae.train``: resolve the run, build it (or restore it), loop, finish.

Training maximises a variational bound on Σ_n log p_θ(x_n) by stochastic variational
inference (Hoffman et al. 2013; Kingma & Welling 2014): minibatch steps of
:class:`~pyro_vae.training.step.TrainStep` inside the loop of :func:`~pyro_vae.training.loop.fit`, whose
callbacks write the metrics, checkpoints and figures of the run directory.

A resumed run (``resume=RUN_DIR``) rebuilds the same programs, loads the parameters, the
training state (optimizer, schedule, epoch, step, position within the epoch) and the RNG state
from the checkpoint, keeps the metrics rows up to it, and continues: on the same device, its
parameters and metrics are bitwise those of the run that was never interrupted.
"""

import contextlib
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pyro
import torch

from pyro_vae.config.run_config import Config
from pyro_vae.core import distributed, interrupts
from pyro_vae.core.distributed import World
from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.data.datasets import Data, load_data
from pyro_vae.inference.noise import step_seed
from pyro_vae.inference.objectives import check_guide, make_objective
from pyro_vae.inference.traces import point_mass_sites
from pyro_vae.models.vae import VAE
from pyro_vae.training import callbacks as cb
from pyro_vae.training.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from pyro_vae.training.compiled import CompiledStep
from pyro_vae.training.loggers import check_loggers, open_loggers
from pyro_vae.training.loop import Diverged, TrainState, fit
from pyro_vae.training.resolve import place, resolve_config, resolve_device
from pyro_vae.training.resume import check_resumable, restore, resumed_history
from pyro_vae.training.run import (
    BEST,
    CHECKPOINT,
    CONFIG,
    METRICS,
    Run,
    check_same_run,
    claim_run_dir,
    first_difference,
    resumable,
    write_metrics,
)
from pyro_vae.training.schedules import make_lr_schedule
from pyro_vae.training.step import (
    TrainStep,
    check_programs,
    check_synchronised,
    declared_params,
    owners,
    stepping,
)


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
    :param data: optional :class:`~pyro_vae.data.datasets.Data` to use instead of ``config.data``.
    :param resume: a run directory to continue from its checkpoint; ``config`` may then
        differ from the recorded one only in keys that extend the run (``train.epochs``,
        ``train.max_seconds``, ``train.patience``, ``train.checkpoint_every``,
        ``train.loggers``, ``train.device``).
    :param overwrite: replace a run already in ``config.train.run_dir``.
    :param quiet: no progress bar or messages.
    :returns: a :class:`~pyro_vae.training.run.Run` with the trained VAE, its metrics and its directory.
    :raises pyro_vae.core.interrupts.Interrupted: on SIGINT or SIGTERM, after writing a checkpoint.
    """
    if (model is None) != (guide is None):
        raise ConfigError("pass both model and guide, or neither")
    if resume is not None and overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it: pass one of them")
    with contextlib.ExitStack() as hold, stepping():
        signals = hold.enter_context(interrupts.catching())
        # Resolve: everything a user can get wrong is checked before anything is written.
        # Of several processes (torchrun), each reads the same files; only rank 0 writes.
        payload = None
        if resume is not None:
            checkpoint = resumable(resume)
            if distributed.writes():
                hold.enter_context(claim_run_dir(Path(resume), resume=True))
            payload = load_checkpoint(checkpoint)
            check_same_run(Path(resume), payload)
            config = config or Config.from_dict(payload["config"])
            config = config.override({"train.run_dir": str(resume)})
        config = config or Config()
        device = resolve_device(config.train.device)
        world = distributed.join(device, config.train.backend)
        device = distributed.device_of(device)
        data = data or load_data(config.data)
        config = resolve_config(config, data, custom_model=model is not None)
        config = _same_everywhere(config, world)
        if payload is not None:
            check_resumable(config, Config.from_dict(payload["config"]), Path(resume))
        tc, run_dir = config.train, Path(config.train.run_dir)
        check_loggers(tc.loggers)

        # Build: the programs, the objective, the optimizer, its schedule and the step.
        pyro.set_rng_seed(tc.seed)
        vae = None if model is not None else _build_vae(config, data, device)
        if vae is not None:
            model, guide = vae.programs(param_sites=False)  # the optimizer holds vae.parameters()
        data = place(data, device)
        objective = make_objective(config.objective.kind, **config.objective.params)
        # an objective that scores z under q refused for a point-mass guide (the delta guide)
        guide_words = f'model.guide.kind = "{config.model.guide.kind}"' if vae is not None else "the guide"
        points = point_mass_sites(guide, data.train[:1].to(device))
        check_guide(objective, config.objective.kind, points, guide_words)
        params = _parameters(vae, model, guide, objective, data.train[: tc.batch_size].to(device))
        modules = owners(model, guide)
        if world.size > 1:
            check_synchronised(params, modules)
        # one fused kernel for all parameters: a third of the default loop's time on the CPU
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params.values())
        optimizer = torch.optim.Adam(params.values(), lr=tc.lr, fused=fused)
        schedule = make_lr_schedule(tc.lr_schedule.kind, optimizer, epochs=tc.epochs, **tc.lr_schedule.params)
        state = TrainState(optimizer, schedule)
        eager = TrainStep(
            objective,
            model,
            guide,
            optimizer,
            clip_norm=tc.clip_norm,
            seed=tc.seed,
            modules=modules,
            world=world,
        )
        history: list[dict] = []
        if payload is not None:
            restore(payload, vae, params, state, device, where=str(run_dir / CHECKPOINT), world=world)
            history = resumed_history(run_dir / METRICS, state)
        elif world.main:
            hold.enter_context(claim_run_dir(run_dir, overwrite=overwrite))
        if world.main:
            config.save(run_dir / CONFIG)
        if payload is not None and world.main:
            write_metrics(run_dir / METRICS, history)
        _announce(config, data, device, state, run_dir, world, quiet or not world.main)
        say = None if quiet or not world.main else (lambda line: print(f"pyro-vae: {line}", file=sys.stderr))
        step = CompiledStep(
            eager,
            tc.compile,
            steps_planned=tc.epochs * math.ceil(len(data.train) / tc.batch_size),
            max_seconds=None if tc.max_seconds is None else max(0.0, tc.max_seconds - state.seconds),
            resumed=history[-1].get("step_path") if history else None,
            say=say,
        )

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

        callbacks = _callbacks(run, (model, guide), data, save, history, device, state, quiet, world)
        checkpoints = next((c for c in callbacks if isinstance(c, cb.Checkpoints)), None)
        if payload is not None:
            set_rng_state(payload["rng"])  # last: building drew from the generators
        if world.rank > 0:  # draws that keyed noise does not cover come from each one's own stream
            pyro.set_rng_seed(step_seed(tc.seed + world.rank, state.step) % 2**32)
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
                world=world,
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
                if checkpoints is not None and checkpoints.saved
                else "no checkpoint was written"
            )
            raise Diverged(f"{e}; {kept}") from None
    run.epoch = state.epoch
    # Finish: the metrics, checkpoint and figures are written by the callbacks.
    return run


def _same_everywhere(config: Config, world: World) -> Config:
    """``config`` with rank 0's run directory, refused where a process was given another."""
    if world.size == 1:
        return config
    config = config.override({"train.run_dir": world.broadcast(config.train.run_dir)})
    given = world.objects(config.to_dict())
    for rank, other in enumerate(given):
        differs = first_difference(given[0], other)
        if differs:
            raise ConfigError(
                f"process {rank} was given another config than process 0 ({differs}); every process "
                "of a job must be given the same command and files"
            )
    return config


def _announce(
    config: Config, data: Data, device, state: TrainState, run_dir: Path, world: World, quiet: bool
) -> None:
    if quiet:
        return
    doing = f"resuming from epoch {state.epoch}, step {state.step}" if state.step else "training"
    where = f"{world.size} processes (batch {config.train.batch_size} in all)" if world.size > 1 else device
    print(
        f"pyro-vae: {doing} on {config.data.name} ({len(data.train)} train / {len(data.valid)} valid "
        f"points, {data.dim} values each) on {where}, objective {config.objective.kind}; run: {run_dir}",
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
    world: World,
) -> list:
    """Metrics first (the others read them), then checkpoints, early stopping, figures,
    trackers, the bar and messages; of several processes, those other than rank 0 measure
    and stop early alike, and write nothing."""
    tc, vae = run.config.train, run.vae
    # a fixed sample of training points, for a training ELBO comparable to the validation one
    splits = {"train": data.train[: len(data.valid)], "valid": data.valid}
    metrics = cb.Metrics(
        run.dir / METRICS if world.main else None,
        *programs,
        splits,
        batch_size=tc.eval_batch_size,
        device=device,
        seed=tc.seed,
        history=history,
    )
    run.history = metrics.history  # one list, filled as training goes
    stopping = [cb.EarlyStopping(tc.patience, metrics)] if tc.patience else []
    if not world.main:
        return [metrics, *stopping]
    layered = vae is not None and len(vae.config.layers) > 1
    every = tc.checkpoint_every
    loggers = open_loggers(tc.loggers, run.dir, start_epoch=state.epoch)
    return [
        metrics,
        cb.Checkpoints(
            run.dir / CHECKPOINT,
            run.dir / BEST,
            save,
            epochs=every.epochs,
            seconds=every.seconds,
        ),
        *stopping,
        *([cb.Figures(run, data)] if vae is not None else []),
        *([cb.Tracking(loggers, metrics, run.dir)] if loggers else []),
        cb.ProgressBar(tc.epochs, metrics, quiet=quiet),
        cb.Messages(metrics, run.dir, lr=tc.lr, layered=layered, quiet=quiet),
    ]
