"""An estimator's options as flags of ``pyro-vae evaluate`` (pyro_vae/cli/estimator_flags.py):
a flag for each option a flag can set, its help and the epilog's defaults the estimator's own,
values read as TOML and checked by the library, a refusal in the words of the flag."""

import inspect
import typing

import pytest
import torch

import pyro_vae
from pyro_vae.cli import arguments, estimator_flags
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import PositiveInt, describe
from pyro_vae.inference.estimators.base import ESTIMATORS, EstimatorOptionError, check_estimator

#: the built-in estimators' options a flag can set, by hand: flag -> (option, help, default)
BUILT_IN = {
    "ais": {
        "--chains": ("chains", "an integer >= 1", 16),
        "--steps": ("steps", "an integer >= 1", 500),
        "--leapfrog": ("leapfrog", "an integer >= 1", 10),
        "--step-size": ("step_size", "a number > 0", 0.05),
        "--adapt": ("adapt", "true or false", True),
        "--target-acceptance": ("target_acceptance", "a number > 0 and < 1", 0.65),
    },
    "is": {
        "--samples": ("samples", "an integer >= 1", 5000),
        "--chunk-size": ("chunk_size", "an integer >= 1", 500),
        "--compile": ("compile", '"auto" or true or false', "auto"),
    },
}
#: the arguments every estimator is given by its caller, not options
RESERVED = {"seed", "batch_size", "device", "progress", "plate", "first_point"}


@pytest.fixture(autouse=True)
def only_built_ins(scoped_registries):
    """Each test starts from the built-in estimators alone: a test that registers its own does so
    inside ``scoped_registries``, so one left over is a leak to mend, not to work around."""
    assert set(ESTIMATORS.names()) == set(BUILT_IN), "an earlier test left an estimator registered"
    yield


def evaluate_parser():
    return arguments.parser("evaluate")._subparsers._group_actions[0].choices["evaluate"]


def option_flags(parser) -> dict:
    """The flags of the estimator options' group: flag -> (dest, default, help)."""
    (group,) = [g for g in parser._action_groups if (g.title or "").startswith("estimator options")]
    return {a.option_strings[0]: (a.dest, a.default, a.help) for a in group._group_actions}


def parsed(*argv: str):
    return evaluate_parser().parse_args(["RUN", *argv])


def test_a_flag_is_the_option_in_kebab_case():
    assert estimator_flags.flag("samples") == "--samples"
    assert estimator_flags.flag("target_acceptance") == "--target-acceptance"


def test_the_built_in_estimators_options_are_flags_of_evaluate():
    assert estimator_flags.names() == ["ais", "is"]
    expected = {
        flag: (f"opt_{option}", None, f"{name}: {words}")
        for name, flags in BUILT_IN.items()
        for flag, (option, words, _) in flags.items()
    }
    assert option_flags(evaluate_parser()) == expected


@pytest.mark.parametrize("estimator", [pyro_vae.importance_sampling, pyro_vae.ais], ids=["is", "ais"])
def test_the_flags_are_the_estimators_keyword_options(estimator):
    """The table above is what the estimators' own signatures say: every keyword-only argument
    that is not the caller's, its default, and its annotation's words, but ais's reverse_from
    (a table of tensors, Python only), which no flag can set."""
    name = {pyro_vae.importance_sampling: "is", pyro_vae.ais: "ais"}[estimator]
    function = inspect.unwrap(estimator)
    hints = typing.get_type_hints(function, include_extras=True)
    keywords = {
        p.name: p.default
        for p in inspect.signature(function).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in RESERVED
    }
    flagged = {option: default for option, _, default in BUILT_IN[name].values()}
    assert {k: v for k, v in keywords.items() if k != "reverse_from"} == flagged
    assert set(keywords) - set(flagged) == ({"reverse_from"} if name == "ais" else set())
    words = {option: w for option, w, _ in BUILT_IN[name].values()}
    assert {o: describe(hints[o]) for o in flagged} == words
    assert check_estimator(name) == {**flagged, **({"reverse_from": None} if name == "ais" else {})}


def test_the_epilog_lists_each_estimators_flags_with_their_defaults():
    assert estimator_flags.epilog() == (
        "estimators and their options (defaults):\n"
        "  ais: --chains 16 --steps 500 --leapfrog 10 --step-size 0.05 --adapt true "
        "--target-acceptance 0.65\n"
        '  is: --samples 5000 --chunk-size 500 --compile "auto"'
    )


def test_a_users_estimator_shares_a_flag_and_lists_its_own():
    """An option two estimators have is one flag whose help names both; an option no flag can
    set (a tensor) has none; an estimator without options says so."""

    @pyro_vae.register_estimator("mine")
    def mine(
        model,
        guide,
        x,
        /,
        *,
        seed,
        batch_size,
        device,
        progress,
        plate="data",
        samples: PositiveInt = 10,
        prior_draws: torch.Tensor | None = None,
    ):
        raise NotImplementedError

    @pyro_vae.register_estimator("plain")
    def plain(model, guide, x, /, *, seed, batch_size, device, progress, plate="data"):
        raise NotImplementedError

    flags = option_flags(evaluate_parser())
    assert flags["--samples"] == ("opt_samples", None, "is, mine: an integer >= 1")
    assert "--prior-draws" not in flags and len(flags) == 9
    lines = estimator_flags.epilog().splitlines()
    assert lines[3:5] == ["  mine: --samples 10", "  plain: (no options)"]
    assert estimator_flags.names() == ["ais", "is", "mine", "plain"]


# -- the options chosen -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "options"),
    [
        pytest.param([], {"samples": 5000, "chunk_size": 500, "compile": "auto"}, id="defaults"),
        pytest.param(
            ["--samples", "64", "--compile", "false"],
            {"samples": 64, "chunk_size": 500, "compile": False},
            id="flags",
        ),
        pytest.param(
            ["--option", "chunk-size=7", "--option", "compile=auto"],
            {"samples": 5000, "chunk_size": 7, "compile": "auto"},
            id="option",
        ),
        # given both ways, the flag wins; the other options given by --option stand
        pytest.param(
            ["--option", "samples=10", "--option", "chunk_size=7", "--samples", "20"],
            {"samples": 20, "chunk_size": 7, "compile": "auto"},
            id="flag-wins",
        ),
        pytest.param(
            ["--estimator", "ais", "--step-size", "1", "--adapt", "false", "--chains", "3"],
            {
                "chains": 3,
                "steps": 500,
                "leapfrog": 10,
                "step_size": 1.0,
                "adapt": False,
                "target_acceptance": 0.65,
                "reverse_from": None,
            },
            id="ais",
        ),
    ],
)
def test_the_chosen_options_are_read_as_toml_and_checked(argv, options):
    chosen = estimator_flags.chosen_options(parsed(*argv))
    assert chosen == options
    assert {k: type(v) for k, v in chosen.items()} == {k: type(v) for k, v in options.items()}


@pytest.mark.parametrize(
    ("argv", "given", "library", "line"),
    [
        pytest.param(
            ["--samples", "0"],
            ("is", {"samples": 0}),
            'estimator "is": option samples = 0 is not allowed: expected an integer >= 1',
            "--samples = 0 is not allowed: expected an integer >= 1",
            id="flag",
        ),
        pytest.param(
            ["--option", "samples=1.5"],
            ("is", {"samples": 1.5}),
            'estimator "is": option samples = 1.5 is not allowed: expected an integer >= 1',
            "--samples = 1.5 is not allowed: expected an integer >= 1",
            id="option",
        ),
        pytest.param(
            ["--estimator", "ais", "--target-acceptance", "1"],
            ("ais", {"target_acceptance": 1}),
            'estimator "ais": option target_acceptance = 1 is not allowed: expected a number > 0 and < 1',
            "--target-acceptance = 1 is not allowed: expected a number > 0 and < 1",
            id="range",
        ),
        pytest.param(
            ["--estimator", "ais", "--samples", "5"],
            ("ais", {"samples": 5}),
            'estimator "ais": option samples is unknown; allowed: chains, steps, leapfrog, step_size, '
            "adapt, target_acceptance, reverse_from",
            'unknown key --estimator.samples for estimator "ais"; allowed: --chains, --steps, '
            "--leapfrog, --step-size, --adapt, --target-acceptance",
            id="unknown",
        ),
    ],
)
def test_the_librarys_refusal_is_reworded_in_flags(argv, given, library, line):
    """The library names the option (from Python); the command line, the flag that set it."""
    with pytest.raises(EstimatorOptionError) as info:
        check_estimator(*given)
    assert str(info.value) == library
    with pytest.raises(ConfigError) as info:
        estimator_flags.chosen_options(parsed(*argv))
    assert str(info.value) == line and type(info.value) is ConfigError


def test_an_option_that_must_be_given_is_named_by_its_flag():
    @pyro_vae.register_estimator("needs")
    def needs(model, guide, x, /, *, seed, batch_size, device, progress, plate="data", draw_count: int):
        raise NotImplementedError

    with pytest.raises(ConfigError) as info:
        estimator_flags.chosen_options(parsed("--estimator", "needs"))
    assert str(info.value) == "--draw-count must be given"
    assert estimator_flags.chosen_options(parsed("--estimator", "needs", "--draw-count", "4")) == {
        "draw_count": 4
    }


def test_an_option_of_a_user_estimator_without_checkable_options_is_unknown_with_none_allowed():
    @pyro_vae.register_estimator("plain")
    def plain(model, guide, x, /, *, seed, batch_size, device, progress, plate="data"):
        raise NotImplementedError

    with pytest.raises(ConfigError) as info:
        estimator_flags.chosen_options(parsed("--estimator", "plain", "--option", "samples=3"))
    assert str(info.value) == 'unknown key --estimator.samples for estimator "plain"; allowed: none'
