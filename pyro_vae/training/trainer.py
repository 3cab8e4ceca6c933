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
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pyro
import torch

from pyro_vae.config.run_config import Config, as_config
from pyro_vae.core import interrupts
from pyro_vae.core.distributed import World
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import show
from pyro_vae.core.registry import Spec
from pyro_vae.data.datasets import Data
from pyro_vae.inference.noise import step_seed
from pyro_vae.models.graph.program import GraphProgram
from pyro_vae.models.vae import VAE
from pyro_vae.training import callbacks as cb
from pyro_vae.training.binarize import dynamic_binarization
from pyro_vae.training.build import Built, build
from pyro_vae.training.checkpoint import save_checkpoint, set_rng_state
from pyro_vae.training.compiled import CompiledStep
from pyro_vae.training.loggers import open_loggers
from pyro_vae.training.loop import Diverged, TrainState, fit
from pyro_vae.training.paths import decide
from pyro_vae.training.resolve import Resolved, resolve_run
from pyro_vae.training.resume import restore, resumed_history
from pyro_vae.training.run import BEST, CHECKPOINT, CONFIG, METRICS, Run, claim_run_dir, write_metrics
from pyro_vae.training.step import stepping


def train(
    config: "Config | dict | str | os.PathLike | None" = None,
    *,
    model=None,
    guide=None,
    data: Data | None = None,
    resume=None,
    overwrite: bool = False,
    quiet: bool = False,
) -> Run:
    """Train a VAE (or a user's own ``model``/``guide`` pair) as ``config`` describes.

    :param config: the run: a :class:`~pyro_vae.config.run_config.Config`, a dict of its
        sections or a path to a ``.toml``/``.json`` file (:func:`~pyro_vae.config.run_config.as_config`);
        ``Config()`` (digits, default VAE) when omitted, or with ``resume`` the config its
        checkpoint records.
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
    config = None if config is None else as_config(config, "pyro_vae.train's config")
    if (model is None) != (guide is None):
        raise ConfigError("pass both model and guide, or neither")
    if resume is not None and overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it: pass one of them")
    with contextlib.ExitStack() as hold, stepping():
        # Resolve: everything a user can get wrong is checked before anything is written.
        run = resolve_run(config, data, resume=resume, custom_model=model is not None, hold=hold)
        # Build: the programs, the objective, the optimizer, its schedule and the step.
        built = build(run, model, guide)
        # Until here a signal stops at once (a dataset's download cleans up after itself); from
        # here on it stops training after the current step, with a checkpoint.
        signals = hold.enter_context(interrupts.catching())
        history = _open_run_dir(run, built, hold, overwrite=overwrite)
        quiet = quiet or not run.world.main
        _announce(run, built.data, built.state, quiet)
        step = _compiled_step(run, built, history, quiet)
        result, callbacks = _result_and_callbacks(run, built, step, history, quiet)
        # Loop: from the checkpoint's random state, when resumed.
        _seed_streams(run, built.state)
        _fit(run, built, step, callbacks, signals)
    result.epoch = built.state.epoch
    # Finish: the metrics, checkpoint and figures are written by the callbacks.
    return result


def _open_run_dir(run: Resolved, built: Built, hold: contextlib.ExitStack, *, overwrite: bool) -> list[dict]:
    """A new run claims its directory; a resumed one restores its checkpoint and keeps the
    metrics rows up to it. Returns those rows. Only rank 0 writes (config.toml, the rows)."""
    run_dir, world = Path(run.config.train.run_dir), run.world
    history: list[dict] = []
    if run.checkpoint is not None:
        where = str(run_dir / CHECKPOINT)
        restore(run.checkpoint, built.vae, built.params, built.state, run.device, where=where, world=world)
        history = resumed_history(run_dir / METRICS, built.state)
    elif world.main:
        hold.enter_context(claim_run_dir(run_dir, overwrite=overwrite))
    if world.main:
        run.config.save(run_dir / CONFIG)
    if run.checkpoint is not None and world.main:
        write_metrics(run_dir / METRICS, history)
    return history


def _compiled_step(run: Resolved, built: Built, history: list[dict], quiet: bool) -> CompiledStep:
    """The step the loop calls: eager, replayed or compiled, as
    :func:`~pyro_vae.training.paths.decide` says."""
    say = None if quiet else (lambda line: print(f"pyro-vae: {line}", file=sys.stderr))
    return CompiledStep(built.eager, run.config.train.compile, **decide(run, built, history, say), say=say)


def _result_and_callbacks(
    run: Resolved, built: Built, step: CompiledStep, history: list[dict], quiet: bool
) -> tuple[Run, list]:
    """The :class:`Run` returned, and the callbacks that fill its directory and history."""
    vae, config = built.vae, run.config
    programs = (vae.model, vae.guide) if vae is not None else (built.model, built.guide)  # for SVI
    result = Run(
        config=config,
        dir=Path(config.train.run_dir),
        model=programs[0],
        guide=programs[1],
        vae=vae if isinstance(vae, VAE) else None,
        graph=vae if isinstance(vae, GraphProgram) else None,
        program=vae if vae is not None and not isinstance(vae, VAE | GraphProgram) else None,
    )
    params = built.params

    def save(path: Path, state: TrainState) -> None:
        weights = vae.state_dict() if vae is not None else {k: p.detach() for k, p in params.items()}
        training = state.state_dict()
        save_checkpoint(
            path,
            config=config.to_dict(),
            model=weights,
            training=training,
            custom_model=vae is None,
            step_path=step.path,
        )

    pair = (built.model, built.guide)
    callbacks = _callbacks(result, pair, built.data, save, history, run.device, built.state, quiet, run.world)
    return result, callbacks


def _seed_streams(run: Resolved, state: TrainState) -> None:
    """The random state training starts from: a resumed run's as its checkpoint holds it (set
    last: building drew from the generators); of several processes, the draws that keyed
    noise does not cover come from each one's own stream."""
    if run.checkpoint is not None:
        set_rng_state(run.checkpoint["rng"])
    if run.world.rank > 0:
        pyro.set_rng_seed(step_seed(run.config.train.seed + run.world.rank, state.step) % 2**32)


def _fit(run: Resolved, built: Built, step, callbacks: list, signals) -> None:
    """The training loop; an interrupt or a divergence ends in one line saying what was kept."""
    config, run_dir = run.config, Path(run.config.train.run_dir)
    tc = config.train
    try:
        fit(
            built.state,
            step,
            built.data.train,
            epochs=tc.epochs,
            batch_size=tc.batch_size,
            seed=tc.seed,
            shuffle=config.data.shuffle,
            max_seconds=tc.max_seconds,
            device=run.device,
            callbacks=callbacks,
            signals=signals,
            world=run.world,
            minibatch=dynamic_binarization(built.data, tc.seed),
        )
    except interrupts.Interrupted as e:
        raise interrupts.Interrupted(
            f"{e}; checkpoint written to {run_dir / CHECKPOINT}; "
            f"resume with: pyro-vae train --resume {run_dir}",
            e.signum,
        ) from None
    except Diverged as e:
        checkpoints = next((c for c in callbacks if isinstance(c, cb.Checkpoints)), None)
        kept = (
            f"the last good checkpoint is {run_dir / CHECKPOINT} (epoch {checkpoints.saved[0]})"
            if checkpoints is not None and checkpoints.saved
            else "no checkpoint was written"
        )
        raise Diverged(f"{e}; {_why(config, step, e)}; {kept}", e.epoch, e.lr, e.loss) from None


def _why(config: Config, step: CompiledStep, e: Diverged) -> str:
    """What to try: a smaller learning rate, unless the loss was not finite before any update
    (one host read, once the run has failed)."""
    if step.first is not None and step.first[0] == 0 and not torch.isfinite(step.first[1]).item():
        objective = config.objective
        defaults = Spec.parse({"kind": objective.kind}, "objective", "objective").params
        named = ", ".join(
            [f"objective.kind = {show(objective.kind)}"]
            + [f"{k} = {show(v)}" for k, v in objective.params.items() if defaults.get(k) != v]
        )
        return (
            "its first loss, before any update, was not finite, so the learning rate is not the "
            f"cause: look at the objective ({named}) and the model"
        )
    return f"try a smaller --train.lr (now {e.lr:g})"


def _announce(run: Resolved, data: Data, state: TrainState, quiet: bool) -> None:
    """The start line: what trains on which points (``data`` as the steps read them: a
    semi-supervised graph's repeated labelled rows counted), where."""
    if quiet:
        return
    config, world = run.config, run.world
    doing = f"resuming from epoch {state.epoch}, step {state.step}" if state.step else "training"
    where = (
        f"{world.size} processes (batch {config.train.batch_size} in all)" if world.size > 1 else run.device
    )
    print(
        f"pyro-vae: {doing} on {config.data.label} ({len(data.train)} train / {len(data.valid)} valid "
        f"points, {run.data.dim} values each) on {where or run.device}, objective {config.objective.kind}; "
        f"run: {config.train.run_dir}",
        file=sys.stderr,
    )


def _scored_labels(module, data: Data) -> dict:
    """For a graph that classifies (q(y|x) of a modelled label), its classifier and the labelled
    validation and test points it is scored on each epoch."""
    if not isinstance(module, GraphProgram) or not module.models_label:
        return {}
    if module.classifier(data.valid[:1]) is None:
        return {}
    labelled = {
        split: (getattr(data, split), getattr(data, f"{split}_labels"))
        for split in ("valid", "test")
        if getattr(data, split) is not None and getattr(data, f"{split}_labels") is not None
    }
    return {"classifier": module.classifier, "labelled": labelled}


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
        **_scored_labels(run.graph, data),
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
        cb.Figures(run, data),
        *([cb.Tracking(loggers, metrics, run.dir)] if loggers else []),
        cb.ProgressBar(tc.epochs, metrics, quiet=quiet),
        cb.Messages(metrics, run.dir, lr=tc.lr, layered=layered, quiet=quiet),
    ]
