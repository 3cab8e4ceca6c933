"""The config sections one by one: defaults, every check's words, round trips, and the values
that one key derives from another (latent_dim from latent_dims, model.image_shape from the data)."""

import tomllib

import pytest
import torch

from pyro_vae import Config, ConfigError, DataConfig, ModelConfig, TrainConfig
from pyro_vae.config.sections import Every, check_image_shape, same_images
from pyro_vae.data.datasets import Data
from pyro_vae.training.resolve import resolve_config


def refused(make) -> str:
    with pytest.raises(ConfigError) as caught:
        make()
    return str(caught.value)


# ---------------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------------


def test_defaults():
    model, train, data = ModelConfig(), TrainConfig(), DataConfig()
    assert model.latent_dim == 2 and model.latent_dims is None and model.layers == (2,)
    assert model.data_dim is None and model.image_shape is None
    assert train.checkpoint_every == Every(seconds=60.0) and train.checkpoint_every.epochs is None
    assert data.image_shape is None and data.name == "digits"
    assert data.binarize == "none"  # the values as loaded


# ---------------------------------------------------------------------------------------------
# Each check's words: the key, the bad value, what is allowed
# ---------------------------------------------------------------------------------------------

REFUSED = [
    pytest.param(
        lambda: ModelConfig(latent_dim=2, latent_dims=[100, 50]),
        "model.latent_dim = 2 conflicts with model.latent_dims = [100, 50]: "
        "set latent_dims alone for a hierarchical model",
        id="latent-dim-2-beside-latent-dims",
    ),
    pytest.param(
        lambda: ModelConfig(latent_dims=[]),
        "model.latent_dims = [] is not allowed: give at least one layer size",
        id="latent-dims-empty",
    ),
    pytest.param(
        lambda: ModelConfig(latent_dim=0),
        "model.latent_dim = 0 is not allowed: expected an integer >= 1 or none",
        id="latent-dim-0",
    ),
    pytest.param(
        lambda: ModelConfig(image_shape=[28]),
        "model.image_shape = [28] is not allowed: expected [H, W] or [C, H, W]",
        id="model-image-shape-1d",
    ),
    pytest.param(
        lambda: ModelConfig(image_shape=[28, 28], data_dim=100),
        "model.image_shape = [28, 28] does not hold model.data_dim = 100 values",
        id="model-image-shape-data-dim",
    ),
    pytest.param(
        lambda: DataConfig(image_shape=[64]),
        "data.image_shape = [64] is not allowed: expected [H, W] or [C, H, W]",
        id="data-image-shape-1d",
    ),
    pytest.param(
        lambda: DataConfig(image_shape=[2, 3, 4, 5]),
        "data.image_shape = [2, 3, 4, 5] is not allowed: expected [H, W] or [C, H, W]",
        id="data-image-shape-4d",
    ),
    pytest.param(
        lambda: DataConfig(binarize="static"),
        'data.binarize = "static" is not allowed: expected one of "none", "dynamic"',
        id="data-binarize",
    ),
    pytest.param(
        lambda: DataConfig(binarize=True),
        'data.binarize = true is not allowed: expected one of "none", "dynamic"',
        id="data-binarize-bool",
    ),
    pytest.param(
        lambda: TrainConfig(checkpoint_every={}),
        "train.checkpoint_every = {  } is not allowed: give epochs, seconds or both, e.g. { epochs = 10 }",
        id="every-empty",
    ),
    pytest.param(
        lambda: Every(),
        "train.checkpoint_every = {  } is not allowed: give epochs, seconds or both, e.g. { epochs = 10 }",
        id="every-built-empty",
    ),
    pytest.param(
        lambda: TrainConfig(checkpoint_every={"epoch": 3}),
        "unknown key train.checkpoint_every.epoch; allowed in train.checkpoint_every: epochs, seconds",
        id="every-unknown-key",
    ),
    pytest.param(
        lambda: TrainConfig(checkpoint_every={"epochs": 0}),
        "train.checkpoint_every.epochs = 0 is not allowed: expected an integer >= 1 or none",
        id="every-epochs-0",
    ),
    pytest.param(
        lambda: TrainConfig(checkpoint_every={"seconds": -1.0}),
        "train.checkpoint_every.seconds = -1.0 is not allowed: expected a number > 0 or none",
        id="every-seconds-negative",
    ),
    pytest.param(
        lambda: TrainConfig(checkpoint_every=5),
        "train.checkpoint_every must be a table, got 5",
        id="every-not-a-table",
    ),
    pytest.param(
        lambda: TrainConfig(device="tpu"),
        'train.device = "tpu" is not allowed: expected "auto", "cpu", "cuda" or "cuda:N"',
        id="device",
    ),
    pytest.param(
        lambda: DataConfig.from_dict({"image_size": [8, 8]}),
        "unknown key data.image_size; allowed in [data]: ",
        id="unknown-key",
    ),
]


@pytest.mark.parametrize("make, words", REFUSED)
def test_each_check_says_what_is_wrong_in_one_line(make, words):
    message = refused(make)
    assert message.startswith(words) and "\n" not in message, message


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------

SECTIONS = [
    pytest.param(ModelConfig(), id="model-default"),
    pytest.param(ModelConfig(latent_dim=7, data_dim=64, image_shape=[1, 8, 8]), id="model"),
    pytest.param(ModelConfig(latent_dims=[100, 50], data_dim=64), id="model-hierarchical"),
    pytest.param(TrainConfig(), id="train-default"),
    pytest.param(TrainConfig(checkpoint_every={"epochs": 3}), id="train-epochs"),
    pytest.param(TrainConfig(checkpoint_every=Every(epochs=3, seconds=5.0)), id="train-both"),
    pytest.param(DataConfig(image_shape=(3, 4)), id="data"),
    pytest.param(DataConfig(binarize="dynamic", divide_by=255.0), id="data-dynamic"),
]


@pytest.mark.parametrize("section", SECTIONS)
def test_a_section_round_trips_through_its_dict(section):
    values = section.to_dict()
    assert type(section).from_dict(values) == section
    assert values == type(section).from_dict(values).to_dict()


def test_checkpoint_every_is_typed_and_written_as_an_inline_table(tmp_path):
    every = TrainConfig(checkpoint_every={"epochs": 10}).checkpoint_every
    assert isinstance(every, Every) and (every.epochs, every.seconds) == (10, None)
    assert TrainConfig(checkpoint_every={"seconds": 60}).checkpoint_every.seconds == 60.0  # a float
    for table in ["{ epochs = 10 }", "{ seconds = 60.0 }", "{ epochs = 10, seconds = 60.0 }"]:
        (tmp_path / "c.toml").write_text(f"[train]\ncheckpoint_every = {table}\n")
        config = Config.load(tmp_path / "c.toml")
        assert config.train.checkpoint_every.to_dict() == tomllib.loads(f"v = {table}")["v"]
        config.save(tmp_path / "saved.toml")
        saved = tomllib.loads((tmp_path / "saved.toml").read_text())["train"]["checkpoint_every"]
        assert saved == tomllib.loads(f"v = {table}")["v"]
    both = Config().override({"train.checkpoint_every.epochs": "5"}).train.checkpoint_every
    assert both == Every(epochs=5, seconds=60.0)  # a key of the table, beside the default's
    alone = Config().override({"train.checkpoint_every": "{ epochs = 5 }"}).train.checkpoint_every
    assert alone == Every(epochs=5)  # the whole table replaced


# ---------------------------------------------------------------------------------------------
# latent_dim follows latent_dims
# ---------------------------------------------------------------------------------------------


def test_latent_dim_is_two_unless_given_or_derived_from_latent_dims():
    assert ModelConfig(latent_dim=5).layers == (5,)
    hierarchical = ModelConfig(latent_dims=[100, 50])
    assert hierarchical.latent_dim == 100 and hierarchical.layers == (100, 50)
    agreeing = ModelConfig(latent_dim=100, latent_dims=[100, 50])
    assert agreeing == hierarchical and "latent_dim" not in agreeing.to_dict()
    # replacing another field keeps the derived value, which agrees
    assert ModelConfig(**{**hierarchical.to_dict(), "data_dim": 4}).latent_dim == 100


def test_latent_dim_2_beside_latent_dims_is_refused_from_a_file(tmp_path):
    (tmp_path / "c.toml").write_text("[model]\nlatent_dim = 2\nlatent_dims = [100, 50]\n")
    message = refused(lambda: Config.load(tmp_path / "c.toml"))
    assert "model.latent_dim = 2" in message and "model.latent_dims = [100, 50]" in message


def test_latent_dims_on_the_command_line_replace_the_files_latent_dim(tmp_path):
    for text in ["", "[model]\nlatent_dim = 8\n"]:
        (tmp_path / "c.toml").write_text(text)
        config = Config.load(tmp_path / "c.toml").override({"model.latent-dims": "[100, 50]"})
        assert config.model.layers == (100, 50) and config.model.latent_dim == 100
    both = {"model.latent_dims": "[100, 50]", "model.latent_dim": "2"}
    assert "conflicts with model.latent_dims" in refused(lambda: Config().override(both))
    assert Config().override({**both, "model.latent_dim": "100"}).model.layers == (100, 50)


def test_a_runs_written_config_loads_back(tmp_path):
    """config.toml as runs write it: latent_dim alone, or latent_dims alone."""
    for model in [ModelConfig(latent_dim=3, data_dim=64), ModelConfig(latent_dims=[4, 2], data_dim=64)]:
        config = Config(model=model)
        config.save(tmp_path / "config.toml")
        raw = tomllib.loads((tmp_path / "config.toml").read_text())["model"]
        assert ("latent_dim" in raw) != ("latent_dims" in raw)
        assert Config.load(tmp_path / "config.toml") == config
        assert config.override({"model.latent_dim": str(model.latent_dim)}) == config


# ---------------------------------------------------------------------------------------------
# model.image_shape follows data.image_shape
# ---------------------------------------------------------------------------------------------


def square_data(image_shape=(4, 4)) -> Data:
    return Data(name="squares", train=torch.zeros(5, 16), valid=torch.zeros(2, 16), image_shape=image_shape)


def test_the_two_image_shapes_are_one_type_with_one_check():
    assert ModelConfig(image_shape=(4, 4)).image_shape == [4, 4] == DataConfig(image_shape=(4, 4)).image_shape
    check_image_shape("data.image_shape", [3, 4, 4])
    assert "x = [4] is not allowed" in refused(lambda: check_image_shape("x", [4]))
    assert same_images([4, 4], [1, 4, 4]) and same_images([3, 4, 4], [3, 4, 4])
    assert not same_images([4, 4], [2, 8]) and not same_images([3, 4, 4], [4, 4])


def test_model_image_shape_follows_the_data(tmp_path):
    run = TrainConfig(run_dir=str(tmp_path / "run"))
    assert resolve_config(Config(train=run), square_data()).model.image_shape == [4, 4]
    given = Config(model=ModelConfig(image_shape=[1, 4, 4]), train=run)
    assert resolve_config(given, square_data()).model.image_shape == [1, 4, 4]  # grey: the same images
    flat = Config(model=ModelConfig(image_shape=[2, 8]), train=run)
    assert resolve_config(flat, square_data(None)).model.image_shape == [2, 8]  # the data say nothing


def test_a_model_image_shape_that_disagrees_with_the_data_is_refused(tmp_path):
    config = Config(model=ModelConfig(image_shape=[2, 8]), train=TrainConfig(run_dir=str(tmp_path)))
    message = refused(lambda: resolve_config(config, square_data()))
    assert message == (
        "model.image_shape = [2, 8] conflicts with data.image_shape = [4, 4] (the data's images): "
        "give data.image_shape alone, the model's follows it"
    )
