"""The datasets pyro-vae knows by name: ``data.name = "binarized_mnist"`` with ``data.path`` unset.

``digits`` ships inside scikit-learn; the others are fetched. A :class:`Download` lists its
published files (:class:`~pyro_vae.data.downloads.RemoteFile`: size, published checksum,
mirrors) and reads them into the arrays that :func:`pyro_vae.data.datasets.load_data` checks and
splits. Its files live in ``cache_dir() / NAME``; loading the dataset fetches the missing ones
first (``pyro-vae data get NAME`` does only that; ``--plugins FILE`` for a plugin's dataset).
:func:`register_download` makes one an entry of the ``dataset`` registry, the family every
dataset belongs to.

The sizes and checksums are the published ones, from tensorflow_datasets'
``tensorflow_datasets/url_checksums/`` files (size and sha256 per URL). Nothing here imports
torch, so that ``pyro-vae data list`` answers at once.
"""

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.core.options import show
from pyro_vae.core.registry import DATASETS
from pyro_vae.data.array_files import read_idx
from pyro_vae.data.downloads import NotFetched, RemoteFile, cache_dir, fetch_all, is_cached, shown


@dataclass(frozen=True)
class Download:
    """A dataset made of published files: ``read`` turns the folder holding them into arrays
    (``train``, ``valid``, ``test``, their ``*_labels``, ``image_shape``); ``about`` says what
    it is and where it comes from (the first paragraph is its entry in the configuration
    reference). Called, it loads the dataset, fetching what the cache lacks."""

    name: str
    files: tuple[RemoteFile, ...]
    read: Callable[[Path], dict]
    about: str

    def __post_init__(self):
        object.__setattr__(self, "__doc__", self.about)  # the registry's entry is documented by it

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def __call__(self) -> dict:
        return load_download(self.name)


def register_download(download: Download) -> Download:
    """Make ``download`` a dataset that ``data.name`` and ``pyro-vae data get`` know."""
    return DATASETS.register(download.name, download)


def downloads() -> dict[str, Download]:
    """The datasets pyro-vae fetches, by name: the ``dataset`` registry's :class:`Download` entries."""
    return {name: entry for name, entry in DATASETS.entries().items() if isinstance(entry, Download)}


def get_download(name: str) -> Download:
    known = downloads()
    if name not in known:
        allowed = ", ".join(show(n) for n in known)
        raise ConfigError(f"{show(name)} is not a dataset pyro-vae can fetch; allowed: {allowed}")
    return known[name]


def folder(name: str, directory: str | Path | None = None) -> Path:
    """Where dataset ``name``'s files are kept (see :func:`pyro_vae.data.downloads.cache_dir`)."""
    return cache_dir(directory) / name


def fetch_dataset(name: str, directory: str | Path | None = None, *, progress: bool = False) -> Path:
    """Fetch the files of dataset ``name`` that are missing; return the folder holding them."""
    download = get_download(name)
    where = folder(name, directory)
    fetch_all(download.files, where, folder=name, progress=progress)
    return where


def load_download(name: str, directory: str | Path | None = None) -> dict:
    """Dataset ``name``'s arrays, read from the cache after fetching what is missing there."""
    download = get_download(name)
    try:
        where = fetch_dataset(name, directory, progress=sys.stderr.isatty())
    except NotFetched as e:
        files = ", ".join(f.name for f in download.files)
        mirror = download.files[0].mirrors[0]
        raise DataError(
            f"data.name = {show(name)}: {e}; get it with `pyro-vae data get {name}{_plugin_flag(download)}` "
            f"where the network is reachable, or put {files} (from {shown(mirror, mirror)}) in "
            f"{folder(name, directory)}"
        ) from None
    except DataError as e:  # the cache's problem: the network would not help
        raise DataError(f"data.name = {show(name)}: {e}") from None
    return download.read(where)


def _plugin_flag(download: Download) -> str:
    """`` --plugins FILE`` where a plugin file registered ``download`` (the name
    :func:`pyro_vae.core.plugins.import_plugin` gives its module says so); else nothing."""
    names = getattr(download.read, "__globals__", {})
    plugin = names.get("__name__", "").startswith("pyro_vae_plugin_") and names.get("__file__")
    return f" --plugins {plugin}" if plugin else ""


@dataclass(frozen=True)
class Cached:
    """What ``pyro-vae data list`` says of one dataset."""

    name: str
    size: int
    files: int
    present: int
    folder: Path


def listing(directory: str | Path | None = None) -> list[Cached]:
    """Every fetched dataset: its size, how many of its files the cache holds, where."""
    rows = []
    for name, download in downloads().items():
        where = folder(name, directory)
        present = sum(is_cached(f, where) for f in download.files)
        rows.append(Cached(name, download.size, len(download.files), present, where))
    return rows


# ---------------------------------------------------------------------------------------------
# The datasets, and how their files are read
# ---------------------------------------------------------------------------------------------


@DATASETS.register("digits")
def digits() -> dict[str, Any]:
    """scikit-learn's 1797 handwritten digits (8×8, grey levels 0..16), scaled to [0, 1].

    They ship inside scikit-learn, so nothing is downloaded: its ``digits.csv.gz`` is read as
    ``load_digits`` reads it (64 pixels then the class, a row a digit), without importing
    scikit-learn, which costs a second of CPU at every start of ``pyro-vae train``.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0], "datasets", "data", "digits.csv.gz") if folders else None
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",")
        data, labels = table[:, :-1], table[:, -1].astype(int)
    else:  # another layout of scikit-learn
        from sklearn.datasets import load_digits

        bunch = load_digits()
        data, labels = bunch.data, bunch.target
    return {"data": data / 16.0, "labels": labels, "image_shape": (8, 8)}


def read_amat(path: Path, rows: int, columns: int) -> np.ndarray:
    """Larochelle's ``.amat`` of binary values, as uint8 ``(rows, columns)``: each line is
    ``columns`` characters ``0``/``1`` separated by single spaces, then a newline (``2 ·
    columns`` bytes), so that the values are every other byte (no text parsing)."""
    raw = np.frombuffer(path.read_bytes(), np.uint8)
    width = 2 * columns
    if raw.size != rows * width:
        raise DataError(f"{path} has {raw.size} bytes; expected {rows} lines of {width}")
    lines = raw.reshape(rows, width)  # (rows, 2 * columns)
    values = lines[:, 0::2] - np.uint8(ord("0"))  # a byte below '0' wraps round to above 1
    if (values > 1).any() or (lines[:, 1:-1:2] != ord(" ")).any() or (lines[:, -1] != ord("\n")).any():
        raise DataError(f"{path} is not lines of {columns} values 0 or 1 separated by single spaces")
    return values


def _binarized_mnist(where: Path) -> dict:
    shape = {"train": 50000, "valid": 10000, "test": 10000}
    arrays: dict = {s: read_amat(where / f"binarized_mnist_{s}.amat", n, 784) for s, n in shape.items()}
    return {**arrays, "image_shape": (28, 28)}


def read_idx_splits(where: Path) -> dict:
    """MNIST's layout: ``train-`` and ``t10k-`` ``images-idx3-ubyte.gz`` and
    ``labels-idx1-ubyte.gz``, as ``train`` and ``test`` images scaled to [0, 1] (float32,
    correctly rounded k / 255) with their labels."""
    arrays: dict = {"image_shape": (28, 28)}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(where / f"{prefix}-images-idx3-ubyte.gz", f"{where}/{prefix}-images")
        labels = read_idx(where / f"{prefix}-labels-idx1-ubyte.gz", f"{where}/{prefix}-labels")
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise DataError(f"{where}: {prefix} images {images.shape} and labels {labels.shape} do not match")
        arrays[split] = images.astype(np.float32) / np.float32(255)
        arrays[f"{split}_labels"] = labels
    return arrays


def _idx_files(mirrors: tuple[str, ...], sizes_and_sha256: dict[str, tuple[int, str]]) -> tuple:
    return tuple(RemoteFile(n, size, f"sha256:{h}", mirrors) for n, (size, h) in sizes_and_sha256.items())


register_download(
    Download(
        "binarized_mnist",
        tuple(
            RemoteFile(
                f"binarized_mnist_{split}.amat",
                size,
                f"sha256:{sha256}",
                ("http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",),
            )
            for split, size, sha256 in (
                ("train", 78400000, "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
                ("valid", 15680000, "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
                ("test", 15680000, "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
            )
        ),
        _binarized_mnist,
        "Statically binarized MNIST (Larochelle & Murray, AISTATS 2011; fetched, 110 MB): 50000 "
        "training, 10000 validation and 10000 test 28×28 images of 0/1: the VampPrior paper's data "
        "and the IWAE paper's appendix's (its main table trains on fresh draws: data.binarize).",
    )
)

register_download(
    Download(
        "mnist",
        _idx_files(
            (
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ),
            {
                "train-images-idx3-ubyte.gz": (
                    9912422,
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                ),
                "train-labels-idx1-ubyte.gz": (
                    28881,
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                ),
                "t10k-images-idx3-ubyte.gz": (
                    1648877,
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                ),
                "t10k-labels-idx1-ubyte.gz": (
                    4542,
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                ),
            },
        ),
        read_idx_splits,
        "MNIST (LeCun et al. 1998; fetched, 12 MB): 60000 training and 10000 test 28×28 grey "
        "images scaled to [0, 1], with labels; data.valid_fraction of the training images are "
        "held out for validation.",
    )
)

register_download(
    Download(
        "fashion_mnist",
        _idx_files(
            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            {
                "train-images-idx3-ubyte.gz": (
                    26421880,
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                ),
                "train-labels-idx1-ubyte.gz": (
                    29515,
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                ),
                "t10k-images-idx3-ubyte.gz": (
                    4422102,
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                ),
                "t10k-labels-idx1-ubyte.gz": (
                    5148,
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                ),
            },
        ),
        read_idx_splits,
        "Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; fetched, 31 MB): 60000 training and 10000 "
        "test 28×28 grey images of clothes scaled to [0, 1], with labels; data.valid_fraction of "
        "the training images are held out for validation.",
    )
)

register_download(
    Download(
        "kmnist",
        _idx_files(
            ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
            {
                "train-images-idx3-ubyte.gz": (
                    18165135,
                    "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
                ),
                "train-labels-idx1-ubyte.gz": (
                    29497,
                    "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
                ),
                "t10k-images-idx3-ubyte.gz": (
                    3041136,
                    "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
                ),
                "t10k-labels-idx1-ubyte.gz": (
                    5120,
                    "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
                ),
            },
        ),
        read_idx_splits,
        "Kuzushiji-MNIST (Clanuwat et al. 2018; fetched, 21 MB): 60000 training and 10000 test "
        "28×28 grey images of cursive Japanese characters scaled to [0, 1], with labels; "
        "data.valid_fraction of the training images are held out for validation.",
    )
)
