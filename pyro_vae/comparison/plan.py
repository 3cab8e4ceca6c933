"""What a comparison will do, decided before anything is written (:func:`plan_comparison`).

Everything a user can get wrong (seeds, budget, estimator and its options, objectives, every
run's config, the data, the device, the directory: a training run's directory is not a
comparison's) is checked first; then the files say which runs were measured already for the
same request (:func:`pyro_vae.comparison.one_run.finished`), which of those were trained further
since and are to be measured again (:func:`pyro_vae.comparison.one_run.moved_past`), and which
diverged (kept as their result unless ``retry_diverged``), rank 0's reading deciding for every
process; only then is the comparison directory made.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from pyro_vae.comparison import one_run
from pyro_vae.config.run_config import Config, as_config
from pyro_vae.core import distributed
from pyro_vae.core.errors import ConfigError, RunDirError
from pyro_vae.core.files import make_dir
from pyro_vae.core.options import PositiveFloat, PositiveInt, check_value
from pyro_vae.data.datasets import Data, load_data
from pyro_vae.inference.estimators.base import check_estimator
from pyro_vae.inference.objectives import paired_guide, parse_objective
from pyro_vae.training.build import graph_data
from pyro_vae.training.resolve import resolve_device
from pyro_vae.training.run import CHECKPOINT, CONFIG, METRICS, fresh_dir

MAX_EPOCHS = 1_000_000  # the epoch cap when a wall-clock budget decides


@dataclass
class PlannedRun:
    """One run of a comparison: its objective's label, its seed, its config, the request its
    result answers, and its row where it was measured for that request already (a divergence
    included); ``remeasure`` where it was, but has been trained further since."""

    label: str
    seed: int
    config: Config
    request: dict
    row: dict | None
    remeasure: bool = False


@dataclass
class Plan:
    """What a comparison does, every part of it checked."""

    base: Config
    labels: list[str]
    seeds: int
    estimator: str
    options: dict
    data: Data
    x: torch.Tensor  # (N, D): the yardstick's points
    device: torch.device
    out: Path
    runs: list[PlannedRun]  # seed 0 of each objective first


#: the guide of the runs of a declared graph or a program: their own
GRAPH = "graph"


def plan_comparison(
    config: Config | dict | str | os.PathLike | None,
    objectives: list[str | dict],
    *,
    seeds: int,
    epochs: int | None,
    seconds: float | None,
    estimator: str,
    estimator_options: dict | None,
    eval_samples: int,
    eval_points: int | None,
    out_dir,
    overwrite: bool,
    retry_diverged: bool = False,
) -> Plan:
    """The plan of :func:`pyro_vae.compare`, which takes the same arguments; the comparison
    directory is made once every one of them has been checked."""
    seeds = check_value("seeds", seeds, PositiveInt)
    eval_samples = check_value("eval_samples", eval_samples, PositiveInt)
    options = check_estimator(estimator, estimator_options, defaults={"samples": eval_samples})
    eval_points = check_value("eval_points", eval_points, PositiveInt | None)
    base = as_config(config).override(_budget(epochs, seconds))
    labelled = _objectives(objectives, base)
    device = resolve_device(base.train.device)
    w = distributed.join(device, base.train.backend)
    device = distributed.device_of(device)
    out = w.broadcast(Path(out_dir) if out_dir else fresh_dir("comparisons", base.data.label))
    _not_a_training_run(out)
    data = load_data(base.data)  # one split for every run
    x = graph_data(base, data).valid[:eval_points]  # (N, D), a graph's rows with their labels
    measured_by = {"estimator": {"kind": estimator, **options}, "eval_points": len(x)}
    runs = _runs(base, labelled, seeds, out, measured_by, overwrite, retry_diverged)
    readings = w.broadcast([(run.row, run.remeasure) for run in runs])
    for run, (row, remeasure) in zip(runs, readings, strict=True):
        run.row, run.remeasure = row, remeasure  # rank 0's reading of the files decides
    if w.main:
        make_dir(out, "comparison directory (--out)")  # every run's config checked, nothing trained yet
    return Plan(base, list(labelled), seeds, estimator, options, data, x, device, out, runs)


def _not_a_training_run(out: Path) -> None:
    """Refuse a ``--out`` that holds a training run: the comparison would write its pictures
    over the run's."""
    held = [name for name in (CONFIG, CHECKPOINT, METRICS) if (out / name).exists()]
    if held:
        raise RunDirError(
            f"--out {str(out)!r} is a training run's directory (it holds {', '.join(held)}), not a "
            "comparison's: choose another --out"
        )


def _budget(epochs: int | None, seconds: float | None) -> dict:
    """The overrides that give every run the same budget: epochs, or seconds of training."""
    budget = {}
    if epochs is not None:
        budget["train.epochs"] = check_value("epochs", epochs, PositiveInt)
    if seconds is not None:
        budget["train.max_seconds"] = check_value("seconds", seconds, PositiveFloat)
        budget.setdefault("train.epochs", MAX_EPOCHS)
    return budget


def _objectives(objectives, base: Config) -> dict[str, tuple]:
    """label -> (objective spec, guide kind, safe directory name), for every objective given."""
    if not objectives:
        raise ConfigError("no objectives to compare")
    labelled: dict[str, tuple] = {}
    for word in objectives:
        label, spec = parse_objective(word)
        # a declared graph has its own guide ([guide]); the preset's is paired with the objective
        own = base.model.variables is not None or base.model.program is not None
        guide = GRAPH if own else paired_guide(spec, base.model.guide).kind
        name = re.sub(r"[^\w.=,+-]+", "_", label)
        if guide not in (base.model.guide.kind, GRAPH):
            label += f" ({guide} guide)"  # the objective's own guide, shown where its numbers are
        if label in labelled:
            raise ConfigError(f"objective {label!r} is given twice")
        labelled[label] = (spec, guide, name)
    if len({name for *_, name in labelled.values()}) < len(labelled):
        raise ConfigError(f"objectives {', '.join(labelled)} do not name distinct run directories")
    return labelled


def _runs(
    base: Config, labelled: dict, seeds: int, out: Path, measured_by: dict, overwrite: bool, retry: bool
) -> list[PlannedRun]:
    """Every run's config and request, seed 0 of each objective first, with its row where this
    process reads one measured for that request (and the run not trained since, nor a divergence
    to ``retry``)."""
    runs = []
    for s in range(seeds):
        for label, (spec, guide, name) in labelled.items():
            run_dir = out / "runs" / f"{name}-seed{s}"
            changes = {"objective": spec, "train.seed": base.train.seed + s, "train.run_dir": str(run_dir)}
            if guide != GRAPH:
                changes["model.guide.kind"] = guide  # the base config's own, with its options, or implied
            config = base.override(changes)
            request = {"config": _without_run_dir(config), **measured_by}
            row = one_run.finished(run_dir, request, overwrite)
            if row is not None and retry and row.get("status") == one_run.DIVERGED:
                row = None
            remeasure = row is not None and one_run.moved_past(run_dir, row)
            runs.append(PlannedRun(label, s, config, request, None if remeasure else row, remeasure))
    return runs


def _without_run_dir(config: Config) -> dict:
    """The config that decides a run's results: its directory may move."""
    values = config.to_dict()
    values["train"].pop("run_dir")
    return values
