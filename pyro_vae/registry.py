"""Registries of interchangeable parts, keyed by the name a config file uses.

Each family (priors, likelihoods, guides, networks, objectives, datasets) has one
:class:`Registry`. An entry is a class or function; its *keyword-only* parameters
are the options a config file may set, and their annotations and defaults are
what the config validator checks against. Adding a part is one decorated class::

    from pyro_vae import register_prior

    @register_prior("my_prior")
    class MyPrior(torch.nn.Module):
        def __init__(self, latent_dim, /, *, scale: float = 1.0): ...

after which ``prior = { kind = "my_prior", scale = 2.0 }`` works in a config file.
"""

import inspect
import typing
from collections.abc import Callable

from .errors import ConfigError

REGISTRIES: dict[str, "Registry"] = {}


class Registry:
    """A name -> factory mapping for one family of parts."""

    def __init__(self, family: str):
        self.family = family
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
            from .config import show  # config imports this module

            allowed = ", ".join(show(n) for n in self.names())
            raise ConfigError(
                f"{key} = {show(name)} is not a known {self.family}; allowed: {allowed}"
            ) from None

    def options(self, name: str) -> dict[str, inspect.Parameter]:
        """The keyword-only parameters of an entry (and shared ones): the options a config may set."""
        return {**_keyword_only(self.get(name)), **self._shared()}

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
