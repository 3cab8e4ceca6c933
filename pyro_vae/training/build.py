"""What a run trains, built from its resolved config: the VAE (or a user's own model and
guide), the parameters the optimizer holds, Adam with its learning-rate schedule, and the eager
training step (:func:`build`, for :func:`pyro_vae.train`)."""

from collections.abc import Callable
from dataclasses import dataclass

import pyro
import torch
from torch import nn

from pyro_vae.config.run_config import Config
from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.data.datasets import Data
from pyro_vae.data.labelled import repeated, with_labels
from pyro_vae.inference.objectives import check_guide, make_objective
from pyro_vae.inference.sites import point_mass_sites
from pyro_vae.models.graph.program import GraphProgram
from pyro_vae.models.programs import build_program
from pyro_vae.models.vae import VAE
from pyro_vae.training.loop import TrainState
from pyro_vae.training.resolve import Resolved, place
from pyro_vae.training.schedules import make_lr_schedule
from pyro_vae.training.step import TrainStep, check_programs, check_synchronised, declared_params, owners


@dataclass
class Built:
    """What a run trains: its programs (``vae``'s, or a user's pair), the parameters the
    optimizer holds, the training state (optimizer, schedule) and the eager step; and the data,
    placed where the steps read it."""

    #: the module holding the programs: the VAE, a declared graph's programs, a registered
    #: program (``model.program``), or None for a pair passed to pyro_vae.train
    vae: nn.Module | None
    model: Callable
    guide: Callable
    params: dict[str, torch.Tensor]
    state: TrainState
    eager: TrainStep
    data: Data


def build(run: Resolved, model, guide) -> Built:
    config, device, tc = run.config, run.device, run.config.train
    pyro.set_rng_seed(tc.seed)
    data = run.data
    vae: nn.Module | None = None
    if config.data.labels is not None and (model is not None or config.model.variables is None):
        raise ConfigError(
            f"data.labels = {config.data.labels} keeps labels for a model that reads them: a graph with a "
            'variable bound to "label" ([model.variables]); this model reads no labels'
        )
    if model is None and config.model.variables is not None:
        vae, data = build_graph(config, data, device)
        model, guide = vae.model, vae.guide  # no param sites: the optimizer holds its parameters
    elif model is None and config.model.program is not None:
        vae = build_program(config.model).to(device)
        model, guide = vae.model, vae.guide
    elif model is None:
        vae = build_vae(config, data, device)
        model, guide = vae.programs(param_sites=False)  # the optimizer holds vae.parameters()
    data = place(data, device)
    objective = make_objective(config.objective.kind, **config.objective.params)
    # an objective that scores z under q refused for a point-mass guide (the delta guide)
    guide_words = f'model.guide.kind = "{config.model.guide.kind}"' if isinstance(vae, VAE) else "the guide"
    points = point_mass_sites(guide, data.train[:1].to(device))
    check_guide(objective, config.objective.kind, points, guide_words)
    params = trained_params(vae, model, guide, objective, data.train[: tc.batch_size].to(device))
    modules = owners(model, guide)
    if run.world.size > 1:
        check_synchronised(params, modules)
    # one fused kernel for all parameters: a third of the default loop's time on the CPU
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params.values())
    optimizer = torch.optim.Adam(params.values(), lr=tc.lr, fused=fused)
    schedule = make_lr_schedule(tc.lr_schedule.kind, optimizer, epochs=tc.epochs, **tc.lr_schedule.params)
    eager = TrainStep(
        objective,
        model,
        guide,
        optimizer,
        clip_norm=tc.clip_norm,
        seed=tc.seed,
        modules=modules,
        world=run.world,
    )
    return Built(vae, model, guide, params, TrainState(optimizer, schedule), eager, data)


def build_vae(config: Config, data: Data, device: torch.device) -> VAE:
    """The VAE of ``config.model``, checked against the data and started from it, on ``device``."""
    vae = VAE(config.model)
    for split in ("train", "valid"):
        try:
            vae.likelihood.check_data(getattr(data, split), f"the {split} data of {config.data.label!r}")
        except DataError as e:
            raise DataError(f"{e} (model.likelihood.kind = {config.model.likelihood.kind!r})") from None
    vae.initialize(data.train)
    return vae.to(device)


def build_graph(config: Config, data: Data, device: torch.device) -> tuple[GraphProgram, Data]:
    """The programs of a declared graph, and the data as they read it (rows with their label
    column, hidden labels hidden: :mod:`pyro_vae.data.labelled`), checked against its families."""
    program = GraphProgram.from_config(config.model, config.guide)
    data = graph_data(config, data)
    for split in ("train", "valid"):
        program.check_data(getattr(data, split), f"the {split} data of {config.data.label!r}")
    program.initialize(data.train)
    return program.to(device), data


def graph_data(config: Config, data: Data) -> Data:
    """The data as the programs of ``config`` read them: for a graph with a variable bound to the
    label, with the label column (:mod:`pyro_vae.data.labelled`: ``data.labels`` kept, chosen by
    ``data.split_seed``); the data as they are otherwise."""
    keep, variables = config.data.labels, config.model.variables or {}
    label = next((v for v in variables.values() if v.data == "label"), None)
    if label is None:
        if keep is not None:
            raise ConfigError(f'data.labels = {keep} but no variable of the model is bound to "label"')
        return data
    rows, kept = with_labels(data, modelled=label.family is not None, keep=keep, seed=config.data.split_seed)
    if kept is not None and config.data.labelled_share is not None:
        rows = repeated(rows, kept, config.data.labelled_share)
    return rows


def trained_params(vae, model, guide, objective, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the optimizer trains: a VAE's parameters, or those a user's pair declares; either
    way after one loss with Pyro's validation on."""
    if vae is None:
        return declared_params(model, guide, objective, x)
    check_programs(model, guide, objective, x)
    return dict(vae.named_parameters())
