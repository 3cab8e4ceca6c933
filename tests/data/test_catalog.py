"""The dataset catalog: the entries' published files, how their files are read (Larochelle's
.amat, MNIST's IDX layout) against arrays written here, scikit-learn's digits, the listing."""

import gzip
import struct

import numpy as np
import pytest

from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.data.catalog import (
    Download,
    digits,
    downloads,
    get_download,
    listing,
    read_amat,
    read_idx_splits,
    register_download,
)
from pyro_vae.data.downloads import RemoteFile


def amat_text(values: np.ndarray) -> bytes:
    """Larochelle's text layout, written with Python's string formatting."""
    return "".join(" ".join(str(v) for v in row) + "\n" for row in values.tolist()).encode()


def idx_gz(array: np.ndarray) -> bytes:
    """A gzip-compressed uint8 IDX file: 0, 0, 0x08, ndim, big-endian int32 sizes, values."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def test_read_amat_returns_the_values_written(tmp_path):
    values = np.random.default_rng(0).integers(0, 2, (7, 9))
    (tmp_path / "x.amat").write_bytes(amat_text(values))
    got = read_amat(tmp_path / "x.amat", 7, 9)
    assert got.dtype == np.uint8 and np.array_equal(got, values)


def test_read_amat_refuses_other_text(tmp_path):
    (tmp_path / "ok.amat").write_bytes(b"0 1 1\n1 0 0\n")
    assert read_amat(tmp_path / "ok.amat", 2, 3).tolist() == [[0, 1, 1], [1, 0, 0]]
    for bad in (b"0 1 2\n1 0 0\n", b"0,1 1\n1 0 0\n", b"0 1 1 1 0 0\n", b"0 1 1\n1 0\n"):
        (tmp_path / "bad.amat").write_bytes(bad)
        with pytest.raises(DataError, match=r"bad\.amat"):
            read_amat(tmp_path / "bad.amat", 2, 3)


def write_mnist_layout(where, n_train: int = 6, n_test: int = 4):
    rng = np.random.default_rng(1)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = rng.integers(0, 256, (n, 5, 3)), rng.integers(0, 10, n)
        (where / f"{prefix}-images-idx3-ubyte.gz").write_bytes(idx_gz(images))
        (where / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(idx_gz(labels))
        arrays[prefix] = (images, labels)
    return arrays


def test_read_idx_splits_scales_to_k_over_255_and_keeps_the_labels(tmp_path):
    written = write_mnist_layout(tmp_path)
    arrays = read_idx_splits(tmp_path)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = written[prefix]
        assert arrays[split].dtype == np.float32
        # correctly rounded k / 255: float32 division of exact integers
        assert np.array_equal(arrays[split], images.astype(np.float32) / np.float32(255))
        assert np.array_equal(arrays[f"{split}_labels"], labels)
    assert arrays["image_shape"] == (28, 28)


def test_read_idx_splits_refuses_labels_that_do_not_match_the_images(tmp_path):
    write_mnist_layout(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(idx_gz(np.zeros(3)))
    with pytest.raises(DataError, match=r"t10k images \(4, 5, 3\) and labels \(3,\) do not match"):
        read_idx_splits(tmp_path)


def test_digits_are_scikit_learns_scaled_to_the_unit_interval():
    from sklearn.datasets import load_digits

    raw, arrays = load_digits(), digits()
    assert np.array_equal(arrays["data"], raw.data / 16.0) and np.array_equal(arrays["labels"], raw.target)
    assert arrays["image_shape"] == (8, 8)


def test_digits_are_read_without_importing_scikit_learn_and_the_same_through_it(monkeypatch):
    import subprocess
    import sys

    code = "import sys; from pyro_vae.data.catalog import digits; digits(); print('sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]
    read = digits()
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # another layout: through it
    through = digits()
    assert np.array_equal(read["data"], through["data"]) and np.array_equal(read["labels"], through["labels"])


def test_the_fetched_entries_and_their_published_sizes():
    assert sorted(downloads()) == ["binarized_mnist", "fashion_mnist", "kmnist", "mnist"]
    mnist = get_download("mnist")
    assert mnist.size == 9912422 + 28881 + 1648877 + 4542
    assert [f.name for f in mnist.files] == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    assert get_download("binarized_mnist").size == 78400000 + 2 * 15680000
    assert get_download("kmnist").__doc__.startswith("Kuzushiji-MNIST")


def test_an_unknown_name_lists_the_fetched_datasets():
    with pytest.raises(ConfigError) as info:
        get_download("digits")  # known, but not fetched
    assert str(info.value) == (
        '"digits" is not a dataset pyro-vae can fetch; allowed: "binarized_mnist", "fashion_mnist", '
        '"kmnist", "mnist"'
    )


def test_listing_counts_the_files_present_at_their_published_size(tmp_path, scoped_registries):
    files = (
        RemoteFile("a.bin", 3, "md5:00", ("http://x/",)),
        RemoteFile("b.bin", 5, "md5:00", ("http://x/",)),
    )
    register_download(Download("two_files", files, lambda where: {}, "Two files."))
    (tmp_path / "two_files").mkdir()
    (tmp_path / "two_files" / "a.bin").write_bytes(b"abc")
    (tmp_path / "two_files" / "b.bin").write_bytes(b"abcd")  # one byte short: not cached
    row = next(r for r in listing(tmp_path) if r.name == "two_files")
    assert (row.size, row.files, row.present, row.folder) == (8, 2, 1, tmp_path / "two_files")
    assert all(r.present == 0 for r in listing(tmp_path) if r.name != "two_files")
