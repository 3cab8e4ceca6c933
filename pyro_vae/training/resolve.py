"""What a run will be, worked out once before it starts: its device, its processes, its data and
its one resolved config, every choice a user can get wrong checked before anything is written."""

import contextlib
import dataclasses
from pathlib import Path

import torch

from pyro_vae.config.run_config import Config
from pyro_vae.config.sections import _DEVICE, ModelConfig, same_images
from pyro_vae.core import distributed
from pyro_vae.core.distributed import World
from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.core.options import show
from pyro_vae.data.datasets import Data, load_data
from pyro_vae.training.loggers import check_loggers
from pyro_vae.training.resume import check_resumable, read_resumed
from pyro_vae.training.run import first_difference, fresh_dir


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A run before it is built: the config it records, its data, device and processes, and the
    checkpoint it resumes (None for a new run)."""

    config: Config
    data: Data
    device: torch.device
    world: World
    checkpoint: dict | None = None


def resolve_run(
    config: Config | None, data: Data | None, *, resume, custom_model: bool, hold: contextlib.ExitStack
) -> Resolved:
    """The run :func:`pyro_vae.train` is asked for, its config resolved once. A resumed run's
    checkpoint is read under its directory's lock, which ``hold`` keeps until training ends.
    Of several processes (torchrun), each reads the same files and is given rank 0's run
    directory; a process given another config is refused."""
    checkpoint = None
    if resume is not None:
        checkpoint = read_resumed(Path(resume), hold)
        config = config or Config.from_dict(checkpoint["config"])
    config = config or Config()
    device = resolve_device(config.train.device)
    world = distributed.join(device, config.train.backend)
    device = distributed.device_of(device)
    data = data or load_data(config.data)
    run_dir = str(resume) if resume is not None else config.train.run_dir
    run_dir = world.broadcast(run_dir or str(fresh_dir("runs", config.data.label)))
    config = resolve_config(config, data, custom_model=custom_model, run_dir=run_dir)
    check_same_everywhere(config, world)
    if checkpoint is not None:
        done = checkpoint["training"]["epoch"]
        check_resumable(config, Config.from_dict(checkpoint["config"]), Path(resume), done)
    check_loggers(config.train.loggers)
    return Resolved(config, data, device, world, checkpoint)


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU; asking for absent CUDA is an error, and so is
    any other device (``mps``, ``meta``, ``cpu:1`` ...): pyro-vae runs on the CPU and CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise ConfigError(f'{key} = {show(name)} is not allowed: expected "auto", "cpu", "cuda" or "cuda:N"')
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f'{key} = "{name}" but this machine has no CUDA device; use "cpu" or "auto"')
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f'{key} = "{name}" but this machine has {torch.cuda.device_count()} CUDA device(s)'
            )
    return device


def resolve_config(
    config: Config, data: Data, *, custom_model: bool = False, run_dir: str | None = None
) -> Config:
    """The config a run records: what the data says filled in, the data path absolute.

    * ``model.data_dim`` and ``model.image_shape`` from the data (a VAE built from the config
      needs them; a user's own model does not): a model.image_shape given must agree;
    * ``data.image_shape`` from the data, ``data.path`` made absolute (so that ``evaluate`` and
      ``sample`` find the data from any directory);
    * ``train.run_dir``: ``run_dir`` when given, else ``runs/<data name>-<date>-<time>`` when unset.
    """
    model = config.model
    if not custom_model:
        if model.data_dim not in (None, data.dim):
            raise ConfigError(
                f"model.data_dim = {model.data_dim} but the data has {data.dim} values per point"
            )
        model = dataclasses.replace(model, data_dim=data.dim, image_shape=_image_shape(model, data))
        if model.variables is not None:
            model = dataclasses.replace(model, variables=_label_classes(model.variables, data))
    path = str(Path(config.data.path).resolve()) if config.data.path else None
    image = list(data.image_shape) if data.image_shape else None
    run_dir = run_dir or config.train.run_dir or str(fresh_dir("runs", config.data.label))
    return dataclasses.replace(
        config,
        model=model,
        data=dataclasses.replace(config.data, image_shape=image, path=path),
        train=dataclasses.replace(config.train, run_dir=run_dir),
    )


def _label_classes(variables: dict, data: Data) -> dict:
    """A variable bound to ``"label"`` gets the data's number of classes, unless it gives its own
    (which must hold every label)."""
    out = dict(variables)
    for name, v in variables.items():
        if v.data != "label":
            continue
        if data.train_labels is None:
            raise DataError(
                f'model.variables.{name} is bound to "label", but the data {data.name!r} have no labels'
            )
        found = int(data.train_labels.max()) + 1
        if v.classes is not None and v.classes < found:
            raise ConfigError(
                f"model.variables.{name}.classes = {v.classes}, but the data have labels up to {found - 1}"
            )
        out[name] = dataclasses.replace(v, classes=v.classes or found)
    return out


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


def check_same_everywhere(config: Config, world: World) -> None:
    """Refuse a process of several that was given another config than process 0."""
    given = world.objects(config.to_dict()) if world.size > 1 else []
    for rank, other in enumerate(given):
        differs = first_difference(given[0], other)
        if differs:
            raise ConfigError(
                f"process {rank} was given another config than process 0 ({differs}); every process "
                "of a job must be given the same command and files"
            )


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
