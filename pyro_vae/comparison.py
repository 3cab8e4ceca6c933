"""Compare variational objectives: the same model, data and budget, measured with one yardstick.

    pyro-vae compare --objectives elbo iwae:k=5 iwae_dreg:k=5 --seeds 3 --epochs 100

trains one VAE per objective and seed. Every run has the same network, the same data (split
once, with ``data.split_seed``), the same budget (epochs, or seconds of training) and, for
seed s, the same initialization: ``train.seed = base seed + s`` whatever the objective. The
objective only decides the gradient each run follows. Each trained model is then measured
the same way on the same validation points x_1..x_N:

* log p̂(x): the IWAE bound with K = ``eval_samples`` importance samples (Burda et al. 2016),
  the log-likelihood estimate (:func:`pyro_vae.log_marginal_likelihood`);
* the ELBO at one draw z ~ q(z|x) and its two terms, E_q[log p(x|z)] and KL(q(z|x) ‖ p(z)),
  the KL in closed form where one is registered (:func:`pyro_vae.evaluate_elbo`);
* active units: latent dimensions u with Cov_x(E_q[z_u|x]) > 0.01 (Burda et al. 2016, §5.2);
* seconds per training epoch, and peak memory: on CUDA the most memory allocated while the
  run trained; on the CPU the peak resident set size of the whole process, a high-water mark
  that never goes down, so it bounds each run's footprint from above.

Each measure of a run (a mean over the points, or over the epochs for the time) is summarised
over seeds as mean ± standard error, std / √n with n − 1 degrees of freedom (none for one seed).

Layout of the output directory::

    runs/<objective>-seed<s>/   a training run; result.json once it has been measured
    comparison.md, .csv         the table (one row per objective); .json adds every run's row
    validation_curves.png       validation ELBO by epoch, every run
    log_likelihood.png          log p̂(x) per objective, ± SE over seeds, each seed a dot
    base_config.toml            the base config with the budget applied

Running the same comparison again reuses every run with a result.json whose recorded config
and evaluation match, and retrains runs that were interrupted before theirs was written.
"""

import csv
import io
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import pyro
import torch
from tqdm.auto import tqdm

from . import plots
from .config import Config, PositiveFloat, PositiveInt, Spec, check_value, parse_value, show
from .data import load_data
from .errors import ConfigError, RunDirError
from .evaluation import active_units, evaluate_elbo, log_marginal_likelihood, summarize
from .objectives import make_objective
from .run import METRICS, atomic_write, fresh_dir, read_metrics
from .training import resolve_device, train

RESULT = "result.json"
MARKDOWN, CSV, JSON = "comparison.md", "comparison.csv", "comparison.json"
CURVES, LOG_LIKELIHOOD, BASE_CONFIG = "validation_curves.png", "log_likelihood.png", "base_config.toml"
MAX_EPOCHS = 1_000_000  # the epoch cap when a wall-clock budget decides
ALIASES = {"k": "particles"}
#: the summarised metrics: row key, Markdown header, format
METRICS_SHOWN = (
    ("log_px", "log p(x)", ".2f"),
    ("valid_elbo", "ELBO", ".2f"),
    ("recon", "reconstruction", ".2f"),
    ("kl", "KL", ".2f"),
    ("active_units", "active units", ".1f"),
    ("epochs", "epochs", ".1f"),
    ("seconds_per_epoch", "s / epoch", ".3f"),
    ("peak_memory_mb", "peak memory (MB)", ".0f"),
)


@dataclass
class Comparison:
    """What :func:`compare` measured: ``rows`` (one per run), ``summary`` (one per objective)."""

    rows: list[dict]
    summary: list[dict]
    dir: Path
    markdown: str


def parse_objective(word: str | dict) -> tuple[str, dict]:
    """``"iwae:k=5"`` → its label and ``{"kind": "iwae", "particles": 5}``, validated.

    A word is ``NAME[:key=value[,key=value...]]``; ``k`` stands for ``particles``. A dict is
    a spec, ``{"kind": "iwae", "particles": 5}``. Raises :class:`ConfigError` naming the word.
    """
    if isinstance(word, dict):
        options = dict(word)
        name = str(options.pop("kind", ""))
        pairs = [(k, show(v)) for k, v in options.items()]
    else:
        name, _, rest = word.partition(":")
        items = [item.partition("=") for item in rest.split(",")] if rest.strip() else []
        if any(not eq or not k.strip() for k, eq, _ in items):
            raise ConfigError(f"objective {word!r}: expected NAME or NAME:key=value[,key=value...]")
        pairs = [(k.strip(), v.strip()) for k, _, v in items]
        options = {k: parse_value(v) for k, v in pairs}
    name = name.strip()
    label = name + "".join((":" if i == 0 else ",") + f"{k}={v}" for i, (k, v) in enumerate(pairs))
    spec = {"kind": name}
    for key, value in options.items():
        key = ALIASES.get(key, key)
        if key in spec:
            raise ConfigError(f"objective {label!r}: {key} is given twice")
        spec[key] = value
    try:
        spec = Spec.parse(spec, "objective", "objective").to_dict()
        make_objective(**spec)  # the checks an objective makes when built, such as renyi's alpha != 1
    except ConfigError as e:
        raise ConfigError(f"objective {label!r}: {e}") from None
    return label, spec


def compare(
    config: Config | None,
    objectives: list[str | dict],
    *,
    seeds: int = 1,
    epochs: int | None = None,
    seconds: float | None = None,
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
    :param eval_samples: K, the importance samples of the log-likelihood estimate.
    :param eval_points: measure on the first N validation points (default: all of them).
    :param out_dir: the comparison directory (default ``comparisons/<data name>-<date>-<time>``).
    :param overwrite: retrain runs whose recorded config differs, instead of refusing.
    :param quiet: no progress bar.
    """
    # Everything a user can get wrong is checked before anything is written.
    base = config or Config()
    seeds = check_value("seeds", seeds, PositiveInt)
    eval_samples = check_value("eval_samples", eval_samples, PositiveInt)
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
    parsed = {}  # label -> spec
    for word in objectives:
        label, spec = parse_objective(word)
        if label in parsed:
            raise ConfigError(f"objective {label!r} is given twice")
        parsed[label] = spec
    names = {label: re.sub(r"[^\w.=,+-]+", "_", label) for label in parsed}  # safe directory names
    if len(set(names.values())) < len(names):
        raise ConfigError(f"objectives {', '.join(parsed)} do not name distinct run directories")
    device = resolve_device(base.train.device)
    data = load_data(base.data)  # one split for every run
    x = data.valid[:eval_points]  # (N, D): the yardstick's points
    out = Path(out_dir) if out_dir else fresh_dir("comparisons", base.data.name)

    plan = []  # (label, seed, config, request, finished row or None); seed 0 of each first
    for s in range(seeds):
        for label, spec in parsed.items():
            run_dir = out / "runs" / f"{names[label]}-seed{s}"
            run_config = base.override(
                {"objective": spec, "train.seed": base.train.seed + s, "train.run_dir": str(run_dir)}
            )
            request = {
                "config": _without_run_dir(run_config),
                "eval_samples": eval_samples,
                "eval_points": len(x),
            }
            plan.append((label, s, run_config, request, _finished(run_dir, request, overwrite)))

    rows, histories = [], {label: [] for label in parsed}
    bar = tqdm(plan, unit="run", disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True)
    for label, s, run_config, request, row in bar:
        bar.set_description(f"{label} seed {s}")
        run_dir = Path(run_config.train.run_dir)
        if row is None:
            (run_dir / RESULT).unlink(missing_ok=True)
            row = {
                "objective": label,
                "seed": s,
                **_train_and_measure(run_config, data, x, device, eval_samples),
            }
            _write(run_dir / RESULT, json.dumps({"request": request, "row": row}, indent=2) + "\n")
        rows.append(row)
        histories[label].append(read_metrics(run_dir / METRICS))

    summary = [_summarize(label, [r for r in rows if r["objective"] == label]) for label in parsed]
    tc = base.train
    budget_words = f"{tc.epochs} epochs" if tc.max_seconds is None else f"{tc.max_seconds:g} s of training"
    if tc.max_seconds is not None and tc.epochs < MAX_EPOCHS:
        budget_words += f" (at most {tc.epochs} epochs)"
    about = {
        "data": base.data.name,
        "seeds": seeds,
        "budget": budget_words,
        "eval_samples": eval_samples,
        "eval_points": len(x),
        "device": str(device),
        "memory": _memory_measure(device),
    }
    markdown = _markdown(about, summary)
    base.save(out / BASE_CONFIG)
    _write(out / MARKDOWN, markdown)
    _write(out / CSV, _csv(summary))
    _write(out / JSON, json.dumps({**about, "summary": summary, "runs": rows}, indent=2) + "\n")
    plots.comparison_curves(histories, out / CURVES)
    title = f"log p̂(x): the IWAE bound with K = {eval_samples}, on {len(x)} validation points"
    plots.log_likelihood_bars(summary, out / LOG_LIKELIHOOD, title=title)
    return Comparison(rows=rows, summary=summary, dir=out, markdown=markdown)


def _train_and_measure(
    config: Config, data, x: torch.Tensor, device: torch.device, eval_samples: int
) -> dict:
    """Train one run quietly, then measure it on the points ``x``: one row of numbers."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run = train(config, data=data, overwrite=True, quiet=True)
    memory = _peak_memory_mb(device)
    vae, x = run.vae, x.to(device)
    pyro.set_rng_seed(config.train.seed)  # the measurement's draws are reproducible
    elbo = summarize(evaluate_elbo(vae.model, vae.guide, x, batch_size=config.train.eval_batch_size))
    ml = log_marginal_likelihood(vae.model, vae.guide, x, num_samples=eval_samples)
    epoch_seconds = [row["seconds"] for row in run.history if row["epoch"] >= 1]
    return _finite(
        {
            "train_seed": config.train.seed,
            "run_dir": str(run.dir),
            "log_px": ml.mean,
            "log_px_stderr": ml.stderr,  # over the points
            "log_px_mc_stderr": (ml.mc_stderr.square().sum().sqrt() / len(x)).item(),  # of the mean
            "ess_mean": ml.ess.mean().item(),
            "valid_elbo": elbo["elbo"],
            "valid_elbo_stderr": elbo["elbo_stderr"],
            "recon": elbo["recon"],
            "kl": elbo["kl"],
            "active_units": active_units(vae.encode, x),
            "epochs": run.history[-1]["epoch"],
            "train_seconds": sum(epoch_seconds),
            "seconds_per_epoch": statistics.fmean(epoch_seconds),
            "peak_memory_mb": memory,
            "memory": _memory_measure(device),
            "eval_samples": eval_samples,
            "eval_points": len(x),
        }
    )


def _finished(run_dir: Path, request: dict, overwrite: bool) -> dict | None:
    """The row of a run already measured for this same ``request``, None if it must be (re)trained."""
    path = run_dir / RESULT
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved["request"] == request:
        return saved["row"]
    if overwrite:
        return None
    raise RunDirError(
        f"{str(run_dir)!r} holds a run measured with another config "
        f"({_difference(saved['request'], request)}); pass --overwrite to retrain it, or choose another --out"
    )


def _summarize(label: str, rows: list[dict]) -> dict:
    """Mean and standard error over seeds of each metric shown, and each seed's log p̂(x)."""
    out = {"objective": label, "seeds": len(rows)}
    for key, _, _ in METRICS_SHOWN:
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = statistics.fmean(values) if values else None
        out[f"{key}_se"] = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    out["log_px_per_seed"] = [r["log_px"] for r in rows]
    return out


def _markdown(about: dict, summary: list[dict]) -> str:
    """The table, with a paragraph saying how every number was measured."""
    cell = lambda m, se, f: "—" if m is None else f"{m:{f}} ± " + ("—" if se is None else f"{se:{f}}")  # noqa: E731
    header = ["objective", "seeds", *(h for _, h, _ in METRICS_SHOWN)]
    seeds = "seed 0" if about["seeds"] == 1 else f"seeds 0..{about['seeds'] - 1}"
    lines = [
        f"# Objectives compared on {about['data']}",
        "",
        f"Every run: the same network and data, {about['budget']}, {seeds} "
        f"(the same initialization for each seed). Measured on {about['eval_points']} validation points: "
        f"log p(x) is the IWAE bound with K = {about['eval_samples']} importance samples; the ELBO, "
        f"its reconstruction and KL terms use one sample; nats per data point. Peak memory: "
        f"{about['memory']}. Mean ± standard error over seeds.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in summary:
        cells = [cell(row[k], row[f"{k}_se"], f) for k, _, f in METRICS_SHOWN]
        lines.append("| " + " | ".join([row["objective"], str(row["seeds"]), *cells]) + " |")
    return "\n".join(lines) + "\n"


def _csv(summary: list[dict]) -> str:
    columns = ["objective", "seeds", *(c for k, _, _ in METRICS_SHOWN for c in (k, f"{k}_se"))]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary)
    return text.getvalue()


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource  # POSIX only

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _memory_measure(device: torch.device) -> str:
    if device.type == "cuda":
        return "CUDA memory allocated while training (torch.cuda.max_memory_allocated)"
    return "peak resident set size of the whole process (CPU high-water mark, not per run)"


def _without_run_dir(config: Config) -> dict:
    """The config that decides a run's results: its directory may move."""
    values = config.to_dict()
    values["train"].pop("run_dir")
    return values


def _difference(old: dict, new: dict, prefix: str = "") -> str:
    """The first key whose value differs, as ``key: old → new``."""
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            if a != b:
                return _difference(a, b, f"{prefix}{key}.")
        elif a != b:
            return f"{prefix}{key}: {show(a)} → {show(b)}"
    return "nothing"


def _finite(row: dict) -> dict:
    """NaN and infinities become None (JSON has neither)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def _write(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
