"""pyro-vae: variational autoencoders written as Pyro programs.

Declare a model in a config file or in Python, train it with stochastic variational
inference, and measure it::

    import pyro_vae
    config = pyro_vae.Config.load("vae.toml")
    run = pyro_vae.train(config)
    run.vae.model, run.vae.guide      # the trained Pyro programs

Layers, each importing only those below it: ``errors``, ``options``, ``registry`` (value
checks and registries); the parts (``networks``, ``priors``, ``likelihoods``, ``guides``,
with ``numeric``, ``distributions``, ``flows``, ``kl``); ``sections`` and ``config``;
``traces`` (per-particle, per-point densities); ``objectives/`` and ``estimators/``;
``schedules`` (learning rates) and ``loggers`` (experiment trackers); ``model`` (the VAE),
``data``, ``downloads`` and ``catalog`` (datasets fetched by name), ``measure``; ``files``,
``checkpoint``, ``run``, ``interrupts``; ``latent_paths``, ``axes``, ``plots``, ``latent_plots``,
``figures`` (paths through the latent space; the pictures); ``step``, ``loop``, ``callbacks``,
``training``; ``evaluate``, ``comparison_run``, ``comparison``, ``report``, ``side_by_side``; ``cli``.
"""

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
    "register_guide",
    "register_likelihood",
    "register_logger",
    "register_lr_schedule",
    "register_network",
    "register_objective",
    "register_prior",
    "sample_run",
    "simulate",
    "train",
    "traverse",
]
