"""A model declared as a graph of named variables, and its guide: ``[model.variables.NAME]`` and
``[guide.NAME]``.

Each variable of the model has a ``family`` (a registered conditional distribution), a ``size``
(or ``classes`` for a discrete one), the variables it is ``given`` (its parents) and the
``network`` from their values to the family's parameters. A variable may be bound to the data:
``data = "x"`` (the data point), ``"label"`` (the dataset's label) or a fixed part of an image
(``"x.top"``, ``"x.bottom"``, ``"x.left"``, ``"x.right"`` and the quadrants ``"x.top_left"`` …).
A bound variable with a family is observed (a label is latent where the row has none); one
without a family is an input, only conditioned on. Every other variable is a latent, and the
guide draws it from ``[guide.NAME]``: its ``family``, ``given`` and ``network``. Leaving
``[guide]`` out gives every latent the defaults (the family's default guide, amortized on every
variable bound to data); a ``[guide]`` given names every latent. For the semi-supervised M2
(Kingma et al. 2014)::

    [model.variables.y]            # the class: observed where labelled, summed where not
    family = "categorical"
    classes = 10
    data = "label"
    [model.variables.z]            # the style
    family = "normal"
    size = 32
    [model.variables.x]            # the image, given both
    family = "bernoulli"
    given = ["y", "z"]
    data = "x"
    [guide.y]
    given = ["x"]
    [guide.z]
    given = ["x", "y"]

What is checked here needs no registry of networks or data: a cycle, an unknown parent, a latent
without a guide, sizes that are missing or given twice. What needs the parts (a network's output
against its family) and the data (labels on unlabelled data) is checked when the model is built.
"""

import dataclasses
from dataclasses import dataclass, field

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import PositiveInt, check_value, show
from pyro_vae.core.registry import Spec

#: what a variable may be bound to: the data point, its label, or a fixed part of an image
PARTS = ("top", "bottom", "left", "right", "top_left", "top_right", "bottom_left", "bottom_right")
BINDINGS = ("x", "label", *(f"x.{p}" for p in PARTS))

#: the families whose values are a class among ``classes`` (their guides are discrete too)
DISCRETE = ("categorical",)

#: the network from parents to a family's (or guide's) parameters where a variable names none
DEFAULT_NETWORK = {"kind": "mlp", "hidden": [256, 256], "activation": "tanh"}


def _names(key: str, value) -> list[str]:
    return list(check_value(key, value, list[str]))


@dataclass(frozen=True)
class Variable:
    """One variable of the model, ``[model.variables.NAME]``: drawn from its ``family`` given the
    variables it is ``given``; bound to data, it is observed (or an input, without a family);
    otherwise it is a latent, which the guide draws (``[guide.NAME]``)."""

    #: a registered family (``"normal"``, ``"bernoulli"``, ``"categorical"`` …); unset for an input
    family: Spec | None = None
    #: values per draw of a continuous latent; a bound variable's size comes from the data
    size: PositiveInt | None = None
    #: the number of classes of a discrete variable
    classes: PositiveInt | None = None
    #: the variables it depends on (empty: a root, drawn from the family's own prior)
    given: list[str] = field(default_factory=list)
    #: from the parents' values to the family's parameters (default: an MLP)
    network: Spec | None = None
    #: what of the data it is bound to: "x" (the data point), "label" (its class: observed where
    #: known, a latent where hidden), or a part of an image: "x.top", "x.bottom", "x.left",
    #: "x.right", "x.top_left", "x.top_right", "x.bottom_left", "x.bottom_right"
    data: str | None = None

    @classmethod
    def parse(cls, name: str, values, where: str = "model.variables") -> "Variable":
        key = f"{where}.{name}"
        values = _table(key, values, cls)
        family = values.get("family")
        given = _names(f"{key}.given", values.get("given", []))
        network = values.get("network", DEFAULT_NETWORK if given and family is not None else None)
        out = cls(
            family=None if family is None else Spec.parse(family, "family", f"{key}.family"),
            size=check_value(f"{key}.size", values.get("size"), PositiveInt | None),
            classes=check_value(f"{key}.classes", values.get("classes"), PositiveInt | None),
            given=given,
            network=_network(network, f"{key}.network"),
            data=check_value(f"{key}.data", values.get("data"), str | None),
        )
        out._check(key)
        return out

    def _check(self, key: str) -> None:
        if self.data is not None and self.data not in BINDINGS:
            raise ConfigError(
                f"{key}.data = {show(self.data)} is not allowed: "
                f"expected one of {', '.join(map(show, BINDINGS))}"
            )
        if self.family is None and self.data is None:
            raise ConfigError(f"{key} has no family: give one (a latent), or bind it to data (an input)")
        if self.family is None and (self.given or self.network is not None):
            raise ConfigError(
                f"{key} is an input (no family): it is given by the data, not by {show(self.given)}"
            )
        discrete = self.family is not None and self.family.kind in DISCRETE
        if discrete and self.classes is None and self.data != "label":
            raise ConfigError(f"{key}.classes must be given for family {show(self.family.kind)}")  # type: ignore[union-attr]
        if not discrete and self.classes is not None and self.data != "label":
            raise ConfigError(
                f"{key}.classes is only for a discrete family ({', '.join(map(show, DISCRETE))})"
            )
        if self.data is not None and self.size is not None:
            raise ConfigError(
                f"{key}.size is given by the data it is bound to ({show(self.data)}); leave it out"
            )
        if self.data is None and not discrete and self.size is None:
            raise ConfigError(f"{key}.size must be given: how many values z has")
        if self.data == "label" and self.family is not None and not discrete:
            raise ConfigError(
                f"{key} is bound to the label: its family must be discrete ({', '.join(DISCRETE)})"
            )

    @property
    def latent(self) -> bool:
        """Drawn by the guide: modelled and not bound to data (a label is latent where hidden)."""
        return self.family is not None and self.data in (None, "label")

    @property
    def discrete(self) -> bool:
        return self.family is not None and self.family.kind in DISCRETE

    def to_dict(self) -> dict:
        out: dict = {}
        if self.family is not None:
            out["family"] = self.family.to_dict()
        for name in ("size", "classes", "data"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out["given"] = list(self.given)
        if self.network is not None:
            out["network"] = self.network.to_dict()
        return out


@dataclass(frozen=True)
class GuideVariable:
    """How the guide draws one latent: ``[guide.NAME]``."""

    #: a registered guide (``"normal"``, ``"full_normal"``, ``"iaf"``, ``"categorical"`` …);
    #: unset: ``"categorical"`` for a discrete latent, ``"normal"`` otherwise
    family: Spec | None = None
    #: the variables q is amortized on: bound variables, and latents the guide draws before it;
    #: unset: every variable bound to data
    given: list[str] | None = None
    #: from the given values to the guide's parameters (default: an MLP)
    network: Spec | None = None

    @classmethod
    def parse(cls, name: str, values) -> "GuideVariable":
        key = f"guide.{name}"
        values = _table(key, values, cls)
        family = values.get("family")
        given = values.get("given")
        return cls(
            family=None if family is None else Spec.parse(family, "guide", f"{key}.family"),
            given=None if given is None else _names(f"{key}.given", given),
            network=_network(values.get("network"), f"{key}.network"),
        )

    def to_dict(self) -> dict:
        out: dict = {}
        if self.family is not None:
            out["family"] = self.family.to_dict()
        if self.given is not None:
            out["given"] = list(self.given)
        if self.network is not None:
            out["network"] = self.network.to_dict()
        return out


def _table(key: str, values, cls) -> dict:
    if isinstance(values, cls):
        return {f.name: getattr(values, f.name) for f in dataclasses.fields(cls)}
    if not isinstance(values, dict):
        raise ConfigError(f"{key} must be a table, got {show(values)}")
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in allowed]
    if unknown:
        raise ConfigError(f"unknown key {key}.{unknown[0]}; allowed: {', '.join(allowed)}")
    return values


def _network(value, key: str) -> Spec | None:
    return None if value is None else Spec.parse(value, "network", key)


def parse_variables(values) -> dict[str, Variable] | None:
    if values is None:
        return None
    if not isinstance(values, dict) or not values:
        raise ConfigError(f"model.variables = {show(values)} is not allowed: expected a table of variables")
    return {name: Variable.parse(name, v) for name, v in values.items()}


def parse_guide(values) -> dict[str, GuideVariable]:
    if not isinstance(values, dict):
        raise ConfigError(f"[guide] must be a table of latent variables, got {show(values)}")
    return {name: GuideVariable.parse(name, v) for name, v in values.items()}


def measured(variables: dict[str, Variable] | None) -> str:
    """What a model's bounds and estimates are of, in words: ``log p(x)``, or for a graph with
    inputs ``log p(bottom | top)``."""
    if variables is None:
        return "log p(x)"
    observed = [n for n, v in variables.items() if v.family is not None and v.data not in (None, "label")]
    inputs = [n for n, v in variables.items() if v.family is None]
    return f"log p({', '.join(observed)}" + (f" | {', '.join(inputs)})" if inputs else ")")


def topological(parents: dict[str, list[str]], where: str) -> list[str]:
    """The names in an order where each comes after its parents (declaration order otherwise),
    or one line naming a cycle."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            cycle = [*path[path.index(name) :], name]
            raise ConfigError(f"{where} has a cycle: {' -> '.join(cycle)}")
        state[name] = "open"
        for parent in parents[name]:
            visit(parent, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in parents:
        visit(name, [])
    return order


def check_graph(variables: dict[str, Variable], guide: dict[str, GuideVariable]) -> dict[str, GuideVariable]:
    """Check the model's graph and its guide against each other; return the guide with every
    default filled in (what the run's config records)."""
    for name, v in variables.items():
        for parent in v.given:
            if parent not in variables:
                raise ConfigError(
                    f"model.variables.{name}.given names {show(parent)}, which is not a variable; "
                    f"declared: {', '.join(variables)}"
                )
            if parent == name:
                raise ConfigError(f"model.variables has a cycle: {name} -> {name}")
    model_order = topological({n: v.given for n, v in variables.items()}, "model.variables")
    if not any(v.family is not None and v.data is not None for v in variables.values()):
        raise ConfigError("model.variables has no variable bound to data with a family: nothing is observed")
    latents = [n for n in model_order if variables[n].latent]
    bound = [n for n, v in variables.items() if v.data is not None and v.data != "label"]
    labels = [n for n, v in variables.items() if v.data == "label"]
    if guide:
        for name in guide:
            if name not in variables:
                raise ConfigError(
                    f"guide.{name} is not a variable of the model; its latents: {', '.join(latents)}"
                )
            if not variables[name].latent:
                raise ConfigError(
                    f"guide.{name}: {name} is bound to data ({variables[name].data}), so it needs no guide"
                )
        missing = [n for n in latents if n not in guide]
        if missing:
            raise ConfigError(
                f"model.variables.{missing[0]} is a latent without a guide: add [guide.{missing[0]}] "
                "(an empty table takes the defaults), or leave [guide] out for the defaults of every latent"
            )
    filled = {}
    for name in latents:
        g = guide.get(name, GuideVariable())
        family = g.family or Spec.parse(
            "categorical" if variables[name].discrete else "normal", "guide", f"guide.{name}.family"
        )
        given = (
            list(g.given)
            if g.given is not None
            else [*bound, *(n for n in labels if variables[n].family is None)]
        )
        for parent in given:
            if parent not in variables:
                raise ConfigError(
                    f"guide.{name}.given names {show(parent)}, which is not a variable of the model"
                )
            if parent == name:
                raise ConfigError(f"guide.{name}.given names {name} itself")
        network = g.network or Spec.parse(DEFAULT_NETWORK, "network", f"guide.{name}.network")
        filled[name] = GuideVariable(family=family, given=given, network=network)
    guide_parents = {n: [p for p in g.given if p in filled] for n, g in filled.items()}  # type: ignore[union-attr]
    topological(guide_parents, "[guide]")
    return filled
