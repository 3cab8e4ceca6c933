"""A whole run's config: its sections, read from and written to TOML or JSON, and overridden.

A run is four sections (:mod:`pyro_vae.config.sections`) and the plugins that register parts they
may name::

    plugins = ["my_parts.py"]     Python files or modules imported first
    [model]       ModelConfig     what p(z), p(x|z) and q(z|x) are
    [objective]   Spec            which variational objective trains them
    [train]       TrainConfig     how long, how fast, where
    [data]        DataConfig      what it is trained on

Loading is three explicit steps (:func:`load_config`): read the file, import its plugins,
validate; command-line overrides are a merge of dotted keys into the validated values. A
config object is only data: building one imports nothing and touches no file. Files are
written with ``tomli-w``.
"""

import dataclasses
import json
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from pyro_vae.config.graph import check_graph, parse_guide
from pyro_vae.config.sections import DataConfig, ModelConfig, TrainConfig
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import (
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Range,
    check_value,
    describe,
    parse_value,
    show,
)
from pyro_vae.core.plugins import import_plugins, plugin_key
from pyro_vae.core.registry import Spec

SECTIONS: dict[str, type[ModelConfig] | type[TrainConfig] | type[DataConfig]] = {
    "model": ModelConfig,
    "train": TrainConfig,
    "data": DataConfig,
}

# the value types and checks are re-exported for plugin files written against ``pyro_vae.config.run_config``
__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "NonNegativeFloat",
    "PositiveFloat",
    "PositiveInt",
    "Range",
    "Spec",
    "TrainConfig",
    "as_config",
    "check_value",
    "describe",
    "load_config",
    "parse_value",
    "read_config_file",
    "show",
]


@dataclass(frozen=True)
class Config:
    """A whole run: ``Config.load(path)``, ``config.save(path)``, ``config.override(...)``."""

    #: Python files (or importable modules) to import first: where a user registers their own
    #: priors, guides, likelihoods, networks, objectives or estimators (``register_prior`` …) to
    #: name here; a relative path is relative to the config file
    plugins: list[str] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: Spec = field(default_factory=lambda: Spec("elbo"))
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    #: how the guide draws each latent of a model declared by ``model.variables``:
    #: ``[guide.NAME]`` (pyro_vae.config.graph); the defaults of every latent filled in
    guide: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "plugins", list(check_value("plugins", self.plugins, list[str])))
        for name, section in SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, section.from_dict(value))
            elif not isinstance(value, section):
                raise ConfigError(f"[{name}] must be a table, got {value!r}")
        object.__setattr__(self, "objective", Spec.parse(self.objective, "objective", "objective"))
        guide = parse_guide(self.guide)
        if self.model.variables is None:
            if guide:
                raise ConfigError(
                    "[guide] declares the guide of a graph: declare its model in [model.variables]"
                )
        else:
            guide = check_graph(self.model.variables, guide)
        object.__setattr__(self, "guide", guide)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        if not isinstance(values, dict):
            raise ConfigError(f"a config must be a table of sections, got {values!r}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in values if k not in allowed]
        if unknown:
            raise ConfigError(f"unknown section [{unknown[0]}]; allowed: {', '.join(allowed)}")
        return cls(**values)

    def to_dict(self) -> dict:
        values = {
            "plugins": list(self.plugins),
            "model": self.model.to_dict(),
            "objective": self.objective.to_dict(),
            "train": self.train.to_dict(),
            "data": self.data.to_dict(),
        }
        if self.guide:
            values["guide"] = {name: g.to_dict() for name, g in self.guide.items()}
        return values

    @classmethod
    def load(cls, path) -> "Config":
        """Read a ``.toml`` or ``.json`` file, importing the plugins it names first."""
        return load_config(path)

    def save(self, path) -> None:
        """Write ``.toml`` or ``.json``; ``Config.load`` gives back an equal config."""
        path = Path(path)
        values = _drop_none(self.to_dict())
        if path.suffix == ".json":
            text = json.dumps(values, indent=2) + "\n"
        elif path.suffix == ".toml":
            text = tomli_w.dumps(values)
        else:
            raise ConfigError(f"cannot save config as {path.suffix!r}; allowed: .toml, .json")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)

    def override(self, overrides: dict[str, Any]) -> "Config":
        """A new config with dotted keys replaced: ``{"train.epochs": 5, "model.prior.kind": "normal"}``.

        String values are read as TOML values where they parse (``"5"`` -> 5,
        ``"[100, 100]"`` -> a list) and kept as strings otherwise, so command-line words work.
        A new ``kind`` starts from that kind's defaults; the same kind keeps its options.
        Plugins named here must be imported already (:func:`load_config` does it).
        """
        values = self.to_dict()
        named = {dotted.replace("-", "_") for dotted in overrides}
        if "model.latent_dims" in named and "model.latent_dim" not in named:
            values["model"].pop("latent_dim", None)  # it follows the new layers, as in a file naming them
        # kinds first: a new kind resets its spec, which must not drop options given beside it
        for dotted, raw in sorted(overrides.items(), key=lambda kv: not _names_a_kind(values, kv[0])):
            *path, leaf = dotted.replace("-", "_").split(".")
            if (path[0] if path else leaf) not in values:
                raise ConfigError(f"unknown section in --{dotted}; allowed: {', '.join(values)}")
            target = values
            for i, part in enumerate(path):
                if target.get(part) is None and leaf == "kind" and i == len(path) - 1 and path[0] == "model":
                    target[part] = {}  # a part that is unset until chosen: --model.program.kind NAME
                if not isinstance(target.get(part), dict):
                    raise ConfigError(f"--{dotted}: {part!r} is not a table of options")
                target = target[part]
            value = parse_value(raw)
            if isinstance(target.get(leaf), dict) and "kind" in target[leaf]:
                if value != target[leaf]["kind"]:
                    target[leaf] = value if isinstance(value, dict) else {"kind": value}
            elif leaf == "kind" and path:
                if value != target.get("kind"):
                    target.clear()
                    target["kind"] = value
            else:
                # a string option keeps a word that TOML reads as a number, bool or date
                target[leaf] = raw if _wants_str(path, leaf) and not isinstance(value, str) else value
        return Config.from_dict(values)


def read_config_file(path) -> dict:
    """The values of a ``.toml`` or ``.json`` config file, plugin paths made absolute."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            values = json.loads(text)
        elif path.suffix == ".toml":
            values = tomllib.loads(text)
        else:
            allowed = "allowed: .toml, .json"
            raise ConfigError(f"config file {str(path)!r}: unknown format {path.suffix!r}; {allowed}")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} is not valid {path.suffix[1:]}: {e}") from None
    if isinstance(values, dict) and isinstance(values.get("plugins"), list):
        values["plugins"] = [
            plugin_key(p, relative_to=path.parent) if isinstance(p, str) else p for p in values["plugins"]
        ]
    return values


def load_config(path=None, overrides: dict[str, Any] | None = None) -> Config:
    """The config of a file (defaults without one) with ``overrides`` applied: read, import the
    plugins, validate, override."""
    values = read_config_file(path) if path is not None else {}
    if isinstance(values, dict):
        values["plugins"] = import_plugins(values.get("plugins", []))
    config = Config.from_dict(values)
    if overrides:
        if "plugins" in overrides:
            named = parse_value(overrides["plugins"])  # --plugins a.py, or a TOML list of them
            plugins = import_plugins([named] if isinstance(named, str) else named)
            overrides = {**overrides, "plugins": plugins}
        config = config.override(overrides)
    return config


def as_config(value, where: str = "config") -> Config:
    """A :class:`Config` from what a user may pass as one: a ``Config``, a dict of sections (as
    :meth:`Config.from_dict` reads), a path to a ``.toml`` or ``.json`` file (as
    :meth:`Config.load` reads, plugins imported), or None for the defaults.

    :raises TypeError: for anything else, naming ``where`` and what is accepted.
    """
    if value is None:
        return Config()
    if isinstance(value, Config):
        return value
    if isinstance(value, dict):
        return Config.from_dict({**value, "plugins": import_plugins(value.get("plugins", []))})
    if isinstance(value, str | os.PathLike):
        return load_config(value)
    raise TypeError(
        f"{where} must be a Config, a dict of sections, a path to a .toml or .json file, or None; "
        f"got {type(value).__name__}"
    )


def _names_a_kind(values: dict, dotted: str) -> bool:
    *path, leaf = dotted.replace("-", "_").split(".")
    if leaf == "kind":
        return True
    target = values
    for part in [*path, leaf]:
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    return isinstance(target, dict) and "kind" in target


def _wants_str(path: list[str], leaf: str) -> bool:
    section = SECTIONS.get(path[0]) if len(path) == 1 else None
    if section is None:
        return False
    hint = typing.get_type_hints(section).get(leaf)
    return hint is str or hint == (str | None)


def _drop_none(values):
    """TOML has no null: an unset optional key is simply left out (and defaults back to None)."""
    if isinstance(values, dict):
        return {k: _drop_none(v) for k, v in values.items() if v is not None}
    return values
