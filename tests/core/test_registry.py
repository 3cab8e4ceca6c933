"""pyro_vae.core.registry: entries, their options and the specs that choose them."""

import inspect

import pytest

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import PositiveFloat
from pyro_vae.core.registry import Registry, Spec, get_registry
from pyro_vae.inference.estimators import ESTIMATORS

FAMILY = "test_family_xyz"


@pytest.fixture
def registry():
    reg = Registry(FAMILY, reserved=("seed",))

    @reg.register("thing")
    class Thing:
        def __init__(self, dim, /, *, hidden: list[int] = (4,), beta: float = 1.0, seed=None):
            pass

    def needs(x, *, alpha: PositiveFloat, k: int = 2):
        pass

    reg.register("needs", needs)
    return reg


def test_register_and_get(registry):
    assert get_registry(FAMILY) is registry
    assert "thing" in registry and "needs" in registry and "other" not in registry
    assert registry.names() == ["needs", "thing"]
    assert registry.get("needs").__name__ == "needs"
    with pytest.raises(ValueError, match="non-empty string"):
        registry.register("", lambda: None)


def test_unknown_name_error_names_key_value_and_allowed(registry):
    with pytest.raises(ConfigError) as e:
        registry.get("nope", key="model.part.kind")
    assert str(e.value) == f'model.part.kind = "nope" is not a known {FAMILY}; allowed: "needs", "thing"'


def test_options_are_keyword_only_with_annotations_without_reserved(registry):
    options = registry.options("thing")
    assert list(options) == ["hidden", "beta"]  # not dim (positional), not seed (reserved)
    assert options["hidden"].annotation == list[int] and options["hidden"].default == (4,)
    assert options["beta"].annotation is float
    assert registry.options("needs")["alpha"].default is inspect.Parameter.empty
    est = ESTIMATORS.options("is")
    assert "samples" in est and "chunk_size" in est and "seed" not in est


def test_shared_options_come_after_the_entry_own(registry):
    def shared(*, weight: float = 0.5):
        pass

    registry.shared_options = shared
    assert list(registry.options("thing")) == ["hidden", "beta", "weight"]
    assert registry.shared_option_names() == ["weight"]
    assert Spec.parse({"kind": "thing", "weight": 2}, FAMILY, "p").params == {
        "hidden": [4],
        "beta": 1.0,
        "weight": 2.0,
    }


def test_spec_parse_fills_defaults_in_declared_order(registry):
    spec = Spec.parse({"beta": 3, "kind": "thing"}, FAMILY, "model.part")
    assert spec.kind == "thing"
    assert list(spec.params.items()) == [("hidden", [4]), ("beta", 3.0)]
    assert isinstance(spec.params["beta"], float)
    assert Spec.parse("thing", FAMILY, "model.part") == Spec("thing", {"hidden": [4], "beta": 1.0})
    assert Spec.parse(spec, FAMILY, "model.part") == spec
    assert spec.to_dict() == {"kind": "thing", "hidden": [4], "beta": 3.0}


def test_spec_parse_rejects_unknown_and_missing_keys(registry):
    with pytest.raises(ConfigError) as e:
        Spec.parse({"kind": "thing", "gamma": 1}, FAMILY, "model.part")
    assert str(e.value) == f'unknown key model.part.gamma for {FAMILY} "thing"; allowed: kind, hidden, beta'
    with pytest.raises(ConfigError) as e:
        Spec.parse({"kind": "needs"}, FAMILY, "model.part")
    assert str(e.value) == f'model.part.alpha must be given for {FAMILY} "needs"'
    with pytest.raises(ConfigError, match=r"model\.part\.kind = \"nope\""):
        Spec.parse({"kind": "nope"}, FAMILY, "model.part")
    with pytest.raises(ConfigError, match=r"expected \{ kind = \.\.\. \}"):
        Spec.parse({"beta": 1.0}, FAMILY, "model.part")


@pytest.mark.parametrize(
    "value, bad",
    [
        ({"kind": "needs", "alpha": -1.0}, "alpha"),
        ({"kind": "needs", "alpha": 1.0, "k": "two"}, "k"),
        ({"kind": "thing", "hidden": 3}, "hidden"),
    ],
)
def test_spec_parse_checks_values(registry, value, bad):
    with pytest.raises(ConfigError, match=rf"^model\.part\.{bad} = "):
        Spec.parse(value, FAMILY, "model.part")
    good = Spec.parse({"kind": "needs", "alpha": 2}, FAMILY, "model.part")
    assert good.params == {"alpha": 2.0, "k": 2}
