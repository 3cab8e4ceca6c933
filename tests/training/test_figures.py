"""The figures of a run directory (:func:`write_run_figures`): which are written, which are
skipped (in one line each) for data that cannot be drawn so, and what each is drawn from."""

from types import SimpleNamespace

import pyro.distributions as dist
import pytest
import torch

from pyro_vae.training import figures
from tests.figure_checks import history


class FakeVAE:
    """What :func:`write_run_figures` asks of a VAE, for data of ``d`` values a point."""

    def __init__(self, d):
        self.d, self.config = d, SimpleNamespace(layers=(2,), prior=SimpleNamespace(kind="normal"))

    def prior(self):
        return dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)

    def sample(self, n):
        return torch.rand(n, self.d)

    def reconstruct(self, x):
        return x.clamp(0.1, 0.9)

    def encode(self, x):
        return x[:, :2]

    def decode(self, z):
        return torch.rand(*z.shape[:-1], self.d)

    def parameters(self):
        return iter([torch.zeros(1)])


@pytest.mark.parametrize(
    ("shape", "why"),
    [
        pytest.param(
            (5, 3, 4),
            "image shape [5, 3, 4] has 5 channels; images show 1, 3 or 4 (grey, RGB, RGBA)",
            id="five-channels",
        ),
        pytest.param(
            (1, 3, 4, 5), "image shape [1, 3, 4, 5] is neither (H, W) nor (C, H, W)", id="four-dims"
        ),
        pytest.param((6, 6), "image shape [6, 6] holds 36 values, the data 60 a point", id="wrong-size"),
    ],
)
def test_figures_the_data_cannot_be_drawn_as_are_skipped_in_one_line_each(tmp_path, capsys, shape, why):
    data = SimpleNamespace(
        train=torch.rand(40, 60),
        valid=torch.rand(20, 60),
        train_labels=torch.arange(40) % 3,
        valid_labels=None,
        image_shape=shape,
    )
    run = SimpleNamespace(vae=FakeVAE(60), dir=tmp_path, history=history(epochs=3))
    written = figures.write_run_figures(run, data)
    assert written == [tmp_path / "curves.png", tmp_path / "latent.png"]
    assert all(path.is_file() for path in written)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1] for line in lines] == [
        " skipped samples.png",
        " skipped reconstructions.png",
        " skipped latent_grid.png",
        " skipped interpolation.png",
    ]
    assert all(line.startswith("pyro-vae: skipped ") and line.endswith(f".png: {why}") for line in lines), (
        lines
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "latent.png"]


def test_run_figures_of_drawable_data_are_all_written(tmp_path, capsys):
    data = SimpleNamespace(
        train=torch.rand(40, 60),
        valid=torch.rand(20, 60),
        train_labels=None,
        valid_labels=None,
        image_shape=(3, 4, 5),
    )
    run = SimpleNamespace(vae=FakeVAE(60), dir=tmp_path, history=history(epochs=3))
    written = figures.write_run_figures(run, data)
    names = ["curves.png", "samples.png", "reconstructions.png", "latent.png", "latent_grid.png"]
    assert [p.name for p in written] == [*names, "interpolation.png"] and capsys.readouterr().err == ""


@pytest.mark.parametrize(("valid", "which"), [(20, "training"), (1200, "validation")])
def test_the_latent_space_shows_validation_points_when_there_are_enough(tmp_path, monkeypatch, valid, which):
    drawn = {}

    def latent_space(z, labels, path, *, title):
        drawn.update(z=z, labels=labels, title=title)
        return path

    monkeypatch.setattr(figures, "latent_space", latent_space)
    monkeypatch.setattr(figures, "image_grid", lambda x, shape, path, **kw: drawn.update(range=kw) or path)
    for other in ("training_curves", "reconstructions"):  # not what this test reads: not drawn
        monkeypatch.setattr(figures, other, lambda *args, **kw: None)
    data = SimpleNamespace(
        train=torch.rand(40, 60) * 3 - 1,
        valid=torch.rand(valid, 60),
        train_labels=torch.arange(40) % 3,
        valid_labels=torch.arange(valid) % 5,
        image_shape=None,
    )
    run = SimpleNamespace(vae=FakeVAE(60), dir=tmp_path, history=history(epochs=3))
    figures.write_run_figures(run, data)
    points = data.valid if which == "validation" else data.train
    labels = data.valid_labels if which == "validation" else data.train_labels
    assert torch.equal(drawn["z"], points[:, :2]) and torch.equal(drawn["labels"], labels)  # FakeVAE.encode
    assert drawn["title"] == f"Posterior means E[z|x] of {which} points"
    # the samples are drawn on the training data's own value range
    assert (
        drawn["range"]["vmin"] == data.train.min().item()
        and drawn["range"]["vmax"] == data.train.max().item()
    )
