"""Every bad input to the command line ends in one line on stderr and exit status 2, and leaves
nothing behind: no directory created, no temporary ``.*.tmp`` file, no half-written output."""

import json

import numpy as np
import pytest
import torch

import pyro_vae.comparison.one_run
import pyro_vae.evaluation.evaluate
from pyro_vae.cli.main import main
from pyro_vae.config.sections import DataConfig
from pyro_vae.data.datasets import load_data
from pyro_vae.models.vae import VAE

TINY = ["--model.encoder.hidden", "[16]", "--model.decoder.hidden", "[16]"]


def refused(argv: list[str], capsys, *fragments: str) -> str:
    """Run the CLI in-process; check it refused in one line holding every fragment."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    line = err.rstrip("\n")
    assert line.startswith("pyro-vae: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def everything(root) -> set:
    """Every path under ``root``, to check that a refusal left the tree as it was."""
    return {p.relative_to(root) for p in root.rglob("*")}


def temporaries(root) -> list:
    return sorted(root.rglob(".*.tmp"))


@pytest.fixture
def run_dir(digits_run_dir):
    """The tiny digits run of tests/conftest.py, for evaluate and sample."""
    return digits_run_dir


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a directory\n")
    return path


@pytest.fixture
def no_work(monkeypatch):
    """Estimating, sampling or training fails the test: a bad --out must be refused first."""

    def work(*args, **kwargs):
        pytest.fail("the work started before the bad input was refused")

    monkeypatch.setattr(pyro_vae.evaluation.evaluate, "measure", work)
    monkeypatch.setattr(VAE, "sample", work)
    monkeypatch.setattr(pyro_vae.comparison.one_run, "train", work)


# -- data -------------------------------------------------------------------------------------


def save(tmp_path, array, name="data.npy"):
    path = tmp_path / name
    np.save(path, array)
    return path


def train_argv(data, run) -> list[str]:
    return ["train", "--data.path", str(data), "--train.epochs", "1", "--train.run_dir", str(run), "--quiet"]


@pytest.mark.parametrize(
    "shape, fragments",
    [
        pytest.param((10, 2, 2, 2, 2), ["shape (10, 2, 2, 2, 2) has 5 dimensions", "(N, C, H, W)"], id="5-D"),
        pytest.param((10, 2, 2, 2, 2, 2), ["has 6 dimensions", "expected (N, D)"], id="6-D"),
        pytest.param((10, 2, 4, 4), ["of 2 channels", "1, 3 or 4"], id="2-channels"),
        pytest.param((10, 5, 5, 3), ["of 5 channels", "channels-last"], id="channels-last"),
        pytest.param((10,), ["shape (10,) has no data dimension"], id="1-D"),
    ],
)
def test_an_array_of_the_wrong_shape(tmp_path, capsys, shape, fragments):
    data, run = save(tmp_path, np.zeros(shape, np.float32)), tmp_path / "run"
    refused(train_argv(data, run), capsys, f"data.path = {str(data)!r}", *fragments)
    assert not run.exists()


@pytest.mark.parametrize(
    "content, fragment",
    [
        pytest.param(b"", "is empty", id="empty"),
        pytest.param(b"1,2,3\n4,5,6\n", "is not a .npy or .npz file: it starts with bytes 31 2c", id="text"),
        pytest.param(
            np.lib.format.magic(1, 0) + b"\x76\x00{'descr'", "is not a readable .npy file", id="cut"
        ),
    ],
)
def test_a_file_that_is_not_an_array(tmp_path, capsys, content, fragment):
    data, run = tmp_path / "data.npy", tmp_path / "run"
    data.write_bytes(content)
    refused(train_argv(data, run), capsys, f"data.path = {str(data)!r}", fragment)
    assert not run.exists()


def test_an_array_cut_short(tmp_path, capsys):
    data, run = save(tmp_path, np.zeros((50, 4), np.float32)), tmp_path / "run"
    data.write_bytes(data.read_bytes()[:-100])
    refused(train_argv(data, run), capsys, f"data.path = {str(data)!r}", "Expected (50, 4) = 200 elements")
    assert not run.exists()


def test_a_damaged_npz(tmp_path, capsys):
    data, run = tmp_path / "data.npz", tmp_path / "run"
    np.savez_compressed(data, train=np.random.default_rng(0).random((200, 30)))
    damaged = bytearray(data.read_bytes())
    damaged[200:400] = bytes(b ^ 0x55 for b in damaged[200:400])  # inside the deflated array
    data.write_bytes(bytes(damaged))
    refused(train_argv(data, run), capsys, f"data.path = {str(data)!r} is not a readable .npz file")
    assert not run.exists()


def test_a_data_path_that_is_a_directory(tmp_path, capsys):
    data, run = tmp_path / "data.npy", tmp_path / "run"
    data.mkdir()
    refused(train_argv(data, run), capsys, f"data.path = {str(data)!r} is a directory, not a file")
    assert not run.exists()


def test_an_image_shape_of_one_dimension(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data.image_shape", "[64]", "--train.run_dir", str(run), "--quiet"]
    refused(argv, capsys, "data.image_shape = [64] is not allowed: expected [H, W] or [C, H, W]")
    assert not run.exists()


@pytest.mark.parametrize(
    "shape, image_shape",
    [
        pytest.param((6, 1, 4), (1, 4), id="one-row"),
        pytest.param((6, 1, 3, 4), (3, 4), id="one-channel-first"),
        pytest.param((6, 3, 4, 1), (3, 4), id="one-channel-last"),
        pytest.param((6, 1, 1, 4), (1, 4), id="one-channel-one-row"),
        pytest.param((6, 3, 2, 2), (3, 2, 2), id="rgb"),
    ],
)
def test_images_keep_a_shape_pictures_can_draw(tmp_path, shape, image_shape):
    """A singleton channel is dropped, nothing else: an (N, 1, W) array is drawn 1 × W."""
    data = load_data(DataConfig(path=str(save(tmp_path, np.zeros(shape, np.float32)))))
    assert data.image_shape == image_shape


# -- train: the run directory (run.py decides; these pin what a user sees) ---------------------


def test_train_run_dir_that_is_a_file(a_file, capsys):
    refused(
        ["train", "--train.epochs", "1", "--train.run_dir", str(a_file), "--quiet", *TINY],
        capsys,
        str(a_file),
    )
    assert a_file.read_text() == "not a directory\n"


def test_train_run_dir_under_a_file(a_file, capsys):
    run = a_file / "run"
    refused(
        ["train", "--train.epochs", "1", "--train.run_dir", str(run), "--quiet", *TINY], capsys, str(a_file)
    )
    assert a_file.is_file()


@pytest.mark.parametrize("inside", ["", "run", "runs/run"], ids=["itself", "inside", "nested"])
def test_train_run_dir_in_a_read_only_directory(read_only_dir, capsys, inside):
    run = read_only_dir / inside
    refused(
        ["train", "--train.epochs", "1", "--train.run_dir", str(run), "--quiet", *TINY],
        capsys,
        str(read_only_dir),
    )
    assert everything(read_only_dir) == set()


# -- evaluate ---------------------------------------------------------------------------------


def test_evaluate_a_directory_without_a_run(tmp_path, capsys):
    refused(["evaluate", str(tmp_path)], capsys, "checkpoint", str(tmp_path))
    assert everything(tmp_path) == set()


def test_evaluate_a_file(a_file, capsys):
    refused(["evaluate", str(a_file)], capsys, str(a_file), "is a file, not a directory")


def test_evaluate_a_missing_directory(tmp_path, capsys):
    refused(["evaluate", str(tmp_path / "nothing")], capsys, str(tmp_path / "nothing"), "does not exist")
    assert everything(tmp_path) == set()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        pytest.param(["--points", "0"], "--points = 0 is not allowed", id="points-0"),
        pytest.param(["--points", "-5"], "--points = -5 is not allowed", id="points-negative"),
        pytest.param(["--split", "test"], "has no test split; available: train, valid", id="no-test-split"),
        pytest.param(["--seed", "-1"], "--seed = -1 is not allowed", id="seed-negative"),
        pytest.param(["--seed", str(2**32)], f"--seed = {2**32} is not allowed", id="seed-too-big"),
        pytest.param(["--batch-size", "0"], "--batch-size = 0 is not allowed", id="batch-size-0"),
        pytest.param(["--samples", "0"], "--samples = 0 is not allowed", id="samples-0"),
        pytest.param(["--option", "nosuch=1"], "unknown key", id="unknown-option"),
    ],
)
def test_evaluate_refuses(run_dir, capsys, no_work, argv, fragment):
    before = everything(run_dir)
    refused(["evaluate", str(run_dir), *argv], capsys, fragment)
    assert everything(run_dir) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "now, fragment",
    [
        pytest.param(
            np.zeros((20, 7)), "trained on points of 10 values, but data.path = ", id="fewer-values"
        ),
        pytest.param(np.full((20, 10), 0.5), "bernoulli likelihood needs binary data", id="not-binary"),
        pytest.param(None, "does not load: data.path = ", id="removed"),
    ],
)
def test_evaluate_after_the_data_changed(tmp_path, capsys, now, fragment):
    """The run's data file was replaced or removed after training."""
    data, run = tmp_path / "data.npy", tmp_path / "run"
    np.save(data, np.random.default_rng(0).integers(0, 2, (20, 10)).astype(np.float32))
    argv = [*train_argv(data, run), *TINY, "--model.likelihood.kind", "bernoulli"]
    assert main(argv) == 0
    capsys.readouterr()  # training's own output
    data.unlink()
    if now is not None:
        np.save(data, now.astype(np.float32))
    before = everything(run)
    refused(["evaluate", str(run), "--samples", "5"], capsys, f"{str(data)!r}", fragment)
    assert everything(run) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_cuda_on_a_machine_without(run_dir, capsys, command):
    refused([command, str(run_dir), "--device", "cuda"], capsys, '--device = "cuda"', "no CUDA device")


def bad_outs(tmp_path, a_file, read_only_dir, name):
    """--out values that cannot be written, and the path each refusal names."""
    existing = tmp_path / f"existing-{name}"
    existing.mkdir()
    return [
        (a_file / name, str(a_file)),
        (a_file / "sub" / name, str(a_file)),
        (read_only_dir / name, str(read_only_dir)),
        (read_only_dir / "sub" / name, str(read_only_dir)),
        (existing, str(existing)),
    ]


def test_evaluate_out_that_cannot_be_written(run_dir, tmp_path, a_file, read_only_dir, capsys, no_work):
    before = everything(run_dir)
    for out, named in bad_outs(tmp_path, a_file, read_only_dir, "eval.json"):
        refused(["evaluate", str(run_dir), "--out", str(out), "--points", "3"], capsys, named)
    assert everything(run_dir) == before
    assert everything(read_only_dir) == set() and temporaries(tmp_path) == []


# -- sample -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, fragment",
    [
        pytest.param(["-n", "0"], "-n = 0 is not allowed", id="n-0"),
        pytest.param(["-n", "-3"], "-n = -3 is not allowed", id="n-negative"),
        pytest.param(["--out", "x.jpg"], "unknown format '.jpg'; allowed: .png, .npy", id="jpg"),
        pytest.param(["-n", "10001"], "with --out FILE.npy", id="grid-too-big"),
        pytest.param(["--seed", "-1"], "--seed = -1 is not allowed", id="seed-negative"),
    ],
)
def test_sample_refuses(run_dir, tmp_path, monkeypatch, capsys, no_work, argv, fragment):
    monkeypatch.chdir(tmp_path)
    before = everything(run_dir)
    refused(["sample", str(run_dir), *argv], capsys, fragment)
    assert everything(run_dir) == before and everything(tmp_path) == set()


def test_sample_out_that_cannot_be_written(run_dir, tmp_path, a_file, read_only_dir, capsys, no_work):
    for suffix in (".png", ".npy"):
        for out, named in bad_outs(tmp_path, a_file, read_only_dir, f"samples{suffix}"):
            refused(["sample", str(run_dir), "--out", str(out)], capsys, named)
    assert everything(read_only_dir) == set() and temporaries(tmp_path) == []


def test_sample_more_than_the_disk_holds(run_dir, tmp_path, capsys, no_work):
    out = tmp_path / "huge.npy"
    refused(["sample", str(run_dir), "-n", str(10**15), "--out", str(out)], capsys, str(out), "GB free")
    assert everything(tmp_path) == set()


# -- compare ----------------------------------------------------------------------------------


def compare_argv(*extra: str) -> list[str]:
    return ["compare", "--objectives", "elbo", "--epochs", "1", "--quiet", *TINY, *extra]


def test_compare_out_that_cannot_be_written(tmp_path, a_file, read_only_dir, monkeypatch, capsys, no_work):
    monkeypatch.chdir(tmp_path)
    before = everything(tmp_path)
    for out in (a_file, a_file / "sub", read_only_dir, read_only_dir / "sub"):
        refused(compare_argv("--out", str(out)), capsys, "comparison directory (--out)", str(out))
    assert everything(tmp_path) == before  # no comparisons/ either


@pytest.mark.parametrize(
    "argv, fragment",
    [
        pytest.param(
            ["--objectives", "nosuch"], 'objective.kind = "nosuch" is not a known objective', id="objective"
        ),
        pytest.param(["--seeds", "0"], "seeds = 0 is not allowed", id="seeds-0"),
        pytest.param(["--eval-points", "0"], "eval_points = 0 is not allowed", id="eval-points-0"),
        pytest.param(["--eval-samples", "0"], "eval_samples = 0 is not allowed", id="eval-samples-0"),
        pytest.param(["--seconds", "-1"], "seconds = -1.0 is not allowed", id="seconds-negative"),
    ],
)
def test_compare_refuses(tmp_path, monkeypatch, capsys, no_work, argv, fragment):
    monkeypatch.chdir(tmp_path)
    refused([*compare_argv(), *argv], capsys, fragment)
    assert everything(tmp_path) == set()


def test_compare_on_data_of_the_wrong_shape(tmp_path, monkeypatch, capsys, no_work):
    data = save(tmp_path, np.zeros((10, 2, 2, 2, 2), np.float32))
    monkeypatch.chdir(tmp_path)
    refused(compare_argv("--data.path", str(data), "--out", "cmp"), capsys, "has 5 dimensions")
    assert everything(tmp_path) == {data.relative_to(tmp_path)}


@pytest.mark.parametrize(
    "name, text, fragment",
    [
        pytest.param("c.toml", "x = \n", "is not valid toml", id="toml"),
        pytest.param("c.json", "{", "is not valid json", id="json"),
        pytest.param("c.yaml", "a: 1\n", "unknown format '.yaml'", id="yaml"),
    ],
)
@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_config_file_that_cannot_be_read(
    tmp_path, monkeypatch, capsys, no_work, command, name, text, fragment
):
    (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--quiet"] if command == "train" else compare_argv()
    refused([*argv, "--config", name], capsys, f"config file {name!r}", fragment)
    assert everything(tmp_path) == {tmp_path.joinpath(name).relative_to(tmp_path)}


# -- the command line itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, fragment",
    [
        pytest.param(["--split", "nosuch"], "argument --split: invalid choice: 'nosuch'", id="split"),
        pytest.param(["--points", "abc"], "argument --points: invalid int value: 'abc'", id="points"),
        pytest.param(["--estimator", "nosuch"], "argument --estimator: invalid choice", id="estimator"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_help(run_dir, capsys, argv, fragment):
    line = refused(["evaluate", str(run_dir), *argv], capsys, fragment)
    assert line.endswith("(see pyro-vae evaluate --help)")


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_train_seed_out_of_range(tmp_path, capsys, seed):
    argv = ["train", "--train.seed", seed, "--train.run_dir", str(tmp_path / "run"), *TINY]
    refused(argv, capsys, f"train.seed = {seed} is not allowed: expected an integer >= 0 and <= 4294967295")
    assert everything(tmp_path) == set()


def test_compare_seeds_that_run_past_the_seed_range(tmp_path, monkeypatch, capsys, no_work):
    monkeypatch.chdir(tmp_path)
    argv = compare_argv("--train.seed", str(2**32 - 2), "--seeds", "3", "--out", str(tmp_path / "cmp"))
    refused(argv, capsys, f"train.seed = {2**32} is not allowed")
    assert everything(tmp_path) == set()


@pytest.mark.slow
def test_a_damaged_result_of_a_comparison_is_measured_again(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = compare_argv("--eval-samples", "20", "--eval-points", "20", "--out", str(out))
    assert main(argv) == 0
    result = out / "runs" / "elbo-seed0" / "result.json"
    row = json.loads(result.read_text())["row"]
    for damage in ("{x", "{}"):
        result.write_text(damage)
        assert main(argv) == 0, capsys.readouterr().err
        again = json.loads(result.read_text())["row"]
        # resumed from its finished checkpoint, measured again: the same numbers
        assert {k: again[k] for k in ("log_px", "valid_elbo", "epochs")} == {
            k: row[k] for k in ("log_px", "valid_elbo", "epochs")
        }
