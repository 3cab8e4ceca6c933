"""Typed, validated configuration for a pyro-vae run.

A run is described by four sections, each a frozen dataclass with its defaults in
one place::

    [model]       ModelConfig      what p(z), p(x|z) and q(z|x) are
    [objective]   Spec             which variational objective trains them
    [train]       TrainConfig      how long, how fast, where
    [data]        DataConfig       what it is trained on

Parts chosen from a registry (prior, likelihood, guide, encoder, decoder and the
objective) are a :class:`Spec`: a ``kind`` plus that entry's own options, written
in TOML as ``prior = { kind = "normal" }``. Every option of every section has a
default, so a file names only what it changes. Validation is pure (no files are
touched, no devices probed) and an error names the key, the bad value and what is
allowed.
"""

import dataclasses
import importlib
import importlib.util
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from .errors import ConfigError
from .registry import get_registry


@dataclass(frozen=True)
class Range:
    """A numeric bound for an ``Annotated`` field: ``lo < x`` (``lo <= x`` when not open)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    #: single values left out of the range (a Rényi α of 1)
    excluded: tuple = ()

    def __contains__(self, x) -> bool:
        lo_ok = self.lo is None or (x > self.lo if self.lo_open else x >= self.lo)
        hi_ok = self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)
        return lo_ok and hi_ok and x not in self.excluded

    def __str__(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None and self.hi != math.inf:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        parts += [f"!= {v:g}" for v in self.excluded]
        return " and ".join(parts)


PositiveInt = Annotated[int, Range(lo=1)]
PositiveFloat = Annotated[float, Range(lo=0, lo_open=True, hi=math.inf, hi_open=True)]
NonNegativeFloat = Annotated[float, Range(lo=0, hi=math.inf, hi_open=True)]


# ---------------------------------------------------------------------------------------------
# Checking one value against one annotation
# ---------------------------------------------------------------------------------------------


def describe(annotation, plural: bool = False) -> str:
    """A short human description of what an annotation allows ("a list of integers >= 1")."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        base, *meta = args
        ranges = [str(m) for m in meta if isinstance(m, Range)]
        return " ".join([describe(base, plural), *ranges])
    if origin is Literal:
        words = [show(a) for a in args]
        return words[0] if len(words) == 1 else "one of " + ", ".join(words)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a, plural) for a in args)
    if origin in (list, tuple):
        return f"a list of {describe(args[0], plural=True)}" if args else "a list"
    if annotation is type(None):
        return "none"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if plural:
        names = {bool: "true or false values", int: "integers", float: "numbers", str: "strings"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def check_value(key: str, value, annotation):
    """Return ``value`` converted to ``annotation`` (int -> float, list -> tuple) or raise."""
    try:
        return _check(value, annotation)
    except _Mismatch:
        raise ConfigError(f"{key} = {show(value)} is not allowed: expected {describe(annotation)}") from None


def show(value) -> str:
    """A value as a config file would spell it (``true``, not ``True``)."""
    try:
        return toml_value(value)
    except TypeError:
        return repr(value)


class _Mismatch(Exception):
    pass


def _check(value, annotation):
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is Annotated:
        base, *meta = args
        value = _check(value, base)
        if not all(value in m for m in meta if isinstance(m, Range)):
            raise _Mismatch
        return value
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise _Mismatch
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _check(value, arg)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _Mismatch
        return tuple(_check(v, args[0]) for v in value) if args else tuple(value)
    if annotation is type(None):
        if value is None:
            return None
        raise _Mismatch
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    raise TypeError(f"pyro-vae config cannot check annotation {annotation!r}")


# ---------------------------------------------------------------------------------------------
# A choice from a registry
# ---------------------------------------------------------------------------------------------


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
                allowed = ", ".join(["kind", *options]) or "kind"
                raise ConfigError(f"unknown key {key}.{name} for {family} {show(kind)}; allowed: {allowed}")
            params[name] = _plain(check_value(f"{key}.{name}", given, options[name].annotation))
        for name, option in options.items():
            if name not in params:
                if option.default is option.empty:
                    raise ConfigError(f"{key}.{name} must be given for {family} {show(kind)}")
                params[name] = _plain(option.default)
        return cls(kind, params)

    def to_dict(self) -> dict:
        return {"kind": self.kind, **self.params}


def _plain(value):
    """Tuples become lists so that specs compare equal to what TOML and JSON load."""
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def spec(family: str, kind: str, **params):
    """A dataclass field holding a registry choice of ``family``, default ``kind(**params)``."""
    return field(default_factory=lambda: Spec(kind, dict(params)), metadata={"family": family})


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


class _Section:
    """Validation shared by the section dataclasses below.

    ``__post_init__`` checks and normalises every field (a registry choice becomes a
    :class:`Spec` holding all of its options), so a section built in Python is the same
    object as one loaded from a file. It only reads its arguments.
    """

    _key = ""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self), include_extras=True)
        for f in dataclasses.fields(self):
            key = f"{self._key}.{f.name}"
            value = getattr(self, f.name)
            family = f.metadata.get("family")
            if family:
                value = Spec.parse(value, family, key)
            else:
                value = _plain(check_value(key, value, hints[f.name]))
            object.__setattr__(self, f.name, value)
        self.check()

    @classmethod
    def from_dict(cls, values: dict):
        if not isinstance(values, dict):
            raise ConfigError(f"[{cls._key}] must be a table, got {values!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in values if k not in names]
        if unknown:
            raise ConfigError(
                f"unknown key {cls._key}.{unknown[0]}; allowed in [{cls._key}]: {', '.join(names)}"
            )
        return cls(**values)

    def check(self) -> None:
        """Checks across fields; overridden where a section has them."""

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Spec) else _plain(value)
        return out


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The generative model p(z) p_θ(x|z) and the amortized guide q_φ(z|x)."""

    _key = "model"

    #: size of the latent code z
    latent_dim: PositiveInt = 2
    #: sizes of stacked stochastic layers z₁ (next to the data) … z_L (under the prior), e.g.
    #: [100, 50]: a hierarchical model z_L → … → z₁ → x; unset means one layer of latent_dim
    latent_dims: list[PositiveInt] | None = None
    #: filled in from the data when training; needed to build a VAE by hand
    data_dim: PositiveInt | None = None
    #: [height, width] or [channels, height, width] of image data, filled in from the data when
    #: training; networks that see images (conv) need it
    image_shape: list[PositiveInt] | None = None
    #: p(z) of the top (or only) latent layer
    prior: Spec = spec("prior", "normal")
    #: p(x|z₁): a proper density for the data (bernoulli for 0/1, continuous_bernoulli for [0, 1] …)
    likelihood: Spec = spec("likelihood", "gaussian", scale="learned")
    #: x → parameters of q(z₁|x)
    encoder: Spec = spec("network", "mlp", hidden=[256, 256], activation="tanh")
    #: z₁ → parameters of p(x|z₁)
    decoder: Spec = spec("network", "mlp", hidden=[256, 256], activation="tanh")
    #: q(z|x), the same kind for every latent layer
    guide: Spec = spec("guide", "normal")
    #: in a hierarchical model, the networks between stochastic layers: z_l → parameters of
    #: q(z_{l+1}|z_l) in the guide and z_{l+1} → parameters of p(z_l|z_{l+1}) in the model
    inner: Spec = spec("network", "mlp", hidden=[100, 100], activation="tanh")

    def check(self) -> None:
        if self.latent_dims is not None:
            if not self.latent_dims:
                raise ConfigError("model.latent_dims = [] is not allowed: give at least one layer size")
            if self.latent_dim not in (2, self.latent_dims[0]):
                raise ConfigError(
                    f"model.latent_dim = {self.latent_dim} conflicts with model.latent_dims = "
                    f"{self.latent_dims}: set latent_dims alone for a hierarchical model"
                )
            # latent_dim names the layer next to the data, as in a one-layer model
            object.__setattr__(self, "latent_dim", self.latent_dims[0])
        if self.image_shape is not None:
            if len(self.image_shape) not in (2, 3):
                raise ConfigError(
                    f"model.image_shape = {self.image_shape} is not allowed: "
                    "expected [height, width] or [channels, height, width]"
                )
            if self.data_dim is not None and math.prod(self.image_shape) != self.data_dim:
                raise ConfigError(
                    f"model.image_shape = {self.image_shape} does not hold model.data_dim = "
                    f"{self.data_dim} values"
                )

    def to_dict(self) -> dict:
        values = super().to_dict()
        if self.latent_dims is not None:  # latent_dim is derived then: writing it would pin it
            del values["latent_dim"]
        return values

    @property
    def layers(self) -> tuple[int, ...]:
        """The stochastic layers' sizes, from the data up: (z₁, …, z_L)."""
        return tuple(self.latent_dims) if self.latent_dims is not None else (self.latent_dim,)


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class TrainConfig(_Section):
    """How the objective is optimised, and where the run is written."""

    _key = "train"

    #: passes over the training data
    epochs: PositiveInt = 300
    #: data points per training step
    batch_size: PositiveInt = 100
    #: Adam's learning rate
    lr: PositiveFloat = 1e-3
    #: seeds the initialisation and every draw of training (not the data split: data.split_seed)
    seed: int = 0
    #: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N"
    device: str = "auto"
    #: where the run is written; empty means runs/<data name>-<date>-<time>
    run_dir: str = ""
    #: batch size for the validation ELBO (no gradients, so it can be larger)
    eval_batch_size: PositiveInt = 1000
    #: a wall-clock budget for the training steps, in seconds: training stops at the first
    #: step past it (checked on the host; unset means ``epochs`` alone decides)
    max_seconds: PositiveFloat | None = None

    def check(self) -> None:
        if not _DEVICE.match(self.device):
            raise ConfigError(
                f"train.device = {show(self.device)} is not allowed: "
                'expected "auto", "cpu", "cuda" or "cuda:N"'
            )


@dataclass(frozen=True)
class DataConfig(_Section):
    """What the model is trained on.

    With ``path`` unset, ``name`` picks a built-in dataset (``"digits"``: scikit-learn's
    8×8 handwritten digits). With ``path`` set to a ``.npy``/``.npz`` file, ``name`` is
    only a label for the run.
    """

    _key = "data"

    #: a built-in dataset when path is unset, otherwise the run's label for the data
    name: str = "digits"
    #: a .npy/.npz array file or an IDX file (MNIST's format, gzipped or not)
    path: str | None = None
    #: fraction held out for validation when the data has no validation split of its own
    valid_fraction: Annotated[float, Range(lo=0, hi=1, lo_open=True, hi_open=True)] = 0.1
    #: visit the training points in a new random order every epoch
    shuffle: bool = True
    #: seed of the random training/validation split (apart from train.seed, so that runs with
    #: different seeds are measured on the same validation points)
    split_seed: int = 0
    #: image shape for pictures, e.g. [28, 28]; inferred for square images when unset
    image_shape: tuple[PositiveInt, ...] | None = None
    #: every value is divided by this when loaded: 255 maps 8-bit images to [0, 1]
    divide_by: PositiveFloat = 1.0


@dataclass(frozen=True)
class Config:
    """A whole run: ``Config.load(path)``, ``config.save(path)``, ``config.override(...)``."""

    #: Python files (or importable modules) to import first: where a user registers their own
    #: priors, guides, likelihoods, networks or objectives (``register_prior`` …) to name here;
    #: a relative path is relative to the config file
    plugins: list[str] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: Spec = field(default_factory=lambda: Spec("elbo"))
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self):
        plugins = check_value("plugins", self.plugins, list[str])
        # imported before the sections are checked, since they may name what a plugin registers
        object.__setattr__(self, "plugins", [import_plugin(p) for p in plugins])
        for name, section in (("model", ModelConfig), ("train", TrainConfig), ("data", DataConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, section.from_dict(value))
            elif not isinstance(value, section):
                raise ConfigError(f"[{name}] must be a table, got {value!r}")
        object.__setattr__(self, "objective", Spec.parse(self.objective, "objective", "objective"))

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
        return {
            "plugins": list(self.plugins),
            "model": self.model.to_dict(),
            "objective": self.objective.to_dict(),
            "train": self.train.to_dict(),
            "data": self.data.to_dict(),
        }

    @classmethod
    def load(cls, path) -> "Config":
        """Read a ``.toml`` or ``.json`` file."""
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
                raise ConfigError(
                    f"config file {str(path)!r}: unknown format {path.suffix!r}; allowed: .toml, .json"
                )
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"config file {str(path)!r} is not valid {path.suffix[1:]}: {e}") from None
        if isinstance(values, dict) and isinstance(values.get("plugins"), list):
            values["plugins"] = [
                str((path.parent / p).resolve()) if isinstance(p, str) and p.endswith(".py") else p
                for p in values["plugins"]
            ]
        return cls.from_dict(values)

    def save(self, path) -> None:
        """Write ``.toml`` or ``.json``; ``Config.load`` gives back an equal config."""
        path = Path(path)
        values = _drop_none(self.to_dict())
        if path.suffix == ".json":
            text = json.dumps(values, indent=2) + "\n"
        elif path.suffix == ".toml":
            text = to_toml(values)
        else:
            raise ConfigError(f"cannot save config as {path.suffix!r}; allowed: .toml, .json")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)

    def override(self, overrides: dict[str, Any]) -> "Config":
        """A new config with dotted keys replaced: ``{"train.epochs": 5, "model.prior.kind": "normal"}``.

        String values are read as TOML values where they parse (``"5"`` -> 5,
        ``"[100, 100]"`` -> a list) and kept as strings otherwise, so CLI words work.
        """
        values = self.to_dict()

        def names_a_spec(dotted):
            parts = dotted.replace("-", "_").split(".")
            if parts[-1] == "kind":
                return True
            target = values
            for part in parts:
                if not isinstance(target, dict) or part not in target:
                    return False
                target = target[part]
            return isinstance(target, dict) and "kind" in target

        def wants_str(parts):
            section = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}.get(parts[0])
            if section is None or len(parts) != 2:
                return False
            hint = typing.get_type_hints(section).get(parts[1])
            return hint is str or hint == (str | None)

        # kinds first: a new kind resets its spec, which must not drop options given beside it
        ordered = sorted(overrides.items(), key=lambda kv: not names_a_spec(kv[0]))
        for dotted, raw in ordered:
            parts = dotted.replace("-", "_").split(".")
            if parts[0] not in values:
                raise ConfigError(f"unknown section in --{dotted}; allowed: {', '.join(values)}")
            target = values
            for part in parts[:-1]:
                if not isinstance(target.get(part), dict):
                    raise ConfigError(f"--{dotted}: {part!r} is not a table of options")
                target = target[part]
            leaf = parts[-1]
            if isinstance(target.get(leaf), dict) and "kind" in target[leaf]:
                # a new kind starts from that kind's defaults, not the old kind's options
                value = parse_value(raw)
                if value != target[leaf]["kind"]:
                    target[leaf] = value if isinstance(value, dict) else {"kind": value}
            elif leaf == "kind" and len(parts) > 1:
                value = parse_value(raw)
                if value != target.get("kind"):  # the same kind keeps its options
                    target.clear()
                    target["kind"] = value
            else:
                value = parse_value(raw)
                # a string option keeps a word that TOML reads as a number, bool or date
                target[leaf] = raw if wants_str(parts) and not isinstance(value, str) else value
        return Config.from_dict(values)


def parse_value(raw):
    """Read a CLI word as a TOML value (number, bool, list, inline table), else as a string."""
    if not isinstance(raw, str):
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def to_toml(sections: dict) -> str:
    """Write a config as TOML: top-level keys first, then one table per section, a registry
    choice as an inline table."""
    top = [f"{k} = {toml_value(v)}" for k, v in sections.items() if not isinstance(v, dict)]
    lines = [*top, ""] if top else []
    for section, values in sections.items():
        if isinstance(values, dict):
            lines += [f"[{section}]", *(f"{k} = {toml_value(v)}" for k, v in values.items()), ""]
    return "\n".join(lines)


_PLUGINS: dict[str, object] = {}


def import_plugin(name: str) -> str:
    """Import a user's file (``path/to/file.py``) or module once; return how to find it again.

    A file's path is made absolute, so that a run's saved config still finds it.
    """
    is_file = name.endswith(".py")
    key = str(Path(name).resolve()) if is_file else name
    if key in _PLUGINS:
        return key
    try:
        if is_file:
            if not Path(key).is_file():
                raise ConfigError(f"plugins: {name!r} does not exist")
            spec = importlib.util.spec_from_file_location(f"pyro_vae_plugin_{len(_PLUGINS)}", key)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(name)
    except ConfigError:
        raise
    except Exception as e:  # a user's file may fail in any way: say which file and how
        raise ConfigError(f"plugins: importing {name!r} failed: {type(e).__name__}: {e}") from None
    _PLUGINS[key] = module
    return key


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def _drop_none(values):
    """TOML has no null: an unset optional key is simply left out (and defaults back to None)."""
    if isinstance(values, dict):
        return {k: _drop_none(v) for k, v in values.items() if v is not None}
    return values
