"""Loading data: the built-in digits, .npy/.npz files, MNIST's IDX files, divide_by, and what is
refused (with which message). Reading IDX files is tested in test_array_files.py."""

import gzip
import re

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from pyro_vae import ConfigError, DataConfig, DataError, load_data


def save_npy(tmp_path, array, name="data.npy") -> str:
    path = tmp_path / name
    np.save(path, array)
    return str(path)


def save_npz(tmp_path, name="data.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def rows(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in x.tolist()}


# ---------------------------------------------------------------------------------------------
# The built-in digits
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig())


def test_digits_shapes_and_split(digits):
    assert digits.name == "digits"
    assert digits.train.shape == (1617, 64) and digits.valid.shape == (180, 64)  # 180 = round(0.1 * 1797)
    assert digits.dim == 64
    assert digits.image_shape == (8, 8)
    assert digits.train.dtype == torch.float32


def test_digits_values_and_labels(digits):
    both = torch.cat([digits.train, digits.valid])
    assert both.min() == 0 and both.max() == 1
    # grey levels 0..16 scaled to [0, 1]
    assert torch.equal(torch.unique(both * 16), torch.arange(17, dtype=torch.float32))
    labels = torch.cat([digits.train_labels, digits.valid_labels])
    assert labels.dtype == torch.int64 and labels.shape == (1797,)
    # scikit-learn's class counts, and each point keeps its own label through the split
    assert torch.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    from sklearn.datasets import load_digits

    raw = load_digits()  # its 1797 images are distinct, so an image names its label
    label_of = {tuple(x / 16.0): int(y) for x, y in zip(raw.data, raw.target, strict=True)}
    assert [label_of[tuple(x)] for x in both.double().tolist()] == labels.tolist()


def test_digits_split_is_a_partition(digits):
    train, valid = rows(digits.train), rows(digits.valid)
    from sklearn.datasets import load_digits

    everything = rows(torch.from_numpy(load_digits().data / 16.0).float())
    assert train | valid == everything


def test_split_is_reproducible_for_a_seed_and_differs_for_another(digits):
    again = load_data(DataConfig(), seed=0)
    assert torch.equal(again.valid, digits.valid) and torch.equal(again.train_labels, digits.train_labels)
    other = load_data(DataConfig(), seed=1)
    assert other.valid.shape == digits.valid.shape
    assert not torch.equal(other.valid, digits.valid)


def test_valid_fraction_sets_the_split_size():
    data = load_data(DataConfig(valid_fraction=0.25))
    assert (len(data.train), len(data.valid)) == (1797 - 449, 449)  # round(0.25 * 1797) = 449


def test_data_to_moves_every_tensor(digits):
    moved = digits.to("cpu")
    assert torch.equal(moved.train, digits.train) and moved.image_shape == (8, 8)
    assert torch.equal(moved.train_labels, digits.train_labels)
    assert torch.equal(moved.valid, digits.valid) and torch.equal(moved.valid_labels, digits.valid_labels)


def test_unknown_dataset_name_lists_the_known_ones():
    allowed = '"binarized_mnist", "digits", "fashion_mnist", "kmnist", "mnist"'
    message = rf'data\.name = "cifar10" is not a known dataset; allowed: {allowed}$'
    with pytest.raises(ConfigError, match=message):
        load_data(DataConfig(name="cifar10"))


# ---------------------------------------------------------------------------------------------
# Array files
# ---------------------------------------------------------------------------------------------


def test_npy_matrix_is_split(tmp_path):
    x = np.random.default_rng(0).random((50, 6))
    data = load_data(DataConfig(path=save_npy(tmp_path, x), name="mine"))
    assert data.name == "mine"
    assert data.train.shape == (45, 6) and data.valid.shape == (5, 6)
    assert data.image_shape is None  # 6 values are not a square image
    assert data.train_labels is None and data.valid_labels is None
    assert rows(data.train) | rows(data.valid) == rows(torch.from_numpy(x).float())


def test_npy_of_integers_and_bools_become_float32(tmp_path):
    data = load_data(DataConfig(path=save_npy(tmp_path, np.eye(20, 16, dtype=bool))))
    assert data.train.dtype == torch.float32
    assert set(torch.cat([data.train, data.valid]).unique().tolist()) == {0.0, 1.0}
    assert data.image_shape == (4, 4)  # a square number of values reads as a square image


def test_npz_with_train_and_valid_uses_them_as_given(tmp_path):
    rng = np.random.default_rng(0)
    train, valid = rng.random((30, 5)), rng.random((7, 5))
    train_labels, valid_labels = rng.integers(0, 3, 30), rng.integers(0, 3, 7)
    path = save_npz(tmp_path, train=train, valid=valid, train_labels=train_labels, valid_labels=valid_labels)
    data = load_data(DataConfig(path=path, valid_fraction=0.5))  # the fraction is not used
    assert torch.equal(data.train, torch.from_numpy(train).float())
    assert torch.equal(data.valid, torch.from_numpy(valid).float())
    assert torch.equal(data.train_labels, torch.from_numpy(train_labels))
    assert torch.equal(data.valid_labels, torch.from_numpy(valid_labels))


@pytest.mark.parametrize("valid_key", ["validation", "val"])
def test_npz_validation_key_aliases(tmp_path, valid_key):
    path = save_npz(tmp_path, train=np.zeros((4, 3)), **{valid_key: np.ones((2, 3))})
    data = load_data(DataConfig(path=path))
    assert data.valid.shape == (2, 3) and bool((data.valid == 1).all())


def test_npz_with_one_unnamed_array_and_labels_is_split(tmp_path):
    x = np.arange(40.0).reshape(20, 2)
    path = save_npz(tmp_path, x=x, labels=np.arange(20))
    data = load_data(DataConfig(path=path))
    assert (len(data.train), len(data.valid)) == (18, 2)
    # labels follow their points through the shuffle
    assert torch.equal(data.train[:, 0] / 2, data.train_labels.float())
    assert torch.equal(data.valid[:, 0] / 2, data.valid_labels.float())


def test_npz_with_only_a_train_array_is_split(tmp_path):
    # no validation array: valid_fraction of the training points (and their labels) is held out
    x = np.arange(40.0).reshape(20, 2)
    path = save_npz(tmp_path, train=x, train_labels=np.arange(20))
    data = load_data(DataConfig(path=path))
    assert (len(data.train), len(data.valid)) == (18, 2)
    assert torch.equal(data.valid[:, 0] / 2, data.valid_labels.float())


@pytest.mark.parametrize("shape", [(12, 28, 28), (12, 1, 28, 28), (12, 28, 28, 1)], ids=str)
def test_images_are_flattened_and_keep_their_shape(tmp_path, shape):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    data = load_data(DataConfig(path=save_npy(tmp_path, x)))
    assert data.dim == 784 and data.image_shape == (28, 28)
    assert data.train.shape == (11, 784) and data.valid.shape == (1, 784)
    # each row is one image, flattened row-major
    flat = torch.from_numpy(x.reshape(12, 784))
    assert rows(data.valid) <= rows(flat)


def test_image_shape_from_the_config_wins(tmp_path):
    data = load_data(DataConfig(path=save_npy(tmp_path, np.zeros((10, 12))), image_shape=(3, 4)))
    assert data.image_shape == (3, 4)


# ---------------------------------------------------------------------------------------------
# What is refused
# ---------------------------------------------------------------------------------------------


def refused(config: DataConfig) -> str:
    with pytest.raises(DataError) as info:
        load_data(config)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    message = refused(DataConfig(path=str(tmp_path / "nope.npy")))
    assert message.startswith("data.path = ") and "nope.npy" in message and "no such file" in message


def test_wrong_extension(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2\n3,4\n")
    message = refused(DataConfig(path=str(path)))
    allowed = "allowed: .npy, .npz, IDX (.idx, *-ubyte, either optionally gzip-compressed as .gz)"
    assert "data.csv" in message and f"unknown format '.csv'; {allowed}" in message


def test_one_dimensional_array(tmp_path):
    message = refused(DataConfig(path=save_npy(tmp_path, np.arange(5.0))))
    assert "data.path = " in message and "shape (5,) has no data dimension; expected (N, D)" in message


@pytest.mark.parametrize("shape", [(0, 4), (5, 0)], ids=str)
def test_empty_array(tmp_path, shape):
    message = refused(DataConfig(path=save_npy(tmp_path, np.zeros(shape))))
    assert f"shape {shape} holds no data" in message


def test_string_dtype(tmp_path):
    message = refused(DataConfig(path=save_npy(tmp_path, np.array([["a", "b"], ["c", "d"]]))))
    assert "dtype <U1 is not numeric; expected bool, integer or float" in message


def test_object_dtype(tmp_path):
    array = np.empty((2, 2), dtype=object)
    message = refused(DataConfig(path=save_npy(tmp_path, array)))
    assert "is not a readable .npy file" in message and "allow_pickle" in message


def test_object_dtype_in_npz(tmp_path):
    # an object array inside an .npz (read lazily, after np.load) is a DataError, not a traceback
    path = save_npz(tmp_path, train=np.empty((2, 2), dtype=object))
    message = refused(DataConfig(path=path))
    assert "data.path = " in message and "allow_pickle" in message


def test_corrupt_npz(tmp_path):
    # a damaged .npz (zipfile.BadZipFile) is a DataError naming the file, not a traceback
    path = tmp_path / "data.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip file")
    message = refused(DataConfig(path=str(path)))
    assert "data.path = " in message and "is not a readable .npz file" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_values_name_how_many_points_and_the_first_row(tmp_path, bad):
    x = np.ones((10, 3))
    x[3, 1] = bad
    x[7, 0] = bad
    x[7, 2] = bad
    message = refused(DataConfig(path=save_npy(tmp_path, x)))
    assert "2 data points hold NaN or infinite values (first: row 3)" in message


def test_non_finite_values_in_the_validation_array(tmp_path):
    valid = np.zeros((4, 2))
    valid[2, 0] = np.nan
    message = refused(DataConfig(path=save_npz(tmp_path, train=np.zeros((6, 2)), valid=valid)))
    assert "('valid')" in message and "1 data points hold NaN" in message and "row 2" in message


def test_npz_with_several_arrays_and_no_train_key_lists_them(tmp_path):
    path = save_npz(tmp_path, images=np.zeros((4, 2)), targets=np.zeros((4, 2)))
    message = refused(DataConfig(path=path))
    assert "holds arrays images, targets" in message and "name the training array 'train'" in message


def test_npz_with_no_arrays(tmp_path):
    message = refused(DataConfig(path=save_npz(tmp_path)))
    assert "holds arrays (none)" in message


@pytest.mark.parametrize(
    "labels",
    [np.arange(9), np.arange(10.0), np.arange(20).reshape(10, 2)],
    ids=["short", "float", "2d"],
)
def test_bad_labels(tmp_path, labels):
    path = save_npz(tmp_path, data=np.zeros((10, 3)), labels=labels)
    message = refused(DataConfig(path=path))
    expected = f"labels of shape {labels.shape} and dtype {labels.dtype}; expected 10 integers"
    assert "data.path = " in message and expected in message


def test_train_and_valid_of_different_widths(tmp_path):
    path = save_npz(tmp_path, train=np.zeros((5, 3)), valid=np.zeros((2, 4)))
    message = refused(DataConfig(path=path))
    assert "validation points have 4 values, training points 3" in message


def test_image_shape_that_does_not_match_the_data():
    message = refused(DataConfig(image_shape=(5, 5)))
    assert message == "data.image_shape = [5, 5] does not hold 64 values per point"


def test_too_few_points_to_split(tmp_path):
    message = refused(DataConfig(path=save_npy(tmp_path, np.zeros((1, 3)))))
    assert re.search(r"1 data points are too few to hold out 1 for validation", message)


# ---------------------------------------------------------------------------------------------
# Binarized MNIST from the shared data
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_binarized_mnist(binarized_mnist):
    data = load_data(DataConfig(name="binarized_mnist", path=str(binarized_mnist)))
    assert data.train.shape == (50000, 784) and data.valid.shape == (10000, 784)
    assert data.image_shape == (28, 28)
    for x in (data.train, data.valid):
        assert bool(((x == 0) | (x == 1)).all())
    # the file's own split, in the file's order, not a random one
    with np.load(binarized_mnist) as raw:
        assert torch.equal(data.valid[:5], torch.from_numpy(raw["valid"][:5]).float())
    mean = data.train.mean().item()
    assert 0.1 < mean < 0.2  # about 13% of MNIST pixels are on


# ---------------------------------------------------------------------------------------------
# divide_by
# ---------------------------------------------------------------------------------------------


def test_divide_by_scales_the_built_in_digits(digits):
    halved = load_data(DataConfig(divide_by=2))
    assert torch.equal(halved.train, digits.train / 2) and torch.equal(halved.valid, digits.valid / 2)
    assert halved.train.dtype == torch.float32


def test_divide_by_scales_every_split_of_a_file(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        name: rng.integers(0, 256, (n, 4), dtype=np.uint8)
        for name, n in [("train", 6), ("valid", 3), ("test", 2)]
    }
    data = load_data(DataConfig(path=save_npz(tmp_path, **arrays), divide_by=255))
    for name, array in arrays.items():
        got = getattr(data, name)
        assert got.dtype == torch.float32
        # float32 division is correctly rounded: the float32 nearest k / 255
        assert torch.equal(got, torch.from_numpy((array / 255.0).astype(np.float32)))


def test_divide_by_before_the_split_keeps_the_split(tmp_path):
    x = np.arange(100.0).reshape(50, 2)
    plain = load_data(DataConfig(path=save_npy(tmp_path, x)))
    scaled = load_data(DataConfig(path=save_npy(tmp_path, x), divide_by=10))
    assert torch.equal(scaled.valid, plain.valid / 10) and torch.equal(scaled.train, plain.train / 10)


def test_divide_by_that_overflows_float32_is_refused(tmp_path):
    x = np.ones((5, 2))
    x[2, 1] = 1e38
    message = refused(DataConfig(path=save_npy(tmp_path, x), divide_by=0.01))
    assert (
        "1 data points hold values beyond float32's range after dividing by data.divide_by = 0.01" in message
    )
    assert "(first: row 2)" in message


def test_float64_values_beyond_float32_are_refused(tmp_path):
    x = np.ones((5, 2))
    x[4, 0] = -1e300  # finite in the file, infinite as float32
    message = refused(DataConfig(path=save_npy(tmp_path, x)))
    assert message.endswith("1 data points hold values beyond float32's range (first: row 4)")


# ---------------------------------------------------------------------------------------------
# The MNIST test set from the shared data (IDX, gzip)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_t10k() -> str:
    path = SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz"
    if not path.is_file() or not (SHARED_DATA / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip(f"{path} or its labels file is absent (they sit beside the project in CI)")
    return str(path)


def test_mnist_t10k_scaled_to_the_unit_interval(mnist_t10k):
    data = load_data(DataConfig(name="mnist", path=mnist_t10k, divide_by=255))
    assert data.train.shape == (9000, 784) and data.valid.shape == (1000, 784)
    assert data.image_shape == (28, 28) and data.train.dtype == torch.float32
    both = torch.cat([data.train, data.valid])
    assert both.min().item() == 0.0 and both.max().item() == 1.0
    # all 256 grey levels occur; scaled, they are exactly the float32 values of k / 255
    levels = torch.from_numpy((np.arange(256) / 255.0).astype(np.float32))
    assert torch.equal(torch.unique(both), levels)
    assert 0.13 < both.mean().item() < 0.135  # MNIST's mean grey level is 0.1325 (33.3 / 255)


def test_mnist_t10k_labels_load_and_follow_their_images(mnist_t10k):
    data = load_data(DataConfig(name="mnist", path=mnist_t10k))
    labels = torch.cat([data.train_labels, data.valid_labels])
    # the published class counts of the MNIST test set
    assert torch.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # an independent read: MNIST's headers are 16 and 8 bytes long
    with gzip.open(mnist_t10k) as f:
        raw_images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(10000, 784)
    with gzip.open(mnist_t10k.replace("images-idx3", "labels-idx1")) as f:
        raw_labels = np.frombuffer(f.read(), np.uint8, offset=8)
    assert raw_labels[:5].tolist() == [7, 2, 1, 0, 4]  # the first five test digits
    label_of = {row.tobytes(): int(y) for row, y in zip(raw_images, raw_labels, strict=True)}
    for x, y in [(data.valid, data.valid_labels), (data.train[:1000], data.train_labels[:1000])]:
        found = [label_of[row.astype(np.uint8).tobytes()] for row in x.numpy()]
        assert found == y.tolist()


# ---------------------------------------------------------------------------------------------
# data.binarize = "dynamic": every split one fixed draw, the training grey values kept
# ---------------------------------------------------------------------------------------------


def test_binarize_none_leaves_the_values_as_loaded(digits):
    assert digits.train_probs is None
    assert len(torch.unique(digits.train)) == 17  # 0/16 … 16/16


def test_dynamic_keeps_the_grey_training_values_and_holds_a_draw_of_every_split(digits):
    data = load_data(DataConfig(binarize="dynamic"))
    assert torch.equal(data.train_probs, digits.train)  # the same split, the grey values kept
    for split in ("train", "valid"):
        bits, grey = getattr(data, split), getattr(digits, split)
        assert bits.dtype == torch.float32 and set(torch.unique(bits).tolist()) == {0.0, 1.0}
        assert torch.all(bits[grey == 0] == 0) and torch.all(bits[grey == 1] == 1)
        # a Bernoulli draw: its mean is the grey values' mean, within 4 binomial standard errors
        inside = (grey > 0) & (grey < 1)
        p = grey[inside]
        assert abs(bits[inside].mean().item() - p.mean().item()) < 4 * (p * (1 - p)).sum().sqrt() / len(p)
    again = load_data(DataConfig(binarize="dynamic"))  # the draw is fixed: every command sees it
    assert torch.equal(again.train, data.train) and torch.equal(again.valid, data.valid)
    assert torch.equal(data.to("cpu").train_probs, data.train_probs)


def test_each_split_and_each_split_seed_has_its_own_draw(tmp_path):
    grey = np.full((500, 8), 0.5)
    path = save_npz(tmp_path, train=grey, valid=grey, test=grey)  # splits of their own: no seed
    first = load_data(DataConfig(path=path, binarize="dynamic"))
    other = load_data(DataConfig(path=path, binarize="dynamic", split_seed=1))
    draws = [first.train, first.valid, first.test, other.train, other.valid]
    for i, a in enumerate(draws):
        assert abs(a.mean().item() - 0.5) < 4 * 0.5 / 4000**0.5
        for b in draws[i + 1 :]:  # independent draws agree on half the bits
            assert abs((a == b).float().mean().item() - 0.5) < 4 * 0.5 / 4000**0.5


def test_dynamic_refuses_values_outside_the_unit_interval():
    message = refused(DataConfig(binarize="dynamic", divide_by=0.5))
    assert message == (
        "data.name = 'digits': data.binarize = \"dynamic\" reads every value as the probability of "
        "a 1, but the train points span [0, 2]; scale them to [0, 1] with data.divide_by (255 for "
        "8-bit images)"
    )


def test_dynamic_refuses_data_already_binary(tmp_path):
    path = save_npz(tmp_path, train=np.eye(6), valid=np.eye(6)[:2])
    message = refused(DataConfig(path=path, binarize="dynamic"))
    assert message == (
        f'data.path = {path!r}: data.binarize = "dynamic" draws the training points afresh every '
        "epoch from their grey values, but they are already binary (every value 0 or 1), so every "
        'draw would be the same; use data.binarize = "none"'
    )
