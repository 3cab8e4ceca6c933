"""Labels as a graph reads them: which are kept, which are hidden, and that a hidden label never
reaches training."""

import dataclasses

import pytest
import torch

import pyro_vae
from pyro_vae.config.run_config import Config
from pyro_vae.config.sections import DataConfig
from pyro_vae.core.errors import ConfigError
from pyro_vae.data.datasets import load_data
from pyro_vae.data.labelled import HIDDEN, kept_labels, with_labels


def test_kept_labels_are_balanced_over_classes_and_fixed_by_the_seed():
    labels = torch.randint(0, 10, (1000,), generator=torch.Generator().manual_seed(0))
    kept = kept_labels(labels, 53, seed=0)
    assert len(kept) == len(set(kept.tolist())) == 53
    assert torch.bincount(labels[kept], minlength=10).tolist() == [6, 6, 6, 5, 5, 5, 5, 5, 5, 5]
    assert torch.equal(kept, kept_labels(labels, 53, seed=0))
    assert not torch.equal(kept, kept_labels(labels, 53, seed=1))


def test_asking_for_more_labels_than_a_class_has_is_one_line():
    labels = torch.tensor([0] * 50 + [1] * 3)
    with pytest.raises(
        ConfigError, match=r"data\.labels = 10 asks for 5 labels of class 1, which has 3 points"
    ):
        kept_labels(labels, 10, seed=0)
    with pytest.raises(ConfigError, match="more than the 53 training points"):
        kept_labels(labels, 60, seed=0)


def test_modelled_labels_are_shown_where_kept_and_hidden_elsewhere():
    data = load_data(DataConfig())
    rows, kept = with_labels(data, modelled=True, keep=30, seed=0)
    column = rows.train[:, -1].long()
    assert kept is not None and torch.equal(column[kept], data.train_labels[kept])
    assert (column != HIDDEN).sum() == 30
    assert (rows.valid[:, -1] == HIDDEN).all()  # validation bounds are of log p(x)
    assert torch.equal(rows.train[:, :-1], data.train) and torch.equal(rows.valid_labels, data.valid_labels)
    inputs, _ = with_labels(data, modelled=False, keep=None, seed=0)
    assert torch.equal(inputs.valid[:, -1].long(), data.valid_labels)  # an input is every row's
    with pytest.raises(ConfigError, match="only conditions on its label"):
        with_labels(data, modelled=False, keep=30, seed=0)


M2 = {
    "model": {
        "variables": {
            "y": {"family": "categorical", "data": "label"},
            "z": {"family": "normal", "size": 4},
            "x": {
                "family": "gaussian",
                "given": ["y", "z"],
                "data": "x",
                "network": {"kind": "mlp", "hidden": [16]},
            },
        }
    },
    "guide": {
        "y": {"given": ["x"], "network": {"kind": "mlp", "hidden": [16]}},
        "z": {"given": ["x", "y"], "network": {"kind": "mlp", "hidden": [16]}},
    },
    "objective": {"kind": "elbo", "classify": 10.0},
    "data": {"labels": 20},
    "train": {"epochs": 2, "batch_size": 50, "checkpoint_every": {"epochs": 10}},
}


def test_hidden_labels_never_reach_training(tmp_path):
    """Permuting the labels that training hides gives the same model, bit for bit."""
    data = load_data(DataConfig())
    data = dataclasses.replace(data, train=data.train[:300], train_labels=data.train_labels[:300])
    labels = data.train_labels
    kept = kept_labels(labels, 20, seed=0)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    last = max(order.tolist().index(k) for k in kept.tolist())
    unread = order[last + 1 :]  # hidden, and never looked at to choose the kept ones
    shuffled = labels.clone()
    shuffled[unread] = labels[unread[torch.randperm(len(unread), generator=torch.Generator().manual_seed(5))]]
    assert not torch.equal(shuffled, labels)
    runs = []
    for i, train_labels in enumerate((labels, shuffled)):
        config = Config.from_dict({**M2, "train": {**M2["train"], "run_dir": str(tmp_path / str(i))}})
        run = pyro_vae.train(config, data=dataclasses.replace(data, train_labels=train_labels), quiet=True)
        runs.append(run)
    for (name, a), b in zip(runs[0].graph.named_parameters(), runs[1].graph.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert runs[0].history[-1]["valid_accuracy"] == runs[1].history[-1]["valid_accuracy"]
    # and the kept labels do reach it: other kept labels train another model
    relabelled = labels.clone()
    relabelled[kept] = (labels[kept] + 1) % 10
    config = Config.from_dict({**M2, "train": {**M2["train"], "run_dir": str(tmp_path / "other")}})
    other = pyro_vae.train(config, data=dataclasses.replace(data, train_labels=relabelled), quiet=True)
    assert not torch.equal(next(other.graph.parameters()), next(runs[0].graph.parameters()))


def test_a_labelled_share_repeats_the_kept_rows_and_nothing_else():
    from pyro_vae.data.labelled import repeated

    data = load_data(DataConfig())
    rows, kept = with_labels(data, modelled=True, keep=50, seed=0)
    grown = repeated(rows, kept, 0.2)
    labelled = grown.train[:, -1] >= 0
    times = round(0.2 * (len(data.train) - 50) / (0.8 * 50))
    assert labelled.sum() == 50 * times and abs(labelled.float().mean() - 0.2) < 0.01
    assert torch.equal(grown.train[: len(rows.train)], rows.train)  # the repeats come after
    assert torch.equal(grown.train[len(rows.train) :], rows.train[kept.repeat(times - 1)])
    assert torch.equal(grown.train_labels[len(rows.train) :], data.train_labels[kept.repeat(times - 1)])
    assert torch.equal(grown.valid, rows.valid)
