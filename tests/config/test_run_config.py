"""The typed config: defaults, TOML/JSON round trips, CLI-style overrides, and error messages."""

import dataclasses
import json
import tomllib

import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyro_vae
from pyro_vae import Config, ConfigError, DataConfig, ModelConfig, Spec, TrainConfig
from pyro_vae.config.run_config import load_config
from pyro_vae.core.registry import REGISTRIES

# the options every objective shares, at their defaults (KL warm-up and free bits off)
NO_MODIFIERS = {"kl_warmup": 0, "kl_warmup_unit": "epochs", "free_bits": 0.0, "classify": 1.0}


def load_text(tmp_path, text: str, name: str = "config.toml") -> Config:
    path = tmp_path / name
    path.write_text(text)
    return Config.load(path)


# ---------------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------------


def test_default_config_validates_to_documented_defaults():
    config = Config()
    assert config.model.latent_dim == 2
    assert config.model.data_dim is None
    assert config.model.prior == Spec("normal", {})
    assert config.model.likelihood == Spec("gaussian", {"scale": "learned", "min_scale": 0.01})
    assert config.model.encoder == Spec("mlp", {"hidden": [256, 256], "activation": "tanh"})
    assert config.model.guide == Spec("normal", {"min_scale": 1e-4})
    assert config.objective == Spec("elbo", {"particles": 1, **NO_MODIFIERS})
    assert (config.train.epochs, config.train.batch_size, config.train.lr) == (300, 100, 1e-3)
    assert (config.train.device, config.train.run_dir) == ("auto", "")
    assert (config.data.name, config.data.path, config.data.valid_fraction) == ("digits", None, 0.1)


@pytest.mark.parametrize("section", [ModelConfig, TrainConfig, DataConfig], ids=lambda s: s._key)
def test_every_section_key_has_a_default(section):
    for f in dataclasses.fields(section):
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        assert has_default, f"{section._key}.{f.name} has no default"


@pytest.mark.parametrize("family", ["prior", "likelihood", "guide", "network", "objective"])
def test_every_registered_kind_builds_from_its_name_alone(family):
    registry = REGISTRIES[family]
    for kind in registry.names():
        if kind.startswith("test_"):
            continue  # registered by other tests, some on purpose without defaults
        spec = Spec.parse(kind, family, f"test.{family}")
        assert spec.kind == kind
        assert set(spec.params) == set(registry.options(kind))


def test_config_is_frozen():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.epochs = 3  # type: ignore[misc]


def test_a_file_naming_one_key_leaves_everything_else_default(tmp_path):
    config = load_text(tmp_path, "[train]\nepochs = 3\n")
    assert config.train.epochs == 3
    assert config == dataclasses.replace(Config(), train=TrainConfig(epochs=3))


def test_an_empty_file_is_the_default_config(tmp_path):
    assert load_text(tmp_path, "") == Config()
    assert load_text(tmp_path, "{}", "config.json") == Config()


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


def non_default_config() -> Config:
    return Config(
        model=ModelConfig(
            latent_dim=5,
            data_dim=64,
            likelihood=Spec("gaussian", {"scale": 0.1, "min_scale": 1e-5}),
            encoder=Spec("mlp", {"hidden": [32, 16], "activation": "relu"}),
            decoder={"kind": "mlp", "hidden": [], "activation": "elu"},
        ),
        objective=Spec("meanfield", {"particles": 3}),
        train=TrainConfig(
            epochs=7, lr=3e-4, device="cpu", seed=3, run_dir="runs/x y", checkpoint_every={"epochs": 2}
        ),
        data=DataConfig(path="x.npy", valid_fraction=0.25, shuffle=False, image_shape=(8, 8)),
    )


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_non_default_config_round_trips(tmp_path, suffix):
    config = non_default_config()
    assert config != Config()
    path = tmp_path / f"run{suffix}"
    config.save(path)
    loaded = Config.load(path)
    assert loaded == config
    assert loaded.model.likelihood.params["scale"] == 0.1
    assert loaded.data.image_shape == [8, 8]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_default_config_round_trips_and_drops_unset_keys(tmp_path):
    Config().save(tmp_path / "c.toml")
    Config().save(tmp_path / "c.json")
    assert Config.load(tmp_path / "c.toml") == Config() == Config.load(tmp_path / "c.json")
    raw = tomllib.loads((tmp_path / "c.toml").read_text())
    assert "data_dim" not in raw["model"] and "path" not in raw["data"]  # TOML has no null


def test_written_toml_has_a_table_per_section_and_one_per_spec(tmp_path):
    config = non_default_config()
    config.save(tmp_path / "c.toml")
    text = (tmp_path / "c.toml").read_text()
    raw = tomllib.loads(text)
    assert list(raw) == ["plugins", "model", "objective", "train", "data"]
    assert raw["model"]["encoder"] == {"kind": "mlp", "hidden": [32, 16], "activation": "relu"}
    assert raw["objective"] == {"kind": "meanfield", "particles": 3, **NO_MODIFIERS}
    assert raw["train"]["lr"] == 3e-4 and raw["train"]["device"] == "cpu"
    lines = text.splitlines()
    assert "[model.encoder]" in lines and "[model.likelihood]" in lines and "[objective]" in lines
    assert raw["model"]["likelihood"] == {"kind": "gaussian", "scale": 0.1, "min_scale": 1e-05}


def test_written_json_is_plain_json(tmp_path):
    non_default_config().save(tmp_path / "c.json")
    raw = json.loads((tmp_path / "c.json").read_text())
    assert raw["model"]["latent_dim"] == 5
    assert raw["model"]["encoder"] == {"kind": "mlp", "hidden": [32, 16], "activation": "relu"}
    assert raw["data"]["image_shape"] == [8, 8]


def test_save_refuses_an_unknown_extension(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot save config as '\.yaml'; allowed: \.toml, \.json"):
        Config().save(tmp_path / "c.yaml")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("run_dir", ["runs/résumé", "runs/🙂", 'a "quoted" \\ path\twith tab'])
def test_any_string_round_trips_through_toml(tmp_path, run_dir):
    # characters outside the Basic Multilingual Plane (an emoji) are saved as valid TOML
    config = Config().override({"train.run_dir": run_dir})
    config.save(tmp_path / "c.toml")
    assert Config.load(tmp_path / "c.toml").train.run_dir == run_dir


# ---------------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------------


def test_overrides_are_read_as_typed_toml_values():
    config = Config().override(
        {
            "train.epochs": "5",
            "model.latent_dim": "2",
            "model.encoder.hidden": "[100, 100]",
            "train.device": "cpu",
            "model.likelihood.scale": "0.1",
            "train.lr": "1e-4",
            "data.shuffle": "false",
            "data.path": "some/data.npy",
        }
    )
    assert config.train.epochs == 5 and type(config.train.epochs) is int
    assert config.model.latent_dim == 2
    assert config.model.encoder == Spec("mlp", {"hidden": [100, 100], "activation": "tanh"})
    assert config.train.device == "cpu"
    assert config.model.likelihood.params == {"scale": 0.1, "min_scale": 0.01}
    assert config.train.lr == 1e-4
    assert config.data.shuffle is False
    assert config.data.path == "some/data.npy"
    # the original is untouched
    assert Config().train.epochs == 300


def test_overrides_accept_python_values():
    config = Config().override({"train.epochs": 4, "model.decoder.hidden": [8]})
    assert config.train.epochs == 4
    assert config.model.decoder.params["hidden"] == [8]


def test_changing_a_kind_starts_from_that_kinds_defaults():
    start = Config().override({"model.likelihood.scale": "0.1"})
    config = start.override({"model.likelihood.kind": "bernoulli"})
    assert config.model.likelihood == Spec("bernoulli", {"relaxed": False})
    # and then an option of the new kind can be set
    config = start.override({"model.likelihood.kind": "bernoulli", "model.likelihood.relaxed": "true"})
    assert config.model.likelihood == Spec("bernoulli", {"relaxed": True})


def test_a_spec_can_be_replaced_by_a_kind_name():
    config = Config().override({"objective": "meanfield", "model.likelihood": "bernoulli"})
    assert config.objective == Spec("meanfield", {"particles": 1, **NO_MODIFIERS})
    assert config.model.likelihood == Spec("bernoulli", {"relaxed": False})
    assert Config().override({"objective.particles": "4"}).objective == Spec(
        "elbo", {"particles": 4, **NO_MODIFIERS}
    )


def test_a_spec_can_be_replaced_by_an_inline_table():
    # --model.encoder '{ kind = "mlp", hidden = [3] }' replaces the whole spec
    config = Config().override({"model.encoder": '{ kind = "mlp", hidden = [3] }'})
    assert config.model.encoder == Spec("mlp", {"hidden": [3], "activation": "tanh"})


def test_an_option_given_before_its_kind_is_not_dropped():
    # `--model.likelihood.scale 0.1 --model.likelihood.kind gaussian` keeps scale = 0.1
    config = Config().override({"model.likelihood.scale": "0.1", "model.likelihood.kind": "gaussian"})
    assert config.model.likelihood.params["scale"] == 0.1
    with pytest.raises(ConfigError, match=r"model\.likelihood\.scale"):
        Config().override({"model.likelihood.scale": "0.1", "model.likelihood.kind": "bernoulli"})


def test_kebab_case_keys_work():
    config = Config().override(
        {"train.batch-size": "7", "train.eval-batch-size": "9", "data.valid-fraction": "0.2"}
    )
    assert (config.train.batch_size, config.train.eval_batch_size) == (7, 9)
    assert config.data.valid_fraction == 0.2


@pytest.mark.parametrize("word", ["2024", "1e3", "true", "2024-01-01"])
def test_string_options_keep_words_that_look_like_other_toml_values(word):
    # a string option keeps the word as typed (--train.run_dir 2024 is the string "2024")
    config = Config().override({"train.run_dir": word, "data.name": word})
    assert config.train.run_dir == word
    assert config.data.name == word


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        pytest.param(
            {"foo.bar": "1"}, ["foo.bar", "allowed: plugins, model, objective, train, data"], id="section"
        ),
        pytest.param(
            {"model.latnt_dim": "3"}, ["model.latnt_dim", "latent_dim, latent_dims, data_dim"], id="key"
        ),
        pytest.param({"train.epochs.x": "3"}, ["train.epochs.x", "'epochs' is not a table"], id="not-table"),
        pytest.param({"model.encoder.hiden": "[3]"}, ["model.encoder.hiden", "kind, hidden"], id="spec-key"),
        pytest.param({"train.epochs": "five"}, ['train.epochs = "five"', "an integer >= 1"], id="word"),
    ],
)
def test_bad_overrides_name_the_key(overrides, fragments):
    with pytest.raises(ConfigError) as info:
        Config().override(overrides)
    for fragment in fragments:
        assert fragment in str(info.value)


# ---------------------------------------------------------------------------------------------
# Errors in files
# ---------------------------------------------------------------------------------------------

BAD_FILES = [
    pytest.param(
        "[modle]\nlatent_dim = 3\n",
        ["unknown section [modle]", "model, objective, train, data"],
        id="section",
    ),
    pytest.param(
        "[train]\nepoch = 3\n",
        [
            "unknown key train.epoch",
            "epochs, batch_size, lr, lr_schedule, clip_norm, patience, checkpoint_every",
        ],
        id="key",
    ),
    pytest.param(
        '[model]\nencoder = { kind = "mlp", hiden = [3] }\n',
        ["unknown key model.encoder.hiden", 'network "mlp"', "allowed: kind, hidden, activation"],
        id="spec-option",
    ),
    pytest.param(
        '[model]\nprior = { kind = "laplace" }\n',
        ['model.prior.kind = "laplace"', "not a known prior", '"normal"'],
        id="kind",
    ),
    pytest.param(
        '[objective]\nkind = "iwae5"\n',
        ['objective.kind = "iwae5"', "not a known objective", '"elbo"', '"meanfield"'],
        id="objective-kind",
    ),
    pytest.param("[model]\nlatent_dim = 0\n", ["model.latent_dim = 0", "an integer >= 1"], id="latent-0"),
    pytest.param("[model]\nlatent_dim = -1\n", ["model.latent_dim = -1", "an integer >= 1"], id="latent-neg"),
    pytest.param("[train]\nlr = 0\n", ["train.lr = 0", "a number > 0"], id="lr-0"),
    pytest.param("[train]\nlr = -1e-3\n", ["train.lr = -0.001", "a number > 0"], id="lr-neg"),
    pytest.param("[train]\nepochs = 1.5\n", ["train.epochs = 1.5", "an integer >= 1"], id="float-for-int"),
    pytest.param(
        "[train]\nbatch_size = true\n", ["train.batch_size = true", "an integer >= 1"], id="bool-for-int"
    ),
    pytest.param('[train]\nseed = "0"\n', ['train.seed = "0"', "an integer"], id="str-for-int"),
    pytest.param(
        '[model]\nencoder = { kind = "mlp", activation = "sigmoidd" }\n',
        ['model.encoder.activation = "sigmoidd"', 'one of "relu", "tanh"', '"sigmoid"'],
        id="activation",
    ),
    pytest.param(
        '[model]\ndecoder = { kind = "mlp", hidden = [16, 0] }\n',
        ["model.decoder.hidden = [16, 0]", "a list of integers >= 1"],
        id="hidden-0",
    ),
    pytest.param(
        '[model]\nlikelihood = { kind = "gaussian", scale = "fixed" }\n',
        ['model.likelihood.scale = "fixed"', 'a number > 0 or "learned"'],
        id="scale",
    ),
    pytest.param(
        '[train]\ndevice = "gpu"\n',
        ['train.device = "gpu"', '"auto", "cpu", "cuda" or "cuda:N"'],
        id="device",
    ),
    pytest.param(
        "[data]\nvalid_fraction = 1.0\n", ["data.valid_fraction = 1.0", "a number > 0 and < 1"], id="fraction"
    ),
    pytest.param("[data]\nimage_shape = [8, 0]\n", ["data.image_shape = [8, 0]"], id="image-shape"),
    pytest.param("model = 3\n", ["[model] must be a table", "3"], id="section-not-table"),
]


@pytest.mark.parametrize(("text", "fragments"), BAD_FILES)
def test_bad_files_name_the_key_the_value_and_what_is_allowed(tmp_path, text, fragments):
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_the_same_errors_come_from_json(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.epochs = 1\.5 is not allowed: expected an integer >= 1"):
        load_text(tmp_path, '{"train": {"epochs": 1.5}}', "c.json")


def test_toml_syntax_error_names_the_file_and_line(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.toml' is not valid toml: .*line 1"):
        load_text(tmp_path, "[train\nepochs = 1\n")


def test_json_syntax_error_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.json' is not valid json: .*line 1"):
        load_text(tmp_path, '{"train": ', "c.json")


def test_unknown_file_extension(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml': unknown format '\.yaml'; allowed: \.toml, \.json"):
        load_text(tmp_path, "train: {}\n", "c.yaml")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file '.*nope\.toml' does not exist"):
        Config.load(tmp_path / "nope.toml")


def test_errors_are_value_errors_and_pyro_vae_errors():
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    with pytest.raises(pyro_vae.PyroVAEError):
        TrainConfig(epochs=0)


# ---------------------------------------------------------------------------------------------
# Specs and user-registered parts
# ---------------------------------------------------------------------------------------------


def test_spec_parse_accepts_a_bare_kind_and_fills_defaults():
    assert Spec.parse("mlp", "network", "model.encoder") == Spec(
        "mlp", {"hidden": [256, 256], "activation": "tanh"}
    )
    assert Spec.parse("gaussian", "likelihood", "model.likelihood").params == {
        "scale": "learned",
        "min_scale": 0.01,
    }
    partial = Spec.parse({"kind": "mlp", "hidden": (8,)}, "network", "model.encoder")
    assert partial.params == {"hidden": [8], "activation": "tanh"}  # tuples become lists, as TOML loads


def test_spec_parse_rejects_a_spec_without_kind():
    with pytest.raises(ConfigError, match=r"model\.encoder = .* expected \{ kind = \.\.\. \}"):
        Spec.parse({"hidden": [3]}, "network", "model.encoder")


def test_make_objective_checks_options_like_a_config_file():
    assert pyro_vae.make_objective("meanfield", particles=2).num_particles == 2
    with pytest.raises(
        ConfigError, match=r"objective\.particles = 0 is not allowed: expected an integer >= 1"
    ):
        pyro_vae.make_objective("elbo", particles=0)


@pytest.fixture
def scaled_prior(scoped_registries):
    """A user prior registered the public way, for the test alone."""

    class ScaledNormal(nn.Module):
        def __init__(self, latent_dim: int, /, *, scale: float = 1.0):
            super().__init__()
            self.register_buffer("loc", torch.zeros(latent_dim))
            self.register_buffer("scale", torch.full((latent_dim,), scale))

        def forward(self):
            return dist.Normal(self.loc, self.scale).to_event(1)

    pyro_vae.register_prior("test_scaled_normal")(ScaledNormal)
    return "test_scaled_normal"


def test_user_prior_options_are_validated(scaled_prior):
    assert Spec.parse(scaled_prior, "prior", "model.prior") == Spec(scaled_prior, {"scale": 1.0})
    spec = Spec.parse({"kind": scaled_prior, "scale": 2}, "prior", "model.prior")
    assert spec.params == {"scale": 2.0} and type(spec.params["scale"]) is float
    with pytest.raises(ConfigError, match=r'model\.prior\.scale = "big" is not allowed: expected a number'):
        Spec.parse({"kind": scaled_prior, "scale": "big"}, "prior", "model.prior")
    with pytest.raises(ConfigError, match=r"unknown key model\.prior\.scal for prior .*allowed: kind, scale"):
        Spec.parse({"kind": scaled_prior, "scal": 2.0}, "prior", "model.prior")
    with pytest.raises(ConfigError, match=r'"test_scaled_normal"'):
        Spec.parse("no_such_prior", "prior", "model.prior")  # the allowed list includes it


def test_user_prior_works_from_a_file_and_in_the_model(tmp_path, scaled_prior):
    config = load_text(
        tmp_path, f'[model]\ndata_dim = 4\nprior = {{ kind = "{scaled_prior}", scale = 0.5 }}\n'
    )
    assert config.model.prior == Spec(scaled_prior, {"scale": 0.5})
    vae = pyro_vae.VAE(config.model)
    assert torch.equal(vae.prior().base_dist.scale, torch.full((2,), 0.5))
    with pytest.raises(ConfigError, match=r"model\.prior\.scale = true is not allowed: expected a number"):
        load_text(tmp_path, f'[model]\nprior = {{ kind = "{scaled_prior}", scale = true }}\n')


def test_user_option_without_default_must_be_given(scoped_registries):
    @pyro_vae.register_network("test_fixed_width")
    def fixed_width(in_features: int, out_features: int, /, *, width: int):
        return nn.Linear(in_features, out_features)

    with pytest.raises(
        ConfigError, match=r'model\.encoder\.width must be given for network "test_fixed_width"'
    ):
        Spec.parse("test_fixed_width", "network", "model.encoder")
    assert Spec.parse({"kind": "test_fixed_width", "width": 3}, "network", "model.encoder").params == {
        "width": 3
    }


PLUGIN = """
import torch
import pyro.distributions as dist
from pyro_vae import register_prior
from pyro_vae.config.run_config import PositiveFloat


@register_prior("{name}")
class Laplace(torch.nn.Module):
    def __init__(self, latent_dim, /, *, scale: PositiveFloat = 1.0):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.scale = scale

    def forward(self):
        return dist.Laplace(self.loc, self.scale).to_event(1)
"""


def test_a_user_registered_prior_is_usable_from_a_config_file(tmp_path, scoped_registries):
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "laplace_prior.py").write_text(PLUGIN.format(name="user_laplace"))
    (tmp_path / "c.toml").write_text(
        'plugins = ["plugin/laplace_prior.py"]\n[model]\nprior = { kind = "user_laplace", scale = 2.0 }\n'
    )
    config = Config.load(tmp_path / "c.toml")  # the path is relative to the config file
    assert config.model.prior == Spec("user_laplace", {"scale": 2.0})
    assert config.plugins == [str((tmp_path / "plugin" / "laplace_prior.py").resolve())]
    config.save(tmp_path / "saved.toml")  # a run's saved config finds the file from anywhere
    assert Config.load(tmp_path / "saved.toml") == config
    with pytest.raises(ConfigError, match=r"model.prior.scale = -1 .*> 0"):
        config.override({"model.prior.scale": "-1"})


@pytest.mark.parametrize(
    ("plugins", "fragment"),
    [
        (["missing.py"], "missing.py' does not exist"),
        (["no_such_module_anywhere"], "importing 'no_such_module_anywhere' failed: ModuleNotFoundError"),
        ("x.py", 'plugins = "x.py" is not allowed'),
    ],
    ids=["missing-file", "missing-module", "not-a-list"],
)
def test_bad_plugins_are_named(tmp_path, plugins, fragment):
    (tmp_path / "c.json").write_text(json.dumps({"plugins": plugins}))
    with pytest.raises(ConfigError) as info:
        Config.load(tmp_path / "c.json")
    assert fragment in str(info.value)


def test_building_a_config_imports_no_plugin(tmp_path):
    # importing a plugin is a step of loading a file, never a side effect of a config object
    plugin = tmp_path / "plugin.py"
    plugin.write_text("raise RuntimeError('imported')\n")
    config = Config(plugins=[str(plugin)])
    assert config.plugins == [str(plugin)]
    with pytest.raises(ConfigError, match="RuntimeError: imported"):
        load_config(None, {"plugins": f'["{plugin}"]'})


def test_latent_dims_make_a_hierarchical_model_and_derive_latent_dim(tmp_path):
    config = Config(model=ModelConfig(latent_dims=[100, 50]))
    assert config.model.layers == (100, 50) and config.model.latent_dim == 100
    assert "latent_dim" not in config.to_dict()["model"]  # derived, so not written
    config.save(tmp_path / "c.toml")
    assert Config.load(tmp_path / "c.toml") == config
    assert config.override({"model.latent_dims": "[64, 32]"}).model.layers == (64, 32)
    assert Config().model.layers == (2,) and "latent_dim" in Config().to_dict()["model"]


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        (
            {"latent_dim": 8, "latent_dims": [100, 50]},
            "model.latent_dim = 8 conflicts with model.latent_dims",
        ),
        ({"latent_dims": []}, "model.latent_dims = [] is not allowed"),
        (
            {"latent_dims": [10, 0]},
            "model.latent_dims = [10, 0] is not allowed: expected a list of integers >= 1",
        ),
        ({"image_shape": [28]}, "model.image_shape = [28] is not allowed"),
        ({"image_shape": [28, 28], "data_dim": 100}, "does not hold model.data_dim = 100 values"),
    ],
    ids=["both", "empty", "zero", "one-dim-image", "image-size"],
)
def test_bad_layer_and_image_settings_are_named(model, fragment):
    with pytest.raises(ConfigError) as info:
        ModelConfig(**model)
    assert fragment in str(info.value)


# ---------------------------------------------------------------------------------------------
# as_config: what the library's entry points accept as a config
# ---------------------------------------------------------------------------------------------


def test_as_config_reads_a_config_a_dict_a_path_or_none(tmp_path):
    from pyro_vae.config.run_config import as_config

    config = Config().override({"train.epochs": 3, "data.name": "moons"})
    config.save(tmp_path / "c.toml")
    config.save(tmp_path / "c.json")
    assert as_config(config) is config
    assert as_config(config.to_dict()) == config
    assert as_config(str(tmp_path / "c.toml")) == config
    assert as_config(tmp_path / "c.json") == config
    assert as_config(None) == Config()


def test_as_config_refuses_other_values_naming_what_is_accepted():
    from pyro_vae.config.run_config import as_config

    with pytest.raises(TypeError) as e:
        as_config(3, "compare's config")
    assert str(e.value) == (
        "compare's config must be a Config, a dict of sections, a path to a .toml or .json file, "
        "or None; got int"
    )
    with pytest.raises(ConfigError, match="unknown section \\[nope\\]"):
        as_config({"nope": {}})
