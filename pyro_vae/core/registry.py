"""Registries of interchangeable parts, keyed by the name a config file or a flag uses.

Every family (priors, likelihoods, guides, networks, objectives, estimators, datasets, learning-rate
schedules, loggers) has one :class:`Registry`, declared at the end of this module with the module
or package that holds its built-in parts (its *home*). A registry imports its home the first time
it is asked for a name, so that a config can be validated without importing the models, and
nothing is ever imported only to fill a registry. An entry is a class or function; its
*keyword-only* parameters are the options a config file may set, and their annotations and
defaults are what :class:`Spec` checks against. Adding a part, built-in or a user's, is one
decorated definition in the module that defines it::

    from pyro_vae import register_prior

    @register_prior("my_prior")
    class MyPrior(torch.nn.Module):
        def __init__(self, latent_dim, /, *, scale: float = 1.0): ...

after which ``prior = { kind = "my_prior", scale = 2.0 }`` works in a config file. A test that
adds a part does it inside ``with PRIORS.scoped(): ...``, which leaves the registry as it found it.
"""

import contextlib
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import NonNegativeFloat, Range, check_value, plain, show


class Registry:
    """A name -> factory mapping for one family of parts.

    :param home: the modules holding the family's built-in parts, imported the first time a
        name is asked for (every module of a package: a new built-in is one new file there).
        Parts registered before then, a user's, win over built-ins of the same name.
    :param reserved: keyword-only arguments every entry takes that are not options (an
        estimator's ``seed``, ``device`` ...): the caller passes them, a config never does.
    :param shared_options: a function whose keyword-only parameters every entry of the family
        also takes (the objectives' modifiers).
    """

    def __init__(
        self,
        family: str,
        *,
        home: tuple[str, ...] = (),
        reserved: tuple[str, ...] = (),
        shared_options: Callable | None = None,
    ):
        self.family = family
        self.home = home
        self.reserved = reserved
        self.shared_options = shared_options
        self._entries: dict[str, Callable] = {}
        self._loaded = False

    def register(self, name: str, entry: Callable | None = None):
        """Register ``entry`` under ``name``; usable as a decorator when ``entry`` is omitted."""

        def add(entry):
            if not isinstance(name, str) or not name:
                raise ValueError(f"a {self.family} name must be a non-empty string, got {name!r}")
            self._entries[name] = entry
            return entry

        return add if entry is None else add(entry)

    def load(self) -> "Registry":
        """Import the home modules once (a no-op after the first call); return the registry."""
        if self._loaded:
            return self
        self._loaded = True  # a home module that asks for a name while importing finds it loading
        earlier = dict(self._entries)
        try:
            for name in self.home:
                module = importlib.import_module(name)
                for found in pkgutil.iter_modules(getattr(module, "__path__", ())):
                    importlib.import_module(f"{name}.{found.name}")
        except BaseException:
            self._loaded = False
            raise
        self._entries.update(earlier)
        return self

    @contextlib.contextmanager
    def scoped(self) -> Iterator["Registry"]:
        """Parts registered or replaced inside the block are gone after it: the registry is left
        exactly as it was (tests add their own parts this way)."""
        saved = dict(self.load()._entries)
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(saved)

    def __contains__(self, name) -> bool:
        return name in self.load()._entries

    def names(self) -> list[str]:
        return sorted(self.load()._entries)

    def entries(self) -> dict[str, Callable]:
        """Every part by name, sorted by name."""
        return {name: self._entries[name] for name in self.names()}

    def get(self, name: str, key: str = "kind") -> Callable:
        try:
            return self.load()._entries[name]
        except (KeyError, TypeError):
            allowed = ", ".join(show(n) for n in self.names())
            raise ConfigError(
                f"{key} = {show(name)} is not a known {self.family}; allowed: {allowed}"
            ) from None

    def options(self, name: str) -> dict[str, inspect.Parameter]:
        """The keyword-only parameters of an entry (and shared ones): the options a config may set."""
        own = {n: p for n, p in _keyword_only(self.get(name)).items() if n not in self.reserved}
        return {**own, **self._shared()}

    def shared_option_names(self) -> list[str]:
        return list(self._shared())

    def _shared(self) -> dict[str, inspect.Parameter]:
        return _keyword_only(self.shared_options) if self.shared_options else {}


def _keyword_only(entry: Callable) -> dict[str, inspect.Parameter]:
    target = entry.__init__ if inspect.isclass(entry) else entry
    hints = typing.get_type_hints(target, include_extras=True)
    params = inspect.signature(target).parameters.values()
    return {
        p.name: p.replace(annotation=hints.get(p.name, typing.Any))
        for p in params
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def get_registry(family: str) -> Registry:
    return REGISTRIES[family]


@dataclass(frozen=True)
class Spec:
    """A part chosen from a registry by ``kind``, with that part's options.

    ``Spec("mlp", {"hidden": [300, 300]})`` is ``{ kind = "mlp", hidden = [300, 300] }``.
    Validated specs hold every option of their kind, defaults included.
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value, family: str, key: str) -> "Spec":
        """Validate a spec written as ``"kind"`` or ``{kind = ..., option = ...}``."""
        if isinstance(value, Spec):
            value = value.to_dict()
        if isinstance(value, str):
            value = {"kind": value}
        if not isinstance(value, dict) or "kind" not in value:
            raise ConfigError(f"{key} = {show(value)} is not allowed: expected {{ kind = ... }}")
        registry = get_registry(family)
        kind = value["kind"]
        registry.get(kind, key=f"{key}.kind")
        options = registry.options(kind)
        params = {}
        for name, given in value.items():
            if name == "kind":
                continue
            if name not in options:
                allowed = ", ".join(["kind", *options])
                raise ConfigError(f"unknown key {key}.{name} for {family} {show(kind)}; allowed: {allowed}")
            params[name] = plain(check_value(f"{key}.{name}", given, options[name].annotation))
        for name, option in options.items():
            if name not in params:
                if option.default is option.empty:
                    raise ConfigError(f"{key}.{name} must be given for {family} {show(kind)}")
                params[name] = plain(option.default)
        return cls(kind, {name: params[name] for name in options})  # in the entry's own order

    def to_dict(self) -> dict:
        return {"kind": self.kind, **self.params}


# ---------------------------------------------------------------------------------------------
# The families, each with the modules of its built-in parts
# ---------------------------------------------------------------------------------------------


def objective_modifiers(
    *,
    kl_warmup: Annotated[int, Range(lo=0)] = 0,
    kl_warmup_unit: Literal["epochs", "steps"] = "epochs",
    free_bits: NonNegativeFloat = 0.0,
    classify: NonNegativeFloat = 1.0,
):
    """Options every objective takes: KL warm-up length and unit, free bits per dimension, and
    the weight α of a semi-supervised model's classification term (Kingma et al. 2014)."""


PRIORS = Registry("prior", home=("pyro_vae.models.priors",))
LIKELIHOODS = Registry("likelihood", home=("pyro_vae.models.likelihoods",))
GUIDES = Registry("guide", home=("pyro_vae.models.guides", "pyro_vae.models.graph.categorical"))
#: the conditional distributions of a declared graph's variables (:mod:`pyro_vae.config.graph`)
FAMILIES = Registry("family", home=("pyro_vae.models.graph.families",))
#: users' own Pyro programs (:mod:`pyro_vae.models.programs`); none is built in
PROGRAMS = Registry("program")
NETWORKS = Registry("network", home=("pyro_vae.models.networks",))
OBJECTIVES = Registry(
    "objective", home=("pyro_vae.inference.objectives",), shared_options=objective_modifiers
)
#: the arguments every estimator is given by its caller (:mod:`pyro_vae.inference.estimators.base`)
ESTIMATORS = Registry(
    "estimator",
    home=("pyro_vae.inference.estimators",),
    reserved=("seed", "batch_size", "device", "progress", "plate", "first_point"),
)
DATASETS = Registry("dataset", home=("pyro_vae.data.catalog",))
#: ``epochs``: ``train.epochs``, passed by training (not an option)
LR_SCHEDULES = Registry("lr_schedule", home=("pyro_vae.training.schedules",), reserved=("epochs",))
#: ``start_epoch``: passed by training, not an option
LOGGERS = Registry("logger", home=("pyro_vae.training.loggers",), reserved=("start_epoch",))

#: every family, by the name a :class:`Spec` gives it
REGISTRIES = {
    r.family: r
    for r in (
        PRIORS,
        LIKELIHOODS,
        GUIDES,
        FAMILIES,
        PROGRAMS,
        NETWORKS,
        OBJECTIVES,
        ESTIMATORS,
        DATASETS,
        LR_SCHEDULES,
        LOGGERS,
    )
}
