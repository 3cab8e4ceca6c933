"""pyro_vae.pictures.plots: the tiled canvas, and that each figure writes a PNG of the expected size."""

import re

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from pyro_vae.pictures import plots
from tests.figure_checks import (
    assert_every_point_shown_or_named,
    history,
    png_pixels,
    points_in_legends,
    texts,
)


def test_tile_places_each_image_upsampled_at_its_position():
    h, w, ncols = 3, 2, 3
    s = plots._scale((h, w))
    assert s == 8  # the longer side, 3, upsampled to 24 pixels
    images = np.linspace(0.0, 1.0, 5 * h * w).reshape(5, h * w)
    canvas = plots._tile(images, (h, w), ncols, vmin=0.0, vmax=1.0)
    H, W = s * h + 1, s * w + 1  # a tile and the 1-pixel gap after it
    assert canvas.shape == (2 * H - 1, ncols * W - 1) == (49, 50)
    for i in range(5):
        r, c = divmod(i, ncols)
        block = np.kron(images[i].reshape(h, w), np.ones((s, s)))  # each pixel an s×s square
        np.testing.assert_array_equal(canvas[r * H : r * H + s * h, c * W : c * W + s * w], block)
    np.testing.assert_array_equal(canvas[s * h, :], 0.5)  # the one gap row between the rows
    np.testing.assert_array_equal(canvas[:, s * w], 0.5)  # and between columns
    np.testing.assert_array_equal(canvas[H:, 2 * W :], 0.5)  # the empty sixth tile


def test_tile_gaps_are_thin_beside_small_images():
    canvas = plots._tile(np.zeros((4, 64)), (8, 8), 2, vmin=0.0, vmax=1.0)
    # 8×8 digits become 24×24 tiles: the gap is 1 pixel in 25, no longer 1 in 9
    assert canvas.shape == (49, 49)
    np.testing.assert_array_equal(np.flatnonzero(canvas[:, 0] == 0.5), [24])
    big = plots._tile(np.zeros((2, 28 * 28)), (28, 28), 2, vmin=0.0, vmax=1.0)
    assert big.shape == (28, 57)  # large enough: not upsampled


def test_tile_rescales_clips_and_blanks_nan():
    images = np.array([[-10.0, 0.0, 5.0, 10.0], [np.nan] * 4])
    canvas = plots._tile(images, (2, 2), 2, vmin=0.0, vmax=10.0, scale=1)
    np.testing.assert_array_equal(canvas[:, :2], [[0.0, 0.0], [0.5, 1.0]])
    np.testing.assert_array_equal(canvas[:, 3:], 0.5)
    colour = plots._tile(np.arange(2 * 3 * 4).reshape(2, -1), (3, 2, 2), 2, vmin=0.0, vmax=23.0, scale=2)
    assert colour.shape == (4, 9, 3)  # (C, H, W) images shown as (H, W, C), each pixel 2×2
    for r, c in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        np.testing.assert_allclose(colour[r, c], np.array([0, 4, 8]) / 23.0)
    np.testing.assert_allclose(colour[0, 2], np.array([1, 5, 9]) / 23.0)


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        pytest.param((5, 3, 4), "has 5 channels", id="five-channels"),
        pytest.param((1, 1, 3, 4, 5), "neither (H, W) nor (C, H, W)", id="five-dims"),
        pytest.param((4, 4), "holds 16 values, the data 60", id="too-few"),
        pytest.param(None, "not images", id="not-images"),
    ],
)
def test_an_undrawable_image_shape_says_why(shape, words, tmp_path):
    assert words in plots.image_problem(shape, 60)
    with pytest.raises(ValueError, match=re.escape(words)):
        plots._tile(np.zeros((2, 60)), shape, 2, vmin=0.0, vmax=1.0)
    assert plots.image_problem((3, 4, 5), 60) is None and plots.image_problem((4, 15), 60) is None


def test_save_figure_pixel_size_follows_from_figure_size_and_dpi(tmp_path):
    fig = Figure(figsize=(2.0, 1.0))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.plot([0, 1], [0, 1])
    ax.set_axis_off()  # no tick labels outside the figure: the tight box is the figure
    png = imread(plots.save_figure(fig, tmp_path / "f.png"))
    pad = 0.1  # savefig's pad_inches around the tight box, here the whole figure
    assert png.shape[:2] == (round((1.0 + 2 * pad) * plots.DPI), round((2.0 + 2 * pad) * plots.DPI))


def test_image_grid_writes_a_png_no_larger_than_its_figure(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(12, 8 * 8))
    path = plots.image_grid(images, (8, 8), tmp_path / "grid.png", ncols=4, title="t")
    png = imread(path)
    # 3 rows of 4 tiles: 4 / 4 = 1 inch a tile, plus half an inch for the title, plus padding
    height, width = png.shape[:2]
    assert width <= round((4 * 1.0 + 0.2) * plots.DPI) and height <= round((3 + 0.5 + 0.2) * plots.DPI)
    assert width >= 0.8 * 4 * plots.DPI and height >= 0.8 * 3 * plots.DPI
    assert not list(tmp_path.glob(".*.tmp"))
    heat = imread(plots.image_grid(images, None, tmp_path / "heat.png"))
    assert heat.shape[0] <= round(4.2 * plots.DPI) and heat.shape[1] <= round(6.2 * plots.DPI)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_latent_space_draws_each_point_where_it_lies_in_its_class_colour(tmp_path, monkeypatch, dim):
    n = 30
    z = np.random.default_rng(dim).normal(size=(n, dim))
    labels = np.arange(n) % 3 if dim != 3 else None
    figures, save = [], plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or save(fig, path))
    png = imread(plots.latent_space(z, labels, tmp_path / "latent.png"))[..., :3]
    (fig,) = figures
    ax = fig.axes[0]
    # where the points should be: z itself; z against the jitter of a generator seeded 0; the
    # first two principal axes, from the covariance's eigenvectors (up to their signs)
    if dim == 1:
        expected = np.stack([z[:, 0], np.random.default_rng(0).uniform(-1, 1, n)], 1)
    elif dim == 2:
        expected = z
    else:
        centred = z - z.mean(0)
        _, vectors = np.linalg.eigh(centred.T @ centred)
        expected = centred @ vectors[:, ::-1][:, :2]
    drawn = np.concatenate([c.get_offsets() for c in ax.collections])
    order = (
        np.concatenate([np.flatnonzero(labels == c) for c in range(3)])
        if labels is not None
        else np.arange(n)
    )
    signs = np.sign((drawn * expected[order]).sum(0))
    np.testing.assert_allclose(drawn * signs, expected[order], rtol=1e-9, atol=1e-9)
    # in the PNG: each point apart from the others has its class's colour (tab10; C0 at alpha
    # 0.5 over white without labels), and the axes are white away from every point
    at = png_pixels(fig, ax, png, expected[order] * signs)
    colours = (
        [matplotlib.colormaps["tab10"](labels[i])[:3] for i in order]
        if labels is not None
        else [(1 + np.array(matplotlib.colors.to_rgb("C0"))) / 2] * n
    )
    gaps = np.linalg.norm(at[:, None] - at[None], axis=-1) + np.eye(n) * 1e9
    alone = gaps.min(1) > 5
    assert alone.sum() >= 10
    for (col, row), colour in zip(at[alone], np.asarray(colours)[alone], strict=True):
        np.testing.assert_allclose(png[int(row), int(col)], colour, atol=0.01)
    (x0, y0), (x1, y1) = png_pixels(fig, ax, png, ax.transLimits.inverted().transform([[0, 0], [1, 1]]))
    grid = np.stack(
        np.meshgrid(np.linspace(x0 + 5, x1 - 5, 12), np.linspace(y1 + 5, y0 - 5, 12)), -1
    ).reshape(-1, 2)
    empty = grid[np.linalg.norm(grid[:, None] - at[None], axis=-1).min(1) > 8]
    assert len(empty) > 50
    assert (png[empty[:, 1].astype(int), empty[:, 0].astype(int)] == 1.0).all()


# ---------------------------------------------------------------------------------------------
# Curves: every point shown or named, legends clear of the data
# ---------------------------------------------------------------------------------------------


def test_the_overlap_check_finds_a_legend_drawn_over_the_data():
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(np.arange(10), np.full(10, 5.0), label="a long label to cover the middle")
    ax.set_ylim(0, 10)
    ax.legend(loc="center right")  # the old placement of the terms' legend
    assert points_in_legends(fig)


def test_training_curves_name_every_point_they_leave_off_the_axis():
    fig = plots.training_curves_figure(history())
    elbo, recon, kl = fig.axes[:3]
    assert [ax.get_title() for ax in (elbo, recon, kl)] == [
        "ELBO per data point",
        "Reconstruction term E_q[log p(x|z)]",
        "KL(q(z|x) ‖ p(z))",
    ]
    # the untrained epoch 0 would squeeze the later 20 nats into a 20th of the height: cut, and named
    assert elbo.get_ylim()[0] > -543.2 + 400
    text = texts(fig)
    assert "train, epoch 0: −542.7" in text and "validation, epoch 0: −543.2" in text
    assert "validation, epoch 0: −549.2" in text  # the reconstruction term's
    assert assert_every_point_shown_or_named(fig) == 4
    # the KL's 6.0…7.2 is drawn on its own axis, whole: nothing cut
    lo, hi = kl.get_ylim()
    assert lo <= 6.0 and hi >= 7.2 and hi - lo < 2
    assert points_in_legends(fig) == []


def test_training_curves_show_every_point_when_the_first_is_near():
    fig = plots.training_curves_figure(history(first=-130.0))
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        assert all(lo <= y <= hi for line in ax.get_lines() for y in line.get_ydata())
    assert "axis" not in texts(fig)


@pytest.mark.slow
def test_training_curves_of_an_autoencoder_say_the_kl_is_not_defined(tmp_path):
    rows = [{k: v for k, v in row.items() if "elbo" not in k} for row in history(kl=False)]
    fig = plots.training_curves_figure(rows)
    assert "not defined for this run" in texts(fig)
    assert fig.axes[0].get_title().startswith("Training objective per data point")
    assert fig.axes[0].get_lines()[0].get_label() == plots.OBJECTIVE
    assert_every_point_shown_or_named(fig)
    assert points_in_legends(fig) == []
    assert plots.training_curves(rows, tmp_path / "curves.png").is_file()
    assert plots.training_curves([], tmp_path / "empty.png").is_file()  # before any epoch
