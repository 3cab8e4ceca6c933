"""pyro_vae.core.registry: entries, their options, the specs that choose them, scoped registration
and the built-in parts imported when first asked for."""

import inspect
import subprocess
import sys
import textwrap

import pytest

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import PositiveFloat
from pyro_vae.core.registry import PRIORS, REGISTRIES, Registry, Spec, get_registry
from pyro_vae.inference.estimators import ESTIMATORS

FAMILY = "test_family_xyz"


def shared(*, weight: float = 0.5):
    pass


@pytest.fixture
def registry(monkeypatch):
    reg = Registry(FAMILY, reserved=("seed",))
    monkeypatch.setitem(REGISTRIES, FAMILY, reg)  # a family of the test's, for Spec.parse

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
    registry = Registry(FAMILY, reserved=("seed",), shared_options=shared)
    registry.register("thing", REGISTRIES[FAMILY].get("thing"))
    REGISTRIES[FAMILY] = registry  # restored by the fixture's monkeypatch
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


def test_a_scope_restores_added_and_replaced_entries(registry):
    thing = registry.get("thing")
    with registry.scoped():
        registry.register("new", lambda: None)
        registry.register("thing", lambda: None)
        assert "new" in registry and registry.get("thing") is not thing
    assert registry.names() == ["needs", "thing"] and registry.get("thing") is thing


def test_the_fixture_leaves_every_family_as_it_was(scoped_registries):
    before = {family: r.entries() for family, r in REGISTRIES.items()}
    with PRIORS.scoped():
        PRIORS.register("normal", lambda latent_dim: None)
    assert {family: r.entries() for family, r in REGISTRIES.items()} == before
    PRIORS.register("test_only_prior", lambda latent_dim: None)  # undone by scoped_registries


def test_no_part_registered_by_another_test_is_left_behind():
    assert "test_only_prior" not in PRIORS


def test_unknown_names_list_the_allowed_ones_built_ins_included():
    with pytest.raises(ConfigError) as e:
        PRIORS.get("nope", key="model.prior.kind")
    assert str(e.value).startswith('model.prior.kind = "nope" is not a known prior; allowed: ')
    assert '"mog"' in str(e.value) and '"normal"' in str(e.value) and '"vamp"' in str(e.value)


def test_a_package_home_is_imported_when_first_asked_and_a_users_part_wins(tmp_path, monkeypatch):
    home = tmp_path / "home_pkg_xyz"
    home.mkdir()
    (home / "__init__.py").write_text("")
    for name in ("one", "two"):
        (home / f"{name}.py").write_text(
            "from pyro_vae.core.registry import REGISTRIES\n"
            f"REGISTRIES[{FAMILY!r}].register({name!r}, lambda: {name!r})\n"
            f"REGISTRIES[{FAMILY!r}].register('shared', lambda: 'built-in')\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(FAMILY, home=("home_pkg_xyz",))
    monkeypatch.setitem(REGISTRIES, FAMILY, registry)
    registry.register("shared", lambda: "the user's")  # before the home is imported
    assert "home_pkg_xyz" not in sys.modules
    assert registry.names() == ["one", "shared", "two"]  # every module of the package
    assert registry.get("shared")() == "the user's" and registry.get("two")() == "two"
    for name in ("home_pkg_xyz.one", "home_pkg_xyz.two", "home_pkg_xyz"):
        del sys.modules[name]


@pytest.mark.slow
def test_validating_a_config_imports_the_parts_it_names_only_when_asked():
    code = textwrap.dedent(
        """
        import sys
        from pyro_vae.config import Config
        assert "pyro_vae.models.priors" not in sys.modules and "torch" not in sys.modules
        config = Config.from_dict({"model": {"prior": {"kind": "mog", "components": 2}}})
        assert config.model.prior.params["components"] == 2
        assert "pyro_vae.models.priors" in sys.modules  # the prior family's home, loaded by its name
        assert "matplotlib" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)
