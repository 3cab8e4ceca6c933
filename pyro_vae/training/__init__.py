"""Training: one step of an objective's gradient, the loop over epochs with its callbacks, the
run directory (config, checkpoints, metrics, figures) and resuming it, learning-rate schedules
and experiment loggers (each a registry), and :func:`~pyro_vae.training.trainer.train`."""

from pyro_vae.core.imports import lazy_names

__all__ = [
    "Logger",
    "Run",
    "register_logger",
    "register_lr_schedule",
    "train",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "train": "pyro_vae.training.trainer",
        "Run": "pyro_vae.training.run",
        "Logger": "pyro_vae.training.loggers",
        "register_logger": "pyro_vae.training.loggers",
        "register_lr_schedule": "pyro_vae.training.schedules",
    },
)
