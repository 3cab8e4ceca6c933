"""Estimators of log p(x), each registered by the name ``pyro-vae evaluate --estimator`` takes.

=======  ==================================================================  ==========
name     what                                                                module
=======  ==================================================================  ==========
``is``   importance sampling with the guide as proposal (the IWAE bound)     importance
``ais``  annealed importance sampling with HMC moves (and BDMC bounds)       annealed
=======  ==================================================================  ==========

A new estimator is one new file here: the ``estimator`` registry imports every module of this
package the first time it is asked for a name. Every estimator has one signature
(:mod:`pyro_vae.inference.estimators.base`); a user's plugin adds one with
``pyro_vae.register_estimator(name)``, and it then runs from ``pyro-vae evaluate --estimator
name`` and ``pyro-vae compare --estimator name``. Reproducible draws come from
:mod:`pyro_vae.inference.noise`; the weights' diagnostics from :mod:`pyro_vae.inference.estimators.weights`.
"""

from pyro_vae.inference.estimators.annealed import AISEstimate, ais, sigmoid_schedule, simulate
from pyro_vae.inference.estimators.base import ESTIMATORS, MarginalLikelihood, estimate, register_estimator
from pyro_vae.inference.estimators.importance import importance_sampling, log_marginal_likelihood
from pyro_vae.inference.noise import IndexedNoise, indexed_normal

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
