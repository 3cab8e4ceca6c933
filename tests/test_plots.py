"""pyro_vae.plots: the tiled canvas, and that each figure writes a PNG of the expected size."""

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from pyro_vae import plots


def test_tile_places_each_image_at_its_position():
    h, w, ncols = 3, 2, 3
    images = np.linspace(0.0, 1.0, 5 * h * w).reshape(5, h * w)
    canvas = plots._tile(images, (h, w), ncols, vmin=0.0, vmax=1.0)
    assert canvas.shape == (2 * (h + 1) - 1, ncols * (w + 1) - 1)
    for i in range(5):
        r, c = divmod(i, ncols)
        np.testing.assert_array_equal(
            canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w], images[i].reshape(h, w)
        )
    np.testing.assert_array_equal(canvas[h, :], 0.5)  # the gap between rows
    np.testing.assert_array_equal(canvas[:, w], 0.5)  # between columns
    np.testing.assert_array_equal(canvas[h + 1 :, 2 * (w + 1) :], 0.5)  # the empty sixth tile


def test_tile_rescales_clips_and_blanks_nan():
    images = np.array([[-10.0, 0.0, 5.0, 10.0], [np.nan] * 4])
    canvas = plots._tile(images, (2, 2), 2, vmin=0.0, vmax=10.0)
    np.testing.assert_array_equal(canvas[:, :2], [[0.0, 0.0], [0.5, 1.0]])
    np.testing.assert_array_equal(canvas[:, 3:], 0.5)
    colour = plots._tile(np.arange(2 * 3 * 4).reshape(2, -1), (3, 2, 2), 2, vmin=0.0, vmax=23.0)
    assert colour.shape == (2, 5, 3)  # (C, H, W) images shown as (H, W, C)
    np.testing.assert_allclose(colour[0, 0], np.array([0, 4, 8]) / 23.0)


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
def test_latent_space_writes_a_file(tmp_path, dim):
    z = np.random.default_rng(dim).normal(size=(30, dim))
    labels = np.arange(30) % 3
    path = plots.latent_space(z, labels if dim != 3 else None, tmp_path / "latent.png")
    assert path.is_file() and imread(path).ndim == 3


def test_decoded_grid_writes_a_file(tmp_path):
    seen = []

    def decode(z):
        seen.append(z)
        return np.tile(z[:, :1], (1, 4 * 4)) * 0.1 + 0.5

    path = plots.decoded_grid(decode, tmp_path / "grid.png", image_shape=(4, 4), n=5)
    assert path.is_file() and imread(path).ndim == 3
    (z,) = seen
    assert z.shape == (25, 2) and z.dtype == np.float32
    np.testing.assert_allclose(z[0], [-1.6448536, 1.6448536], rtol=1e-6)  # 5% and 95% quantiles
