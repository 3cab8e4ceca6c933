"""A run's config: typed, validated, frozen sections (``[model]``, ``[train]``, ``[data]``, and the
``[objective]`` spec) read from and written to TOML or JSON, and the reference that documents
every key. It imports only :mod:`pyro_vae.core`: a config names parts by ``kind``, which the
registries check, loading their built-in parts when first asked."""

from pyro_vae.core.imports import lazy_names

__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "as_config",
    "load_config",
    "read_config_file",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "Config": "pyro_vae.config.run_config",
        "as_config": "pyro_vae.config.run_config",
        "load_config": "pyro_vae.config.run_config",
        "read_config_file": "pyro_vae.config.run_config",
        "DataConfig": "pyro_vae.config.sections",
        "ModelConfig": "pyro_vae.config.sections",
        "TrainConfig": "pyro_vae.config.sections",
    },
)
