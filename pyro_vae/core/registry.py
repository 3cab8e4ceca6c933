"""Registries of interchangeable parts, keyed by the name a config file or a flag uses.

Each family (priors, likelihoods, guides, networks, objectives, estimators, datasets) has
one :class:`Registry`. An entry is a class or function; its *keyword-only* parameters are
the options a config file may set, and their annotations and defaults are what
:class:`Spec` checks against. Adding a part is one decorated class::

    from pyro_vae import register_prior

    @register_prior("my_prior")
    class MyPrior(torch.nn.Module):
        def __init__(self, latent_dim, /, *, scale: float = 1.0): ...

after which ``prior = { kind = "my_prior", scale = 2.0 }`` works in a config file.
"""

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import check_value, plain, show

REGISTRIES: dict[str, "Registry"] = {}


class Registry:
    """A name -> factory mapping for one family of parts.

    :param reserved: keyword-only arguments every entry takes that are not options (an
        estimator's ``seed``, ``device`` ...): the caller passes them, a config never does.
    """

    def __init__(self, family: str, *, reserved: tuple[str, ...] = ()):
        self.family = family
        self.reserved = reserved
        self._entries: dict[str, Callable] = {}
        #: a function whose keyword-only parameters every entry of the family also takes
        self.shared_options: Callable | None = None
        REGISTRIES[family] = self

    def register(self, name: str, entry: Callable | None = None):
        """Register ``entry`` under ``name``; usable as a decorator when ``entry`` is omitted."""

        def add(entry):
            if not isinstance(name, str) or not name:
                raise ValueError(f"a {self.family} name must be a non-empty string, got {name!r}")
            self._entries[name] = entry
            return entry

        return add if entry is None else add(entry)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str, key: str = "kind") -> Callable:
        try:
            return self._entries[name]
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
