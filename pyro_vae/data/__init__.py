"""Data: the datasets known by name (``digits``, and those fetched into the user's cache, which
:mod:`pyro_vae.data.catalog` lists without importing torch), array files read by path, and
:class:`~pyro_vae.data.datasets.Data`, the checked, split matrices a run trains on."""

from pyro_vae.core.imports import lazy_names

__all__ = [
    "DATASETS",
    "Data",
    "Download",
    "RemoteFile",
    "digits",
    "load_data",
    "register_dataset",
    "register_download",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "DATASETS": "pyro_vae.core.registry",
        "Data": "pyro_vae.data.datasets",
        "load_data": "pyro_vae.data.datasets",
        "register_dataset": "pyro_vae.data.datasets",
        "Download": "pyro_vae.data.catalog",
        "digits": "pyro_vae.data.catalog",
        "register_download": "pyro_vae.data.catalog",
        "RemoteFile": "pyro_vae.data.downloads",
    },
)
