"""The ``pyro-vae`` command line, run in-process with tiny budgets (and twice as a real process)."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from pyro_vae import Config, Run
from pyro_vae.cli.main import main
from pyro_vae.data.datasets import load_data
from pyro_vae.inference.measure import measure
from pyro_vae.models.likelihoods import LIKELIHOODS
from pyro_vae.pictures import plots
from tests.figure_checks import png_pixels
from tests.helpers import ARTEFACTS, FIGURES, METRIC_KEYS, TINY, png_size, run_cli, run_figures, snapshot


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One tiny training run on the digits, shared by the tests that read a run directory."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    with run_figures():  # its tests look at every artefact of a run
        args = ["train", "--train.epochs", "2", "--train.run_dir", run_dir, *TINY, "--quiet"]
        code, out, err = run_cli(args)
    assert code == 0, err
    return run_dir, code, out, err


# ---------------------------------------------------------------------------------------------
# Help
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        pytest.param(["--help"], ["usage: pyro-vae", "train", "sample"], id="top"),
        pytest.param(
            ["train", "--help"],
            [
                "--config FILE",
                "--overwrite",
                "--train.epochs 300",
                "--model.latent_dim 2",
                "--train.lr 0.001",
            ],
            id="train",
        ),
        pytest.param(["sample", "--help"], ["RUN_DIR", "-n N", "--out FILE", "--device DEVICE"], id="sample"),
    ],
)
def test_help_exits_zero(capsys, argv, fragments):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    for fragment in fragments:
        assert fragment in out


def flat_keys(values: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        if isinstance(value, dict):
            keys += flat_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def train_help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    return capsys.readouterr().out


def test_train_help_lists_every_config_key_and_kind(capsys):
    out = train_help(capsys)
    for key in flat_keys(Config().to_dict()):
        assert f"  --{key} " in out, key
    assert '  --model.likelihood.kind "gaussian"' in out
    assert "  --data.shuffle true" in out
    assert "  --data.path (unset)" in out
    assert "  likelihood: " + ", ".join(LIKELIHOODS.names()) in out
    assert (
        "  objective: autoencoder, beta, elbo, elbo_stl, iwae, iwae_dreg, meanfield, renyi, tail_adaptive, "
        "tracegraph" in out
    )


def test_train_help_defaults_can_be_typed_back(capsys):
    lines = [line.strip() for line in train_help(capsys).splitlines() if line.startswith("  --")]
    keys = flat_keys(Config().to_dict())
    lines = [line for line in lines if line.split()[0][2:] in keys]
    assert len(lines) == len(keys)
    for line in lines:
        key, _, word = line[2:].partition(" ")
        if word == "(unset)":
            continue
        assert Config().override({key: word}) == Config(), line


@pytest.mark.slow
def test_python_dash_m_help():
    result = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: pyro-vae")
    assert "train" in result.stdout and "sample" in result.stdout


@pytest.mark.slow
def test_console_script_help():
    script = shutil.which("pyro-vae", path=os.path.dirname(sys.executable)) or shutil.which("pyro-vae")
    if script is None:
        pytest.skip("the pyro-vae console script is not installed")
    result = subprocess.run([script, "train", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: pyro-vae train")
    assert "--train.epochs 300" in result.stdout


# ---------------------------------------------------------------------------------------------
# Train, then sample
# ---------------------------------------------------------------------------------------------


def test_train_writes_every_artefact(digits_run):
    run_dir, code, out, err = digits_run
    assert code == 0, err
    assert out == f"{run_dir}\n"
    assert err == ""  # --quiet
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(ARTEFACTS)  # no temporary files left
    for name in FIGURES:
        width, height = png_size(run_dir / name)
        assert width >= 100 and height >= 100, name
        assert (run_dir / name).stat().st_size > 2000, name


def test_train_metrics(digits_run):
    run_dir = digits_run[0]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert [r["step"] for r in rows] == [0, 17, 34]  # ceil(1617 / 100) steps per epoch
    for row in rows:
        for key in METRIC_KEYS:
            assert math.isfinite(row[key]), (row["epoch"], key)
        for split in ("train", "valid"):
            assert row[f"{split}_elbo"] == pytest.approx(row[f"{split}_recon"] - row[f"{split}_kl"], rel=1e-5)
            assert row[f"{split}_kl"] >= 0  # closed-form KL of two Gaussians
        assert row["kl_estimator"] == "analytic"
    assert rows[0]["train_loss"] is None and rows[0]["seconds"] == 0
    assert all(r["seconds"] > 0 and math.isfinite(r["train_loss"]) for r in rows[1:])
    assert rows[2]["valid_elbo"] > rows[0]["valid_elbo"]  # two epochs of training help


def test_train_config_and_checkpoint(digits_run):
    run_dir = digits_run[0]
    config = Config.load(run_dir / "config.toml")
    assert config.train.epochs == 2
    assert config.train.run_dir == str(run_dir)
    assert config.model.data_dim == 64 and config.model.latent_dim == 2
    assert config.model.encoder.params["hidden"] == [16]
    assert config.data.image_shape == [8, 8]
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert (checkpoint["training"]["epoch"], checkpoint["training"]["step"]) == (2, 34)
    assert Config.from_dict(checkpoint["config"]) == config
    run = Run.load(run_dir)
    assert run.config == config
    assert len(run.history) == 3
    assert run.vae.sample(3).shape == (3, 64)


def test_sample_png_shows_the_draws_of_its_seed(digits_run, tmp_path, capsys, monkeypatch):
    figures, save = [], plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or save(fig, path))
    out_path = tmp_path / "s.png"
    assert main(["sample", str(digits_run[0]), "-n", "16", "--out", str(out_path)]) == 0
    assert capsys.readouterr().out == f"{out_path}\n"
    assert main(["sample", str(digits_run[0]), "-n", "16", "--out", str(tmp_path / "s.npy")]) == 0
    x = np.load(tmp_path / "s.npy").reshape(16, 8, 8)  # the same seed's draws
    png_size(out_path)
    png = imread(out_path)[..., :3]
    (fig,) = figures
    # 4 × 4 tiles, each digit pixel (i, j) a block of s × s canvas pixels, GAP between tiles: the
    # PNG at the centre of each block is that pixel's grey level, clipped to [0, 1]
    s, step = plots._scale((8, 8)), 8 * plots._scale((8, 8)) + plots.GAP
    k, i, j = np.meshgrid(np.arange(16), np.arange(8), np.arange(8), indexing="ij")
    centres = np.stack([(k % 4) * step + j * s + (s - 1) / 2, (k // 4) * step + i * s + (s - 1) / 2], -1)
    at = png_pixels(fig, fig.axes[0], png, centres.reshape(-1, 2)).astype(int)
    shown = png[at[:, 1], at[:, 0]]  # (16 · 64, 3)
    assert np.array_equal(shown[:, 0], shown[:, 2])  # grey
    # within 2 of 255 levels: the grey colormap's 256 bins and the resampler's float32 rounding
    np.testing.assert_allclose(shown[:, 0], np.clip(x, 0, 1).reshape(-1), atol=2 / 255)


def test_sample_npy(digits_run, tmp_path, capsys):
    run_dir = digits_run[0]
    assert main(["sample", str(run_dir), "-n", "16", "--out", str(tmp_path / "s.npy")]) == 0
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (16, 64) and x.dtype == np.float32
    assert np.isfinite(x).all()
    assert x.min() > -1.5 and x.max() < 2.5  # decoder means near the data's [0, 1]
    assert x.std(0).max() > 0  # different z give different images
    # the same seed gives the same samples; another seed different ones
    assert main(["sample", str(run_dir), "-n", "16", "--out", str(tmp_path / "again.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "again.npy"), x)
    args = ["sample", str(run_dir), "-n", "16", "--seed", "1", "--out", str(tmp_path / "other.npy")]
    assert main(args) == 0
    assert not np.array_equal(np.load(tmp_path / "other.npy"), x)


def test_sample_default_out_is_in_the_run_dir(tmp_path, capsys, digits_run):
    run_dir = tmp_path / "copy"
    shutil.copytree(digits_run[0], run_dir)
    assert main(["sample", str(run_dir), "-n", "4"]) == 0
    assert capsys.readouterr().out == f"{run_dir / 'samples-4.png'}\n"
    png_size(run_dir / "samples-4.png")


def test_config_file_and_overrides(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("vae.toml").write_text(
        '[model]\nencoder = { kind = "mlp", hidden = [16] }\ndecoder = { kind = "mlp", hidden = [8] }\n'
        "[train]\nepochs = 1\nbatch_size = 50\n"
    )
    argv = ["train", "--config", "vae.toml", "--train.epochs", "2", "--train.batch-size=400"]
    assert main([*argv, "--train.run_dir", "run"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "run\n"
    assert "pyro-vae: training on digits (1617 train / 180 valid points, 64 values each)" in captured.err
    assert "2 epochs" in captured.err  # not --quiet: a summary at the end
    config = Config.load(tmp_path / "run" / "config.toml")
    assert config.train.epochs == 2  # the command line wins over the file
    assert config.train.batch_size == 400  # kebab-case, with =
    assert config.model.encoder.params["hidden"] == [16]  # the file wins over the defaults
    assert config.model.decoder.params == {"hidden": [8], "activation": "tanh"}
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [0, 5, 10]  # ceil(1617 / 400) steps per epoch


@pytest.mark.slow
def test_default_run_dir_is_under_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--train.epochs", "1", *TINY, "--quiet"]) == 0
    out = capsys.readouterr().out.strip()
    assert Path(out).parent == Path("runs") and Path(out).name.startswith("digits-")
    assert (tmp_path / out / "checkpoint.pt").is_file()


def test_relaxed_bernoulli_trains_on_digits(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--model.likelihood.kind", "bernoulli", "--model.likelihood.relaxed", "true"]
    code = main([*argv, "--train.epochs", "1", "--train.run_dir", str(run_dir), *TINY, "--quiet"])
    assert code == 0, capsys.readouterr().err
    config = Config.load(run_dir / "config.toml")
    assert config.model.likelihood.kind == "bernoulli" and config.model.likelihood.params == {"relaxed": True}
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    # the logged ELBO is the saved model's, measured again on the validation split (same seed)
    vae = Run.load(run_dir).vae
    m = measure(vae.model, vae.guide, load_data(config.data).valid, seed=config.train.seed)
    assert (last["valid_elbo"], last["valid_elbo_stderr"]) == pytest.approx((m.elbo, m.elbo_stderr), rel=1e-5)
    assert (last["valid_recon"], last["valid_kl"]) == pytest.approx((m.recon, m.kl), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2, one line on stderr, nothing written
# ---------------------------------------------------------------------------------------------

NAN_ROWS = np.ones((10, 4))
NAN_ROWS[[3, 7], 1] = np.nan

BAD_TRAIN = [
    pytest.param(
        ["--model.latnt_dim", "3"], None, ["unknown key model.latnt_dim", "latent_dim"], id="unknown-key"
    ),
    pytest.param(
        ["--model.latent_dim", "0"], None, ["model.latent_dim = 0", "an integer >= 1"], id="latent-0"
    ),
    pytest.param(["--train.lr", "-1"], None, ["train.lr = -1", "a number > 0"], id="lr-negative"),
    pytest.param(["--train.lr", "-1e-3"], None, ["train.lr = -0.001", "a number > 0"], id="lr-exponent"),
    pytest.param(
        ["--data.path", "nope.npy"], None, ["data.path = 'nope.npy'", "no such file"], id="missing-data"
    ),
    pytest.param(["--data.path", "d.csv"], "a,b\n", ["unknown format '.csv'"], id="csv"),
    pytest.param(["--data.path", "d.npy"], np.arange(5.0), ["data.path = 'd.npy'", "shape (5,)"], id="1d"),
    pytest.param(["--data.path", "d.npy"], np.array(["a", "b"]), ["dtype <U1 is not numeric"], id="strings"),
    pytest.param(["--data.path", "d.npy"], NAN_ROWS, ["2 data points", "(first: row 3)"], id="nan"),
    pytest.param(
        ["--model.likelihood.kind", "bernoulli"],
        None,
        ["bernoulli", "binary", "relaxed"],
        id="bernoulli-digits",
    ),
    pytest.param(
        ["--model.data_dim", "10"], None, ["model.data_dim = 10", "64 values per point"], id="data-dim"
    ),
    pytest.param(
        ["--data.name", "cifar10"], None, ['data.name = "cifar10" is not a known dataset'], id="dataset"
    ),
    pytest.param(["--config", "nope.toml"], None, ["config file 'nope.toml' does not exist"], id="no-config"),
    pytest.param(["--bogus"], None, ["unrecognized argument '--bogus'"], id="bogus"),
    pytest.param(["--train.epochs"], None, ["--train.epochs needs a value"], id="no-value"),
    pytest.param(
        ["--train.device", "cuda"],
        None,
        ['train.device = "cuda"', "no CUDA device"],
        id="cuda",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
    ),
    pytest.param(["--train.device", "gpu"], None, ['train.device = "gpu"'], id="gpu"),
]


def assert_refused(capsys, code: int, fragments) -> str:
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("pyro-vae: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.mark.parametrize(("args", "content", "fragments"), BAD_TRAIN)
def test_bad_train_input(tmp_path, monkeypatch, capsys, args, content, fragments):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        name = Path(args[1])
        if isinstance(content, str):
            name.write_text(content)
        else:
            np.save(name, content)
    before = snapshot(tmp_path)
    code = main(["train", "--train.epochs", "1", *TINY, "--train.run_dir", "run", "--quiet", *args])
    assert_refused(capsys, code, fragments)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_bad_input_without_run_dir_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert_refused(capsys, main(["train", "--model.latent_dim", "-1"]), ["model.latent_dim = -1"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_existing_run_is_kept_unless_overwrite(tmp_path, capsys):
    run_dir = tmp_path / "run"
    base = ["train", "--train.run_dir", str(run_dir), *TINY, "--quiet"]
    assert main([*base, "--train.epochs", "1"]) == 0
    capsys.readouterr()
    (run_dir / "notes.txt").write_text("mine")
    before = snapshot(run_dir)

    message = assert_refused(
        capsys, main([*base, "--train.epochs", "2"]), ["already holds a run", "--overwrite"]
    )
    assert str(run_dir) in message
    assert snapshot(run_dir) == before

    assert main([*base, "--train.epochs", "1", "--model.latent_dim", "3", "--overwrite"]) == 0
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [0, 1]  # replaced, not appended to
    assert Config.load(run_dir / "config.toml").model.latent_dim == 3
    assert not (run_dir / "latent_grid.png").exists()  # the old run's 2-D picture is gone
    assert (run_dir / "notes.txt").read_text() == "mine"  # files that are not artefacts are kept


def test_run_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "run").write_text("x")
    code = main(["train", "--train.epochs", "1", *TINY, "--train.run_dir", str(tmp_path / "run"), "--quiet"])
    assert_refused(capsys, code, ["is a file"])
    assert (tmp_path / "run").read_text() == "x"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        pytest.param(["-n", "0"], ["-n = 0 is not allowed", ">= 1"], id="n-0"),
        pytest.param(["--out", "s.jpg"], ["unknown format '.jpg'; allowed: .png, .npy"], id="jpg"),
        # an unknown device word is refused in one line, not a traceback
        pytest.param(["--device", "gpu"], ["--device", "gpu"], id="gpu"),
    ],
)
def test_bad_sample_input(digits_run, tmp_path, monkeypatch, capsys, args, fragments):
    monkeypatch.chdir(tmp_path)
    before = snapshot(digits_run[0])
    assert_refused(capsys, main(["sample", str(digits_run[0]), *args]), fragments)
    assert snapshot(digits_run[0]) == before and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_sample_on_cuda_without_cuda(digits_run, capsys):
    # the message names the option the user typed, --device, not train.device
    code = main(["sample", str(digits_run[0]), "--device", "cuda"])
    line = assert_refused(capsys, code, ["no CUDA device"])
    assert "--device" in line and "train.device" not in line


def test_sample_without_a_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert_refused(capsys, main(["sample", str(tmp_path / "empty")]), ["no checkpoint at", "checkpoint.pt"])
    assert list((tmp_path / "empty").iterdir()) == []


def test_sample_from_a_missing_directory(tmp_path, capsys):
    code = main(["sample", str(tmp_path / "nope")])
    assert_refused(capsys, code, ["run directory", "nope", "does not exist"])


def test_sample_from_a_corrupt_checkpoint(tmp_path, capsys):
    # a damaged or foreign file is refused in one line, not a torch.load traceback
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code = main(["sample", str(tmp_path / "run")])
    assert_refused(capsys, code, ["checkpoint.pt", "not a readable pyro-vae checkpoint"])


def test_sample_rejects_unknown_arguments(digits_run, capsys):
    assert main(["sample", str(digits_run[0]), "--bogus"]) == 2
    assert capsys.readouterr().err == (
        "pyro-vae: error: unrecognized arguments: --bogus (see pyro-vae sample --help)\n"
    )
