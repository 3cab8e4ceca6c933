"""What ``pyro-vae evaluate`` does with a run directory, as a function.

:func:`evaluate_run` measures a trained run on a split of its data with a registered
estimator of log p(x) (:func:`pyro_vae.inference.measure.measure`) and writes the record as JSON beside
the run. It checks the estimator's options (in the estimator's own terms,
:func:`pyro_vae.inference.estimators.base.check_estimator`) and where it will write (``--out``,
:mod:`pyro_vae.evaluation.checks`) before it starts: nothing is left behind by a refusal.
``sample_run`` and ``interpolate_run`` are :mod:`pyro_vae.evaluation.drawing`'s.

Under ``torchrun`` the processes of :func:`evaluate_run` share the points, in whole batches,
and gather every point's estimate (:mod:`pyro_vae.core.distributed`): the record is the one a
single process writes, and rank 0 writes it.
"""

import json
import math
from pathlib import Path

import numpy as np
import pyro
import torch

from pyro_vae.core import distributed
from pyro_vae.core.errors import NotDefined
from pyro_vae.core.files import atomic_write, make_dir
from pyro_vae.core.options import PositiveInt, check_value, show
from pyro_vae.evaluation.checks import (
    check_seed,
    check_writable,
    data_of,
    data_words,
    refuse_directory,
    split_of,
    where,
)
from pyro_vae.evaluation.drawing import interpolate_run, sample_run
from pyro_vae.inference.estimators.base import check_estimator
from pyro_vae.inference.estimators.pareto import UNTRUSTED_K
from pyro_vae.inference.measure import Measurement, measure
from pyro_vae.training.build import graph_data
from pyro_vae.training.resolve import resolve_device
from pyro_vae.training.run import CHECKPOINT, Run

__all__ = ["describe_estimate", "evaluate_run", "interpolate_run", "sample_run"]


def evaluate_run(
    run_dir,
    *,
    split: str = "valid",
    points: int | None = None,
    estimator: str = "is",
    options: dict | None = None,
    seed: int = 0,
    batch_size: int = 100,
    device: str = "cpu",
    out=None,
    progress=None,
    checkpoint: str = CHECKPOINT,
) -> tuple[dict, Path]:
    """Estimate log p(x) of the run in ``run_dir`` on the first ``points`` points of ``split``.

    :param estimator: a registered estimator's name; ``options`` are its options, checked as a
        config file's.
    :returns: the record written (numbers, diagnostics, every point's log p̂) and its path,
        ``RUN_DIR/evaluation-ESTIMATOR-SPLIT.json`` unless ``out`` is given (``…-best.json`` for
        ``checkpoint="best.pt"``, the epoch with the best validation ELBO).
    :raises NotDefined: for a run whose guide has no density (an autoencoder, the delta guide):
        log p(x) and the ELBO are not defined; the message gives its reconstruction term, and
        nothing is written.
    """
    check_value("--batch-size", batch_size, PositiveInt)
    check_value("--points", points, PositiveInt | None)
    options = check_estimator(estimator, options)
    check_seed(seed)
    run_dir = Path(run_dir)
    which = "" if checkpoint == CHECKPOINT else f"-{Path(checkpoint).stem}"
    out = Path(out) if out is not None else run_dir / f"evaluation-{estimator}-{split}{which}.json"
    refuse_directory(out, "evaluation-results.json")
    torch_device = resolve_device(device, key="--device")
    w = distributed.join(torch_device, key="--device")
    torch_device = distributed.device_of(torch_device)
    run = Run.load(run_dir, device=torch_device, checkpoint=checkpoint)
    if w.main:
        check_writable(out, where(out, run_dir))  # before the estimation, which may take hours
    data = data_of(run)
    if run.graph is not None:
        data = graph_data(run.config, data)
    x = split_of(data, split)[:points].to(torch_device)  # (N, D)
    if run.graph is not None:
        run.graph.check_data(x, f"the {split} split of {data_words(run)}")
    elif run.vae is not None:  # a registered program checks its own data, or does not
        run.vae.likelihood.check_data(x, f"the {split} split of {data_words(run)}")
    pyro.set_rng_seed(seed)  # guides the keyed noise does not cover draw from the global stream
    m = measure(
        run.model,
        run.guide,
        x,
        estimator=estimator,
        options=options,
        encode=run.vae.encode if run.vae is not None else None,
        seed=seed,
        batch_size=batch_size,
        device=torch_device,
        progress=progress,
    )
    about = {"run_dir": str(run_dir), "checkpoint": checkpoint, "epoch": run.epoch, "split": split}
    about["measures"] = run.graph.measured if run.graph is not None else "log p(x)"
    record = _record(m, estimator, options, {**about, "seed": seed, "device": str(torch_device)})
    if w.main:
        make_dir(out.parent, where(out, run_dir))
        atomic_write(out, lambda tmp: tmp.write_text(json.dumps(_finite(record), indent=2) + "\n"))
    return record, out


def _record(m: Measurement, estimator: str, options: dict, about: dict) -> dict:
    """What :func:`evaluate_run` writes: ``about`` the evaluation (run, split, seed ...), then the
    measurement and every point's log p̂.

    :raises NotDefined: where the estimator refused the guide (it has no density).
    """
    if m.log_px_absent is not None:
        raise NotDefined(
            f"log p(x) is not defined for the run {about['run_dir']!r}: {m.log_px_absent}, so neither "
            f"the estimator {estimator!r} nor the ELBO applies (an autoencoder); its reconstruction "
            f"term log p(x | f(x)) is {m.recon:.2f} nats per point on {m.points} {about['split']} points",
            reason=m.log_px_absent,
        )
    assert m.marginal is not None  # an estimator was given
    ml = m.marginal
    return {
        **about,
        "method": describe_estimate(estimator, options, ml),
        "num_samples": ml.num_samples,
        **m.to_dict(),
        "mc_error_unavailable": ml.no_error,
        **_tail(ml),
        "untrusted": [{"point": n, "why": why} for n, why in ml.why_untrusted().items()],
        "log_px_per_point": ml.log_px.tolist(),
        "mc_stderr_per_point": ml.mc_stderr.tolist(),
    }


def _tail(ml) -> dict:
    """The weights' Pareto k̂: largest, how many points lie above 0.7, every point's (None where
    the estimator fits none; a point's None where there were too few weights to fit)."""
    k = ml.pareto_k
    if k is None or not torch.isfinite(k).any():
        return {"pareto_k_max": None, "heavy_tail_points": None, "pareto_k_per_point": None}
    return {
        "pareto_k_max": k.nan_to_num(-math.inf).max().item(),
        "heavy_tail_points": int((k > UNTRUSTED_K).sum()),
        "pareto_k_per_point": k.tolist(),
    }


def describe_estimate(name: str, options: dict, result) -> str:
    """``"is (samples = 5000, chunk_size = 500)"``, with the HMC acceptance rate where there is one."""
    words = ", ".join(f"{k} = {show(v)}" for k, v in options.items() if not isinstance(v, dict | type(None)))
    text = f"estimator {name}" + (f" ({words})" if words else "")
    acceptance = getattr(result, "acceptance", None)
    return text + (f", HMC acceptance {acceptance:.2f}" if acceptance is not None else "")


def _finite(value):
    """NaN and infinities become None (JSON has neither)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
