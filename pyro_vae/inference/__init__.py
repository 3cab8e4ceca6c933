"""Inference: the per-particle, per-data-point densities of a model and guide
(:mod:`~pyro_vae.inference.traces`), the objectives training maximises
(:mod:`~pyro_vae.inference.objectives`), the estimators of log p(x)
(:mod:`~pyro_vae.inference.estimators`), and what a trained VAE is measured by
(:mod:`~pyro_vae.inference.measure`)."""

from pyro_vae.core.imports import lazy_names

__all__ = [
    "MarginalLikelihood",
    "estimate",
    "make_objective",
    "register_estimator",
    "register_objective",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "make_objective": "pyro_vae.inference.objectives",
        "register_objective": "pyro_vae.inference.objectives",
        "MarginalLikelihood": "pyro_vae.inference.estimators",
        "estimate": "pyro_vae.inference.estimators",
        "register_estimator": "pyro_vae.inference.estimators",
    },
)
