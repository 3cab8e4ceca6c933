"""pyro-vae: variational autoencoders written as Pyro programs.

Declare a model in a config file or in Python, train it with stochastic variational
inference, and measure it::

    import pyro_vae
    config = pyro_vae.Config.load("vae.toml")
    run = pyro_vae.train(config)
    run.vae.model, run.vae.guide      # the trained Pyro programs

The package is in layers, one subpackage each; a layer imports only the layers below it
(``tests/test_layers.py`` checks every import)::

    cli/          the pyro-vae command: its flags, generated once, and its commands
    comparison/   objectives side by side: the plan, one run, the table and its figures
    evaluation/   a trained run measured (log p(x)), sampled and interpolated
    training/     pyro_vae.train: the step (eager, captured, compiled) and its update, the
                  loop, callbacks, schedules, loggers, checkpoints, the run directory, resume,
                  a run's figures                      (imports inference, data and pictures)
    inference/    per-point log densities (traces), the keyed noise, captured graphs,
                  objectives/ (bounds to train on), estimators/ (log p(x)), measurements
    models/       distributions, flows, KL, networks, priors, likelihoods, guides, the VAE
    data/         datasets by name or file, array files, downloads and their catalog
    pictures/     axes, plots, paths through the latent space and their pictures (core alone)
    config/       a run's typed, validated sections, read from TOML or JSON
    core/         errors, option values, the registries of parts, plugins, imports, numeric
                  helpers, files, processes (torchrun) and interrupts

models and data import config; config imports core; nothing imports the CLI. Every family of
parts (priors, likelihoods, guides, networks, objectives, estimators, datasets, schedules,
loggers) is a :class:`~pyro_vae.core.registry.Registry` declared in ``core`` and filled by a
decorator beside each part's definition.

Every public name below is imported when first used, so that ``import pyro_vae`` costs only
what is used (no plotting, tracking or compiler module). The flat layout's module paths
(``pyro_vae.priors``, ``pyro_vae.options`` ...) still import (:mod:`pyro_vae.core.imports`).
"""

import typing

from pyro_vae.core.imports import install_old_paths, lazy_names

if typing.TYPE_CHECKING:
    from pyro_vae.comparison.comparison import Comparison, compare
    from pyro_vae.config.run_config import Config, DataConfig, ModelConfig, Spec, TrainConfig
    from pyro_vae.core.errors import ConfigError, DataError, NotDefined, PyroVAEError, RunDirError
    from pyro_vae.core.interrupts import Interrupted
    from pyro_vae.data.catalog import Download, register_download
    from pyro_vae.data.datasets import Data, load_data, register_dataset
    from pyro_vae.data.downloads import RemoteFile
    from pyro_vae.evaluation.evaluate import evaluate_run, interpolate_run, sample_run
    from pyro_vae.inference.estimators import (
        AISEstimate,
        MarginalLikelihood,
        ais,
        estimate,
        importance_sampling,
        log_marginal_likelihood,
        register_estimator,
        simulate,
    )
    from pyro_vae.inference.measure import Measurement, active_units, elbo_parts, evaluate_elbo, measure
    from pyro_vae.inference.objectives import make_objective, register_objective
    from pyro_vae.models.guides import register_guide
    from pyro_vae.models.likelihoods import register_likelihood
    from pyro_vae.models.networks import register_network
    from pyro_vae.models.priors import register_prior
    from pyro_vae.models.vae import VAE
    from pyro_vae.pictures.latent_paths import interpolate, traverse
    from pyro_vae.training.loggers import Logger, register_logger
    from pyro_vae.training.run import Run
    from pyro_vae.training.schedules import register_lr_schedule
    from pyro_vae.training.trainer import train

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "AISEstimate",
    "Comparison",
    "Config",
    "ConfigError",
    "Data",
    "DataConfig",
    "DataError",
    "Download",
    "Interrupted",
    "Logger",
    "MarginalLikelihood",
    "Measurement",
    "ModelConfig",
    "NotDefined",
    "PyroVAEError",
    "RemoteFile",
    "Run",
    "RunDirError",
    "Spec",
    "TrainConfig",
    "active_units",
    "ais",
    "compare",
    "elbo_parts",
    "estimate",
    "evaluate_elbo",
    "evaluate_run",
    "importance_sampling",
    "interpolate",
    "interpolate_run",
    "load_data",
    "log_marginal_likelihood",
    "make_objective",
    "measure",
    "register_dataset",
    "register_download",
    "register_estimator",
    "register_family",
    "register_guide",
    "register_likelihood",
    "register_logger",
    "register_lr_schedule",
    "register_network",
    "register_objective",
    "register_prior",
    "register_program",
    "sample_run",
    "simulate",
    "train",
    "traverse",
]

#: where each public name is defined
_HOMES = {
    "VAE": "pyro_vae.models.vae",
    "AISEstimate": "pyro_vae.inference.estimators",
    "Comparison": "pyro_vae.comparison.comparison",
    "Config": "pyro_vae.config.run_config",
    "ConfigError": "pyro_vae.core.errors",
    "Data": "pyro_vae.data.datasets",
    "DataConfig": "pyro_vae.config.run_config",
    "DataError": "pyro_vae.core.errors",
    "Download": "pyro_vae.data.catalog",
    "Interrupted": "pyro_vae.core.interrupts",
    "Logger": "pyro_vae.training.loggers",
    "MarginalLikelihood": "pyro_vae.inference.estimators",
    "Measurement": "pyro_vae.inference.measure",
    "ModelConfig": "pyro_vae.config.run_config",
    "NotDefined": "pyro_vae.core.errors",
    "PyroVAEError": "pyro_vae.core.errors",
    "RemoteFile": "pyro_vae.data.downloads",
    "Run": "pyro_vae.training.run",
    "RunDirError": "pyro_vae.core.errors",
    "Spec": "pyro_vae.config.run_config",
    "TrainConfig": "pyro_vae.config.run_config",
    "active_units": "pyro_vae.inference.measure",
    "ais": "pyro_vae.inference.estimators",
    "compare": "pyro_vae.comparison.comparison",
    "elbo_parts": "pyro_vae.inference.measure",
    "estimate": "pyro_vae.inference.estimators",
    "evaluate_elbo": "pyro_vae.inference.measure",
    "evaluate_run": "pyro_vae.evaluation.evaluate",
    "importance_sampling": "pyro_vae.inference.estimators",
    "interpolate": "pyro_vae.pictures.latent_paths",
    "interpolate_run": "pyro_vae.evaluation.evaluate",
    "load_data": "pyro_vae.data.datasets",
    "log_marginal_likelihood": "pyro_vae.inference.estimators",
    "make_objective": "pyro_vae.inference.objectives",
    "measure": "pyro_vae.inference.measure",
    "register_dataset": "pyro_vae.data.datasets",
    "register_download": "pyro_vae.data.catalog",
    "register_estimator": "pyro_vae.inference.estimators",
    "register_family": "pyro_vae.models.graph.families",
    "register_guide": "pyro_vae.models.guides",
    "register_likelihood": "pyro_vae.models.likelihoods",
    "register_logger": "pyro_vae.training.loggers",
    "register_lr_schedule": "pyro_vae.training.schedules",
    "register_network": "pyro_vae.models.networks",
    "register_objective": "pyro_vae.inference.objectives",
    "register_prior": "pyro_vae.models.priors",
    "register_program": "pyro_vae.models.programs",
    "sample_run": "pyro_vae.evaluation.evaluate",
    "simulate": "pyro_vae.inference.estimators",
    "train": "pyro_vae.training.trainer",
    "traverse": "pyro_vae.pictures.latent_paths",
}

__getattr__, __dir__ = lazy_names(__name__, _HOMES)
install_old_paths()
