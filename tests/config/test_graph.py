"""A declared graph is checked before anything trains: one line for each mistake."""

import dataclasses

import pytest
import torch

import pyro_vae
from pyro_vae.config.run_config import Config
from pyro_vae.config.sections import DataConfig
from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.core.registry import NETWORKS
from pyro_vae.data.datasets import load_data


def graph(variables: dict, guide: dict | None = None) -> Config:
    return Config.from_dict(
        {"model": {"variables": variables}, **({"guide": guide} if guide is not None else {})}
    )


Z = {"family": "normal", "size": 2}
X = {"family": "bernoulli", "given": ["z"], "data": "x"}


@pytest.mark.parametrize(
    ("variables", "guide", "message"),
    [
        (
            {"a": {**Z, "given": ["b"]}, "b": {**Z, "given": ["a"]}, "x": {**X, "given": ["a"]}},
            None,
            "has a cycle: a -> b -> a",
        ),
        (
            {"z": Z, "x": {**X, "given": ["w"]}},
            None,
            'model.variables.x.given names "w", which is not a variable',
        ),
        (
            {"z": Z, "w": Z, "x": {**X, "given": ["z", "w"]}},
            {"z": {}},
            "model.variables.w is a latent without a guide",
        ),
        ({"z": {"family": "normal"}, "x": X}, None, "model.variables.z.size must be given"),
        ({"z": Z, "x": X}, {"z": {}, "x": {}}, "guide.x: x is bound to data"),
        (
            {"z": Z, "x": {**X, "data": "x.middle"}},
            None,
            'model.variables.x.data = "x.middle" is not allowed',
        ),
        (
            {"z": Z, "x": {**X, "family": "nomal"}},
            None,
            'model.variables.x.family.kind = "nomal" is not a known family',
        ),
        (
            {"y": {"family": "categorical"}, "x": {**X, "given": ["y"]}},
            None,
            "model.variables.y.classes must be given",
        ),
        ({"z": Z, "x": X}, {"z": {"given": ["z"]}}, "guide.z.given names z itself"),
        ({"z": Z}, None, "no variable bound to data"),
    ],
)
def test_a_mistake_in_a_graph_is_one_line(variables, guide, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        graph(variables, guide)


def test_a_guide_without_a_graph_and_preset_keys_beside_one_are_refused():
    with pytest.raises(ConfigError, match=r"\[guide\] declares the guide of a graph"):
        Config.from_dict({"guide": {"z": {}}})
    with pytest.raises(
        ConfigError, match=r"model\.latent_dim has no effect on a model declared by model\.variables"
    ):
        Config.from_dict({"model": {"latent_dim": 5, "variables": {"z": Z, "x": X}}})


def test_a_graph_round_trips_through_its_file_with_its_defaults_filled_in(tmp_path):
    config = graph({"z": Z, "x": X})
    config.save(tmp_path / "c.toml")
    again = Config.load(tmp_path / "c.toml")
    assert again == config
    assert again.guide["z"].given == ["x"]  # amortized on the data by default
    assert again.model.variables["x"].network.kind == "mlp"


def test_data_the_dataset_cannot_supply_is_one_line(tmp_path):
    data = load_data(DataConfig())
    unlabelled = dataclasses.replace(data, train_labels=None, valid_labels=None)
    config = graph(
        {
            "y": {"family": "categorical", "data": "label"},
            "z": Z,
            "x": {**X, "family": "gaussian", "given": ["y", "z"]},
        }
    )
    config = config.override({"train.run_dir": str(tmp_path / "run"), "train.epochs": 1})
    with pytest.raises(
        DataError, match=r'model\.variables\.y is bound to "label", but the data .* have no labels'
    ):
        pyro_vae.train(config, data=unlabelled, quiet=True)
    assert not (tmp_path / "run").exists()


def test_a_network_whose_output_does_not_fit_its_family_is_one_line(tmp_path):
    with NETWORKS.scoped():

        @NETWORKS.register("three")
        def three(n_in, n_out, /):
            return torch.nn.Linear(n_in if isinstance(n_in, int) else 64, 3)

        config = graph({"z": Z, "x": {**X, "family": "gaussian", "network": {"kind": "three"}}})
        config = config.override({"train.run_dir": str(tmp_path / "run"), "train.epochs": 1})
        with pytest.raises(
            ConfigError,
            match=r"x\.network = \{ kind = \"three\" \} gives 3 numbers per point; its family needs 64",
        ):
            pyro_vae.train(config, quiet=True)


def test_labels_for_a_model_that_reads_none_are_refused(tmp_path):
    config = Config().override({"data.labels": 50, "train.run_dir": str(tmp_path / "run"), "train.epochs": 1})
    with pytest.raises(ConfigError, match=r"data\.labels = 50 keeps labels for a model that reads them"):
        pyro_vae.train(config, quiet=True)
    assert not (tmp_path / "run").exists()
