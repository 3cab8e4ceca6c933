"""The static-MNIST table of the VAE papers, reproduced: train every config in examples/paper/,
estimate log p(x) of each by importance sampling, and set the results beside the published ones.

    pyro-vae data get binarized_mnist
    python benchmarks/paper_table.py --runs ~/pyro-vae-paper --budget 3600 --budget vae=none \\
        --out table.md --gallery docs/images

Every row and every published figure says which binarization of MNIST it is on. The configs
train on the static one (Larochelle & Murray 2011), and each row sits beside the figure its
paper published for that data. ``--binarization dynamic`` trains the rows whose paper also
reports MNIST binarized afresh as it is drawn (Burda et al. 2016's Table 1) that way instead:
grey MNIST with ``data.binarize = "dynamic"`` and 400 of the 60000 training images held out, as
Burda et al. hold them out, in ``RUNS/ROW-dynamic``, beside that figure. The two are not
comparable: on the static data Burda et al.'s models overfit and score about 2 nats lower.

Each row is ``examples/paper/ROW.toml``, trained in ``RUNS/ROW``. Rerunning continues what is
unfinished: a run that reached ``train.epochs`` or stopped early (the VampPrior paper's
protocol, ``train.patience``) is left as it is; one interrupted is resumed from its checkpoint
(bit for bit, as ``pyro-vae train --resume``), and one stopped by its budget trains on from
there when the budget is raised. ``--budget SECONDS`` (or ``ROW=SECONDS``, ``none`` for no
limit) is a row's total seconds of training steps, ``train.max_seconds``; a budget ends the
epoch it runs out in.

log p(x) is estimated for the epoch with the best validation ELBO (``best.pt``, which early
stopping reports), with K = ``--samples`` (5000, as the papers) importance samples on every
validation point (``--points N`` or ``ROW=N``: the first N, for a quick figure), and on the test
split where the data has one (the fetched amat files do; the papers report test). Each
estimate is kept in ``RUNS/ROW/evaluation-is-SPLIT-best.json`` and reused while it is of the
same epoch, K and points. The table (markdown) is printed, with the machine, and written to
``--out``; ``--gallery DIR`` draws samples and reconstructions of the row with the best
validation log p(x) into DIR, and every row's validation ELBO by epoch.
"""

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyro
import torch
from step_overhead import cpu_model  # beside this file: benchmarks/ is the script's own directory
from tqdm.auto import tqdm

import pyro_vae
from pyro_vae.comparison import report
from pyro_vae.config.run_config import Config
from pyro_vae.data.datasets import load_data
from pyro_vae.evaluation.evaluate import evaluate_run
from pyro_vae.pictures import plots
from pyro_vae.training.checkpoint import load_checkpoint
from pyro_vae.training.run import Run, read_metrics

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "examples" / "paper"


@dataclass(frozen=True)
class Published:
    #: the published test log p(x), nats
    value: float
    source: str
    #: the binarization of MNIST it is on: "static" (Larochelle & Murray 2011) or "dynamic"
    data: str


@dataclass(frozen=True)
class Row:
    title: str
    #: the figure on static MNIST, the data of the row's config
    static: Published
    #: the figure on MNIST binarized afresh as it is drawn, where the paper reports one
    dynamic: Published | None = None


def vamp(value: float) -> Published:
    return Published(value, "Tomczak & Welling 2018, Table 2", "static")


def burda(static: float, dynamic: float) -> tuple[Published, Published]:
    """Burda et al. (2016, arXiv:1509.00519): one stochastic layer, on the fixed binarization
    (Appendix D, as quoted by github.com/nbip/IWAE and pythae's reproduced_iwae model card) and
    on MNIST binarized afresh (Table 1)."""
    return (
        Published(static, "Burda et al. 2016, Appendix D", "static"),
        Published(dynamic, "Burda et al. 2016, Table 1", "dynamic"),
    )


ROWS = {
    "vae": Row("VAE, standard prior", vamp(-88.56)),
    "iwae_k5": Row("IWAE, k = 5", *burda(-87.63, -85.54)),
    "iwae_k50": Row("IWAE, k = 50", *burda(-87.10, -84.78)),
    "vamp": Row("VAE, VampPrior", vamp(-85.57)),
    "hvae_vamp": Row("HVAE (L = 2), VampPrior", vamp(-83.19)),
}
#: what --binarization dynamic changes in a row's config: grey MNIST, a fresh Bernoulli draw of
#: every training image each epoch, and 400 of the 60000 held out for validation (Burda et al.)
DYNAMIC = {"data.name": "mnist", "data.binarize": "dynamic", "data.valid_fraction": 400 / 60000}


def published(name: str, binarization: str) -> Published:
    figure = ROWS[name].static if binarization == "static" else ROWS[name].dynamic
    assert figure is not None, (name, binarization)
    return figure


def run_name(name: str, binarization: str) -> str:
    """The directory in RUNS of row ``name`` trained on ``binarization``."""
    return name if binarization == "static" else f"{name}-dynamic"


def data_words(config: Config) -> str:
    """Which data a run trained on, in the table's words."""
    if config.data.binarize == "dynamic":
        return f"dynamic ({config.data.name})"
    if config.data.name == "binarized_mnist":
        return "static"
    return f"{config.data.name}, as loaded"


def recorded(run_dir: Path, checkpoint: str = "checkpoint.pt") -> tuple[Config, dict]:
    """The config and training state (epoch, step, seconds, best epoch …) a checkpoint holds."""
    payload = load_checkpoint(run_dir / checkpoint)
    return Config.from_dict(payload["config"]), payload["training"]


def finished(run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` trains no more ("reached N epochs", "stopped early …"), or
    None while it would go on (no run yet, or one stopped by its budget or a signal)."""
    if not (run_dir / "checkpoint.pt").is_file():
        return None
    config, state = recorded(run_dir)
    tc = config.train
    if state["epoch"] >= tc.epochs:
        return f"reached {tc.epochs} epochs"
    best = state["best_epoch"]
    if tc.patience and best is not None and state["epoch"] - best >= tc.patience:
        return f"stopped early at epoch {state['epoch']}"
    return None


def train_row(
    name: str,
    runs: Path,
    budget: float | None,
    data_path: str | None,
    device: str,
    quiet: bool,
    binarization: str = "static",
) -> None:
    """Train row ``name`` on ``binarization`` in ``runs/`` :func:`run_name` within ``budget``
    seconds of steps, or continue it."""
    run_dir = runs / run_name(name, binarization)
    why = finished(run_dir)
    if why is not None:
        print(f"{name}: trained ({why}); {run_dir}", file=sys.stderr)
        return
    limit = {"train.max_seconds": budget, "train.device": device}
    if (run_dir / "checkpoint.pt").is_file():
        config, state = recorded(run_dir)
        if budget is not None and state["seconds"] >= budget:
            print(f"{name}: its budget of {budget:g} s is spent; {run_dir}", file=sys.stderr)
            return
        pyro_vae.train(config.override(limit), resume=run_dir, quiet=quiet)
        return
    overrides = {**limit, "train.run_dir": str(run_dir)}
    if binarization == "dynamic":
        overrides.update(DYNAMIC)
    if data_path is not None:
        overrides["data.path"] = data_path
    pyro_vae.train(Config.load(PAPER / f"{name}.toml").override(overrides), quiet=quiet)


def estimate(run_dir: Path, split: str, samples: int, points: int | None, device: str, quiet: bool) -> dict:
    """log p(x) of ``best.pt`` on the first ``points`` points of ``split`` (all when None), with
    K = ``samples``; kept in the run directory and reused while it is of the same epoch."""
    kept = run_dir / f"evaluation-is-{split}-best.json"
    epoch = recorded(run_dir, "best.pt")[1]["epoch"]
    if kept.is_file():
        record = json.loads(kept.read_text())
        # a record evaluate wrote without this script has no requested_points: estimate again
        if (record["epoch"], record["num_samples"], record.get("requested_points", 0)) == (
            epoch,
            samples,
            points,
        ):
            return record
    with tqdm(desc=f"{run_dir.name} {split}", unit="point", disable=quiet) as bar:
        record, _ = evaluate_run(
            run_dir,
            split=split,
            estimator="is",
            points=points,
            options={"samples": samples},
            checkpoint="best.pt",
            device=device,
            progress=bar.update,
        )
    record["requested_points"] = points
    kept.write_text(json.dumps(record, indent=2) + "\n")
    return record


def summary(name: str, run_dir: Path, estimates: dict[str, dict], binarization: str = "static") -> dict:
    """One table row's numbers: how far training went and what it reached, and the published
    figure on the same binarization."""
    config, state = recorded(run_dir)
    why = finished(run_dir)
    budget = config.train.max_seconds
    stopped = why or (f"budget of {budget:g} s" if budget else "interrupted")
    valid = estimates["valid"]
    figure = published(name, binarization)
    return {
        "row": name,
        "run": run_dir.name,
        "title": ROWS[name].title,
        "data": data_words(config),
        "objective": config.objective.to_dict(),
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "planned_epochs": config.train.epochs,
        "stopped": stopped,
        "train_seconds": state["seconds"],
        "valid_elbo": valid["elbo"],
        "valid_log_px": valid["log_px"],
        "valid_log_px_stderr": valid["log_px_stderr"],
        "valid_points": valid["points"],
        "test_log_px": estimates["test"]["log_px"] if "test" in estimates else None,
        "test_log_px_stderr": estimates["test"]["log_px_stderr"] if "test" in estimates else None,
        "test_points": estimates["test"]["points"] if "test" in estimates else None,
        "eval_seconds": sum(e["seconds"] for e in estimates.values()),
        "published": figure.value,
        "source": figure.source,
        "published_data": figure.data,
    }


def machine(device: str) -> str:
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, device {device}; "
        f"python {platform.python_version()}, torch {torch.__version__}, pyro {pyro.__version__}"
    )


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def table(rows: list[dict], samples: int) -> str:
    """The markdown table: what each row reached, beside the published test log p(x)."""
    head = (
        "| row | data | epochs (best) | training steps | valid ELBO | valid log p(x) | test log p(x) "
        "| estimate | published (test), data |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    )
    lines = [head]
    for r in rows:
        test = "—" if r["test_log_px"] is None else f"{r['test_log_px']:.2f} ± {r['test_log_px_stderr']:.2f}"
        if r["test_points"] is not None:
            test += f" ({r['test_points']})"
        lines.append(
            f"| {r['title']} (`{r['row']}.toml`) | {r['data']} | {r['epochs']} ({r['best_epoch']}) | "
            f"{_hours(r['train_seconds'])}, {r['stopped']} | {r['valid_elbo']:.2f} | "
            f"**{r['valid_log_px']:.2f}** ± {r['valid_log_px_stderr']:.2f} ({r['valid_points']}) | {test} | "
            f"{_hours(r['eval_seconds'])} | {r['published']:.2f} ({r['source']}), {r['published_data']} |"
        )
    lines.append("")
    lines.append(
        f"log p(x) in nats per point, importance sampling with K = {samples}, ± the standard error "
        "over the points (how many in brackets); the validation ELBO of the same epoch (best.pt) "
        "on the same points. Training steps: the seconds of steps (not of the per-epoch "
        "validation) and why training stopped; estimate: the seconds log p(x) took. Data: static is "
        "the fixed binarization of Larochelle & Murray (2011); dynamic a fresh Bernoulli draw of grey "
        'MNIST every epoch (data.binarize = "dynamic"), its validation and test images drawn once.'
    )
    return "\n".join(lines)


def gallery(name: str, run_dir: Path, out: Path) -> list[Path]:
    """Samples from p(z) and reconstructions of validation points, by ``run_dir``'s best.pt."""
    run = Run.load(run_dir, checkpoint="best.pt")
    assert run.vae is not None
    data = load_data(run.config.data)
    pyro.set_rng_seed(0)
    with torch.no_grad():
        samples = run.vae.sample(64)
        recons = run.vae.reconstruct(data.valid[:16])
    out.mkdir(parents=True, exist_ok=True)
    title = f"{ROWS[name].title}: E[x|z], z ~ p(z)"
    return [
        plots.image_grid(samples, data.image_shape, out / "paper_samples.png", title=title),
        plots.reconstructions(
            data.valid[:16],
            recons,
            data.image_shape,
            out / "paper_reconstructions.png",
            title="Validation points and their reconstructions (E[x|z], z ~ q(z|x))",
        ),
    ]


def per_row(values: list[str], flag: str, kind: type) -> dict[str | None, float | int | None]:
    """A flag's values: ``N`` for every row (key None), ``ROW=N`` for one; ``none``: no limit."""
    out: dict[str | None, float | int | None] = {}
    for value in values:
        name, _, number = value.rpartition("=")
        if name and name not in ROWS:
            raise SystemExit(f"{flag} {value}: unknown row {name!r}; rows: {', '.join(ROWS)}")
        try:
            out[name or None] = None if number == "none" else kind(number)
        except ValueError:
            raise SystemExit(f"{flag} {value}: expected a number or none") from None
    return out


def chosen_rows(rows: str | None, binarization: str) -> list[str]:
    """The rows ``--rows`` names (by default every row with a published figure on
    ``binarization``), refused in one line if one is unknown or has no such figure."""
    offered = [n for n, row in ROWS.items() if binarization == "static" or row.dynamic is not None]
    names = offered if rows is None else [n.strip() for n in rows.split(",") if n.strip()]
    for name in names:
        if name not in ROWS:
            raise SystemExit(f"--rows: unknown row {name!r}; rows: {', '.join(ROWS)}")
        if name not in offered:
            raise SystemExit(
                f"--rows {name} --binarization {binarization}: its paper publishes no figure on "
                f"{binarization} MNIST; rows that have one: {', '.join(offered)}"
            )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="where the runs live (not the repository)")
    parser.add_argument(
        "--rows", help=f"rows, comma-separated (default: those of --binarization): {','.join(ROWS)}"
    )
    parser.add_argument(
        "--binarization",
        choices=["static", "dynamic"],
        default="static",
        help="static: the configs' fixed binarization; dynamic: grey MNIST drawn afresh every epoch",
    )
    parser.add_argument("--budget", action="append", default=[], help="SECONDS or ROW=SECONDS of training")
    parser.add_argument("--points", action="append", default=[], help="N or ROW=N points per split (all)")
    parser.add_argument("--samples", type=int, default=5000, help="importance samples per point (5000)")
    parser.add_argument("--data-path", help="train on this array file instead of the fetched dataset")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--no-train", action="store_true", help="only evaluate and tabulate runs that exist")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    parser.add_argument("--gallery", type=Path, help="draw the best row's samples and reconstructions here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    names = chosen_rows(args.rows, args.binarization)
    limits = per_row(args.budget, "--budget", float)
    counts = per_row(args.points, "--points", int)
    if args.threads:
        torch.set_num_threads(args.threads)

    start, rows = time.perf_counter(), []
    for name in names:
        run_dir = args.runs / run_name(name, args.binarization)
        if not args.no_train:
            budget = limits.get(name, limits.get(None))
            assert budget is None or isinstance(budget, float)
            train_row(name, args.runs, budget, args.data_path, args.device, args.quiet, args.binarization)
        if not (run_dir / "best.pt").is_file():
            print(f"{name}: no run in {run_dir}", file=sys.stderr)
            continue
        data = load_data(recorded(run_dir)[0].data)
        splits = [s for s in ("valid", "test") if getattr(data, s) is not None]
        count = counts.get(name, counts.get(None))
        points = None if count is None else int(count)
        estimates = {s: estimate(run_dir, s, args.samples, points, args.device, args.quiet) for s in splits}
        rows.append(summary(name, run_dir, estimates, args.binarization))
    text = f"{table(rows, args.samples)}\n\nMachine: {machine(args.device)}.\n"
    print(text)
    print(f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    kept = args.runs / f"{run_name('table', args.binarization)}.json"  # table.json, table-dynamic.json
    kept.write_text(json.dumps(rows, indent=2) + "\n")
    if args.out:
        args.out.write_text(text)
    if args.gallery and rows:
        best = max(rows, key=lambda r: r["valid_log_px"] if math.isfinite(r["valid_log_px"]) else -math.inf)
        histories = {r["title"]: [read_metrics(args.runs / r["run"] / "metrics.jsonl")] for r in rows}
        pictures = gallery(best["row"], args.runs / best["run"], args.gallery)
        for path in [
            *pictures,
            report.comparison_curves(histories, args.gallery / "paper_curves.png", legend="row"),
        ]:
            print(path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
