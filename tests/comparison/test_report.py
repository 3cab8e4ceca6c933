"""pyro_vae.comparison.report: the comparison's table says which standard error it shows, and its figures
draw the numbers they claim, on axes that neither lose a point nor exaggerate a gap."""

import csv
import io
import math
import statistics

import pytest

from pyro_vae.comparison import report
from tests.figure_checks import assert_every_point_shown_or_named, history, points_in_legends, texts

ABOUT = {
    "data": "digits",
    "seeds": 1,
    "budget": "5 epochs",
    "estimator": "is",
    "estimator_options": {"samples": 50},
    "eval_points": 180,
    "memory": "peak RSS",
}
ABSENT = "a point-mass guide has no density"


def run_row(objective, seed, log_px, elbo, **extra) -> dict:
    """A run's row as ``compare`` writes it (the keys the report reads)."""
    return {
        "objective": objective,
        "seed": seed,
        "log_px": log_px,
        "log_px_stderr": 0.8125 + seed,
        "valid_elbo": elbo,
        "valid_elbo_stderr": 0.5 + seed,
        "recon": elbo + 3.0,
        "kl": 3.0,
        "active_units": 2,
        "epochs": 5,
        "seconds_per_epoch": 0.0625,
        "peak_memory_mb": 464.0,
        "eval_points": 180,
        **extra,
    }


def autoencoder_row(seed=0) -> dict:
    row = run_row("autoencoder", seed, None, 27.0, log_px_absent=ABSENT)  # recon 30.0
    return row | {"log_px_stderr": None, "valid_elbo": None, "valid_elbo_stderr": None, "kl": None}


def table_rows(text: str) -> dict[str, list[str]]:
    """The table's cells by objective, header included."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    cells = [line.strip("| ").split(" | ") for line in lines]
    return {row[0]: row[1:] for row in cells}


def test_one_seed_shows_the_standard_error_over_the_points_and_says_so():
    summary = [report.summarize("elbo", [run_row("elbo", 0, 31.154, 30.3325)])]
    text = report.markdown(ABOUT, summary)
    assert "1 seed: ± is the standard error over the 180 points" in text
    table = table_rows(text)
    assert table["objective"][1:4] == ["log p(x)", "ELBO", "reconstruction"]
    # seeds, log p(x) ± its SE over the points, the ELBO ± its, then the bare figures of one run
    assert table["elbo"] == ["1", "31.15 ± 0.81", "30.33 ± 0.50", "33.33", "3.00", "2", "5", "0.062", "464"]
    assert "—" not in text


def test_several_seeds_show_mean_and_standard_error_over_seeds():
    log_px, elbo = [31.0, 32.5, 30.25], [29.0, 30.0, 29.5]
    rows = [
        run_row("iwae:k=5", s, lp, e, epochs=4 + s)
        for s, (lp, e) in enumerate(zip(log_px, elbo, strict=True))
    ]
    summary = [report.summarize("iwae:k=5", rows)]
    text = report.markdown(ABOUT | {"seeds": 3}, summary)
    assert "Mean ± standard error over the 3 seeds" in text

    def cell(values, digits):
        se = statistics.stdev(values) / math.sqrt(len(values))
        return f"{statistics.fmean(values):.{digits}f} ± {se:.{digits}f}"

    cells = table_rows(text)["iwae:k=5"]
    assert cells[0] == "3"
    assert cells[1] == cell(log_px, 2) == "31.25 ± 0.66"
    assert cells[2] == cell(elbo, 2)
    assert cells[6] == cell([4, 5, 6], 1) == "5.0 ± 0.6"  # epochs
    assert summary[0]["log_px_se"] == pytest.approx(statistics.stdev(log_px) / math.sqrt(3), rel=1e-12)
    assert summary[0]["log_px_points_se"] == pytest.approx(statistics.fmean([0.8125, 1.8125, 2.8125]))


def test_an_undefined_log_likelihood_is_said_to_be_so_with_its_reason():
    summary = [
        report.summarize("elbo", [run_row("elbo", 0, 31.154, 30.3325)]),
        report.summarize("autoencoder", [autoencoder_row()]),
    ]
    assert summary[1]["log_px_absent"] == ABSENT and summary[1]["log_px_per_seed"] == [None]
    text = report.markdown(ABOUT, summary)
    cells = table_rows(text)["autoencoder"]
    assert cells[:5] == ["1", "not defined†", "not defined", "30.00", "not defined"]
    assert text.splitlines()[-1] == f"† autoencoder: {ABSENT}"

    parsed = list(csv.DictReader(io.StringIO(report.to_csv(summary))))
    assert parsed[0]["log_px_points_se"] == "0.8125" and parsed[0]["log_px_absent"] == ""
    assert (
        parsed[1]["log_px"] == ""
        and parsed[1]["valid_elbo_se"] == ""
        and parsed[1]["log_px_absent"] == ABSENT
    )
    assert list(parsed[0])[:4] == ["objective", "seeds", "log_px", "log_px_se"]


def diverged_row(objective, seed, epoch, loss="nan") -> dict:
    """A diverged run's row as ``compare`` writes it: no numbers, the epoch and the loss."""
    none = dict.fromkeys(run_row(objective, seed, 0.0, 0.0))
    return (
        none
        | {"objective": objective, "seed": seed, "status": "diverged", "diverged_epoch": epoch}
        | {
            "diverged_loss": loss,
            "eval_points": 180,
        }
    )


def test_a_diverged_objective_says_so_in_the_table_instead_of_numbers():
    summary = [
        report.summarize("elbo", [run_row("elbo", 0, 31.154, 30.3325)]),
        report.summarize("beta:beta=1e38", [diverged_row("beta:beta=1e38", 0, 1)]),
    ]
    assert summary[1]["seeds"] == 0 and summary[1]["log_px"] is None and summary[1]["epochs"] is None
    assert summary[1]["diverged"] == [{"seed": 0, "diverged_epoch": 1, "diverged_loss": "nan"}]
    text = report.markdown(ABOUT, summary)
    cells = table_rows(text)
    assert cells["beta:beta=1e38"] == ["0 (+ 1 diverged)", "diverged in epoch 1", *["—"] * 7]
    assert cells["elbo"][0] == "1"
    assert (
        text.splitlines()[-1] == "‡ beta:beta=1e38: seed 0 diverged in epoch 1 (the loss is nan): no numbers"
    )

    parsed = list(csv.DictReader(io.StringIO(report.to_csv(summary))))
    assert [(r["objective"], r["seeds"], r["diverged"], r["log_px"]) for r in parsed] == [
        ("elbo", "1", "0", "31.154"),
        ("beta:beta=1e38", "0", "1", ""),
    ]


def test_a_seed_that_diverged_leaves_the_figures_to_the_others_and_is_named():
    rows = [run_row("elbo", 0, 31.0, 29.0), diverged_row("elbo", 1, 4, "inf"), run_row("elbo", 2, 32.5, 30.0)]
    summary = [report.summarize("elbo", rows)]
    assert summary[0]["seeds"] == 2
    assert summary[0]["log_px"] == 31.75 and summary[0]["log_px_se"] == pytest.approx(0.75, rel=1e-12)
    assert summary[0]["epochs"] == 5  # the measured runs' epochs, not the diverged one's
    text = report.markdown(ABOUT | {"seeds": 3}, summary)
    assert table_rows(text)["elbo"][:2] == ["2 (+ 1 diverged)", "31.75 ± 0.75"]
    assert text.splitlines()[-1] == (
        "‡ elbo: seed 1 diverged in epoch 4 (the loss is inf): its figures are over the 2 seeds measured"
    )
    one_left = report.summarize("elbo", rows[:2])
    assert (
        report.markdown(ABOUT | {"seeds": 2}, [one_left])
        .splitlines()[-1]
        .endswith("its figures are over the 1 seed measured (± over the points)")
    )


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def test_comparison_curves_name_the_points_they_leave_off_the_axis():
    histories = {"elbo": [history(), history(first=-420.5)], "iwae:k=5": [history(first=-318.25)]}
    fig = report.comparison_curves_figure(histories)
    (ax,) = fig.axes
    assert ax.get_ylim()[0] > -318.25
    text = texts(fig)
    for words in (
        "elbo seed 0, epoch 0: −543.2",
        "elbo seed 1, epoch 0: −420.5",
        "iwae:k=5, epoch 0: −318.2",
    ):
        assert words in text, text
    assert assert_every_point_shown_or_named(fig) == 3
    assert points_in_legends(fig) == []
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["elbo", "iwae:k=5"]


def test_comparison_curves_give_each_metric_a_panel_and_name_who_lacks_it():
    autoencoder = [{**row, "valid_elbo": None, "valid_kl": None} for row in history(first=-300.0)]
    histories = {"elbo": [history()], "autoencoder": [autoencoder]}
    fig = report.comparison_curves_figure(histories, key=("valid_elbo", "valid_recon"))
    elbo_ax, recon_ax = fig.axes[:2]
    curves = [
        [line for line in ax.get_lines() if line.get_label() in histories] for ax in (elbo_ax, recon_ax)
    ]
    assert [[line.get_label() for line in c] for c in curves] == [["elbo"], ["elbo", "autoencoder"]]
    assert list(curves[0][0].get_ydata()) == [r["valid_elbo"] for r in history()]
    assert list(curves[1][1].get_ydata()) == [r["valid_recon"] for r in autoencoder]
    assert "not defined for autoencoder" in texts(fig)
    assert assert_every_point_shown_or_named(fig) == 3  # epoch 0 of each line, named
    assert points_in_legends(fig) == []
    assert [t.get_text() for t in recon_ax.get_legend().get_texts()] == ["elbo", "autoencoder"]


def bars_summary(seeds: int) -> list[dict]:
    rows = [run_row("elbo", s, -96.0 - s, -101.0) for s in range(seeds)]
    rows += [run_row("iwae:k=5", s, -93.5 + 0.5 * s, -100.0) for s in range(seeds)]
    return [
        report.summarize(label, [r for r in rows if r["objective"] == label])
        for label in ("elbo", "iwae:k=5")
    ]


@pytest.mark.parametrize("seeds", [1, 3])
def test_log_likelihood_bars_hold_every_bar_and_dot_on_an_axis_of_at_least_ten_nats(seeds):
    summary = bars_summary(seeds)
    fig = report.log_likelihood_figure(summary)
    (ax,) = fig.axes
    lo, hi = ax.get_xlim()
    assert hi - lo >= report.FLOOR == 10.0  # a 2.5-nat gap is a quarter of the width, not all of it
    for row in summary:
        se = row["log_px_se"] if seeds > 1 else row["log_px_points_se"]
        assert se > 0
        assert lo <= row["log_px"] - se and row["log_px"] + se <= hi
        assert all(lo <= v <= hi for v in row["log_px_per_seed"])
    drawn = list(ax.containers)  # one errorbar per objective, at its mean, with its SE
    assert [bar.lines[0].get_xdata()[0] for bar in drawn] == [row["log_px"] for row in summary]
    segments = [bar.lines[2][0].get_segments()[0] for bar in drawn]
    for row, ((left, _), (right, _)) in zip(summary, segments, strict=True):
        se = row["log_px_se"] if seeds > 1 else row["log_px_points_se"]
        assert (left, right) == pytest.approx((row["log_px"] - se, row["log_px"] + se), rel=1e-12)
    words = "± 1 SE over 3 seeds" if seeds > 1 else "± 1 SE over the 180 points, 1 seed"
    assert words in ax.get_xlabel() and "at least 10 nats" in ax.get_xlabel()
    assert points_in_legends(fig) == []


def test_log_likelihood_bars_leave_out_and_name_an_undefined_log_likelihood(tmp_path):
    summary = [*bars_summary(1), report.summarize("autoencoder", [autoencoder_row()])]
    fig = report.log_likelihood_figure(summary)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["iwae:k=5", "elbo"]  # the first at the top
    assert f"not estimated: autoencoder — {ABSENT}" in texts(fig)
    only = [report.summarize("autoencoder", [autoencoder_row(s) for s in range(2)])]
    assert report.log_likelihood_bars(only, tmp_path / "ll.png").is_file()
    assert f"not estimated: autoencoder — {ABSENT}" in texts(report.log_likelihood_figure(only))


def test_comparison_curves_end_a_diverged_run_at_its_last_epoch_marked():
    diverged = history(epochs=3)
    histories = {"elbo": [history()], "beta": [diverged]}
    fig = report.comparison_curves_figure(
        histories, key=("valid_elbo", "valid_recon"), diverged={("beta", 0): 4}
    )
    for ax, key in zip(fig.axes[:2], ("valid_elbo", "valid_recon"), strict=True):
        marks = [line for line in ax.get_lines() if line.get_marker() == "x"]
        assert [(list(m.get_xdata()), list(m.get_ydata())) for m in marks] == [([3], [diverged[-1][key]])]
        assert marks[0].get_color() == "C1"  # beta's colour
    assert texts(fig).count("diverged (× its last epoch finished): beta in epoch 4") == 2
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["elbo", "beta", "diverged"]
    assert assert_every_point_shown_or_named(fig) == 4  # epoch 0 of each line, in each panel
    assert points_in_legends(fig) == []


def test_log_likelihood_bars_name_an_objective_whose_runs_all_diverged():
    summary = [*bars_summary(1), report.summarize("beta", [diverged_row("beta", 0, 2)])]
    fig = report.log_likelihood_figure(summary)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["iwae:k=5", "elbo"]
    assert "not estimated: beta — diverged in epoch 2" in texts(fig)


def test_comparison_curves_name_a_run_that_diverged_before_any_epoch_was_recorded():
    fig = report.comparison_curves_figure({"elbo": [history()], "beta": [[]]}, diverged={("beta", 0): 1})
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines() if line.get_label()[0] != "_"] == ["elbo"]
    assert not [line for line in ax.get_lines() if line.get_marker() == "x"]
    text = texts(fig)
    assert "diverged (× its last epoch finished): beta in epoch 1, before any epoch was recorded" in text
    assert "not defined for" not in text
