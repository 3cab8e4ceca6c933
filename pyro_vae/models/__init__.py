"""The parts of a VAE and the VAE itself: networks, priors p(z), likelihoods p(x|z), guides
q(z|x) (each family a registry, filled by the decorators in its module), their distributions,
flows and closed-form KLs, and :class:`~pyro_vae.models.vae.VAE`, which joins them as Pyro
programs."""

from pyro_vae.core.imports import lazy_names

__all__ = [
    "VAE",
    "register_guide",
    "register_likelihood",
    "register_network",
    "register_prior",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "VAE": "pyro_vae.models.vae",
        "register_guide": "pyro_vae.models.guides",
        "register_likelihood": "pyro_vae.models.likelihoods",
        "register_network": "pyro_vae.models.networks",
        "register_prior": "pyro_vae.models.priors",
    },
)
