"""check_estimator: an estimator's name and options checked in one place, in the estimator's own
terms, with every option returned (defaults filled in)."""

import pytest

from pyro_vae.core.errors import ConfigError
from pyro_vae.inference.estimators.base import EstimatorOptionError, check_estimator, estimate


def test_every_option_is_returned_in_the_estimators_order():
    assert check_estimator("is") == {"samples": 5000, "chunk_size": 500, "compile": "auto"}
    assert list(check_estimator("ais", {"step_size": 0.02, "chains": 3}))[:4] == [
        "chains",
        "steps",
        "leapfrog",
        "step_size",
    ]


def test_checking_again_changes_nothing():
    once = check_estimator("ais", {"chains": 3, "adapt": False})
    assert check_estimator("ais", once) == once


def test_a_callers_default_applies_where_the_estimator_has_the_option():
    """compare's eval_samples: the ``samples`` of ``is``, nothing for ``ais``; options win."""
    assert check_estimator("is", None, defaults={"samples": 7})["samples"] == 7
    assert check_estimator("is", {"samples": 3}, defaults={"samples": 7})["samples"] == 3
    assert "samples" not in check_estimator("ais", None, defaults={"samples": 7})


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        pytest.param(
            "is",
            {"samples": 0},
            'estimator "is": option samples = 0 is not allowed: expected an integer >= 1',
            id="value",
        ),
        pytest.param("is", {"samples": 1.5}, 'estimator "is": option samples = 1.5 is not', id="type"),
        pytest.param(
            "ais",
            {"samples": 5},
            'estimator "ais": option samples is unknown; allowed: chains, steps',
            id="unknown",
        ),
    ],
)
def test_a_refusal_names_the_estimator_and_its_option(name, options, message):
    with pytest.raises(EstimatorOptionError) as info:
        check_estimator(name, options)
    assert str(info.value).startswith(message)
    assert "--" not in str(info.value)  # no command-line flag in a library's message
    assert (info.value.estimator, info.value.option) == (name, "samples")


def test_an_unknown_estimator_is_a_config_error():
    with pytest.raises(ConfigError, match=r'estimator = "nosuch" is not a known estimator'):
        check_estimator("nosuch")


def test_estimate_checks_with_it():
    with pytest.raises(EstimatorOptionError, match='estimator "is": option samples = 0'):
        estimate("is", None, None, None, seed=0, samples=0)
