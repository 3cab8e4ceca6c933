"""Reading data files (:mod:`pyro_vae.data.array_files`): .npy and .npz layouts and IDX files,
each value read back against the array written, and what is refused (with which message).
The IDX files are written here byte by byte from LeCun's description of the format."""

import gzip
import struct

import numpy as np
import pytest
import torch

from pyro_vae import DataConfig, DataError, load_data
from pyro_vae.data.array_files import read_array_file, read_idx


def rows(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in x.tolist()}


def refused(config: DataConfig) -> str:
    with pytest.raises(DataError) as info:
        load_data(config)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_npy_is_read_as_one_array(tmp_path):
    array = np.arange(12.0).reshape(4, 3)
    np.save(tmp_path / "x.npy", array)
    out = read_array_file(tmp_path / "x.npy")
    assert list(out) == ["data"] and np.array_equal(out["data"], array)


@pytest.mark.parametrize("valid_key", ["valid", "validation", "val"])
def test_npz_splits_and_their_labels_are_read_as_given(tmp_path, valid_key):
    train, valid, test = np.ones((4, 2)), np.zeros((2, 2)), np.full((3, 2), 2.0)
    labels = {"train_labels": np.arange(4), "valid_labels": np.arange(2), "test_labels": np.arange(3)}
    np.savez(tmp_path / "x.npz", train=train, **{valid_key: valid}, test=test, **labels)
    out = read_array_file(tmp_path / "x.npz")
    for key, want in {"train": train, "valid": valid, "test": test, **labels}.items():
        assert np.array_equal(out[key], want), key


def test_npz_of_one_array_and_labels(tmp_path):
    np.savez(tmp_path / "x.npz", pixels=np.eye(3), labels=np.array([2, 0, 1]))
    out = read_array_file(tmp_path / "x.npz")
    assert np.array_equal(out["data"], np.eye(3)) and out["labels"].tolist() == [2, 0, 1]


def test_a_file_that_is_neither_npy_nor_npz_is_refused_by_its_first_bytes(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(b"hello world")
    with pytest.raises(DataError, match="it starts with bytes 68 65 6c 6c 6f 20, not 93 4e 55 4d 50 59"):
        read_array_file(path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        read_array_file(path)
    with pytest.raises(DataError, match="is a directory"):
        read_array_file(tmp_path)


IDX_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file as LeCun's page describes it: 0, 0, type code, ndim, big-endian int32 sizes, values."""
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[array.dtype.type], array.ndim)
    sizes = struct.pack(f">{array.ndim}i", *array.shape)
    return header + sizes + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array: np.ndarray, compress: bool = False):
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def images_and_labels(n: int = 20):
    """Images whose every pixel is the index of the image, labelled index mod 10."""
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 3, 4)).copy()
    return images, (np.arange(n) % 10).astype(np.uint8)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_idx_images_with_their_labels_file(tmp_path, compress):
    images, labels = images_and_labels()
    gz = ".gz" if compress else ""
    path = write_idx(tmp_path / f"train-images-idx3-ubyte{gz}", images, compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{gz}", labels, compress)
    data = load_data(DataConfig(path=str(path)))
    assert data.image_shape == (3, 4) and data.dim == 12
    assert (len(data.train), len(data.valid)) == (18, 2)
    # each image is constant; its label follows it through the split
    for x, y in [(data.train, data.train_labels), (data.valid, data.valid_labels)]:
        assert torch.equal(x.min(1).values, x.max(1).values)
        assert torch.equal(x[:, 0].long() % 10, y)
    assert rows(data.train) | rows(data.valid) == rows(torch.from_numpy(images.reshape(20, 12)).float())


def test_idx_kaggle_style_names_find_their_labels(tmp_path):
    images, labels = images_and_labels()
    path = write_idx(tmp_path / "t10k-images.idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", labels)
    data = load_data(DataConfig(path=str(path)))
    # the labels are the file's: every image (pixel value i) carries label i mod 10 through the
    # split, and each class of the 20 images occurs twice
    for x, y in [(data.train, data.train_labels), (data.valid, data.valid_labels)]:
        assert torch.equal(x[:, 0].long() % 10, y)
    assert torch.bincount(torch.cat([data.train_labels, data.valid_labels])).tolist() == [2] * 10


def test_idx_without_a_labels_file(tmp_path):
    images, _ = images_and_labels()
    data = load_data(DataConfig(path=str(write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, True))))
    assert data.train_labels is None and data.valid_labels is None and data.train.shape == (18, 12)


IDX_VALUES = {
    np.uint8: [0, 1, 7, 200, 255],
    np.int8: [-128, -1, 0, 1, 127],
    np.int16: [-32768, -1, 0, 300, 32767],
    np.int32: [-(2**24), -1, 0, 70000, 2**24],  # (exact in float32)
    np.float32: [-1.5e3, -0.25, 0.0, 1 / 3, 3e7],
    np.float64: [-1.5e3, -0.25, 0.0, 1 / 3, 3e7],
}


@pytest.mark.parametrize("dtype", list(IDX_CODES), ids=lambda t: np.dtype(t).name)
def test_idx_every_type_code_reads_back_its_values(tmp_path, dtype):
    array = np.tile(np.array(IDX_VALUES[dtype], dtype=dtype), (4, 1))  # (4, 5), big-endian in the file
    data = load_data(DataConfig(path=str(write_idx(tmp_path / "values.idx", array)), valid_fraction=0.25))
    assert torch.equal(data.valid[0], torch.from_numpy(array[0].astype(np.float32)))


@pytest.mark.parametrize("name", ["data.bin", "data.bin.gz"])
def test_idx_is_recognised_by_its_header_whatever_the_name(tmp_path, name):
    images, _ = images_and_labels()
    path = write_idx(tmp_path / name, images, compress=name.endswith(".gz"))
    assert load_data(DataConfig(path=str(path))).image_shape == (3, 4)


def idx_refused(tmp_path, raw: bytes, name: str = "bad-images-idx3-ubyte") -> str:
    path = tmp_path / name
    path.write_bytes(raw)
    message = refused(DataConfig(path=str(path)))
    assert message.startswith(f"data.path = {str(path)!r}")
    return message


def test_idx_truncated_values(tmp_path):
    raw = idx_bytes(np.zeros((10, 2, 2), dtype=np.int16))
    message = idx_refused(tmp_path, raw[:-3])
    assert (
        "is truncated: its header announces int16 of shape (10, 2, 2) (80 bytes of values) "
        "but 77 bytes follow the header" in message
    )


def test_idx_truncated_header(tmp_path):
    message = idx_refused(tmp_path, idx_bytes(np.zeros((10, 2, 2), dtype=np.uint8))[:9])
    assert "is truncated: its header announces 3 dimensions but the file ends after 9 bytes" in message


def test_idx_size_mismatch(tmp_path):
    message = idx_refused(tmp_path, idx_bytes(np.zeros((3, 2), dtype=np.uint8)) + b"\0")
    assert (
        "has a size mismatch: its header announces uint8 of shape (3, 2) (6 bytes of values) but 7 bytes"
        in message
    )


def test_idx_bad_magic(tmp_path):
    message = idx_refused(tmp_path, b"\x01\x02\x08\x03" + bytes(20))
    assert "is not an IDX file: it starts with bytes 01 02 08 03, not 00 00, a type code" in message


def test_idx_unknown_type_code(tmp_path):
    message = idx_refused(tmp_path, b"\0\0\x0a\x01" + struct.pack(">i", 2) + bytes(2))
    assert "unknown IDX type code 0x0A; allowed: 0x08 (uint8), 0x09 (int8), 0x0B (int16)" in message


def test_idx_damaged_gzip(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(600, dtype=np.int32).reshape(20, 30)))
    message = idx_refused(tmp_path, compressed[: len(compressed) // 2], name="bad-images-idx3-ubyte.gz")
    assert "is not a readable gzip file (truncated or damaged?)" in message


def test_idx_labels_file_of_the_wrong_length(tmp_path):
    images, labels = images_and_labels()
    path = write_idx(tmp_path / "train-images-idx3-ubyte", images)
    labels_path = write_idx(tmp_path / "train-labels-idx1-ubyte", labels[:-1])
    message = refused(DataConfig(path=str(path)))
    assert message == (
        f"labels file {str(labels_path)!r} (beside data.path) holds uint8 of shape (19,); "
        "expected 20 integers, one per data point"
    )


def test_idx_damaged_labels_file_names_the_labels_file(tmp_path):
    images, labels = images_and_labels()
    path = write_idx(tmp_path / "train-images-idx3-ubyte", images)
    labels_path = tmp_path / "train-labels-idx1-ubyte"
    labels_path.write_bytes(idx_bytes(labels)[:-1])
    message = refused(DataConfig(path=str(path)))
    assert message.startswith(f"labels file {str(labels_path)!r} (beside data.path) is truncated")


@pytest.mark.parametrize("dtype", list(IDX_CODES), ids=lambda t: np.dtype(t).name)
def test_read_idx_returns_the_array_written(tmp_path, dtype):
    array = np.tile(np.array(IDX_VALUES[dtype], dtype=dtype), (2, 3, 1))  # (2, 3, 5)
    got = read_idx(write_idx(tmp_path / "v.idx", array, compress=True), "v")
    assert got.shape == array.shape and got.dtype.name == np.dtype(dtype).name
    assert np.array_equal(got, array)
