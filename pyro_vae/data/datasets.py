"""Datasets: built-in ones by name, or an array file by path.

Files are read by :mod:`pyro_vae.data.array_files` (``.npy``, ``.npz``, IDX); the datasets known
by name (``digits``, and those fetched into the user's cache) are :mod:`pyro_vae.data.catalog`'s.

Data is a float32 matrix of shape ``(N, D)``, one data point per row (images are
flattened, their shape kept for pictures), with a validation split and optional
integer labels (used only to colour pictures of the latent space). Every value is
divided by ``data.divide_by`` (255 maps 8-bit images to [0, 1]). It is checked once when
loaded (shape, dtype, finite values) and then held on the training device, so that a
training step indexes it there and copies nothing from the host.

With ``data.binarize = "dynamic"`` grey values in [0, 1] are the probabilities of binary pixels,
as Burda et al. (2016) train on MNIST: every epoch draws each training point afresh
(:mod:`pyro_vae.training.binarize`, from ``Data.train_probs``), while every split here holds one
draw, fixed by ``data.split_seed`` and the split, so that the validation and test log p(x) are
measured on the same bits by every run and command (Burda et al.'s code also scores a test set
binarized once by a fixed seed).
"""

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyro_vae.config.sections import DataConfig
from pyro_vae.core.errors import DataError
from pyro_vae.core.options import show
from pyro_vae.core.registry import DATASETS
from pyro_vae.data.array_files import read_array_file

register_dataset = DATASETS.register
_SHAPES = "(N, D), images (N, H, W) or images (N, C, H, W)"


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
    #: data.binarize = "dynamic": the grey values that each epoch draws the training points
    #: from; ``train`` then holds one fixed draw of them
    train_probs: torch.Tensor | None = None  # (N, D)

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
        held = ("train", "valid", "train_probs")
        pinned = {k: getattr(self, k).pin_memory() for k in held if getattr(self, k) is not None}
        return dataclasses.replace(self, **pinned)


def load_data(config: DataConfig, seed: int | None = None) -> Data:
    """Load, check, scale and split the data that ``config`` names (on the CPU).

    The split is drawn with ``seed``, by default ``config.split_seed``. Every split is
    divided by ``config.divide_by``, then binarized once if ``config.binarize`` says so.
    """
    seed = config.split_seed if seed is None else seed
    if config.path is None:
        arrays = DATASETS.get(config.name, key="data.name")()
        image_shape = arrays.pop("image_shape", None)
        where = f"data.name = {config.name!r}"
    else:
        arrays = read_array_file(Path(config.path))
        image_shape = None
        where = f"data.path = {config.path!r}"

    splits: dict[str, Any] = {}  # Data's fields: the splits (tensors) and their labels (or None)
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

    if config.image_shape:
        image_shape = _picture_shape(
            tuple(config.image_shape), "data.image_shape = " + show(list(config.image_shape))
        )
    if config.binarize == "dynamic":
        splits.update(_binarized(splits, seed, where))
    dim = splits["train"].shape[1]
    if image_shape is None and math.isqrt(dim) ** 2 == dim:
        image_shape = (math.isqrt(dim),) * 2
    if image_shape is not None and math.prod(image_shape) != dim:
        raise DataError(f"data.image_shape = {list(image_shape)} does not hold {dim} values per point")
    return Data(name=config.name, image_shape=image_shape, **splits)


def _as_matrix(
    array: np.ndarray, where: str, divide_by: float = 1.0
) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """Check one array, flatten it to ``(N, D)`` float32 and divide it by ``divide_by``;
    return the image shape if any."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise DataError(f"{where}: dtype {array.dtype} is not numeric; expected bool, integer or float")
    if array.ndim < 2:
        raise DataError(f"{where}: shape {array.shape} has no data dimension; expected {_SHAPES}")
    if array.ndim > 4:
        raise DataError(f"{where}: shape {array.shape} has {array.ndim} dimensions; expected {_SHAPES}")
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
        rows = torch.nonzero(overflow).flatten()
        after = f" after dividing by data.divide_by = {divide_by:g}" if divide_by != 1 else ""
        raise DataError(
            f"{where}: {len(rows)} data points hold values beyond float32's range{after} "
            f"(first: row {rows[0].item()})"
        )
    image_shape = _picture_shape(array.shape[1:], f"{where}: shape {array.shape}") if array.ndim > 2 else None
    return x, image_shape


def _picture_shape(shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """The shape pictures draw a point in: ``(H, W)``, or ``(C, H, W)`` with C = 3 or 4 (RGB,
    RGBA); a single channel, first or last, is dropped (grey images)."""
    if len(shape) == 2:
        return tuple(shape)
    if len(shape) == 3:
        if shape[0] == 1:
            return tuple(shape[1:])
        if shape[2] == 1:  # (H, W, 1): one channel, last
            return tuple(shape[:2])
        if shape[0] in (3, 4):
            return tuple(shape)
        raise DataError(
            f"{where} reads as images (C, H, W) of {shape[0]} channels; pictures show 1, 3 or 4 "
            "(grey, RGB, RGBA): move the channels of channels-last images first, flatten other "
            "data to (N, D)"
        )
    raise DataError(f"{where} is not allowed: expected [H, W] or [C, H, W]")


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


#: the key of each split's one draw under data.binarize = "dynamic", beside the split seed
_DRAWS = {"train": 0, "valid": 1, "test": 2}


def _binarized(splits: dict, seed: int, where: str) -> dict:
    """data.binarize = "dynamic": every split as one Bernoulli draw of its grey values, from a
    generator keyed by (``seed``, split); the training split's grey values as ``train_probs``."""
    present = [s for s in _DRAWS if s in splits]
    for split in present:
        lo, hi = splits[split].min().item(), splits[split].max().item()
        if lo < 0 or hi > 1:
            raise DataError(
                f'{where}: data.binarize = "dynamic" reads every value as the probability of a 1, '
                f"but the {split} points span [{lo:g}, {hi:g}]; scale them to [0, 1] with "
                "data.divide_by (255 for 8-bit images)"
            )
    train = splits["train"]
    if bool(((train == 0) | (train == 1)).all()):
        raise DataError(
            f'{where}: data.binarize = "dynamic" draws the training points afresh every epoch from '
            "their grey values, but they are already binary (every value 0 or 1), so every draw "
            'would be the same; use data.binarize = "none"'
        )
    out = {"train_probs": train}
    for split in present:
        key = np.random.SeedSequence([seed & (2**64 - 1), _DRAWS[split]]).generate_state(1, np.uint64)[0]
        uniform = torch.rand(splits[split].shape, generator=torch.Generator().manual_seed(int(key)))
        out[split] = (uniform < splits[split]).to(splits[split].dtype)  # P(1) = the grey value
    return out
