"""``pyro_vae.train``: resolve the run, build it, loop, finish.

Training maximises a variational bound on Σ_n log p_θ(x_n) by stochastic variational
inference (Hoffman et al. 2013; Kingma & Welling 2014): minibatch steps of
:class:`~pyro_vae.step.TrainStep` inside the loop of :func:`~pyro_vae.loop.fit`, whose
callbacks write the metrics, checkpoints and figures of the run directory.
"""

import sys
from collections.abc import Callable
from pathlib import Path

import pyro
import torch

from . import callbacks as cb
from .config import Config
from .data import Data, load_data
from .errors import ConfigError, DataError
from .loop import TrainState, fit
from .model import VAE
from .objectives import make_objective
from .resolve import place, resolve_config, resolve_device
from .run import CHECKPOINT, CONFIG, METRICS, Run, prepare_run_dir
from .step import TrainStep, check_programs, declared_params, stepping


def train(
    config: Config | None = None,
    *,
    model=None,
    guide=None,
    data: Data | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> Run:
    """Train a VAE (or a user's own ``model``/``guide`` pair) as ``config`` describes.

    :param config: the run; ``Config()`` (digits, default VAE) when omitted.
    :param model, guide: optional Pyro programs ``model(x)``, ``guide(x)`` to train instead
        of the VAE that ``config.model`` describes; their sites must sit under one plate
        named ``"data"`` for the per-data-point metrics.
    :param data: optional :class:`~pyro_vae.data.Data` to use instead of ``config.data``.
    :param overwrite: replace a run already in ``config.train.run_dir``.
    :param quiet: no progress bar or messages.
    :returns: a :class:`~pyro_vae.run.Run` with the trained VAE, its metrics and its directory.
    """
    # Resolve: everything a user can get wrong is checked before anything is written.
    if (model is None) != (guide is None):
        raise ConfigError("pass both model and guide, or neither")
    config = config or Config()
    device = resolve_device(config.train.device)
    data = data or load_data(config.data)
    config = resolve_config(config, data, custom_model=model is not None)
    tc, run_dir = config.train, Path(config.train.run_dir)

    # Build: the programs, the objective, the optimizer and the step.
    pyro.set_rng_seed(tc.seed)
    vae = None if model is not None else _build_vae(config, data, device)
    if vae is not None:
        model, guide = vae.programs(param_sites=False)  # the optimizer holds vae.parameters()
    data = place(data, device)
    objective = make_objective(config.objective.kind, **config.objective.params)
    params = _parameters(vae, model, guide, objective, data.train[: tc.batch_size].to(device))
    state = TrainState(torch.optim.Adam(params.values(), lr=tc.lr))
    step = TrainStep(objective, model, guide, state.optimizer)
    prepare_run_dir(run_dir, overwrite=overwrite)
    config.save(run_dir / CONFIG)
    if not quiet:
        print(
            f"pyro-vae: training on {config.data.name} ({len(data.train)} train / {len(data.valid)} valid "
            f"points, {data.dim} values each) on {device}, objective {config.objective.kind}; run: {run_dir}",
            file=sys.stderr,
        )

    # Loop.
    programs = (vae.model, vae.guide) if vae is not None else (model, guide)  # for pyro.infer.SVI
    run = Run(config=config, dir=run_dir, model=programs[0], guide=programs[1], vae=vae)
    callbacks = _callbacks(run, (model, guide), data, params, device, quiet)
    with stepping():
        fit(
            state,
            step,
            data.train,
            epochs=tc.epochs,
            batch_size=tc.batch_size,
            shuffle=config.data.shuffle,
            max_seconds=tc.max_seconds,
            device=device,
            callbacks=callbacks,
        )

    # Finish: the metrics, checkpoint and figures are written by the callbacks.
    return run


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
    run: Run, programs: tuple[Callable, Callable], data: Data, params: dict, device, quiet: bool
) -> list:
    """Metrics first (the others read them), then checkpoints, the bar, figures and messages."""
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
    )
    model_state = vae.state_dict if vae is not None else (lambda: {k: p.detach() for k, p in params.items()})
    run.history = metrics.history  # one list, filled as training goes
    layered = vae is not None and len(vae.config.layers) > 1
    return [
        metrics,
        cb.Checkpoints(run.dir / CHECKPOINT, run.config, model_state, custom_model=vae is None),
        cb.ProgressBar(tc.epochs, metrics, quiet=quiet),
        *([cb.Figures(run, data)] if vae is not None else []),
        cb.Messages(metrics, run.dir, layered=layered, quiet=quiet),
    ]
