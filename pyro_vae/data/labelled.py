"""Labels as a graph's programs read them: one more column of each data row.

A declared graph with a variable bound to ``"label"`` reads its class from the row's last
column (:mod:`pyro_vae.models.graph.bindings`), −1 where hidden. Which labels a split shows:

* a label the model *models* (M2's y: observed where known, summed where not) is shown on the
  training rows that keep one, ``data.labels`` of them balanced over the classes (every one when
  unset), and hidden on the validation and test rows, whose bounds are then log p(x);
* ``data.labelled_share`` repeats the kept labelled training rows (:func:`repeated`), as
  Kingma et al. (2014) put labelled points into every minibatch;
* a label that is only an *input* (a conditional VAE's y) is shown on every row, and cannot be
  hidden.

The hidden labels are replaced before the data reach training, so no step, bound or gradient can
read them; the splits keep their labels (``train_labels``, ...) for accuracies and pictures.
"""

import dataclasses
from typing import Any

import torch

from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.data.datasets import Data

HIDDEN = -1


def kept_labels(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """The indices of ``n`` labelled points, as equal a number of each class as ``n`` allows
    (the first ``n mod C`` classes one more): the points are visited in an order drawn by
    ``seed``, and each is kept while its class lacks labels, until every class has its share.
    The labels of the points after the last one kept are never read. Sorted, ``(n,)``."""
    classes = labels.unique().tolist()
    if n > len(labels):
        raise ConfigError(f"data.labels = {n} is more than the {len(labels)} training points")
    share, extra = divmod(n, len(classes))
    wanted = {c: share + (i < extra) for i, c in enumerate(classes)}
    counts = {c: int((labels == c).sum()) for c in classes}
    short = next((c for c in classes if wanted[c] > counts[c]), None)
    if short is not None:
        raise ConfigError(
            f"data.labels = {n} asks for {wanted[short]} labels of class {short}, "
            f"which has {counts[short]} points"
        )
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    kept, missing = [], n
    for i in order:
        if missing == 0:
            break
        c = int(labels[i])
        if wanted[c] > 0:
            wanted[c] -= 1
            missing -= 1
            kept.append(i)
    return torch.tensor(sorted(kept), dtype=torch.long)


def repeated(data: Data, kept: torch.Tensor, share: float) -> Data:
    """The training rows with the ``kept`` labelled ones repeated r times in all, r chosen so that
    they make up about ``share`` of the rows: r = round(share · U / ((1 − share) · L)) for U
    unlabelled and L labelled rows, at least once. The repeats are appended, each a row of its
    own (its own noise and binarization draws); the other splits are left as they are."""
    unlabelled = len(data.train) - len(kept)
    times = max(1, round(share * unlabelled / ((1 - share) * len(kept))))
    extra = kept.repeat(times - 1)
    grown: dict[str, Any] = {
        name: torch.cat([getattr(data, name), getattr(data, name)[extra]])
        for name in ("train", "train_labels", "train_probs")
        if getattr(data, name) is not None
    }
    return dataclasses.replace(data, **grown)


def with_labels(
    data: Data, *, modelled: bool, keep: int | None, seed: int
) -> tuple[Data, torch.Tensor | None]:
    """Every split with its label column (module docstring); and the kept training points'
    indices when ``keep`` hides some."""
    if data.train_labels is None:
        raise DataError(f"the data {data.name!r} have no labels, which a variable bound to 'label' reads")
    if keep is not None and not modelled:
        raise ConfigError(
            f"data.labels = {keep} hides labels, but the model only conditions on its label (an input): "
            "give that variable a family to model it, or leave data.labels out"
        )
    shown = data.train_labels.clone()
    kept = None
    if keep is not None:
        kept = kept_labels(data.train_labels, keep, seed)
        hidden = torch.ones(len(shown), dtype=torch.bool)
        hidden[kept] = False
        shown[hidden] = HIDDEN
    columns = {"train": shown}
    for split in ("valid", "test"):
        x, labels = getattr(data, split), getattr(data, f"{split}_labels")
        if x is not None:
            if labels is None and not modelled:
                raise DataError(
                    f"the {split} points of {data.name!r} have no labels, which the model's input needs"
                )
            columns[split] = torch.full((len(x),), HIDDEN) if modelled or labels is None else labels
    rows: dict[str, Any] = {
        split: torch.cat([getattr(data, split), label.to(getattr(data, split).dtype).unsqueeze(1)], dim=1)
        for split, label in columns.items()
    }
    return dataclasses.replace(data, **rows), kept
