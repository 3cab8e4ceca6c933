"""What a run will be, worked out once before it starts: its device and its resolved config."""

import dataclasses
from pathlib import Path

import torch

from pyro_vae.config.run_config import Config
from pyro_vae.config.sections import ModelConfig, same_images
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import show
from pyro_vae.data.datasets import Data
from pyro_vae.training.run import fresh_dir


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU; asking for absent CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f'{key} = "{name}" is not allowed: expected "cpu", "cuda" or "cuda:N"') from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f'{key} = "{name}" but this machine has no CUDA device; use "cpu" or "auto"')
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f'{key} = "{name}" but this machine has {torch.cuda.device_count()} CUDA device(s)'
            )
    return device


def resolve_config(config: Config, data: Data, *, custom_model: bool = False) -> Config:
    """The config a run records: what the data says filled in, the data path absolute.

    * ``model.data_dim`` and ``model.image_shape`` from the data (a VAE built from the config
      needs them; a user's own model does not): a model.image_shape given must agree;
    * ``data.image_shape`` from the data, ``data.path`` made absolute (so that ``evaluate`` and
      ``sample`` find the data from any directory);
    * ``train.run_dir``: ``runs/<data name>-<date>-<time>`` when unset.
    """
    model = config.model
    if not custom_model:
        if model.data_dim not in (None, data.dim):
            raise ConfigError(
                f"model.data_dim = {model.data_dim} but the data has {data.dim} values per point"
            )
        model = dataclasses.replace(model, data_dim=data.dim, image_shape=_image_shape(model, data))
    path = str(Path(config.data.path).resolve()) if config.data.path else None
    image = list(data.image_shape) if data.image_shape else None
    run_dir = config.train.run_dir or str(fresh_dir("runs", config.data.name))
    return dataclasses.replace(
        config,
        model=model,
        data=dataclasses.replace(config.data, image_shape=image, path=path),
        train=dataclasses.replace(config.train, run_dir=run_dir),
    )


def _image_shape(model: ModelConfig, data: Data) -> list[int] | None:
    """model.image_shape follows the data's (data.image_shape, given or read from the data); one
    given in [model] as well must describe the same images."""
    shape = list(data.image_shape) if data.image_shape and len(data.image_shape) in (2, 3) else None
    if model.image_shape is None or shape is None:
        return model.image_shape or shape
    if not same_images(model.image_shape, shape):
        raise ConfigError(
            f"model.image_shape = {show(model.image_shape)} conflicts with data.image_shape = "
            f"{show(shape)} (the data's images): give data.image_shape alone, the model's follows it"
        )
    return model.image_shape


def fits_on(device: torch.device, data: Data) -> bool:
    """Whether the data takes under half of the device's free memory (always, for the CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return (data.train.nbytes + data.valid.nbytes) < free / 2


def place(data: Data, device: torch.device) -> Data:
    """The data where training reads it: held on the device when it fits (a step copies
    nothing from the host), else pinned on the host and copied a batch at a time."""
    return data.to(device) if fits_on(device, data) else data.to(torch.device("cpu")).pin()
