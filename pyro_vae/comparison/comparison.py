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

A run whose training loss becomes NaN or infinite does not stop the comparison: it is
recorded as a result (``status`` "diverged" in its result.json, with the epoch and the loss),
said in one line on stderr naming the objective and the seed (with ``quiet`` too), shown in
the table ("diverged in epoch N") and in the figures (its curves end at its last epoch,
marked ×), and the other runs go on.

Running the same comparison again (``--out`` the same directory) reuses every run with a
result.json whose recorded config and evaluation match (a divergence included, unless
``retry_diverged``), measures again the runs trained further since (``pyro-vae train
--resume``: their metrics go past the step the result recorded), resumes runs that were
interrupted in training from their checkpoints (exactly: :func:`pyro_vae.train` with
``resume``), and measures those that were interrupted while being measured. A ``--out`` that
holds a training run (config.toml, checkpoint.pt) is refused.

:func:`compare` plans (:mod:`pyro_vae.comparison.plan`: everything checked, nothing written
yet), runs (each run trained and measured by :mod:`pyro_vae.comparison.one_run`), then reports
(:mod:`pyro_vae.comparison.report`, :mod:`pyro_vae.comparison.side_by_side`).

Under ``torchrun`` every run trains, and is measured, on all the processes in turn
(:mod:`pyro_vae.core.distributed`), rather than each process taking runs of its own: each run is
then the run one process makes, none waits for the slowest objective while others idle, a
comparison of one run is as fast, and an interrupted comparison resumes as on one process.
Rank 0 decides what is to be done from the files, and alone writes.
"""

import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from pyro_vae.comparison import one_run, report
from pyro_vae.comparison.plan import MAX_EPOCHS, Plan, PlannedRun, plan_comparison
from pyro_vae.comparison.side_by_side import write_side_by_side
from pyro_vae.config.graph import measured
from pyro_vae.config.run_config import Config
from pyro_vae.core import distributed
from pyro_vae.core.files import atomic_write
from pyro_vae.core.interrupts import Interrupted
from pyro_vae.training.run import METRICS, read_metrics

MARKDOWN, CSV, JSON = "comparison.md", "comparison.csv", "comparison.json"
CURVES, LOG_LIKELIHOOD, BASE_CONFIG = "validation_curves.png", "log_likelihood.png", "base_config.toml"


@dataclass
class Comparison:
    """What :func:`compare` measured: ``rows`` (one per run), ``summary`` (one per objective)."""

    rows: list[dict]
    summary: list[dict]
    dir: Path
    markdown: str


def compare(
    config: Config | dict | str | os.PathLike | None,
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
    retry_diverged: bool = False,
    quiet: bool = False,
) -> Comparison:
    """Train one VAE per objective and seed as ``config`` describes, and measure them all alike.

    :param config: the base config (model, data, training); its ``[objective]`` is replaced. A
        :class:`~pyro_vae.Config`, a dict of sections, a path to a ``.toml`` or ``.json`` file, or
        None for the defaults (:func:`pyro_vae.config.run_config.as_config`).
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
    :param retry_diverged: train again the runs recorded as diverged, instead of keeping the
        divergence as their result.
    :param quiet: no progress bar (a divergence is still said).
    """
    plan = plan_comparison(
        config,
        objectives,
        seeds=seeds,
        epochs=epochs,
        seconds=seconds,
        estimator=estimator,
        estimator_options=estimator_options,
        eval_samples=eval_samples,
        eval_points=eval_points,
        out_dir=out_dir,
        overwrite=overwrite,
        retry_diverged=retry_diverged,
    )
    rows, histories = _run(plan, quiet)
    if not distributed.world().main:
        return Comparison(rows=rows, summary=[], dir=plan.out, markdown="")
    return _report(plan, rows, histories)


def _run(plan: Plan, quiet: bool) -> tuple[list[dict], dict[str, list[list[dict]]]]:
    """Every run's row, trained and measured where it was not; and (on rank 0) every run's
    metrics, label -> one list of rows per seed."""
    w = distributed.world()
    rows: list[dict] = []
    histories: dict[str, list[list[dict]]] = {label: [] for label in plan.labels}
    bar = tqdm(
        plan.runs, unit="run", disable=quiet or not w.main or not sys.stderr.isatty(), dynamic_ncols=True
    )
    for run in bar:
        bar.set_description(f"{run.label} seed {run.seed}")
        row = run.row if run.row is not None else _train_and_measure(plan, run)
        if w.main and row.get("status") == one_run.DIVERGED:
            kept = "" if run.row is None else "; kept as its result: pass --retry-diverged to train it again"
            where = Path(run.config.train.run_dir) / one_run.RESULT
            tqdm.write(
                f"pyro-vae: warning: {run.label} seed {run.seed} {one_run.diverged_words(row)}; "
                f"recorded in {where}{kept}",
                file=sys.stderr,
            )
        rows.append(row)
        if w.main:  # none where a run that diverged in its first epoch left no metrics
            metrics = Path(run.config.train.run_dir) / METRICS
            histories[run.label].append(read_metrics(metrics) if metrics.exists() else [])
    return rows, histories


def _train_and_measure(plan: Plan, run: PlannedRun) -> dict:
    """Train (or resume) one run and measure it, or measure again one trained further since;
    its result (or its divergence) is written beside it."""
    w = distributed.world()
    run_dir = Path(run.config.train.run_dir)
    if run.remeasure:
        measured = one_run.measure_again(run.config, plan.x, plan.device, plan.estimator, plan.options)
        return _write_row(run, measured)
    # for another request: --overwrite retrains; rank 0's answer, once every process has read
    # the run directory (the broadcast gathers from all) and before rank 0 changes it
    stale = w.broadcast(one_run.measured_otherwise(run_dir))
    if w.main:
        (run_dir / one_run.RESULT).unlink(missing_ok=True)
    try:
        measured = one_run.train_and_measure(
            run.config, plan.data, plan.x, plan.device, plan.estimator, plan.options, stale
        )
    except (Interrupted, KeyboardInterrupt) as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        raise Interrupted(
            f"interrupted by {signal.Signals(signum).name} in the run {run.label} seed {run.seed} "
            f"(its checkpoint is kept in {run_dir}); the comparison is in {plan.out}: rerun the same "
            f"command with --out {plan.out} to resume it",
            signum,
        ) from None
    return _write_row(run, measured)


def _write_row(run: PlannedRun, measured: dict) -> dict:
    row = {"objective": run.label, "seed": run.seed, **measured}
    if distributed.world().main:
        one_run.write_result(Path(run.config.train.run_dir), run.request, row)
    return row


def _report(plan: Plan, rows: list[dict], histories: dict[str, list[list[dict]]]) -> Comparison:
    """The table (Markdown, CSV, JSON), the figures and the base config, written in the
    comparison directory."""
    summary = [report.summarize(label, [r for r in rows if r["objective"] == label]) for label in plan.labels]
    tc, out = plan.base.train, plan.out
    budget_words = f"{tc.epochs} epochs" if tc.max_seconds is None else f"{tc.max_seconds:g} s of training"
    if tc.max_seconds is not None and tc.epochs < MAX_EPOCHS:
        budget_words += f" (at most {tc.epochs} epochs)"
    about = {
        "data": plan.base.data.label,
        "seeds": plan.seeds,
        "budget": budget_words,
        "estimator": plan.estimator,
        "estimator_options": plan.options,
        "eval_samples": plan.options.get("samples"),
        "eval_points": len(plan.x),
        "device": str(plan.device),
        "memory": one_run.memory_measure(plan.device),
        "measures": measured(plan.base.model.variables),  # log p(x), or a conditional graph's
    }
    markdown = report.markdown(about, summary)
    plan.base.save(out / BASE_CONFIG)
    _write(out / MARKDOWN, markdown)
    _write(out / CSV, report.to_csv(summary))
    _write(out / JSON, json.dumps({**about, "summary": summary, "runs": rows}, indent=2) + "\n")
    diverged = {(r["objective"], r["seed"]): r["diverged_epoch"] for r in rows if _diverged(r)}
    report.comparison_curves(histories, out / CURVES, key=("valid_elbo", "valid_recon"), diverged=diverged)
    title = f"{about['measures']} by {report.estimator_words(about)}, on {len(plan.x)} validation points"
    report.log_likelihood_bars(summary, out / LOG_LIKELIHOOD, title=title)
    shown: dict[str, Path] = {}  # each objective's first seed that did not diverge
    for r in rows:
        if not _diverged(r):
            shown.setdefault(r["objective"], Path(r["run_dir"]))
    write_side_by_side(out, {label: shown[label] for label in plan.labels if label in shown}, plan.data)
    return Comparison(rows=rows, summary=summary, dir=out, markdown=markdown)


def _diverged(row: dict) -> bool:
    return row.get("status") == one_run.DIVERGED


def _write(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
