"""Pictures of the latent space: the decoded grid at the prior's quantiles, and the tiled
interpolations and traversals, whose tiles must be the data points and the decoded images in
their order."""

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from pyro_vae.pictures import latent_plots, plots
from pyro_vae.pictures.latent_paths import Interpolation, Traversal


def test_decoded_grid_names_the_prior_quantiles_it_spans(tmp_path, monkeypatch):
    seen, figures, save = [], [], latent_plots.save_figure

    def decode(z):
        seen.append(z)
        return np.tile(z[:, :1], (1, 4 * 4)) * 0.1 + 0.5

    monkeypatch.setattr(latent_plots, "save_figure", lambda fig, path: figures.append(fig) or save(fig, path))
    path = latent_plots.decoded_grid(decode, tmp_path / "grid.png", image_shape=(4, 4), n=5)
    assert path.is_file() and imread(path).ndim == 3
    (z,) = seen
    assert z.shape == (25, 2) and z.dtype == np.float32
    np.testing.assert_allclose(z[0], [-1.6448536, 1.6448536], rtol=1e-6)  # 5% and 95% quantiles
    (fig,) = figures
    (ax,) = fig.axes
    words = ["5 % (−1.64)", "50 % (0.00)", "95 % (1.64)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == words
    rows = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels()), strict=True))
    assert [label for _, label in rows] == words[::-1]  # z₂ grows upwards: 95 % in the top row
    s = plots._scale((4, 4))  # 6: tiles of 24 pixels, centred at 11.5, 11.5 + 2·25, …
    np.testing.assert_allclose(ax.get_xticks(), [11.5, 11.5 + 2 * (4 * s + 1), 11.5 + 4 * (4 * s + 1)])
    assert "quantile of the prior N(0, 1)" in ax.get_xlabel() and ax.get_xlabel().startswith("z₁")


@pytest.fixture
def tiled(monkeypatch):
    """The rows each picture tiles, and how many tiles a row, as they go to ``_tile``."""
    seen, real = [], latent_plots._tile

    def record(images, image_shape, ncols, vmin, vmax):
        seen.append((np.asarray(images), ncols))
        return real(images, image_shape, ncols, vmin, vmax)

    monkeypatch.setattr(latent_plots, "_tile", record)
    return seen


def test_interpolation_rows_are_a_then_each_paths_images_then_b(tmp_path, tiled):
    pairs, steps, d = 2, 3, 4
    xa, xb = torch.rand(pairs, d), torch.rand(pairs, d)
    images = {"linear": torch.rand(pairs, steps, d), "spherical": torch.rand(pairs, steps, d)}
    result = Interpolation(xa, xb, torch.linspace(0, 1, steps), codes={}, images=images)
    assert latent_plots.interpolation_grid(result, (2, 2), tmp_path / "i.png").is_file()
    ((rows, ncols),) = tiled
    assert ncols == steps + 2 and rows.shape == (pairs * 2 * (steps + 2), d)
    for i, (pair, path) in enumerate([(0, "linear"), (0, "spherical"), (1, "linear"), (1, "spherical")]):
        row = rows[(steps + 2) * i : (steps + 2) * (i + 1)]
        np.testing.assert_array_equal(row[0], xa[pair].numpy())
        np.testing.assert_array_equal(row[1:-1], images[path][pair].numpy())
        np.testing.assert_array_equal(row[-1], xb[pair].numpy())


def test_traversal_rows_are_the_data_point_then_its_decoded_quantiles(tmp_path, tiled, monkeypatch):
    figures, save = [], latent_plots.save_figure
    monkeypatch.setattr(latent_plots, "save_figure", lambda fig, path: figures.append(fig) or save(fig, path))
    v, q, d = 2, 5, 4
    result = Traversal(
        x=torch.rand(d),
        probs=(0.05, 0.25, 0.5, 0.75, 0.95),
        values=torch.zeros(v, q),
        directions=torch.eye(v, 3),
        names=["z₂", "z₁"],
        spread=torch.tensor([1.5, 0.0123]),
        images=torch.rand(v, q, d),
    )
    latent_plots.traversal_grid(result, (2, 2), tmp_path / "t.png")
    ((rows, ncols),) = tiled
    assert ncols == q + 1 and rows.shape == (v * (q + 1), d)
    for i in range(v):
        np.testing.assert_array_equal(rows[i * (q + 1)], result.x.numpy())
        np.testing.assert_array_equal(rows[i * (q + 1) + 1 : (i + 1) * (q + 1)], result.images[i].numpy())
    (ax,) = figures[0].axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["z₂ (var 1.5)", "z₁ (var 0.012)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["data", "5 %", "50 %", "95 %"]
    assert ax.get_title().startswith("Traversals: one latent unit per row")
