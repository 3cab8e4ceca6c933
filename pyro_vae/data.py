"""Datasets: built-in ones by name, or an array file by path.

Files are read by format:

* ``.npy``: one array; ``.npz``: one array (and ``labels``), or ``train`` / ``valid`` /
  ``test`` splits with their ``*_labels``;
* IDX, the format of MNIST and its relatives (LeCun et al.), optionally gzip-compressed,
  recognised by name (``*.idx``, ``*-ubyte``, either with ``.gz``) or by its header: two zero
  bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
  0x0E float64), the number of dimensions, a big-endian int32 per dimension, then the
  values, big-endian. For ``…-images-idx3-ubyte[.gz]`` the labels are read from the
  ``…-labels-idx1-ubyte[.gz]`` beside it, when there is one.

Data is a float32 matrix of shape ``(N, D)``, one data point per row (images are
flattened, their shape kept for pictures), with a validation split and optional
integer labels (used only to colour pictures of the latent space). Every value is
divided by ``data.divide_by`` (255 maps 8-bit images to [0, 1]). It is checked once when
loaded (shape, dtype, finite values) and then held on the training device, so that a
training step indexes it there and copies nothing from the host.
"""

import dataclasses
import gzip
import math
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import DataConfig
from .errors import DataError
from .registry import Registry

DATASETS = Registry("dataset")
register_dataset = DATASETS.register

_VALID_KEYS = ("valid", "validation", "val")

#: IDX type codes and the big-endian dtypes they name
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAME = re.compile(r"(\.idx|-ubyte)(\.gz)?$")
_GZIP_MAGIC = b"\x1f\x8b"
_FORMATS = ".npy, .npz, IDX (.idx, *-ubyte, either optionally gzip-compressed as .gz)"


@dataclass(frozen=True)
class Data:
    """A training and a validation split, with labels where known."""

    name: str
    train: torch.Tensor  # (N, D)
    valid: torch.Tensor  # (M, D)
    train_labels: torch.Tensor | None = None  # (N,)
    valid_labels: torch.Tensor | None = None  # (M,)
    #: a held-out test split, when the file has one (never used in training)
    test: torch.Tensor | None = None  # (T, D)
    test_labels: torch.Tensor | None = None  # (T,)
    image_shape: tuple[int, ...] | None = None

    @property
    def dim(self) -> int:
        return self.train.shape[1]

    def to(self, device) -> "Data":
        """The same data on ``device`` (one copy per tensor, made once)."""
        move = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **move)

    def pin(self) -> "Data":
        """The same data in page-locked host memory, for asynchronous copies to a GPU."""
        pinned = {k: getattr(self, k).pin_memory() for k in ("train", "valid")}
        return dataclasses.replace(self, **pinned)


@register_dataset("digits")
def digits() -> dict[str, np.ndarray]:
    """scikit-learn's 1797 handwritten digits (8×8, grey levels 0..16), scaled to [0, 1].

    They ship inside scikit-learn, so nothing is downloaded.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return {"data": bunch.data / 16.0, "labels": bunch.target, "image_shape": (8, 8)}


def load_data(config: DataConfig, seed: int | None = None) -> Data:
    """Load, check, scale and split the data that ``config`` names (on the CPU).

    The split is drawn with ``seed``, by default ``config.split_seed``. Every split is
    divided by ``config.divide_by``.
    """
    seed = config.split_seed if seed is None else seed
    if config.path is None:
        arrays = DATASETS.get(config.name, key="data.name")()
        image_shape = arrays.pop("image_shape", None)
        where = f"data.name = {config.name!r}"
    else:
        arrays = _read_array_file(Path(config.path))
        image_shape = None
        where = f"data.path = {config.path!r}"

    splits = {}
    for split in ("train", "valid", "test"):
        if arrays.get(split) is not None:
            x, shape = _as_matrix(arrays[split], f"{where} ({split!r})", config.divide_by)
            image_shape = image_shape or shape
            splits[split] = x
            splits[f"{split}_labels"] = _labels(arrays.get(f"{split}_labels"), len(x), where)
    if "train" not in splits:
        x, shape = _as_matrix(arrays["data"], where, config.divide_by)
        image_shape = image_shape or shape
        labels = _labels(arrays.get("labels"), len(x), where)
        splits.update(_split(x, labels, config.valid_fraction, seed, where))
    elif "valid" not in splits:
        splits.update(_split(splits["train"], splits["train_labels"], config.valid_fraction, seed, where))
    for split in ("valid", "test"):
        if split in splits and splits[split].shape[1] != splits["train"].shape[1]:
            words = {"valid": "validation", "test": "test"}[split]
            raise DataError(
                f"{where}: {words} points have {splits[split].shape[1]} values, "
                f"training points {splits['train'].shape[1]}"
            )

    image_shape = tuple(config.image_shape) if config.image_shape else image_shape
    dim = splits["train"].shape[1]
    if image_shape is None and math.isqrt(dim) ** 2 == dim:
        image_shape = (math.isqrt(dim),) * 2
    if image_shape is not None and math.prod(image_shape) != dim:
        raise DataError(f"data.image_shape = {list(image_shape)} does not hold {dim} values per point")
    return Data(name=config.name, image_shape=image_shape, **splits)


def _read_array_file(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"data.path = {str(path)!r}: no such file")
    if path.suffix not in (".npy", ".npz"):
        if _IDX_NAME.search(path.name) or _starts_like_idx(path):
            return _read_idx_with_labels(path)
        raise DataError(f"data.path = {str(path)!r}: unknown format {path.suffix!r}; allowed: {_FORMATS}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"data": loaded}
        with loaded:
            arrays = {key: loaded[key] for key in loaded.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"data.path = {str(path)!r} is not a readable {path.suffix} file: {e}") from None
    if "train" in arrays:
        valid = next((arrays[k] for k in _VALID_KEYS if k in arrays), None)
        return {
            "train": arrays["train"],
            "valid": valid,
            "train_labels": arrays.get("train_labels"),
            "valid_labels": arrays.get("valid_labels"),
            "test": arrays.get("test"),
            "test_labels": arrays.get("test_labels"),
        }
    data_keys = [k for k in arrays if not k.endswith("labels")]
    if len(data_keys) != 1:
        raise DataError(
            f"data.path = {str(path)!r} holds arrays {', '.join(arrays) or '(none)'}; "
            "name the training array 'train' (optionally 'valid', 'test' and their '_labels')"
        )
    return {"data": arrays[data_keys[0]], "labels": arrays.get("labels")}


def _starts_like_idx(path: Path) -> bool:
    """Whether the file, gzip-compressed or not, begins with an IDX header."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
        if head[:2] == _GZIP_MAGIC:
            with gzip.open(path) as f:
                head = f.read(4)
    except (OSError, EOFError, zlib.error):
        return False
    return len(head) == 4 and head[:2] == b"\0\0" and head[2] in _IDX_TYPES and head[3] > 0


def _read_idx_with_labels(path: Path) -> dict:
    """An IDX file's array as the data, and the labels file beside it (if any) as its labels."""
    data = _read_idx(path, f"data.path = {str(path)!r}")
    labels_name = re.sub(r"images([-.])idx3", r"labels\1idx1", path.name, count=1)
    labels_path = path.with_name(labels_name)
    if labels_name == path.name or not labels_path.is_file():
        return {"data": data}
    where = f"labels file {str(labels_path)!r} (beside data.path)"
    labels = _read_idx(labels_path, where)
    if labels.shape != data.shape[:1] or labels.dtype.kind not in "iu":
        raise DataError(
            f"{where} holds {labels.dtype.name} of shape {labels.shape}; "
            f"expected {data.shape[0]} integers, one per data point"
        )
    return {"data": data, "labels": labels}


def _read_idx(path: Path, where: str) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not): header, big-endian sizes, big-endian values."""
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{where} is not a readable gzip file (truncated or damaged?): {e}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[3] == 0:
        raise DataError(
            f"{where} is not an IDX file: it starts with bytes {raw[:4].hex(' ') or '(none)'}, "
            "not 00 00, a type code and a number of dimensions"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        allowed = ", ".join(f"0x{c:02X} ({np.dtype(t).name})" for c, t in _IDX_TYPES.items())
        raise DataError(f"{where}: unknown IDX type code 0x{code:02X}; allowed: {allowed}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{where} is truncated: its header announces {ndim} dimensions but the file ends "
            f"after {len(raw)} bytes"
        )
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected, found = math.prod(shape) * dtype.itemsize, len(raw) - header
    if found != expected:
        problem = "is truncated" if found < expected else "has a size mismatch"
        raise DataError(
            f"{where} {problem}: its header announces {dtype.name} of shape {shape} "
            f"({expected} bytes of values) but {found} bytes follow the header"
        )
    return np.frombuffer(raw, dtype, count=math.prod(shape), offset=header).reshape(shape)


def _as_matrix(
    array: np.ndarray, where: str, divide_by: float = 1.0
) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """Check one array, flatten it to ``(N, D)`` float32 and divide it by ``divide_by``;
    return the image shape if any."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise DataError(f"{where}: dtype {array.dtype} is not numeric; expected bool, integer or float")
    if array.ndim < 2:
        raise DataError(
            f"{where}: shape {array.shape} has no data dimension; expected (N, D) "
            "or images (N, H, W) / (N, C, H, W)"
        )
    if array.shape[0] == 0 or math.prod(array.shape[1:]) == 0:
        raise DataError(f"{where}: shape {array.shape} holds no data")
    if array.dtype.kind == "f":
        finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise DataError(
                f"{where}: {len(bad)} data points hold NaN or infinite values (first: row {bad[0]})"
            )
    with np.errstate(over="ignore"):  # an overflow is reported below, by row
        x = torch.from_numpy(array.reshape(len(array), -1).astype(np.float32))  # (N, D), a copy
    if divide_by != 1:
        # in float32, correctly rounded: 255 / 255 is exactly 1 and k / 255 the nearest float32
        x /= divide_by
    # finite values can still overflow float32 (float64 data, a small divide_by)
    overflow = ~torch.isfinite(x).all(1)
    if overflow.any():
        bad = torch.nonzero(overflow).flatten()
        after = f" after dividing by data.divide_by = {divide_by:g}" if divide_by != 1 else ""
        raise DataError(
            f"{where}: {len(bad)} data points hold values beyond float32's range{after} "
            f"(first: row {bad[0].item()})"
        )
    image_shape = tuple(s for s in array.shape[1:] if s != 1) if array.ndim > 2 else None
    return x, image_shape


def _labels(labels, n: int, where: str) -> torch.Tensor | None:
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.shape != (n,) or labels.dtype.kind not in "biu":
        raise DataError(
            f"{where}: labels of shape {labels.shape} and dtype {labels.dtype}; expected {n} integers"
        )
    return torch.from_numpy(labels.astype(np.int64))


def _split(x, labels, fraction: float, seed: int, where: str) -> dict:
    """A seeded random split into training and validation points."""
    n_valid = max(1, round(fraction * len(x)))
    if n_valid >= len(x):
        raise DataError(f"{where}: {len(x)} data points are too few to hold out {n_valid} for validation")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    valid, train = order[:n_valid], order[n_valid:]
    pick = (lambda t, i: None) if labels is None else (lambda t, i: t[i])
    return {
        "train": x[train],
        "valid": x[valid],
        "train_labels": pick(labels, train),
        "valid_labels": pick(labels, valid),
    }
