"""One run of a comparison: trained (or resumed from an interrupted comparison's checkpoint),
then measured on the comparison's points, as one row of numbers (:func:`train_and_measure`).

The row holds what :mod:`pyro_vae.comparison.report` summarises: log p(x) with its standard errors (None,
with the reason in ``log_px_absent``, where it is not defined), the ELBO and its terms, active
units, seconds per epoch and peak memory, and where the run lives. A run whose training loss
became NaN or infinite is a result too: its row has ``status`` "diverged", the epoch it diverged
in and the loss, and no numbers. The row is kept in the run's ``result.json`` beside the request
it answers (the run's config and the evaluation), so that a comparison run again reuses it for
the same request (:func:`finished`), a divergence included; a run trained further since
(``pyro-vae train --resume``) is measured again where it now stands (:func:`moved_past`,
:func:`measure_again`).
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
from pyro_vae.training.loop import Diverged
from pyro_vae.training.run import CHECKPOINT, METRICS, Run, first_difference, read_metrics
from pyro_vae.training.trainer import train

RESULT = "result.json"
MEASURED, DIVERGED = "measured", "diverged"  # a row's status


def train_and_measure(
    config: Config, data, x: torch.Tensor, device: torch.device, estimator: str, options: dict, fresh: bool
) -> dict:
    """Train one run quietly, then measure it on the points ``x``: one row of numbers; a row
    saying so (:func:`diverged_row`) where training diverged."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        run = _train_or_resume(config, data, fresh)
    except Diverged as e:
        return diverged_row(config, e, estimator, len(x))
    return _measure(config, run, x, device, estimator, options, _peak_memory_mb(device))


def measure_again(
    config: Config, x: torch.Tensor, device: torch.device, estimator: str, options: dict
) -> dict:
    """Measure a run as its checkpoint now stands, without training it (it was trained further
    outside the comparison): the same row, its peak memory None (not seen by this process)."""
    run = Run.load(config.train.run_dir, device=device)
    run.history = [row for row in run.history if row["epoch"] <= (run.epoch or 0)]
    return _measure(run.config, run, x, device, estimator, options, None)


def _measure(
    config: Config, run: Run, x: torch.Tensor, device: torch.device, estimator: str, options: dict, memory
) -> dict:
    """The row of numbers of a trained run, measured on the points ``x``."""
    vae, x = run.vae, x.to(device)
    pyro.set_rng_seed(config.train.seed)  # guides the keyed noise does not cover draw reproducibly
    m = measure(
        run.model,
        run.guide,
        x,
        estimator=estimator,
        options=options,
        encode=vae.encode if vae is not None else None,
        seed=config.train.seed,
        elbo_batch_size=config.train.eval_batch_size,
        device=device,
    )
    epoch_seconds = [row["seconds"] for row in run.history if row["epoch"] >= 1]
    return _finite(
        {
            "status": MEASURED,
            "train_seed": config.train.seed,
            "run_dir": str(run.dir),
            "guide": guide_words(config),
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
            "step": run.history[-1]["step"],  # where training stood when measured: see moved_past
            "train_seconds": sum(epoch_seconds),
            "seconds_per_epoch": statistics.fmean(epoch_seconds),
            "peak_memory_mb": memory,
            "memory": memory_measure(device),
            "estimator": estimator,
            "eval_points": len(x),
        }
    )


def guide_words(config: Config) -> str:
    """The guide a row was trained with: the preset's kind, or a declared graph's own."""
    if getattr(config.model, "program", None) is not None:
        return "program"
    return config.model.guide.kind if getattr(config.model, "variables", None) is None else "graph"


def diverged_row(config: Config, e: Diverged, estimator: str, points: int) -> dict:
    """The row of a run whose training loss became NaN or infinite: the epoch it diverged in, the
    loss, and no numbers."""
    run_dir = Path(config.train.run_dir)
    try:
        last = read_metrics(run_dir / METRICS)[-1]
    except (RunDirError, IndexError):  # no epoch recorded: it diverged before the first ended
        last = {"epoch": 0, "step": 0}
    return {
        "status": DIVERGED,
        "train_seed": config.train.seed,
        "run_dir": str(run_dir),
        "guide": guide_words(config),
        "diverged_epoch": e.epoch or last["epoch"] + 1,
        "diverged_loss": str(e.loss),  # a word: JSON has no NaN or infinity
        **dict.fromkeys(NUMBERS),
        "epochs": None,  # none measured: the summary's epochs are those of the measured runs
        "step": last["step"],  # the last epoch it finished
        "estimator": estimator,
        "eval_points": points,
    }


#: the numbers of a measured row, None in a diverged one
NUMBERS = (
    "log_px",
    "log_px_absent",
    "log_px_stderr",
    "log_px_mc_stderr",
    "ess_mean",
    "untrusted_points",
    "valid_elbo",
    "valid_elbo_stderr",
    "recon",
    "kl",
    "active_units",
    "train_seconds",
    "seconds_per_epoch",
    "peak_memory_mb",
    "memory",
)


def diverged_words(row: dict) -> str:
    """ "diverged in epoch 3 (the loss is nan)": what a diverged run's row says."""
    loss = f" (the loss is {row['diverged_loss']})" if row.get("diverged_loss") else ""
    return f"diverged in epoch {row['diverged_epoch']}{loss}"


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


def moved_past(run_dir: Path, row: dict) -> bool:
    """Whether the run was trained past where ``row`` measured it (``pyro-vae train --resume``
    after the comparison): its metrics end at a later step (or, for a row without its step,
    a later epoch)."""
    try:
        last = read_metrics(run_dir / METRICS)[-1]
    except (RunDirError, IndexError):
        return False
    if row.get("step") is not None:
        return last["step"] > row["step"]
    done = row.get("epochs")
    return done is not None and last["epoch"] > done


def measured_otherwise(run_dir: Path) -> bool:
    """Whether the run holds a readable result (which :func:`finished` found to be another's)."""
    try:
        return "request" in json.loads((run_dir / RESULT).read_text())
    except (OSError, ValueError, TypeError):
        return False


def write_result(run_dir: Path, request: dict, row: dict) -> None:
    """Keep ``row`` in the run's result.json, beside the ``request`` it answers; the directory is
    made again where training removed it (a run that diverged before its first checkpoint)."""
    text = json.dumps({"request": request, "row": row}, indent=2) + "\n"
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / RESULT, lambda tmp: tmp.write_text(text))
