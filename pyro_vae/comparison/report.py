"""The report of a comparison, as Markdown, CSV and figures.

Each figure carries its standard error where one exists: with several seeds, mean ± the
standard error over seeds, sd / √S; with one seed, log p(x) and the ELBO ± their standard
error over the N evaluation points, sd_n / √N (each run's ``log_px_stderr`` and
``valid_elbo_stderr``), and the other figures bare. A log p(x) that is not defined for an
objective (its run row has ``log_px`` None and a reason in ``log_px_absent``) is said to be
so, with the reason, in the table and in the figure. A run that diverged (``status``
"diverged") has no numbers: an objective's figures are over its seeds that did not diverge
(the table's seeds column counts those, "+ N diverged" beside), a note under the table names
each divergence, and an objective whose every run diverged says "diverged in epoch N" instead
of numbers; its curves end at the last epoch it finished, marked ×.
"""

import csv
import io
import math
import statistics
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from pyro_vae.comparison.one_run import DIVERGED, diverged_words
from pyro_vae.pictures.axes import fit_y, note_below
from pyro_vae.pictures.plots import curve, save_figure

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
#: metrics whose run rows hold a standard error over the evaluation points: key → that error's key
POINT_SE = {"log_px": "log_px_stderr", "valid_elbo": "valid_elbo_stderr"}
COUNTS = ("active_units", "epochs")  # whole numbers in a single run
FLOOR = 10.0  # nats: the log p(x) axis spans at least this much, so that small gaps look small


def estimator_words(about: dict) -> str:
    """How log p(x) was estimated, in words: "the IWAE bound with K = 5000 importance samples"."""
    name, options = about["estimator"], about["estimator_options"]
    if name == "is":
        return f"the IWAE bound with K = {options['samples']} importance samples"
    words = ", ".join(f"{k} = {v}" for k, v in options.items() if not isinstance(v, dict | type(None)))
    return f"the estimator {name}" + (f" ({words})" if words else "")


def summarize(label: str, rows: list[dict]) -> dict:
    """Mean and standard error over seeds of each metric shown (``<key>_se``, None for one seed),
    the mean over seeds of each run's standard error over the points (``<key>_points_se``, for
    :data:`POINT_SE`), each seed's log p̂(x), and why log p(x) is not defined, if it is not.
    ``seeds`` counts the runs measured; ``diverged`` lists the others (seed, epoch, loss)."""
    keys = ("seed", "diverged_epoch", "diverged_loss")
    diverged = [{k: r.get(k) for k in keys} for r in rows if r.get("status") == DIVERGED]
    rows = [r for r in rows if r.get("status") != DIVERGED]
    out: dict = {"objective": label, "seeds": len(rows), "diverged": diverged}
    for key, _, _ in METRICS_SHOWN:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = statistics.fmean(values) if values else None
        out[f"{key}_se"] = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    for key, row_key in POINT_SE.items():
        values = [r[row_key] for r in rows if r.get(row_key) is not None]
        out[f"{key}_points_se"] = statistics.fmean(values) if values else None
    out["eval_points"] = next((r["eval_points"] for r in rows if r.get("eval_points") is not None), None)
    out["log_px_absent"] = next((r["log_px_absent"] for r in rows if r.get("log_px_absent")), None)
    out["log_px_per_seed"] = [r.get("log_px") for r in rows]
    return out


def _cell(row: dict, key: str, fmt: str) -> str:
    """One figure of the table: mean ± SE over seeds; for one seed the SE over the points where
    one exists, else the bare number; "not defined" (with † when a reason is given) for None."""
    mean = row[key]
    if mean is None and row["seeds"] == 0 and row.get("diverged"):
        return _diverged_cell(row) if key == METRICS_SHOWN[0][0] else "—"
    if mean is None:
        return "not defined†" if key == "log_px" and row.get("log_px_absent") else "not defined"
    if row["seeds"] == 1:
        se = row.get(f"{key}_points_se")
        fmt = ".0f" if key in COUNTS else fmt
    else:
        se = row[f"{key}_se"]
    return f"{mean:{fmt}}" + ("" if se is None else f" ± {se:{fmt}}")


def _diverged_cell(row: dict) -> str:
    """ "diverged in epoch 3" (or "in epochs 1, 3"): an objective whose every run diverged."""
    epochs = sorted({d["diverged_epoch"] for d in row["diverged"]})
    return f"diverged in epoch{'s' if len(epochs) > 1 else ''} {', '.join(map(str, epochs))}"


def _seeds_cell(row: dict) -> str:
    diverged = len(row.get("diverged") or ())
    return str(row["seeds"]) + (f" (+ {diverged} diverged)" if diverged else "")


def _divergence_notes(about: dict, summary: list[dict]) -> list[str]:
    """‡ lines under the table: each objective's runs that diverged, and what its figures are."""
    notes = []
    for row in summary:
        if not row.get("diverged"):
            continue
        runs = "; ".join(f"seed {d['seed']} {diverged_words(d)}" for d in row["diverged"])
        n = row["seeds"]
        rest = "no numbers" if n == 0 else f"its figures are over the {n} seed{'s' if n > 1 else ''} measured"
        if n == 1 and about["seeds"] > 1:
            rest += " (± over the points)"
        notes.append(f"‡ {row['objective']}: {runs}: {rest}")
    return notes


def markdown(about: dict, summary: list[dict]) -> str:
    """The table, with a paragraph saying how every number was measured and what ± is."""
    measures = about.get("measures", "log p(x)")  # a conditional graph's is log p(x | y) …
    cell = measures.replace("|", r"\|")  # a Markdown table's cell
    header = ["objective", "seeds", *(cell if k == "log_px" else h for k, h, _ in METRICS_SHOWN)]
    if about["seeds"] == 1:
        seeds = "seed 0"
        errors = (
            f"1 seed: ± is the standard error over the {about['eval_points']} points (sd / √N), "
            f"given for {measures} and the ELBO; the other figures are the one run's."
        )
    else:
        seeds = f"seeds 0..{about['seeds'] - 1}"
        errors = f"Mean ± standard error over the {about['seeds']} seeds (sd / √seeds)."
    lines = [
        f"# Objectives compared on {about['data']}",
        "",
        f"Every run: the same network and data, {about['budget']}, {seeds} "
        f"(the same initialization for each seed). Measured on {about['eval_points']} validation points: "
        f"{measures} is {estimator_words(about)}; the ELBO, "
        f"its reconstruction and KL terms use one sample; nats per data point. Peak memory: "
        f"{about['memory']}. {errors}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in summary:
        cells = [_cell(row, k, f) for k, _, f in METRICS_SHOWN]
        lines.append("| " + " | ".join([row["objective"], _seeds_cell(row), *cells]) + " |")
    notes = [
        f"† {row['objective']}: {row['log_px_absent']}"
        for row in summary
        if row["log_px"] is None and row.get("log_px_absent")
    ]
    notes += _divergence_notes(about, summary)
    return "\n".join([*lines, *(["", *notes] if notes else [])]) + "\n"


def to_csv(summary: list[dict]) -> str:
    """The summary rows as CSV; None is an empty cell; ``diverged`` the number of runs that did."""
    columns = ["objective", "seeds", *(c for k, _, _ in METRICS_SHOWN for c in (k, f"{k}_se"))]
    columns += [*(f"{k}_points_se" for k in POINT_SE), "eval_points", "log_px_absent", "diverged"]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "diverged": len(row.get("diverged") or ())} for row in summary)
    return text.getvalue()


#: the titles of the validation curves a comparison draws, one panel each
CURVE_TITLES = {
    "valid_elbo": "Validation ELBO",
    "valid_recon": "Validation reconstruction term E_q[log p(x|z)]",
}


def comparison_curves_figure(
    histories_by_label: dict[str, list[list[dict]]], *, key="valid_elbo", legend="objective", diverged=None
) -> Figure:
    """The figure :func:`comparison_curves` saves: one panel per key of ``key`` (a name or a tuple)."""
    keys = (key,) if isinstance(key, str) else tuple(key)
    diverged = diverged or {}
    fig = Figure(figsize=(9 if len(keys) == 1 else 6.5 * len(keys), 5), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, k in zip(axes, keys, strict=True):
        named = []  # (which run, its line): the names of points left off the axis
        missing = []  # labels with no value of k: the quantity is not defined for them
        ended = []  # the runs that diverged, each curve's end marked ×
        for i, (label, histories) in enumerate(histories_by_label.items()):
            for j, history in enumerate(histories):
                line = curve(ax, history, k, color=f"C{i % 10}", lw=1.2, alpha=0.8, label=label)
                name = label if len(histories) == 1 else f"{label} seed {j}"
                if (label, j) in diverged:
                    before = ", before any epoch was recorded" if line is None else ""
                    ended.append(f"{name} in epoch {diverged[label, j]}{before}")
                    if line is not None:
                        end = np.asarray(line.get_xydata())[-1]  # (epoch, value)
                        ax.plot(*end, marker="x", ms=9, mew=2, ls="", color=f"C{i % 10}")
                if line is not None:
                    named.append((name, line))
                elif j == 0 and (label, j) not in diverged:
                    missing.append(label)
        notes = fit_y(ax, named, lowest=0.02) if named else []
        if missing:
            notes.append(f"not defined for {', '.join(missing)}")
        if ended:
            notes.append(f"diverged (× its last epoch finished): {'; '.join(ended)}")
        note_below(ax, notes, width=100 if len(keys) == 1 else 70)
        title = CURVE_TITLES.get(k, k)
        ax.set(xlabel="epoch", ylabel="nats per data point", title=f"{title}, one line per run")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], color=f"C{i % 10}", lw=1.2, label=label) for i, label in enumerate(histories_by_label)
    ]
    if diverged:
        handles.append(Line2D([], [], color="0.3", marker="x", ms=9, mew=2, ls="", label="diverged"))
    if handles:  # outside the axes, to the right: never on a curve
        axes[-1].legend(handles=handles, title=legend, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def comparison_curves(
    histories_by_label: dict[str, list[list[dict]]],
    path,
    *,
    key="valid_elbo",
    legend="objective",
    diverged: dict | None = None,
) -> Path:
    """Validation metrics by epoch of several runs: one colour per label (objective), one line per
    seed, one panel per metric of ``key`` (a name, or a tuple such as ``("valid_elbo", "valid_recon")``).

    ``histories_by_label`` maps a label to its runs' per-epoch metrics (lists of dicts, as in
    ``metrics.jsonl``), in seed order; ``legend`` is what the labels are. A label with no value
    of a metric (the ELBO of an autoencoder) is named under its panel. Each axis follows
    :func:`pyro_vae.pictures.axes.fit_y` (the lowest 2 % of the later epochs' values may be left off,
    marked and named). ``diverged`` maps (label, seed index) to the epoch that run diverged in:
    its curve ends at the last epoch it finished, marked ×, and a note under the panel says so.
    """
    figure = comparison_curves_figure(histories_by_label, key=key, legend=legend, diverged=diverged)
    return save_figure(figure, path)


def _error(row: dict, key: str) -> tuple[float | None, str]:
    """The error bar of one objective's ``key``, and what it is."""
    if row["seeds"] > 1 and row.get(f"{key}_se") is not None:
        return row[f"{key}_se"], f"± 1 SE over {row['seeds']} seeds"
    if row["seeds"] == 1 and row.get(f"{key}_points_se") is not None:
        points = f"the {row['eval_points']} points" if row.get("eval_points") else "the points"
        return row[f"{key}_points_se"], f"± 1 SE over {points}, 1 seed"
    return None, "no standard error"


def log_likelihood_figure(summary: list[dict], *, key="log_px", title="log p̂(x) per objective") -> Figure:
    """The figure :func:`log_likelihood_bars` saves."""
    shown = [row for row in summary if row.get(key) is not None]
    n = max(1, len(shown))
    fig = Figure(figsize=(8, 1.8 + 0.6 * n), layout="constrained")
    ax = fig.add_subplot()
    ends, bars, dots = [], [], False  # every x drawn; what the bars are; whether seeds are drawn
    for i, row in enumerate(shown):
        y, color = n - 1 - i, f"C{summary.index(row) % 10}"
        se, what = _error(row, key)
        ax.errorbar(row[key], y, xerr=se, fmt="o", ms=7, capsize=5, color=color)
        seeds = [v for v in row.get(f"{key}_per_seed", ()) if v is not None]
        if len(seeds) > 1:
            ax.scatter(seeds, [y - 0.22] * len(seeds), s=16, color=color, alpha=0.6, linewidths=0)
            dots = True
        ends += [row[key] - (se or 0.0), row[key] + (se or 0.0), *seeds]
        bars += [what] if what not in bars else []
    ax.set_yticks(range(len(shown)), [row["objective"] for row in reversed(shown)])
    ax.set_ylim(-0.6, n - 0.4)
    _span(ax, ends)
    words = "; ".join(bars) if bars else "no objective has a log p(x)"
    floor = f"the axis spans at least {FLOOR:g} nats"
    ax.set(xlabel=f"nats per data point (higher is better)\nbars: {words}; {floor}", title=title)
    ax.grid(axis="x", alpha=0.3)
    absent = [f"{row['objective']} — {_why_absent(row, key)}" for row in summary if row.get(key) is None]
    note_below(ax, [f"not estimated: {a}" for a in absent], width=100)
    if dots:
        keys = [
            Line2D([], [], color="0.3", marker="o", ms=7, label="mean ± 1 SE"),
            Line2D([], [], color="0.3", marker="o", ms=4, ls="", alpha=0.6, label="one seed"),
        ]
        ax.legend(handles=keys, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return fig


def _why_absent(row: dict, key: str) -> str:
    if row.get(f"{key}_absent"):
        return row[f"{key}_absent"]
    return _diverged_cell(row) if row["seeds"] == 0 and row.get("diverged") else "not measured"


def _span(ax: Axes, ends: list[float]) -> None:
    """An x-axis holding every point and error bar in ``ends``, centred on them and at least
    :data:`FLOOR` nats wide, with 5 % of margin on each side when wider."""
    if not ends:
        ax.set_xticks([])
        return
    lo, hi = min(ends), max(ends)
    half = max(FLOOR, 1.1 * (hi - lo)) / 2
    ax.set_xlim((lo + hi) / 2 - half, (lo + hi) / 2 + half)


def log_likelihood_bars(summary: list[dict], path, *, key="log_px", title="log p̂(x) per objective") -> Path:
    """Each objective's mean ``key`` with error bars of ± one standard error (over seeds; with
    one seed, over the evaluation points), each seed's value as a dot beneath it when there are
    several; the first objective at the top. Objectives whose ``key`` is None are named in a note.

    The x-axis holds every bar and dot and spans at least :data:`FLOOR` nats, so that a gap of a
    few nats is not drawn as the whole width. ``summary`` rows hold ``objective``, ``seeds``,
    ``key``, ``key_se``, ``key_points_se``, ``key_per_seed`` and ``key_absent``, as
    :func:`summarize` writes them.
    """
    return save_figure(log_likelihood_figure(summary, key=key, title=title), path)
