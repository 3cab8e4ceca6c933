"""Option checks: what check_value accepts and converts, and the words of its errors."""

import math
from typing import Annotated, Any, Literal

import pytest

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import (
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Range,
    check_value,
    checkable,
    describe,
    parse_value,
    plain,
    show,
)


@pytest.mark.parametrize(
    ("bound", "inside", "outside"),
    [
        (Range(lo=1), [1, 2, 10**9], [0, -1, 0.5]),
        (Range(lo=0, lo_open=True), [1e-300, 3], [0, -1]),
        (Range(lo=0, hi=1, hi_open=True), [0, 0.999], [1, 1.5, -0.1]),
        (Range(lo=0, excluded=(1,)), [0, 0.5, 2], [1, -1]),
    ],
    ids=["lo", "lo-open", "hi-open", "excluded"],
)
def test_a_range_contains_exactly_its_values(bound, inside, outside):
    assert all(x in bound for x in inside) and not any(x in bound for x in outside)


@pytest.mark.parametrize(
    ("annotation", "words"),
    [
        (PositiveInt, "an integer >= 1"),
        (PositiveFloat, "a number > 0"),
        (NonNegativeFloat, "a number >= 0"),
        (Annotated[float, Range(lo=0, excluded=(1,))], "a number >= 0 and != 1"),
        (Annotated[int, Range(lo=0, hi=4294967295)], "an integer >= 0 and <= 4294967295"),
        (Literal["epochs", "steps"], 'one of "epochs", "steps"'),
        (Literal["only"], '"only"'),
        (int | None, "an integer or none"),
        (list[PositiveInt], "a list of integers >= 1"),
        (bool, "true or false"),
        (dict, "a table"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_describe_says_what_is_allowed(annotation, words):
    assert describe(annotation) == words


@pytest.mark.parametrize(
    ("value", "annotation", "checked"),
    [
        (3, float, 3.0),
        ([1, 2], list[int], (1, 2)),
        ((16, 16), tuple[PositiveInt, ...], (16, 16)),
        (None, int | None, None),
        (5, int | None, 5),
        ("steps", Literal["epochs", "steps"], "steps"),
        ({"a": 1}, dict, {"a": 1}),
        ("anything", Any, "anything"),
    ],
)
def test_check_value_converts_what_it_accepts(value, annotation, checked):
    got = check_value("k", value, annotation)
    assert got == checked and type(got) is type(checked)


@pytest.mark.parametrize(
    ("value", "annotation", "message"),
    [
        (0, PositiveInt, "model.latent_dim = 0 is not allowed: expected an integer >= 1"),
        (True, int, "model.latent_dim = true is not allowed: expected an integer"),
        (1.5, int, "model.latent_dim = 1.5 is not allowed: expected an integer"),
        ("3", float, 'model.latent_dim = "3" is not allowed: expected a number'),
        (1, Literal[True, False], "model.latent_dim = 1 is not allowed: expected one of true, false"),
        ([0], list[PositiveInt], "model.latent_dim = [0] is not allowed: expected a list of integers >= 1"),
    ],
    ids=["range", "bool-is-not-int", "float-is-not-int", "string-is-not-number", "literal-type", "list-item"],
)
def test_check_value_names_the_key_the_value_and_what_is_allowed(value, annotation, message):
    with pytest.raises(ConfigError) as info:
        check_value("model.latent_dim", value, annotation)
    assert str(info.value) == message


def test_checkable_refuses_what_a_flag_cannot_set():
    import torch

    assert checkable(PositiveInt) and checkable(list[int] | None) and checkable(Literal["a"])
    assert not checkable(torch.Tensor) and not checkable(list[torch.Tensor])
    with pytest.raises(TypeError, match="cannot check values"):
        check_value("k", 1, torch.Tensor)


@pytest.mark.parametrize(
    ("value", "spelled"),
    [
        (True, "true"),
        (0.5, "0.5"),
        ('a"b', '"a\\"b"'),
        ([1, "x", False], '[1, "x", false]'),
        ({"kind": "step", "every": 3}, '{ kind = "step", every = 3 }'),
        (math.inf, "inf"),
    ],
)
def test_show_spells_values_as_toml_does_and_parse_value_reads_them_back(value, spelled):
    assert show(value) == spelled
    assert parse_value(spelled) == value


def test_parse_value_keeps_words_that_are_not_toml_as_strings():
    assert parse_value("gaussian") == "gaussian" and parse_value("[16") == "[16" and parse_value(3) == 3


def test_plain_turns_tuples_into_lists_and_copies():
    inner = {"hidden": (16, 8)}
    out = plain({"a": inner, "b": ((1,), 2)})
    assert out == {"a": {"hidden": [16, 8]}, "b": [[1], 2]}
    out["a"]["hidden"].append(4)
    assert inner == {"hidden": (16, 8)}
