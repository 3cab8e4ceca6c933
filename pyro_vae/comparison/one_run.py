"""One run of a comparison: trained (or resumed from an interrupted comparison's checkpoint),
then measured on the comparison's points, as one row of numbers (:func:`train_and_measure`).

The row holds what :mod:`pyro_vae.comparison.report` summarises: log p(x) with its standard errors (None,
with the reason in ``log_px_absent``, where it is not defined), the ELBO and its terms, active
units, seconds per epoch and peak memory, and where the run lives. It is kept in the run's
``result.json`` beside the request it answers (the run's config and the evaluation), so that
a comparison run again reuses it for the same request (:func:`finished`).
"""

import json
import math
import statistics
import sys
from pathlib import Path

import pyro
import torch

from pyro_vae.config.run_config import Config
from pyro_vae.core import distributed
from pyro_vae.core.errors import ConfigError, RunDirError
from pyro_vae.core.files import InUse, atomic_write
from pyro_vae.inference.measure import measure
from pyro_vae.training.run import CHECKPOINT, first_difference
from pyro_vae.training.trainer import train

RESULT = "result.json"


def train_and_measure(
    config: Config, data, x: torch.Tensor, device: torch.device, estimator: str, options: dict, fresh: bool
) -> dict:
    """Train one run quietly, then measure it on the points ``x``: one row of numbers."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run = _train_or_resume(config, data, fresh)
    memory = _peak_memory_mb(device)
    vae, x = run.vae, x.to(device)
    assert vae is not None  # train builds a VAE from a config
    pyro.set_rng_seed(config.train.seed)  # guides the keyed noise does not cover draw reproducibly
    m = measure(
        vae.model,
        vae.guide,
        x,
        estimator=estimator,
        options=options,
        encode=vae.encode,
        seed=config.train.seed,
        elbo_batch_size=config.train.eval_batch_size,
        device=device,
    )
    epoch_seconds = [row["seconds"] for row in run.history if row["epoch"] >= 1]
    return _finite(
        {
            "train_seed": config.train.seed,
            "run_dir": str(run.dir),
            "guide": config.model.guide.kind,
            "log_px": m.log_px,
            "log_px_absent": m.log_px_absent,  # why log_px is None where it is not defined
            "log_px_stderr": m.log_px_stderr,  # over the points
            "log_px_mc_stderr": m.log_px_mc_stderr,  # Monte Carlo, of the mean
            "ess_mean": m.ess_mean,
            "untrusted_points": m.untrusted_points,
            "valid_elbo": m.elbo,
            "valid_elbo_stderr": m.elbo_stderr,
            "recon": m.recon,
            "kl": m.kl,
            "active_units": m.active_units,
            "epochs": run.history[-1]["epoch"],
            "train_seconds": sum(epoch_seconds),
            "seconds_per_epoch": statistics.fmean(epoch_seconds),
            "peak_memory_mb": memory,
            "memory": memory_measure(device),
            "estimator": estimator,
            "eval_points": len(x),
        }
    )


def _train_or_resume(config: Config, data, fresh: bool):
    """Continue a run an interrupted comparison left a checkpoint of, when it is this same run;
    train it afresh otherwise (and when ``fresh``)."""
    run_dir = Path(config.train.run_dir)
    if distributed.world().broadcast(not fresh and (run_dir / CHECKPOINT).is_file()):
        try:
            return train(config, data=data, resume=run_dir, quiet=True)
        except InUse:
            raise
        except (ConfigError, RunDirError):
            pass  # another run's checkpoint, or a damaged one: train this run afresh
    return train(config, data=data, overwrite=True, quiet=True)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource  # POSIX only

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def memory_measure(device: torch.device) -> str:
    if device.type == "cuda":
        return "CUDA memory allocated while training (torch.cuda.max_memory_allocated)"
    return "peak resident set size of the whole process (CPU high-water mark, not per run)"


def _finite(row: dict) -> dict:
    """NaN and infinities become None (JSON has neither)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def finished(run_dir: Path, request: dict, overwrite: bool) -> dict | None:
    """The row of a run already measured for this same ``request``, None if it must be (re)trained.

    :raises RunDirError: for a run measured for another request, unless ``overwrite``.
    """
    try:
        saved = json.loads((run_dir / RESULT).read_text())
        saved["request"], saved["row"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, or damaged: measured again (from the run's checkpoint, if it has one)
    if saved["request"] == request:
        return saved["row"]
    if overwrite:
        return None
    raise RunDirError(
        f"{str(run_dir)!r} holds a run measured with another config "
        f"({first_difference(saved['request'], request)}); pass --overwrite to retrain it, "
        "or choose another --out"
    )


def measured_otherwise(run_dir: Path) -> bool:
    """Whether the run holds a readable result (which :func:`finished` found to be another's)."""
    try:
        return "request" in json.loads((run_dir / RESULT).read_text())
    except (OSError, ValueError, TypeError):
        return False


def write_result(run_dir: Path, request: dict, row: dict) -> None:
    text = json.dumps({"request": request, "row": row}, indent=2) + "\n"
    atomic_write(run_dir / RESULT, lambda tmp: tmp.write_text(text))
