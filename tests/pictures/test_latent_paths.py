"""Interpolation and traversals: the paths' geometry, their ends, the prior's quantiles."""

import math
import statistics

import numpy as np
import pytest
import torch

from pyro_vae import VAE, Config
from pyro_vae.config.sections import ModelConfig
from pyro_vae.core.errors import ConfigError
from pyro_vae.data.datasets import load_data
from pyro_vae.evaluation import drawing
from pyro_vae.pictures import latent_paths, latent_plots
from tests.helpers import PNG_MAGIC, TINY, run_cli, run_figures


def vae(dim=3, prior="normal", layers=None, image=(2, 2)):
    spec = {"latent_dims": layers} if layers else {"latent_dim": dim}
    config = ModelConfig(data_dim=4, image_shape=list(image), prior={"kind": prior}, **spec)
    torch.manual_seed(0)
    return VAE(config).eval()


def test_lerp_is_the_straight_line_and_slerp_the_great_circle(f64):
    a, b = torch.tensor([[1.0, 0.0], [3.0, 4.0]]), torch.tensor([[0.0, 1.0], [-4.0, 3.0]])
    t = torch.linspace(0, 1, 7)
    line = latent_paths.lerp(a, b, t)  # (2, 7, 2)
    assert torch.equal(line[:, 0], a) and torch.equal(line[:, -1], b)
    assert torch.allclose(line[0, 3], torch.tensor([0.5, 0.5]))
    arc = latent_paths.slerp(a, b, t)
    # both pairs are a quarter turn apart at equal radii: the path is the rotation by t·90°
    for p, radius, start in ((0, 1.0, 0.0), (1, 5.0, math.atan2(4, 3))):
        angle = start + t * math.pi / 2
        expected = radius * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
        assert torch.allclose(arc[p], expected, atol=1e-12)


def test_slerp_of_parallel_or_antipodal_codes_is_the_line(f64):
    a = torch.tensor([[1.0, 2.0], [0.0, 0.0], [1.0, 2.0]])
    b = torch.tensor([[2.0, 4.0], [1.0, 1.0], [-3.0, -6.0]])  # the same direction; a zero code; opposite
    t = torch.linspace(0, 1, 5)
    assert torch.allclose(latent_paths.slerp(a, b, t), latent_paths.lerp(a, b, t))


def test_spherical_path_is_taken_about_the_prior_centre(f64):
    model = vae(prior="learned_normal")
    with torch.no_grad():
        model.prior.loc.copy_(torch.tensor([1.0, -2.0, 0.5]))
    za, zb = torch.tensor([[2.0, -2.0, 0.5]]), torch.tensor([[1.0, -1.0, 0.5]])
    scale = model.prior.scale().detach()
    codes = latent_paths.path_codes(model, za, zb, 3, "spherical")
    u = (codes - model.prior.loc.detach()) / scale
    assert torch.allclose(u.norm(dim=-1), (za - model.prior.loc.detach()).norm(dim=-1) / scale[0])
    assert torch.allclose(codes[0, 0], za[0]) and torch.allclose(codes[0, -1], zb[0])


def test_spherical_path_refuses_a_prior_that_is_not_gaussian():
    with pytest.raises(ConfigError, match=r"needs a Gaussian prior.*'mog'.*use path = 'linear'"):
        latent_paths.path_codes(vae(prior="mog"), torch.zeros(1, 3), torch.ones(1, 3), 4, "spherical")
    with pytest.raises(ConfigError, match="at least 2"):
        latent_paths.path_codes(vae(), torch.zeros(1, 3), torch.ones(1, 3), 1)


@pytest.mark.parametrize(
    "dim,prior,layers", [(3, "normal", None), (1, "normal", None), (3, "mog", None), (3, "normal", [3, 2])]
)
def test_interpolation_ends_decode_to_the_reconstructions(dim, prior, layers):
    model = vae(dim=dim, prior=prior, layers=layers)
    x = torch.rand(6, 4)
    paths = ("linear", "spherical") if prior == "normal" and not layers else ("linear",)
    r = latent_paths.interpolate(model, x[:3], x[3:], steps=5, paths=paths)
    for p in paths:
        assert r.images[p].shape == (3, 5, 4)
        assert torch.allclose(r.images[p][:, 0], model.reconstruct(x[:3]), atol=1e-6)
        assert torch.allclose(r.images[p][:, -1], model.reconstruct(x[3:]), atol=1e-6)


def test_gaussian_quantiles_along_a_direction_are_exact(f64):
    model = vae(prior="learned_normal")
    with torch.no_grad():
        model.prior.loc.copy_(torch.tensor([1.0, -2.0, 0.5]))
    v = torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    q = latent_paths.prior_quantiles(model, v, (0.05, 0.5, 0.9))
    scale = model.prior.scale().detach()
    for i, loc, sd in ((0, 0.6 - 1.6, math.hypot(0.6 * scale[0], 0.8 * scale[1])), (1, 0.5, scale[2])):
        expected = [statistics.NormalDist(loc, float(sd)).inv_cdf(p) for p in (0.05, 0.5, 0.9)]
        assert q[i].tolist() == pytest.approx(expected, abs=1e-9)


def test_mixture_quantiles_match_the_mixture_cdf_within_their_sampling_error():
    model = vae(prior="mog")
    v = torch.eye(3)[:2]
    probs = (0.05, 0.5, 0.95)
    q = latent_paths.prior_quantiles(model, v, probs, prior_samples=20_000)
    weights = torch.softmax(model.prior.logits, 0).detach().double()
    locs, scales = model.prior.locs.detach().double(), model.prior.scales().detach().double()
    for i in range(2):
        for j, p in enumerate(probs):
            cdf = sum(
                float(w) * statistics.NormalDist(float(m), float(s)).cdf(float(q[i, j]))
                for w, m, s in zip(weights, locs[:, i], scales[:, i], strict=True)
            )
            assert abs(cdf - p) < 4 * math.sqrt(p * (1 - p) / 20_000) + 1e-4


@pytest.mark.parametrize("basis", ["units", "principal"])
def test_traversal_sets_one_direction_to_the_quantiles_and_keeps_the_rest(basis, f64):
    model = vae(dim=4).double()
    data = torch.rand(50, 4, dtype=torch.float64)
    t = latent_paths.traverse(model, data[0], data, directions=3, basis=basis)
    means = model.encode(data).numpy()
    if basis == "units":
        order = np.argsort(-means.var(0, ddof=1))[:3]
        assert t.names == [f"z{'₀₁₂₃₄'[u + 1]}" for u in order]
        assert t.spread.numpy() == pytest.approx(means.var(0, ddof=1)[order])
    else:
        cov = np.cov(means.T)
        eigenvalues = np.sort(np.linalg.eigvalsh(cov))[::-1][:3]
        assert t.spread.numpy() == pytest.approx(eigenvalues)
    expected = [statistics.NormalDist().inv_cdf(p) for p in latent_paths.PROBS]
    assert t.values.numpy() == pytest.approx(np.tile(expected, (3, 1)))  # N(0, I): |v| = 1
    z0 = model.encode(data[:1])[0]
    for i, v in enumerate(t.directions):
        codes = z0 + (t.values[i] - v @ z0)[:, None] * v  # independent of traverse's broadcasting
        assert torch.allclose(t.images[i], model.decode(codes))
        assert torch.allclose(codes @ v, t.values[i])
        assert torch.allclose(codes - (codes @ v)[:, None] * v, (z0 - (z0 @ v) * v).expand_as(codes))


def test_pairs_are_distinct_and_of_different_labels():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    pairs = latent_paths.pick_pairs(10, 4, labels=labels, seed=3)
    assert pairs.shape == (4, 2) and len(set(pairs.ravel())) == 8
    assert all(labels[a] != labels[b] for a, b in pairs)
    assert np.array_equal(pairs, latent_paths.pick_pairs(10, 4, labels=labels, seed=3))
    with pytest.raises(ConfigError, match="--pairs 6 is not allowed: from 1 to 5"):
        latent_paths.pick_pairs(10, 6)


def test_the_pictures_tile_the_data_and_the_decoded_paths(tmp_path, monkeypatch):
    tiled = []

    def record(images, image_shape, ncols, vmin, vmax):
        tiled.append((np.asarray(images), ncols))
        return real(images, image_shape, ncols, vmin, vmax)

    real = latent_plots._tile
    monkeypatch.setattr(latent_plots, "_tile", record)
    model = vae(dim=3, image=(2, 2))
    x = torch.rand(4, 4)
    r = latent_paths.interpolate(model, x[:2], x[2:], steps=4, paths=("linear", "spherical"))
    assert drawing.interpolation_grid(r, (2, 2), tmp_path / "i.png").is_file()
    rows, ncols = tiled[-1]
    assert ncols == 6 and rows.shape == (2 * 2 * 6, 4)  # pairs × paths rows of a | 4 steps | b
    for i, (pair, path) in enumerate([(0, "linear"), (0, "spherical"), (1, "linear"), (1, "spherical")]):
        row = rows[6 * i : 6 * i + 6]
        assert np.allclose(row[0], x[pair]) and np.allclose(row[-1], x[2 + pair])
        assert np.allclose(row[1:-1], r.images[path][pair].numpy())
    t = latent_paths.traverse(model, x[0], x, directions=2)
    assert latent_plots.traversal_grid(t, (2, 2), tmp_path / "t.png").is_file()
    rows, ncols = tiled[-1]
    q = len(latent_paths.PROBS)
    assert ncols == q + 1 and rows.shape == (2 * (q + 1), 4)
    assert np.allclose(rows[0], x[0]) and np.allclose(rows[q + 1], x[0])
    assert np.allclose(rows[1 : q + 1], t.images[0].numpy())


@pytest.fixture(scope="module")
def run8(tmp_path_factory):
    """A tiny digits run with an 8-dimensional latent space."""
    run_dir = tmp_path_factory.mktemp("paths") / "run"
    args = ["train", "--train.epochs", "1", "--train.run_dir", run_dir, "--model.latent_dim", "8"]
    with run_figures():  # its tests look at the pictures training drew
        code, _, err = run_cli([*args, *TINY, "--quiet"])
    assert code == 0, err
    return run_dir


def test_interpolate_command_draws_both_paths_for_a_gaussian_prior(run8, tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(drawing, "interpolation_grid", lambda r, *a, **k: drawn.append(r) or a[1])
    code, out, err = run_cli(["interpolate", run8, "--pairs", "3", "--steps", "4", "--seed", "1"])
    assert code == 0, err
    assert out.strip() == str(run8 / "interpolation-3.png")
    (r,) = drawn
    assert list(r.images) == ["linear", "spherical"] and r.images["linear"].shape == (3, 4, 64)
    data = load_data(Config.load(run8 / "config.toml").data)
    pairs = latent_paths.pick_pairs(len(data.valid), 3, labels=data.valid_labels, seed=1)
    assert torch.equal(r.xa, data.valid[pairs[:, 0]]) and torch.equal(r.xb, data.valid[pairs[:, 1]])


def test_interpolate_command_writes_a_png(run8, tmp_path):
    code, out, err = run_cli(
        ["interpolate", run8, "--pairs", "2", "--path", "linear", "--out", tmp_path / "i.png"]
    )
    assert code == 0, err
    assert out.strip() == str(tmp_path / "i.png")
    assert (tmp_path / "i.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--pairs", "0"], "--pairs = 0 is not allowed"),
        (["--pairs", "5000"], "--pairs 5000 is not allowed: from 1 to"),
        (["--steps", "1"], "--steps = 1 is not allowed"),
        (["--out", "x.jpg"], "unknown format '.jpg'"),
        (["--split", "test"], "no test split; available: train, valid"),
    ],
)
def test_interpolate_command_refuses_bad_input_in_one_line(run8, args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["interpolate", run8, *args])
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_a_run_of_more_than_two_latent_dimensions_draws_its_paths(run8):
    names = {p.name for p in run8.iterdir()}
    assert {"interpolation.png", "traversals.png"} <= names and "latent_grid.png" not in names


def test_the_decoded_grid_of_another_prior_stands_at_its_marginal_quantiles(tmp_path, monkeypatch):
    from pyro_vae.training import figures

    model = vae(dim=2, prior="mog")
    options = figures._grid_quantiles(model)
    levels = np.linspace(0.05, 0.95, 15).tolist()
    expected = latent_paths.prior_quantiles(model, torch.eye(2), levels).numpy()
    assert np.allclose(options["quantiles"], expected) and "'mog'" in options["prior"]
    seen = []
    monkeypatch.setattr(latent_plots, "save_figure", lambda fig, path: seen.append(fig) or path)

    def decode(z):
        seen.append(z)
        return torch.rand(len(z), 4)

    latent_plots.decoded_grid(decode, tmp_path / "g.png", image_shape=(2, 2), **options)
    z, fig = seen
    q1, q2 = expected
    assert np.allclose(z[:15, 0], q1, atol=1e-6) and np.allclose(z[::15, 1], q2[::-1], atol=1e-6)
    ax = fig.axes[0]
    assert ax.get_xticklabels()[0].get_text() == f"5 % ({q1[0]:.2f})".replace("-", "−")
    assert "quantile of the prior 'mog', its marginal" in ax.get_xlabel()
    assert figures._grid_quantiles(vae(dim=2)) == {}  # N(0, I): the standard normal's, exactly
