"""A comparison's pictures side by side: each objective's samples and reconstructions."""

import dataclasses

import numpy as np
import pyro
import pytest

from pyro_vae import Run
from pyro_vae.comparison import side_by_side
from pyro_vae.config.run_config import Config
from pyro_vae.data.datasets import load_data
from tests.helpers import TINY, run_cli


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("side")
    runs = {}
    for label, extra in (
        ("elbo", []),
        ("autoencoder", ["--model.guide.kind", "delta", "--objective.kind", "autoencoder"]),
    ):
        run_dir = root / label
        code, _, err = run_cli(
            ["train", "--train.epochs", "1", "--train.run_dir", run_dir, *TINY, *extra, "--quiet"]
        )
        assert code == 0, err
        runs[label] = run_dir
    return runs


@pytest.mark.slow
def test_each_objective_decodes_the_same_draws_and_reconstructs_the_same_points(
    two_runs, tmp_path, monkeypatch
):
    tiled = []
    real = side_by_side._tile

    def record(images, shape, ncols, lo, hi):
        tiled.append((np.asarray(images), ncols))
        return real(images, shape, ncols, lo, hi)

    monkeypatch.setattr(side_by_side, "_tile", record)
    data = load_data(Config.load(two_runs["elbo"] / "config.toml").data)
    written = side_by_side.write_side_by_side(tmp_path, two_runs, data, seed=3)
    assert [p.name for p in written] == ["samples.png", "reconstructions.png"]
    assert all(p.is_file() for p in written)
    (elbo_samples, _), (ae_samples, _), (rows, ncols) = tiled
    x = data.valid[: side_by_side.SHOWN]
    expected_rows = [x.numpy()]
    for label, samples in (("elbo", elbo_samples), ("autoencoder", ae_samples)):
        vae = Run.load(two_runs[label]).vae.eval()
        pyro.set_rng_seed(3)
        assert np.allclose(samples, vae.sample(64).numpy())
        expected_rows.append(vae.reconstruct(x).numpy())
    assert ncols == len(x) and np.allclose(rows, np.concatenate(expected_rows))


def test_data_that_are_not_images_draw_nothing(two_runs, tmp_path):
    data = load_data(Config.load(two_runs["elbo"] / "config.toml").data)
    data = dataclasses.replace(data, image_shape=None)
    assert side_by_side.write_side_by_side(tmp_path, two_runs, data) == []
    assert list(tmp_path.iterdir()) == []
