"""``sample_run`` and ``interpolate_run`` (pyro_vae/evaluation/drawing.py): the draws of a trained
run's prior, decoded, and the decoded paths between pairs of its points, each checked against
the run's own VAE; bad input refused in one line before any work."""

import dataclasses

import numpy as np
import pyro
import pytest
import torch

from pyro_vae import Run
from pyro_vae.cli.main import main
from pyro_vae.core.errors import ConfigError, DataError, RunDirError
from pyro_vae.data.datasets import load_data
from pyro_vae.evaluation import checks, drawing
from pyro_vae.evaluation.drawing import MAX_GRID, interpolate_run, sample_run
from pyro_vae.models.vae import VAE
from pyro_vae.pictures.latent_paths import pick_pairs


@pytest.fixture
def run_dir(digits_run_dir):
    """The tiny digits run the tests of evaluation share (tests/conftest.py); only read here."""
    return digits_run_dir


def everything(root) -> set:
    return {p.relative_to(root) for p in root.rglob("*")}


def one_batch(run_dir, n: int, seed: int) -> np.ndarray:
    """What ``sample`` drew before it drew in chunks: all n at once."""
    vae = Run.load(run_dir).vae
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        return vae.sample(n).numpy()


# -- sample_run -------------------------------------------------------------------------------


def test_sample_writes_png_or_npy(run_dir, tmp_path, capsys):
    assert main(["sample", str(run_dir), "-n", "9", "--out", str(tmp_path / "s.npy"), "--seed", "1"]) == 0
    values = np.load(tmp_path / "s.npy")
    run = Run.load(run_dir)
    torch.manual_seed(1)
    assert values.shape == (9, 64)
    np.testing.assert_allclose(values, run.vae.sample(9).numpy(), rtol=0, atol=1e-6)


def test_samples_within_one_chunk_are_those_of_one_batch(run_dir, tmp_path):
    out = sample_run(run_dir, 37, out=tmp_path / "s.npy", seed=3)
    expected = one_batch(run_dir, 37, seed=3)
    np.save(tmp_path / "expected.npy", expected)
    assert out.read_bytes() == (tmp_path / "expected.npy").read_bytes()  # bitwise, header too
    grid = sample_run(run_dir, 37, out=tmp_path / "s.png", seed=3)
    assert grid.stat().st_size > 0 and sorted(tmp_path.rglob(".*.tmp")) == []


def test_samples_across_chunks_continue_one_stream(run_dir, tmp_path):
    """Chunks of 10: 25 draws are reproducible, their first 20 are the 20 draws' and their
    first 10 one batch of 10."""
    a = np.load(sample_run(run_dir, 25, out=tmp_path / "a.npy", seed=5, chunk_size=10))
    b = np.load(sample_run(run_dir, 25, out=tmp_path / "b.npy", seed=5, chunk_size=10))
    c = np.load(sample_run(run_dir, 20, out=tmp_path / "c.npy", seed=5, chunk_size=10))
    assert a.shape == (25, 64) and a.dtype == np.float32
    assert np.array_equal(a, b) and np.array_equal(a[:20], c)
    assert np.array_equal(a[:10], one_batch(run_dir, 10, seed=5))
    assert not np.array_equal(a[10:20], a[:10])  # each chunk draws afresh


def test_an_interrupted_sample_leaves_no_file(run_dir, tmp_path, monkeypatch):
    draws = []

    def interrupted(self, n, **kwargs):
        draws.append(n)
        if len(draws) == 2:
            raise KeyboardInterrupt
        return torch.zeros(n, 64)

    monkeypatch.setattr(VAE, "sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sample_run(run_dir, 25, out=tmp_path / "s.npy", chunk_size=10)
    assert draws == [10, 10] and everything(tmp_path) == set()


@pytest.mark.parametrize(
    ("kwargs", "error", "line"),
    [
        pytest.param({"n": 0}, ConfigError, "-n = 0 is not allowed: expected an integer >= 1", id="n-0"),
        pytest.param(
            {"seed": -1},
            ConfigError,
            "--seed = -1 is not allowed: expected an integer from 0 to 4294967295",
            id="seed",
        ),
        pytest.param(
            {"out": "s.jpg"},
            ConfigError,
            "--out 's.jpg': unknown format '.jpg'; allowed: .png, .npy",
            id="jpg",
        ),
        pytest.param(
            {"n": MAX_GRID + 1, "out": "s.png"},
            ConfigError,
            "-n 10001 is too many samples for a picture (at most 10000 tiles); "
            "write them as an array with --out FILE.npy",
            id="grid-too-big",
        ),
        # a grid of exactly MAX_GRID tiles passes that check: the missing run is what stops it
        pytest.param({"n": MAX_GRID, "out": "s.png"}, RunDirError, "run directory", id="grid-at-most"),
    ],
)
def test_sample_run_refuses_bad_input_before_it_loads_the_run(tmp_path, monkeypatch, kwargs, error, line):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error) as info:
        sample_run(tmp_path / "no-run", **kwargs)
    assert str(info.value).startswith(line) and "\n" not in str(info.value), str(info.value)
    assert everything(tmp_path) == set()


def test_sample_run_refuses_a_directory_as_out(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(RunDirError) as info:
        sample_run(tmp_path / "no-run", 4, out=tmp_path / "d")
    d = str(tmp_path / "d")
    assert str(info.value) == f"--out {d!r} is a directory; name a file, e.g. {d + '/samples.png'!r}"


def test_an_array_of_samples_needs_its_bytes_free(run_dir, tmp_path, monkeypatch):
    """n draws of 64 float32 values need 256 n bytes: one byte less free is refused, exactly
    as many is written."""
    free = []
    real = checks.shutil.disk_usage
    monkeypatch.setattr(checks.shutil, "disk_usage", lambda p: real(p)._replace(free=free[-1]))
    free.append(9 * 64 * 4 - 1)
    with pytest.raises(RunDirError, match=r"it needs 0\.0 GB and .* has 0\.0 GB free"):
        sample_run(run_dir, 9, out=tmp_path / "s.npy")
    assert everything(tmp_path) == set()
    free.append(9 * 64 * 4)
    assert np.load(sample_run(run_dir, 9, out=tmp_path / "s.npy")).shape == (9, 64)


@pytest.mark.parametrize(
    "shapes", [[(3, 4), (3, 4), (1, 4)], [(5, 2)], [(2, 2, 3), (1, 2, 3)]], ids=["3-chunks", "1-chunk", "3-D"]
)
def test_write_npy_writes_the_bytes_of_np_save(tmp_path, shapes):
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    n = sum(len(c) for c in chunks)
    drawing._write_npy(tmp_path / "ours.npy", n, iter(chunks))
    np.save(tmp_path / "numpy.npy", np.concatenate(chunks))
    assert (tmp_path / "ours.npy").read_bytes() == (tmp_path / "numpy.npy").read_bytes()


def test_write_npy_removes_its_file_when_a_chunk_fails(tmp_path):
    def chunks():
        yield np.zeros((2, 3), np.float32)
        raise RuntimeError("a draw failed")

    with pytest.raises(RuntimeError, match="a draw failed"):
        drawing._write_npy(tmp_path / "s.npy", 4, chunks())
    assert everything(tmp_path) == set()


# -- interpolate_run --------------------------------------------------------------------------


@pytest.fixture
def drawn(monkeypatch):
    """What interpolate_run hands to the picture: (interpolation, image_shape, out, vmin, vmax)."""
    calls = []

    def record(r, image_shape, out, *, vmin, vmax):
        calls.append((r, image_shape, out, vmin, vmax))
        return out

    monkeypatch.setattr(drawing, "interpolation_grid", record)
    return calls


def test_interpolate_run_decodes_the_straight_line_between_seeded_pairs(run_dir, tmp_path, drawn):
    out = interpolate_run(run_dir, 3, steps=4, paths=["linear"], seed=1, out=tmp_path / "i.png")
    assert out == tmp_path / "i.png"
    ((r, image_shape, at, vmin, vmax),) = drawn
    run = Run.load(run_dir)
    data = load_data(run.config.data)
    pairs = pick_pairs(len(data.valid), 3, labels=data.valid_labels, seed=1)
    assert torch.equal(r.xa, data.valid[pairs[:, 0]]) and torch.equal(r.xb, data.valid[pairs[:, 1]])
    assert (image_shape, at) == ((8, 8), out) and list(r.images) == ["linear"]
    assert (vmin, vmax) == (data.train.min().item(), data.train.max().item())
    with torch.no_grad():  # z_t = z_a + t (z_b - z_a) at t = 0, 1/3, 2/3, 1, decoded
        za, zb = run.vae.encode(r.xa), run.vae.encode(r.xb)  # (3, Z)
        t = torch.tensor([0, 1 / 3, 2 / 3, 1]).reshape(1, 4, 1)
        expected = run.vae.decode(za[:, None] + t * (zb - za)[:, None])  # (3, 4, 64)
    torch.testing.assert_close(r.images["linear"], expected, rtol=0, atol=1e-5)


def test_interpolate_run_draws_every_path_of_a_gaussian_prior_beside_the_run(run_dir, drawn):
    out = interpolate_run(run_dir, 2, steps=3)
    assert out == run_dir / "interpolation-2.png" and not out.exists()  # the picture is stubbed
    ((r, *_),) = drawn
    assert list(r.images) == ["linear", "spherical"]
    assert r.images["spherical"].shape == (2, 3, 64)
    data = load_data(Run.load(run_dir).config.data)
    pairs = pick_pairs(len(data.valid), 2, labels=data.valid_labels, seed=0)
    assert torch.equal(r.xa, data.valid[pairs[:, 0]])


@pytest.mark.parametrize(
    ("kwargs", "line"),
    [
        pytest.param({"pairs": 0}, "--pairs = 0 is not allowed: expected an integer >= 1", id="pairs-0"),
        pytest.param({"steps": 1}, "--steps = 1 is not allowed: expected an integer >= 2", id="steps-1"),
        pytest.param({"out": "i.jpg"}, "--out 'i.jpg': unknown format '.jpg'; allowed: .png", id="jpg"),
    ],
)
def test_interpolate_run_refuses_bad_input_before_it_loads_the_run(tmp_path, kwargs, line):
    with pytest.raises(ConfigError) as info:
        interpolate_run(tmp_path / "no-run", **kwargs)
    assert str(info.value) == line


def test_interpolate_run_refuses_a_split_the_data_lack(run_dir, drawn):
    with pytest.raises(DataError) as info:
        interpolate_run(run_dir, 2, split="test")
    assert str(info.value) == "the data of this run has no test split; available: train, valid"
    assert drawn == []


def test_interpolate_run_refuses_data_that_are_not_images(run_dir, monkeypatch, drawn):
    real = checks.data_of
    monkeypatch.setattr(drawing, "data_of", lambda run: dataclasses.replace(real(run), image_shape=None))
    with pytest.raises(DataError) as info:
        interpolate_run(run_dir, 2)
    assert str(info.value) == f"the data of run {str(run_dir)!r} are not images: there is no picture to draw"
    assert drawn == []
