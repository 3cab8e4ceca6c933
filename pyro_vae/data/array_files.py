"""Reading data files: ``.npy``, ``.npz`` and IDX (MNIST's format), gzip-compressed or not.

* ``.npy``: one array; ``.npz``: one array (and ``labels``), or ``train`` / ``valid`` /
  ``test`` splits with their ``*_labels``;
* IDX (LeCun et al.), recognised by name (``*.idx``, ``*-ubyte``, either with ``.gz``) or by
  its header: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
  0x0D float32, 0x0E float64), the number of dimensions, a big-endian int32 per dimension,
  then the values, big-endian. For ``…-images-idx3-ubyte[.gz]`` the labels are read from the
  ``…-labels-idx1-ubyte[.gz]`` beside it, when there is one.

:func:`read_array_file` returns the arrays unchecked (:func:`read_idx` one IDX file's);
:mod:`pyro_vae.data.datasets` checks and splits them.
"""

import gzip
import math
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from pyro_vae.core.errors import DataError

_VALID_KEYS = ("valid", "validation", "val")

#: IDX type codes and the big-endian dtypes they name
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAME = re.compile(r"(\.idx|-ubyte)(\.gz)?$")
_GZIP_MAGIC = b"\x1f\x8b"
_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK"
_FORMATS = ".npy, .npz, IDX (.idx, *-ubyte, either optionally gzip-compressed as .gz)"


def read_array_file(path: Path) -> dict:
    if path.is_dir():
        raise DataError(f"data.path = {str(path)!r} is a directory, not a file")
    if not path.is_file():
        raise DataError(f"data.path = {str(path)!r}: no such file")
    if path.suffix not in (".npy", ".npz"):
        if _IDX_NAME.search(path.name) or _starts_like_idx(path):
            return _read_idx_with_labels(path)
        raise DataError(f"data.path = {str(path)!r}: unknown format {path.suffix!r}; allowed: {_FORMATS}")
    _check_numpy_magic(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"data": loaded}
        with loaded:
            arrays = {key: loaded[key] for key in loaded.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # zlib: a damaged .npz
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


def _check_numpy_magic(path: Path) -> None:
    """Refuse a file that is neither ``.npy`` nor ``.npz`` (``np.load`` would call it a pickle)."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise DataError(f"data.path = {str(path)!r} cannot be read: {e.strerror or e}") from None
    if not head:
        raise DataError(f"data.path = {str(path)!r} is empty")
    if not head.startswith((_NPY_MAGIC, _ZIP_MAGIC)):
        raise DataError(
            f"data.path = {str(path)!r} is not a .npy or .npz file: it starts with bytes "
            f"{head.hex(' ')}, not {_NPY_MAGIC.hex(' ')} (.npy) or {_ZIP_MAGIC.hex(' ')} (.npz)"
        )


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
    data = read_idx(path, f"data.path = {str(path)!r}")
    labels_name = re.sub(r"images([-.])idx3", r"labels\1idx1", path.name, count=1)
    labels_path = path.with_name(labels_name)
    if labels_name == path.name or not labels_path.is_file():
        return {"data": data}
    where = f"labels file {str(labels_path)!r} (beside data.path)"
    labels = read_idx(labels_path, where)
    if labels.shape != data.shape[:1] or labels.dtype.kind not in "iu":
        raise DataError(
            f"{where} holds {labels.dtype.name} of shape {labels.shape}; "
            f"expected {data.shape[0]} integers, one per data point"
        )
    return {"data": data, "labels": labels}


def read_idx(path: Path, where: str) -> np.ndarray:
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
