"""Continuing a run from its checkpoint: what may change, and what is restored.

A resumed run rebuilds the same programs, then takes from the checkpoint the parameters, the
training state (optimizer, schedule, epoch, step, position within the epoch) and the metrics
rows up to it (:func:`pyro_vae.train` with ``resume``). The checkpoint does not depend on the
number of processes that wrote it, so a run may resume on another number of them.
"""

import contextlib
from pathlib import Path

import torch

from pyro_vae.config.run_config import Config
from pyro_vae.core import distributed
from pyro_vae.core.distributed import World
from pyro_vae.core.errors import ConfigError, RunDirError
from pyro_vae.models.vae import load_weights
from pyro_vae.training.checkpoint import load_checkpoint
from pyro_vae.training.loop import TrainState
from pyro_vae.training.run import (
    EXTENDABLE,
    check_same_run,
    claim_run_dir,
    first_difference,
    read_metrics,
    resumable,
)
from pyro_vae.training.schedules import depends_on_epochs


def read_resumed(run_dir: Path, hold: contextlib.ExitStack) -> dict:
    """The checkpoint of the run in ``run_dir``, read under the directory's lock (which the
    process that writes holds in ``hold`` until training ends), and checked against the
    ``config.toml`` beside it."""
    checkpoint = resumable(run_dir)
    if distributed.writes():
        hold.enter_context(claim_run_dir(run_dir, resume=True))
    payload = load_checkpoint(checkpoint)
    check_same_run(run_dir, payload)
    return payload


def check_resumable(config: Config, recorded: Config, run_dir: Path, done: int = 0) -> None:
    """Refuse a change that would make the resumed run another run (model, objective, data …),
    and fewer ``train.epochs`` than the ``done`` its checkpoint has trained."""
    if config.train.epochs < done:
        raise ConfigError(
            f"--train.epochs {config.train.epochs} is fewer than the {done} epochs {str(run_dir)!r} has "
            f"trained: a resumed run goes on to train.epochs (its best.pt holds the best epoch so far)"
        )
    differs = first_difference(recorded.to_dict(), config.to_dict(), ignore=EXTENDABLE)
    if differs:
        key = differs.split(" = ")[0]
        raise ConfigError(
            f"--{key} cannot change when resuming {str(run_dir)!r} ({differs}); only "
            f"{', '.join(sorted(k for k in EXTENDABLE if k != 'train.run_dir'))} may"
        )
    schedule = config.train.lr_schedule
    if config.train.epochs != recorded.train.epochs and depends_on_epochs(schedule.kind, schedule.params):
        raise ConfigError(
            f"--train.epochs cannot change when resuming {str(run_dir)!r}: its lr_schedule "
            f"{schedule.kind!r} spans train.epochs (a run with a fixed train.lr_schedule.period can be "
            "extended)"
        )


def restore(
    payload: dict, vae, params: dict, state: TrainState, device, *, where: str, world: World | None = None
) -> None:
    """The parameters and training state of a checkpoint, onto what was just built. Of several
    processes, rank 0 holds the unfinished epoch's loss (each adds its part to it)."""
    if vae is not None:
        load_weights(vae, payload["model"], where=where)
    else:
        saved = payload["model"]
        if set(saved) != set(params):
            raise RunDirError(
                f"{where} holds parameters {sorted(saved)}, the model declares {sorted(params)}"
            )
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])
    training = dict(payload["training"])
    if training["epoch_loss"] is not None:
        loss = training["epoch_loss"].to(device)
        training["epoch_loss"] = loss if (world or World()).main else torch.zeros_like(loss)
    state.load_state_dict(training)


def resumed_history(path: Path, state: TrainState) -> list[dict]:
    """The metrics rows up to the checkpoint (later ones came after it and will be redone)."""
    rows = [row for row in read_metrics(path) if row["epoch"] <= state.epoch] if path.is_file() else []
    if [row["epoch"] for row in rows] != list(range(state.epoch + 1)):
        raise RunDirError(
            f"{str(path)!r} lacks rows for epochs 0 … {state.epoch} that the checkpoint has trained; "
            "the run cannot be resumed"
        )
    return rows
