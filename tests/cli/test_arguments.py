"""The words of the command line: overrides and KEY=VALUE options read as TOML values, the
parser of the chosen command only, usage errors as one line, and the shared flags' defaults."""

from pathlib import Path

import pytest

from pyro_vae.cli.arguments import COMMANDS, key_values, overrides, parser
from pyro_vae.core.errors import ConfigError


def test_overrides_take_a_value_after_a_space_or_an_equals_sign():
    words = ["--train.epochs", "5", "--model.latent_dim=2", "--plugins", "[]", "--train.lr=1e-3=x"]
    assert overrides(words) == {
        "train.epochs": "5",
        "model.latent_dim": "2",
        "plugins": "[]",
        "train.lr": "1e-3=x",
    }


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["epochs", "5"], "unrecognized argument 'epochs'; overrides look like --train.epochs 5"),
        (["--epochs", "5"], "unrecognized argument '--epochs'; overrides look like --train.epochs 5"),
        (["--train.epochs"], "--train.epochs needs a value"),
    ],
    ids=["no-dashes", "no-section", "no-value"],
)
def test_bad_overrides_are_named(words, message):
    with pytest.raises(ConfigError) as info:
        overrides(words)
    assert str(info.value) == message


def test_key_values_are_toml_values_with_kebab_keys_as_snake():
    pairs = ["samples=100", "adapt = false", "step-size=0.02", "schedule=[1, 2]", "name=sigmoid"]
    assert key_values(pairs, "--option") == {
        "samples": 100,
        "adapt": False,
        "step_size": 0.02,
        "schedule": [1, 2],
        "name": "sigmoid",
    }
    assert key_values(None, "--option") == {}
    with pytest.raises(ConfigError, match=r"^--option 'samples': expected KEY=VALUE$"):
        key_values(["samples"], "--option")
    with pytest.raises(ConfigError, match=r"^--option '=3': expected KEY=VALUE$"):
        key_values(["=3"], "--option")


def test_only_the_chosen_commands_parser_is_built():
    args = parser("sample").parse_args(["sample", "runs/a"])
    assert (args.run_dir, args.n, args.out, args.seed, args.device, args.checkpoint) == (
        Path("runs/a"),
        64,
        None,
        0,
        "cpu",
        "checkpoint.pt",
    )
    # another command is listed by name only: its flags are unknown to this parser
    with pytest.raises(ConfigError, match=r"^unrecognized arguments: runs/a -n 3 \(see pyro-vae --help\)$"):
        parser("sample").parse_args(["interpolate", "runs/a", "-n", "3"])


def test_interpolate_paths_repeat_and_data_actions_are_required():
    args = parser("interpolate").parse_args(["interpolate", "r", "--path", "linear", "--path", "spherical"])
    assert (args.path, args.pairs, args.steps, args.split) == (["linear", "spherical"], 8, 10, "valid")
    assert parser("data").parse_args(["data", "get", "mnist", "kmnist"]).names == ["mnist", "kmnist"]
    with pytest.raises(ConfigError, match=r"^the following arguments are required: ACTION"):
        parser("data").parse_args(["data"])


def test_every_command_is_listed_with_its_line_of_help():
    text = parser().format_help()
    for name, (help, _) in COMMANDS.items():
        assert f"{name}" in text and help in " ".join(text.split())
