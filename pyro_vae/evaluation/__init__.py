"""Evaluation of a trained run: log p(x) by a registered estimator, samples and interpolations
drawn from it."""

from pyro_vae.core.imports import lazy_names

__all__ = [
    "evaluate_run",
    "interpolate_run",
    "sample_run",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "evaluate_run": "pyro_vae.evaluation.evaluate",
        "interpolate_run": "pyro_vae.evaluation.drawing",
        "sample_run": "pyro_vae.evaluation.drawing",
    },
)
