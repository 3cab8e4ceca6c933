"""Each command's parser, built only when the command is chosen from flags declared once: so
that ``pyro-vae --help`` and ``pyro-vae data list`` never import torch (asserted on the modules a
fresh interpreter loads, never on time); an estimator's options as flags of ``evaluate``."""

import ast
import os
import subprocess
import sys

import pytest

from pyro_vae.cli import arguments
from pyro_vae.cli.main import main

# Prints the heavy modules a fresh interpreter has loaded after running the command line on argv.
LOADED = """
import sys
from pyro_vae.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:  # --help exits
    pass
heavy = ("torch", "pyro", "matplotlib", "pyro_vae.config.run_config", "pyro_vae.core.distributed")
print("LOADED", [name for name in heavy if name in sys.modules])
"""


def loaded_by(argv: list[str], tmp_path) -> list[str]:
    env = {**os.environ, "PYRO_VAE_DATA": str(tmp_path)}  # data list looks at an empty cache
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", LOADED, *argv], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[-1]
    assert line.startswith("LOADED "), result.stdout
    return ast.literal_eval(line[len("LOADED ") :])


@pytest.mark.parametrize("argv", [["--help"], ["data", "--help"], ["data", "list"]], ids=" ".join)
def test_help_and_data_list_import_no_torch(tmp_path, argv):
    assert loaded_by(argv, tmp_path) == []


@pytest.mark.slow
def test_a_commands_own_help_builds_its_parser(tmp_path):
    assert "torch" in loaded_by(["evaluate", "--help"], tmp_path)  # it lists the estimators


def test_the_top_level_lists_every_command_without_building_them():
    parser = arguments.parser()
    commands = parser._subparsers._group_actions[0].choices
    assert list(commands) == list(arguments.COMMANDS)
    assert all(not p._actions[1:] for p in commands.values())  # only -h: no flags, no choices


@pytest.mark.parametrize("command", ["sample", "interpolate", "evaluate"])
def test_shared_flags_are_declared_once(command):
    """--device and --checkpoint read the same in every command that takes them."""
    sub = arguments.parser(command)._subparsers._group_actions[0].choices[command]
    actions = {a.dest: a for a in sub._actions}
    for name in ("device", "checkpoint"):
        flag, keywords = arguments.FLAGS[name]
        assert actions[name].option_strings == [flag]
        assert (actions[name].default, actions[name].help) == (keywords["default"], keywords["help"])


@pytest.mark.parametrize("command", list(arguments.COMMANDS))
def test_every_command_has_its_help(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: pyro-vae {command}")


def test_estimator_options_are_flags_of_evaluate(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    for flag in ("--samples VALUE", "--chunk-size VALUE", "--chains VALUE", "--step-size VALUE"):
        assert flag in out
    assert "  is: --samples 5000 --chunk-size 500" in out


@pytest.mark.parametrize(
    "argv, line",
    [
        pytest.param(
            ["--samples", "0"], "--samples = 0 is not allowed: expected an integer >= 1", id="value"
        ),
        pytest.param(["--option", "samples=0"], "--samples = 0 is not allowed", id="option"),
        pytest.param(
            ["--estimator", "ais", "--samples", "5"],
            'unknown key --estimator.samples for estimator "ais"; allowed: --chains, --steps',
            id="unknown",
        ),
    ],
)
def test_an_estimator_option_is_refused_in_the_words_of_its_flag(tmp_path, capsys, argv, line):
    """The library names the option (``estimator "is": option samples``); the command line, its flag."""
    assert main(["evaluate", str(tmp_path), *argv]) == 2  # refused before the run is looked for
    err = capsys.readouterr().err
    assert err.startswith(f"pyro-vae: error: {line}") and "option samples" not in err, err
