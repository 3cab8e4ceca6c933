"""Pictures: paths through the latent space (interpolations, traversals) and the figures drawn
from arrays (curves, grids of images, the latent space by label). It imports only
:mod:`pyro_vae.core`, numpy, torch and matplotlib, which its figures import when drawn."""

from pyro_vae.core.imports import lazy_names

__all__ = [
    "interpolate",
    "traverse",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "interpolate": "pyro_vae.pictures.latent_paths",
        "traverse": "pyro_vae.pictures.latent_paths",
    },
)
