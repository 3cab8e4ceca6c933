"""A run directory and the checkpoint in it.

Layout of a run directory::

    config.toml          the resolved config: every option, defaults included
    metrics.jsonl        one JSON object per epoch (epoch 0 is the untrained model)
    checkpoint.pt        weights, training state (epoch, step, seconds, optimizer), RNG state,
                         config (a plain state dict)
    curves.png           training curves
    samples.png          decoded draws from the prior
    reconstructions.png  validation points beside their reconstructions
    latent.png           posterior means of the validation points
    latent_grid.png      the decoder over a grid of z (2-D latent spaces only)

Every file is written to a temporary name and renamed, so a reader never sees half
of one. The checkpoint holds only tensors, numbers, strings, lists and dicts and is
read with ``torch.load(..., weights_only=True)``: loading a run never unpickles
arbitrary objects.
"""

import json
import pickle
import struct
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .config import Config
from .errors import RunDirError
from .files import append_line, atomic_write
from .plugins import import_plugins

if TYPE_CHECKING:
    from .model import VAE  # model imports the registries; run stays light to import

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.toml"
METRICS = "metrics.jsonl"
CURVES, SAMPLES, RECONSTRUCTIONS = "curves.png", "samples.png", "reconstructions.png"
LATENT, LATENT_GRID = "latent.png", "latent_grid.png"
FIGURES = (CURVES, SAMPLES, RECONSTRUCTIONS, LATENT, LATENT_GRID)
ARTEFACTS = (CONFIG, METRICS, CHECKPOINT, *FIGURES)
FORMAT = "pyro-vae-checkpoint/1"


def fresh_dir(parent: str, name: str) -> Path:
    """``<parent>/<name>-<date>-<time>``, with a suffix if one was made in the same second."""
    stem = f"{parent}/{name}-{datetime.now():%Y%m%d-%H%M%S}"
    candidates = (Path(stem if i == 1 else f"{stem}-{i}") for i in range(1, 1000))
    return next(p for p in candidates if not p.exists())


def prepare_run_dir(path: Path, *, overwrite: bool = False) -> None:
    """Create ``path``, refusing one that holds another run unless ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"run directory {str(path)!r} is a file")
    held = [name for name in (CONFIG, METRICS, CHECKPOINT) if (path / name).exists()]
    if held and not overwrite:
        raise RunDirError(
            f"run directory {str(path)!r} already holds a run ({', '.join(held)}); "
            "choose another --train.run_dir or pass --overwrite"
        )
    for name in ARTEFACTS if overwrite else ():
        (path / name).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)


def append_metrics(path: Path, row: dict) -> None:
    append_line(path, json.dumps(row))


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def rng_state() -> dict:
    state: dict[str, torch.Tensor | list[torch.Tensor]] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_checkpoint(
    path: Path,
    *,
    config: Config,
    model_state: dict,
    training: dict,
    custom_model: bool = False,
) -> None:
    """``model_state`` is the VAE's state dict, or a user's model's parameters by site name;
    ``training`` is the training state (:meth:`pyro_vae.loop.TrainState.state_dict`: epoch,
    step, seconds, optimizer), stored at the top level of the checkpoint."""
    payload = {
        "format": FORMAT,
        "custom_model": custom_model,
        "config": config.to_dict(),
        "model": model_state,
        **training,
        "rng": rng_state(),
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Read a checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"no checkpoint at {str(path)!r}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, struct.error) as e:
        raise RunDirError(f"{str(path)!r} is not a pyro-vae checkpoint ({type(e).__name__})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RunDirError(f"{str(path)!r} is not a pyro-vae checkpoint")
    return payload


@dataclass
class Run:
    """The result of :func:`pyro_vae.train`: the trained VAE, its metrics and its directory.

    ``run.model`` and ``run.guide`` are the trained Pyro programs (``run.vae.model`` and
    ``run.vae.guide`` for a VAE built from the config).
    """

    config: Config
    dir: Path
    model: object
    guide: object
    vae: "VAE | None" = None
    history: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, run_dir, device="cpu") -> "Run":
        """Rebuild the trained VAE of a run directory from its checkpoint."""
        from .model import VAE  # model imports the registries; run stays light to import

        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise RunDirError(f"run directory {str(run_dir)!r} does not exist")
        payload = load_checkpoint(run_dir / CHECKPOINT, map_location=device)
        import_plugins(payload["config"].get("plugins", []))  # the parts the config may name
        if payload["custom_model"]:
            raise RunDirError(
                f"{str(run_dir)!r} was trained on a user's own model/guide; read its parameters "
                "with pyro_vae.run.load_checkpoint(path)['model']"
            )
        config = Config.from_dict(payload["config"])
        vae = VAE(config.model).to(device)
        vae.load_state_dict(payload["model"])
        vae.eval()
        metrics = run_dir / METRICS
        history = read_metrics(metrics) if metrics.exists() else []
        return cls(config=config, dir=run_dir, model=vae.model, guide=vae.guide, vae=vae, history=history)
