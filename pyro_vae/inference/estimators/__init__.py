"""Estimators of log p(x), each registered by the name ``pyro-vae evaluate --estimator`` takes.

=======  ==================================================================  ==========
name     what                                                                module
=======  ==================================================================  ==========
``is``   importance sampling with the guide as proposal (the IWAE bound)     importance
``ais``  annealed importance sampling with HMC moves (and BDMC bounds)       annealed
=======  ==================================================================  ==========

Every estimator has one signature (:mod:`pyro_vae.inference.estimators.base`); a user's plugin adds
one with ``pyro_vae.register_estimator(name)``, and it then runs from ``pyro-vae evaluate
--estimator name`` and ``pyro-vae compare --estimator name``. Reproducible draws come from
:mod:`pyro_vae.inference.noise`; the weights' diagnostics from :mod:`pyro_vae.inference.estimators.weights`.
"""

import importlib
import pkgutil

from pyro_vae.inference.estimators.annealed import AISEstimate, ais, sigmoid_schedule, simulate
from pyro_vae.inference.estimators.base import ESTIMATORS, MarginalLikelihood, estimate, register_estimator
from pyro_vae.inference.estimators.importance import importance_sampling, log_marginal_likelihood
from pyro_vae.inference.noise import IndexedNoise, indexed_normal

# every module here registers its estimators when imported: a new one is one new file
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "ESTIMATORS",
    "AISEstimate",
    "IndexedNoise",
    "MarginalLikelihood",
    "ais",
    "estimate",
    "importance_sampling",
    "indexed_normal",
    "log_marginal_likelihood",
    "register_estimator",
    "sigmoid_schedule",
    "simulate",
]
