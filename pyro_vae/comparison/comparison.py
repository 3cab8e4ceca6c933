"""Compare variational objectives: the same model, data and budget, measured with one yardstick.

    pyro-vae compare --objectives elbo iwae:k=5 iwae_dreg:k=5 --seeds 3 --epochs 100

trains one VAE per objective and seed. Every run has the same network, the same data (split
once, with ``data.split_seed``), the same budget (epochs, or seconds of training) and, for
seed s, the same initialization: ``train.seed = base seed + s`` whatever the objective. The
objective only decides the gradient each run follows, but for one that implies its own guide
(:func:`pyro_vae.inference.objectives.paired_guide`): ``autoencoder`` trains the ``delta`` guide, so
``--objectives elbo autoencoder`` sets the plain autoencoder, labelled ``autoencoder (delta
guide)``, beside the VAE. Each trained model is then measured
the same way on the same validation points x_1..x_N:

* log p̂(x) by a registered estimator (:mod:`pyro_vae.inference.estimators`); by default the IWAE bound
  with K = ``eval_samples`` importance samples (Burda et al. 2016); where it is not defined
  (the delta guide), None, with the reason in ``log_px_absent`` (and the ELBO and KL None);
* the ELBO at one draw z ~ q(z|x) and its two terms, E_q[log p(x|z)] and KL(q(z|x) ‖ p(z)),
  the KL in closed form where one is registered (:func:`pyro_vae.evaluate_elbo`);
* active units: latent dimensions u with Cov_x(E_q[z_u|x]) > 0.01 (Burda et al. 2016, §5.2);
* seconds per training epoch, and peak memory: on CUDA the most memory allocated while the
  run trained; on the CPU the peak resident set size of the whole process, a high-water mark
  that never goes down, so it bounds each run's footprint from above.

Each measure of a run (a mean over the points, or over the epochs for the time) is summarised
over seeds as mean ± standard error, std / √n with n − 1 degrees of freedom. With one seed there
is none over seeds; log p(x) and the ELBO then show their standard error over the points.

Layout of the output directory::

    runs/<objective>-seed<s>/   a training run; result.json once it has been measured
    comparison.md, .csv         the table (one row per objective); .json adds every run's row
    validation_curves.png       validation ELBO and reconstruction term by epoch, every run
    log_likelihood.png          log p̂(x) per objective, ± SE over seeds (each seed a dot), or
                                over the points for one seed
    samples.png                 each objective's samples, from the same draws of the prior
    reconstructions.png         the same validation points reconstructed by each objective
    base_config.toml            the base config with the budget applied

Running the same comparison again (``--out`` the same directory) reuses every run with a
result.json whose recorded config and evaluation match, resumes runs that were interrupted in
training from their checkpoints (exactly: :func:`pyro_vae.train` with ``resume``), and
measures those that were interrupted while being measured.

Under ``torchrun`` every run trains, and is measured, on all the processes in turn
(:mod:`pyro_vae.core.distributed`), rather than each process taking runs of its own: each run is
then the run one process makes, none waits for the slowest objective while others idle, a
comparison of one run is as fast, and an interrupted comparison resumes as on one process.
Rank 0 decides what is to be done from the files, and alone writes.
"""

import json
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from pyro_vae.comparison import report
from pyro_vae.comparison.one_run import memory_measure, train_and_measure
from pyro_vae.comparison.side_by_side import write_side_by_side
from pyro_vae.config.run_config import Config
from pyro_vae.core import distributed
from pyro_vae.core.errors import ConfigError, RunDirError
from pyro_vae.core.files import make_dir
from pyro_vae.core.interrupts import Interrupted
from pyro_vae.core.options import PositiveFloat, PositiveInt, check_value
from pyro_vae.core.registry import Spec
from pyro_vae.data.datasets import load_data
from pyro_vae.inference.estimators import ESTIMATORS
from pyro_vae.inference.objectives import paired_guide, parse_objective
from pyro_vae.training.resolve import resolve_device
from pyro_vae.training.run import METRICS, atomic_write, first_difference, fresh_dir, read_metrics

RESULT = "result.json"
MARKDOWN, CSV, JSON = "comparison.md", "comparison.csv", "comparison.json"
CURVES, LOG_LIKELIHOOD, BASE_CONFIG = "validation_curves.png", "log_likelihood.png", "base_config.toml"
MAX_EPOCHS = 1_000_000  # the epoch cap when a wall-clock budget decides


@dataclass
class Comparison:
    """What :func:`compare` measured: ``rows`` (one per run), ``summary`` (one per objective)."""

    rows: list[dict]
    summary: list[dict]
    dir: Path
    markdown: str


def compare(
    config: Config | None,
    objectives: list[str | dict],
    *,
    seeds: int = 1,
    epochs: int | None = None,
    seconds: float | None = None,
    estimator: str = "is",
    estimator_options: dict | None = None,
    eval_samples: int = 5000,
    eval_points: int | None = None,
    out_dir=None,
    overwrite: bool = False,
    quiet: bool = False,
) -> Comparison:
    """Train one VAE per objective and seed as ``config`` describes, and measure them all alike.

    :param config: the base config (model, data, training); its ``[objective]`` is replaced.
    :param objectives: words such as ``"iwae:k=5"`` or specs such as ``{"kind": "iwae"}``.
    :param seeds: runs per objective, with ``train.seed`` = base seed + 0, 1, …
    :param epochs: epochs per run (default: ``config.train.epochs``).
    :param seconds: seconds of training per run (``train.max_seconds``); with ``epochs`` unset,
        the budget alone decides.
    :param estimator: the registered log p(x) estimator every run is measured with, and
        ``estimator_options`` its options.
    :param eval_samples: K, the estimator's ``samples`` option where it has one (and it is not
        among ``estimator_options``).
    :param eval_points: measure on the first N validation points (default: all of them).
    :param out_dir: the comparison directory (default ``comparisons/<data name>-<date>-<time>``).
    :param overwrite: retrain runs whose recorded config differs, instead of refusing.
    :param quiet: no progress bar.
    """
    # Everything a user can get wrong is checked before anything is written.
    base = config or Config()
    seeds = check_value("seeds", seeds, PositiveInt)
    eval_samples = check_value("eval_samples", eval_samples, PositiveInt)
    options = dict(estimator_options or {})
    ESTIMATORS.get(estimator, key="estimator")
    if "samples" in ESTIMATORS.options(estimator) and "samples" not in options:
        options["samples"] = eval_samples
    options = Spec.parse({"kind": estimator, **options}, "estimator", "estimator").params
    eval_points = check_value("eval_points", eval_points, PositiveInt | None)
    budget = {}
    if epochs is not None:
        budget["train.epochs"] = check_value("epochs", epochs, PositiveInt)
    if seconds is not None:
        budget["train.max_seconds"] = check_value("seconds", seconds, PositiveFloat)
        budget.setdefault("train.epochs", MAX_EPOCHS)
    base = base.override(budget)
    if not objectives:
        raise ConfigError("no objectives to compare")
    parsed, guides, names = {}, {}, {}  # label -> spec, guide kind, safe directory name
    for word in objectives:
        label, spec = parse_objective(word)
        guide = paired_guide(spec, base.model.guide).kind
        name = re.sub(r"[^\w.=,+-]+", "_", label)
        if guide != base.model.guide.kind:
            label += f" ({guide} guide)"  # the objective's own guide, shown where its numbers are
        if label in parsed:
            raise ConfigError(f"objective {label!r} is given twice")
        parsed[label], guides[label], names[label] = spec, guide, name
    if len(set(names.values())) < len(names):
        raise ConfigError(f"objectives {', '.join(parsed)} do not name distinct run directories")
    device = resolve_device(base.train.device)
    w = distributed.join(device, base.train.backend)
    device = distributed.device_of(device)
    data = load_data(base.data)  # one split for every run
    x = data.valid[:eval_points]  # (N, D): the yardstick's points
    out = w.broadcast(Path(out_dir) if out_dir else fresh_dir("comparisons", base.data.name))

    plan = []  # (label, seed, config, request, finished row or None); seed 0 of each first
    for s in range(seeds):
        for label, spec in parsed.items():
            run_dir = out / "runs" / f"{names[label]}-seed{s}"
            run_config = base.override(
                {
                    "objective": spec,
                    "model.guide.kind": guides[label],  # the base config's own, with its options, or implied
                    "train.seed": base.train.seed + s,
                    "train.run_dir": str(run_dir),
                }
            )
            request = {
                "config": _without_run_dir(run_config),
                "estimator": {"kind": estimator, **options},
                "eval_points": len(x),
            }
            plan.append((label, s, run_config, request, _finished(run_dir, request, overwrite)))
    done = w.broadcast([row for *_, row in plan])  # rank 0's reading of the files decides
    plan = [(*entry[:4], row) for entry, row in zip(plan, done, strict=True)]
    if w.main:
        make_dir(out, "comparison directory (--out)")  # every run's config checked, nothing trained yet

    rows: list[dict] = []
    histories: dict[str, list[list[dict]]] = {label: [] for label in parsed}  # label -> runs' metrics
    bar = tqdm(plan, unit="run", disable=quiet or not w.main or not sys.stderr.isatty(), dynamic_ncols=True)
    for label, s, run_config, request, row in bar:
        bar.set_description(f"{label} seed {s}")
        run_dir = Path(run_config.train.run_dir)
        if row is None:
            # for another request: --overwrite retrains; rank 0's answer, once every process has
            # read the run directory (the broadcast gathers from all) and before rank 0 changes it
            stale = w.broadcast(_measured_otherwise(run_dir))
            if w.main:
                (run_dir / RESULT).unlink(missing_ok=True)
            try:
                measured = train_and_measure(run_config, data, x, device, estimator, options, stale)
            except (Interrupted, KeyboardInterrupt) as e:
                signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
                raise Interrupted(
                    f"interrupted by {signal.Signals(signum).name} in the run {label} seed {s} "
                    f"(its checkpoint is kept in {run_dir}); the comparison is in {out}: rerun the same "
                    f"command with --out {out} to resume it",
                    signum,
                ) from None
            row = {"objective": label, "seed": s, **measured}
            if w.main:
                _write(run_dir / RESULT, json.dumps({"request": request, "row": row}, indent=2) + "\n")
        rows.append(row)
        if w.main:
            histories[label].append(read_metrics(run_dir / METRICS))
    if not w.main:
        return Comparison(rows=rows, summary=[], dir=out, markdown="")

    summary = [report.summarize(label, [r for r in rows if r["objective"] == label]) for label in parsed]
    tc = base.train
    budget_words = f"{tc.epochs} epochs" if tc.max_seconds is None else f"{tc.max_seconds:g} s of training"
    if tc.max_seconds is not None and tc.epochs < MAX_EPOCHS:
        budget_words += f" (at most {tc.epochs} epochs)"
    about = {
        "data": base.data.name,
        "seeds": seeds,
        "budget": budget_words,
        "estimator": estimator,
        "estimator_options": options,
        "eval_samples": options.get("samples"),
        "eval_points": len(x),
        "device": str(device),
        "memory": memory_measure(device),
    }
    markdown = report.markdown(about, summary)
    base.save(out / BASE_CONFIG)
    _write(out / MARKDOWN, markdown)
    _write(out / CSV, report.to_csv(summary))
    _write(out / JSON, json.dumps({**about, "summary": summary, "runs": rows}, indent=2) + "\n")
    report.comparison_curves(histories, out / CURVES, key=("valid_elbo", "valid_recon"))
    title = f"log p̂(x) by {report.estimator_words(about)}, on {len(x)} validation points"
    report.log_likelihood_bars(summary, out / LOG_LIKELIHOOD, title=title)
    write_side_by_side(out, {r["objective"]: Path(r["run_dir"]) for r in rows if r["seed"] == 0}, data)
    return Comparison(rows=rows, summary=summary, dir=out, markdown=markdown)


def _measured_otherwise(run_dir: Path) -> bool:
    """Whether the run holds a readable result (which :func:`_finished` found to be another's)."""
    try:
        return "request" in json.loads((run_dir / RESULT).read_text())
    except (OSError, ValueError, TypeError):
        return False


def _finished(run_dir: Path, request: dict, overwrite: bool) -> dict | None:
    """The row of a run already measured for this same ``request``, None if it must be (re)trained."""
    path = run_dir / RESULT
    try:
        saved = json.loads(path.read_text())
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


def _without_run_dir(config: Config) -> dict:
    """The config that decides a run's results: its directory may move."""
    values = config.to_dict()
    values["train"].pop("run_dir")
    return values


def _write(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
