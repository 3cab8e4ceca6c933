"""The report of a comparison: mean ± standard error over seeds, as Markdown, CSV and figures."""

import csv
import io
import math
import statistics
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .plots import curve, focus, save_figure

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


def estimator_words(about: dict) -> str:
    """How log p(x) was estimated, in words: "the IWAE bound with K = 5000 importance samples"."""
    name, options = about["estimator"], about["estimator_options"]
    if name == "is":
        return f"the IWAE bound with K = {options['samples']} importance samples"
    words = ", ".join(f"{k} = {v}" for k, v in options.items() if not isinstance(v, dict | type(None)))
    return f"the estimator {name}" + (f" ({words})" if words else "")


def summarize(label: str, rows: list[dict]) -> dict:
    """Mean and standard error over seeds of each metric shown, and each seed's log p̂(x)."""
    out = {"objective": label, "seeds": len(rows)}
    for key, _, _ in METRICS_SHOWN:
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = statistics.fmean(values) if values else None
        out[f"{key}_se"] = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    out["log_px_per_seed"] = [r["log_px"] for r in rows]
    return out


def markdown(about: dict, summary: list[dict]) -> str:
    """The table, with a paragraph saying how every number was measured."""
    cell = lambda m, se, f: "—" if m is None else f"{m:{f}} ± " + ("—" if se is None else f"{se:{f}}")  # noqa: E731
    header = ["objective", "seeds", *(h for _, h, _ in METRICS_SHOWN)]
    seeds = "seed 0" if about["seeds"] == 1 else f"seeds 0..{about['seeds'] - 1}"
    lines = [
        f"# Objectives compared on {about['data']}",
        "",
        f"Every run: the same network and data, {about['budget']}, {seeds} "
        f"(the same initialization for each seed). Measured on {about['eval_points']} validation points: "
        f"log p(x) is {estimator_words(about)}; the ELBO, "
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


def to_csv(summary: list[dict]) -> str:
    columns = ["objective", "seeds", *(c for k, _, _ in METRICS_SHOWN for c in (k, f"{k}_se"))]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary)
    return text.getvalue()


def comparison_curves(
    histories_by_label: dict[str, list[list[dict]]], path, *, key="valid_elbo", legend="objective"
) -> Path:
    """The validation ELBO by epoch of several runs: one colour per label (objective), one line per seed.

    ``histories_by_label`` maps a label to its runs' per-epoch metrics (lists of dicts, as in
    ``metrics.jsonl``); ``legend`` is what the labels are.
    """
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for i, (label, histories) in enumerate(histories_by_label.items()):
        for j, history in enumerate(histories):
            curve(ax, history, key, color=f"C{i % 10}", lw=1.2, alpha=0.8, label=None if j else label)
    focus(ax, [h for hs in histories_by_label.values() for h in hs], (key,), lowest=0.02)
    ax.set(xlabel="epoch", ylabel="nats per data point", title="Validation ELBO, one line per run")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(title=legend)
    return save_figure(fig, path)


def log_likelihood_bars(summary: list[dict], path, *, key="log_px", title="log p̂(x) per objective") -> Path:
    """Each objective's mean ``key`` with error bars of ± one standard error over seeds, and each
    seed's value as a dot beneath it; the first objective at the top.

    ``summary`` rows hold ``objective``, ``key``, ``key_se`` (None for one seed) and
    ``key_per_seed``, as :func:`pyro_vae.compare` writes them.
    """
    n = len(summary)
    fig = Figure(figsize=(8, 1.4 + 0.6 * n), layout="constrained")
    ax = fig.add_subplot()
    for i, row in enumerate(summary):
        y, color, seeds = n - 1 - i, f"C{i % 10}", row[f"{key}_per_seed"]
        ax.errorbar(row[key], y, xerr=row[f"{key}_se"], fmt="o", ms=7, capsize=5, color=color)
        ax.scatter(seeds, [y - 0.22] * len(seeds), s=16, color=color, alpha=0.6, linewidths=0)
    ax.set_yticks(range(n), [row["objective"] for row in reversed(summary)])
    ax.set_ylim(-0.6, n - 0.4)
    ax.set(xlabel="nats per data point (higher is better)", title=title)
    ax.grid(axis="x", alpha=0.3)
    keys = [
        Line2D([], [], color="0.3", marker="o", ms=7, label="mean ± SE over seeds"),
        Line2D([], [], color="0.3", marker="o", ms=4, ls="", alpha=0.6, label="one seed"),
    ]
    ax.legend(handles=keys, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return save_figure(fig, path)
