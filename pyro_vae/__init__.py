"""pyro-vae: variational autoencoders written as Pyro programs.

Declare a model in a config file or in Python, train it with stochastic variational
inference, and measure it::

    import pyro_vae
    config = pyro_vae.Config.load("vae.toml")
    run = pyro_vae.train(config)
    run.vae.model, run.vae.guide      # the trained Pyro programs
"""

from .ais import AISEstimate, ais, simulate
from .comparison import Comparison, compare
from .config import Config, DataConfig, ModelConfig, Spec, TrainConfig
from .data import Data, load_data, register_dataset
from .errors import ConfigError, DataError, PyroVAEError, RunDirError
from .evaluation import MarginalLikelihood, active_units, elbo_parts, evaluate_elbo, log_marginal_likelihood
from .guides import register_guide
from .likelihoods import register_likelihood
from .model import VAE
from .networks import register_network
from .objectives import make_objective, register_objective
from .priors import register_prior
from .run import Run
from .training import train

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
    "MarginalLikelihood",
    "ModelConfig",
    "PyroVAEError",
    "Run",
    "RunDirError",
    "Spec",
    "TrainConfig",
    "active_units",
    "ais",
    "compare",
    "elbo_parts",
    "evaluate_elbo",
    "load_data",
    "log_marginal_likelihood",
    "make_objective",
    "register_dataset",
    "register_guide",
    "register_likelihood",
    "register_network",
    "register_objective",
    "register_prior",
    "simulate",
    "train",
]
