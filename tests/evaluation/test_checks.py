"""The checks every command on a trained run makes first (pyro_vae/evaluation/checks.py): the
seed, where ``--out`` will be written, the run's data and split. Each refusal is one line naming
the bad value and what is allowed; good input passes unchanged, and nothing is created."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pyro_vae.config.sections import DataConfig
from pyro_vae.core.errors import ConfigError, DataError, RunDirError
from pyro_vae.data.datasets import Data
from pyro_vae.evaluation import checks
from pyro_vae.evaluation.checks import (
    check_seed,
    check_writable,
    data_of,
    data_words,
    refuse_directory,
    split_of,
    where,
)


def everything(root) -> set:
    return {p.relative_to(root) for p in root.rglob("*")}


# -- the seed ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1], ids=["0", "1", "2**32-1"])
def test_a_seed_numpy_takes_passes(seed):
    assert check_seed(seed) is None


@pytest.mark.parametrize("seed", [-1, 2**32, 1.0, "3", None], ids=["-1", "2**32", "float", "str", "None"])
def test_a_seed_numpy_refuses_is_named_with_the_range(seed):
    with pytest.raises(ConfigError) as info:
        check_seed(seed)
    assert str(info.value) == f"--seed = {seed} is not allowed: expected an integer from 0 to 4294967295"


# -- where --out is written -------------------------------------------------------------------


def test_a_file_in_directories_to_be_made_passes_and_nothing_is_created(tmp_path):
    assert check_writable(tmp_path / "a" / "b" / "out.json") is None
    assert check_writable(tmp_path / "out.json", need=1) is None
    assert everything(tmp_path) == set()


def test_a_directory_in_the_way_is_refused_with_a_file_to_name_instead(tmp_path):
    with pytest.raises(RunDirError) as info:
        check_writable(tmp_path)
    assert (
        str(info.value)
        == f"--out {str(tmp_path)!r} is a directory; name a file, e.g. {str(tmp_path / 'out.json')!r}"
    )
    with pytest.raises(RunDirError) as info:
        refuse_directory(tmp_path, "samples.png")
    assert str(info.value).endswith(f"e.g. {str(tmp_path / 'samples.png')!r}")
    assert refuse_directory(tmp_path / "file.json") is None  # not there yet: no directory in the way


@pytest.mark.parametrize("under", [("x.json",), ("sub", "x.json")], ids=["in-it", "below-it"])
@pytest.mark.parametrize("what", ["directory of --out", "run directory"])
def test_a_path_under_a_file_names_the_file(tmp_path, under, what):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    with pytest.raises(RunDirError) as info:
        check_writable(a_file.joinpath(*under), what)
    assert str(info.value) == f"{what} {str(a_file)!r} is a file, not a directory"
    assert everything(tmp_path) == {Path("a-file")}


@pytest.mark.parametrize("under", [("x.json",), ("sub", "x.json")], ids=["in-it", "below-it"])
def test_a_directory_that_cannot_be_written_in_is_named(read_only_dir, under):
    with pytest.raises(RunDirError) as info:
        check_writable(read_only_dir.joinpath(*under))
    line = str(info.value)
    assert (
        line.startswith(f"cannot write in directory of --out {str(read_only_dir)!r}: ") and "\n" not in line
    )
    assert everything(read_only_dir) == set()


def test_the_bytes_needed_are_compared_with_the_free_space_of_the_nearest_directory(tmp_path, monkeypatch):
    """Free space is asked of the deepest directory that exists (the others are still to be
    made); exactly as many bytes as are free pass, one more is refused with both in GB."""
    asked = []
    real = shutil.disk_usage

    def disk_usage(path):
        asked.append(Path(path))
        return real(path)._replace(free=2_500_000_000)

    monkeypatch.setattr(checks.shutil, "disk_usage", disk_usage)
    out = tmp_path / "new" / "deeper" / "x.npy"
    assert check_writable(out, need=2_500_000_000) is None
    with pytest.raises(RunDirError) as info:
        check_writable(out, need=3_160_000_000)
    assert str(info.value) == (
        f"cannot write {str(out)!r}: it needs 3.2 GB and {str(tmp_path)!r} has 2.5 GB free"
    )
    assert asked == [tmp_path, tmp_path] and everything(tmp_path) == set()


@pytest.mark.parametrize(
    ("out", "words"),
    [
        (("run", "x.json"), "run directory"),
        (("run", "sub", "x.json"), "directory of --out"),
        (("elsewhere", "x.json"), "directory of --out"),
    ],
    ids=["in-the-run", "below-the-run", "elsewhere"],
)
def test_where_names_the_run_directory_only_for_a_file_in_it(tmp_path, out, words):
    assert where(tmp_path.joinpath(*out), tmp_path / "run") == words
    assert where(tmp_path.joinpath(*out), str(tmp_path / "run")) == words  # a run_dir given as str


# -- the run's data and split -----------------------------------------------------------------


def a_run(tmp_path, data: DataConfig, data_dim: int):
    """What data_of reads of a run: its directory, its data config and its model's data_dim."""
    config = SimpleNamespace(data=data, model=SimpleNamespace(data_dim=data_dim))
    return SimpleNamespace(dir=tmp_path / "run", config=config)


def test_the_data_of_a_run_are_the_points_of_its_file(tmp_path):
    x = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "x.npy", x)
    data = data_of(a_run(tmp_path, DataConfig(path=str(tmp_path / "x.npy")), data_dim=3))
    assert (len(data.train), len(data.valid), data.dim) == (18, 2, 3)  # valid_fraction 0.1
    rows = torch.cat([data.train, data.valid]).numpy()
    assert np.array_equal(rows[np.argsort(rows[:, 0])], x)  # every point once, split apart


def test_data_that_changed_width_since_training_are_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((20, 3), np.float32))
    path = str(tmp_path / "x.npy")
    with pytest.raises(DataError) as info:
        data_of(a_run(tmp_path, DataConfig(path=path), data_dim=5))
    assert str(info.value) == (
        f"run {str(tmp_path / 'run')!r} was trained on points of 5 values, "
        f"but data.path = {path!r} now holds 3 values per point"
    )


def test_data_that_no_longer_load_are_refused_naming_the_run(tmp_path):
    path = str(tmp_path / "gone.npy")
    with pytest.raises(DataError) as info:
        data_of(a_run(tmp_path, DataConfig(path=path), data_dim=3))
    line = str(info.value)
    assert line.startswith(f"the data of run {str(tmp_path / 'run')!r} does not load: ") and path in line
    assert "\n" not in line


def test_data_words_name_the_file_else_the_dataset(tmp_path):
    run = a_run(tmp_path, DataConfig(name="mine", path="/data/x.npy"), data_dim=3)
    assert data_words(run) == "data.path = '/data/x.npy'"
    assert data_words(a_run(tmp_path, DataConfig(name="digits"), data_dim=64)) == "data.name = 'digits'"


def two_splits(test=None) -> Data:
    return Data("d", train=torch.zeros(4, 2), valid=torch.ones(3, 2), test=test)


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_a_split_is_its_own_points(split):
    data = two_splits(test=torch.full((2, 2), 2.0))
    assert split_of(data, split) is getattr(data, split)


@pytest.mark.parametrize(
    ("test", "split", "available"),
    [
        (None, "test", "train, valid"),
        (None, "bogus", "train, valid"),
        (torch.zeros(2, 2), "validation", "train, valid, test"),
    ],
    ids=["no-test", "unknown", "unknown-with-test"],
)
def test_a_split_the_data_lack_is_refused_with_those_they_have(test, split, available):
    with pytest.raises(DataError) as info:
        split_of(two_splits(test=test), split)
    assert str(info.value) == f"the data of this run has no {split} split; available: {available}"
