"""The Pyro programs of a declared graph (:mod:`pyro_vae.config.graph`).

For variables v in an order where parents come first, the model is, for each data row n::

    v_n ~ p_θ(v | pa(v)_n)                    a site named v in the plate "data"

observed where v is bound to data, latent otherwise, with p(v | ∅) the family's root (N(0, I),
a uniform class). The guide draws the latents in its own order::

    v_n ~ q_φ(v | given(v)_n)

A variable bound to ``"label"`` is observed where the row has a label and latent where it does
not: the guide's q(y | ·) is then the point mass at the label on labelled rows, so every bound
and estimator measures log p(x, y) there and log p(x) = log Σ_y p(x, y) elsewhere (Kingma et
al. 2014, "Semi-supervised learning with deep generative models", eqs. 6–7). On labelled
rows the model also carries Kingma's classification term log q_φ(y | x) (their eq. 9) as a
factor whose value is 0 and whose gradient is the term's, so that it trains q(y|x) and is
never part of any reported bound; the objective's ``classify`` option is its weight α
(:mod:`pyro_vae.inference.objectives.modifiers`).

A network reads its parents' values joined along their last dimension (a class one-hot), after
broadcasting their leading dimensions (particles, enumerated classes) against each other.
"""

import math
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.config.graph import GuideVariable, Variable, measured, topological
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import show
from pyro_vae.core.registry import FAMILIES, GUIDES, NETWORKS
from pyro_vae.models.graph.bindings import label_column, part_columns
from pyro_vae.models.graph.families import classes, features

#: the ``infer`` key that marks a model site as an auxiliary training term (value 0, never in a bound)
AUXILIARY = "pyro_vae_auxiliary"


def joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """Tensors ``(..., F_i)`` broadcast over their leading dimensions and joined: ``(..., ΣF_i)``."""
    if len(parts) == 1:
        return parts[0]
    lead = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return torch.cat([p.expand(*lead, p.shape[-1]) for p in parts], dim=-1)


class GraphProgram(nn.Module):
    """A model and its guide built from declared variables; ``model(row)``, ``guide(row)``.

    :param data_dim: values per data point (the row's first ``data_dim`` columns).
    :param image_shape: the images' shape, for parts of an image and convolutional networks.
    :param label_classes: the number of classes of the data's labels, for variables bound to
        ``"label"`` that do not give ``classes``.
    """

    def __init__(
        self,
        variables: dict[str, Variable],
        guide: dict[str, GuideVariable],
        *,
        data_dim: int,
        image_shape: tuple[int, ...] | None = None,
        label_classes: int | None = None,
    ):
        super().__init__()
        self.variables, self.guide_spec = variables, guide
        self.data_dim, self.image_shape = data_dim, image_shape
        self.order = topological({n: v.given for n, v in variables.items()}, "model.variables")
        self.guide_order = topological(
            {n: [p for p in g.given or [] if p in guide] for n, g in guide.items()}, "[guide]"
        )
        self.sizes = {n: self._size(n, v, label_classes) for n, v in variables.items()}
        self.families = nn.ModuleDict()
        self.nets = nn.ModuleDict()
        width: dict[str, int] = {}  # how many numbers a network reads from each variable
        for name in self.order:
            v = self.variables[name]
            if v.family is None:
                width[name] = self.sizes[name]  # an input: its values, a label one-hot
                continue
            part = FAMILIES.get(v.family.kind)(self.sizes[name], **v.family.params)
            self.families[name] = part
            width[name] = features(part, self.sizes[name])
            if v.given:
                self.nets[name] = self._network(f"model.variables.{name}", v, width, part.param_features)
            elif not hasattr(part, "root"):
                raise ConfigError(
                    f"model.variables.{name} has no parents (given = []) and family "
                    f'"{v.family.kind}" has no distribution without them: give it parents'
                )
        self.q = nn.ModuleDict()
        self.q_nets = nn.ModuleDict()
        for name in self.guide_order:
            self._guide_part(name, width)
        for name, columns in self._columns().items():
            self.register_buffer(f"columns_{name}", columns, persistent=False)

    @classmethod
    def from_config(cls, model, guide: dict[str, GuideVariable]) -> "GraphProgram":
        """The programs of a resolved ``[model]`` (``model.data_dim`` filled in) and ``[guide]``."""
        if model.data_dim is None:
            raise ConfigError("model.data_dim is not set: give the number of values per data point")
        image = tuple(model.image_shape) if model.image_shape else None
        return cls(model.variables, guide, data_dim=model.data_dim, image_shape=image)

    @property
    def label_variable(self) -> str | None:
        """The variable bound to ``"label"``, if any."""
        return next((n for n, v in self.variables.items() if v.data == "label"), None)

    @property
    def models_label(self) -> bool:
        """Whether the label is modelled (observed where known, latent where hidden), not an input."""
        name = self.label_variable
        return name is not None and self.variables[name].family is not None

    @property
    def measured(self) -> str:
        """What the bounds and estimates of this graph are of: ``log p(x)``, ``log p(bottom | top)``."""
        return measured(self.variables)

    @torch.no_grad()
    def initialize(self, row: torch.Tensor) -> None:
        """Give each observed variable's family that defines ``initialize`` its training values
        (a learned σ starts at the data's spread), as the VAE does its parts."""
        values = self.bound_values(row)
        for name, v in self.variables.items():
            part = self.families[name] if name in self.families else None  # noqa: SIM401 (a ModuleDict)
            start = getattr(part, "initialize", None)
            if start is not None and not v.latent:
                start(values[name])

    def check_data(self, row: torch.Tensor, name: str) -> None:
        """Each observed variable's family checks its values (a Bernoulli's are 0 or 1)."""
        values = self.bound_values(row)
        for var, v in self.variables.items():
            part = self.families[var] if var in self.families else None  # noqa: SIM401 (a ModuleDict)
            check = getattr(part, "check_data", None)
            if check is not None and not v.latent:
                check(values[var], f"{name} ({var}, bound to {v.data})")

    def classifier(self, row: torch.Tensor) -> torch.Tensor | None:
        """The logits of q(y | ·) for the variable bound to the label, where its guide reads only
        bound variables: ``(B, C)``; None otherwise."""
        name = self.label_variable
        if name is None or name not in self.q_nets:
            return None
        if any(p in self.guide_spec for p in self.guide_spec[name].given or []):
            return None
        return self.q_params(name, self.bound_values(row))

    # -- building ------------------------------------------------------------------------------

    def _size(self, name: str, v: Variable, label_classes: int | None) -> int:
        if v.data == "x":
            return self.data_dim
        if v.data == "label":
            if v.classes is None and label_classes is None:
                raise ConfigError(f'model.variables.{name} is bound to "label", but the data have no labels')
            return v.classes or label_classes  # type: ignore[return-value]
        if v.data is not None:
            return len(part_columns(v.data[2:], self.image_shape, self.data_dim))
        return v.classes if v.discrete else v.size  # type: ignore[return-value]

    def _columns(self) -> dict[str, torch.Tensor]:
        return {
            n: part_columns(v.data[2:], self.image_shape, self.data_dim)
            for n, v in self.variables.items()
            if v.data is not None and v.data.startswith("x.")
        }

    def _network(self, key: str, decl, width: dict[str, int], out: int) -> nn.Module:
        spec = decl.network  # filled in by the config (pyro_vae.config.graph.DEFAULT_NETWORK)
        given = list(decl.given)
        n_in: int | tuple[int, ...] = sum(width[p] for p in given)
        if given == [self.image_variable()] and self.image_shape is not None:
            n_in = self._image()
        n_out: int | tuple[int, ...] = out
        if isinstance(decl, Variable) and decl.data == "x" and self.image_shape is not None:
            per_value, rest = divmod(out, self.data_dim)
            image = self._image()
            n_out = (per_value * image[0], *image[1:]) if rest == 0 else out
        words = f"{key}.network = {show(spec.to_dict())}"
        try:
            net = NETWORKS.get(spec.kind, key=f"{key}.network.kind")(n_in, n_out, **spec.params)
            with torch.no_grad():  # one row through it: does its output fit the family?
                probe = net(torch.zeros(1, math.prod(n_in) if isinstance(n_in, tuple) else n_in))
        except (ValueError, TypeError, RuntimeError) as e:
            raise ConfigError(f"{words} cannot read its inputs ({n_in}): {str(e).splitlines()[0]}") from None
        if probe[0].numel() != out:
            raise ConfigError(f"{words} gives {probe[0].numel()} numbers per point; its family needs {out}")
        return net

    def _image(self) -> tuple[int, ...]:
        shape = tuple(self.image_shape)  # type: ignore[arg-type]
        return shape if len(shape) == 3 else (1, *shape)

    def image_variable(self) -> str | None:
        return next((n for n, v in self.variables.items() if v.data == "x"), None)

    def _guide_part(self, name: str, width: dict[str, int]) -> None:
        g, v = self.guide_spec[name], self.variables[name]
        assert g.family is not None and g.given is not None  # filled in by check_graph
        q = GUIDES.get(g.family.kind, key=f"guide.{name}.family.kind")(self.sizes[name], **g.family.params)
        if (classes(q) is not None) != v.discrete:
            kind = "discrete" if v.discrete else "continuous"
            raise ConfigError(
                f'guide.{name}.family = "{g.family.kind}" does not fit {name}, a {kind} variable: use '
                + ('"categorical"' if v.discrete else '"normal", "full_normal" or "iaf"')
            )
        self.q[name] = q
        self.q_nets[name] = self._network(f"guide.{name}", g, width, q.param_features)

    # -- the programs --------------------------------------------------------------------------

    def bound_values(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """The values of the variables bound to data: ``(B, size)`` each (a label one-hot, zeros
        where hidden)."""
        values = {}
        for name, v in self.variables.items():
            if v.data == "x":
                values[name] = row[..., : self.data_dim]
            elif v.data == "label":
                label = label_column(row, self.data_dim)
                values[name] = nn.functional.one_hot(label.clamp(min=0), self.sizes[name]).to(row.dtype)
                values[name] = values[name] * (label >= 0).unsqueeze(-1).to(row.dtype)
            elif v.data is not None:
                values[name] = row[..., getattr(self, f"columns_{name}")]
        return values

    def model(self, row: torch.Tensor) -> None:
        values = self.bound_values(row)
        with pyro.plate("data", row.shape[0], device=row.device):  # type: ignore[arg-type]
            for name in self.order:
                v = self.variables[name]
                if v.family is None:
                    continue
                part: Any = self.families[name]  # a family: forward(params) and root()
                d = part(self.nets[name](joined([values[p] for p in v.given]))) if v.given else part.root()
                if v.latent:
                    values[name] = pyro.sample(name, d)
                else:
                    pyro.sample(name, d, obs=values[name])
            self._classify(row, values)

    def guide(self, row: torch.Tensor) -> None:
        values = self.bound_values(row)
        with pyro.plate("data", row.shape[0], device=row.device):  # type: ignore[arg-type]
            for name in self.guide_order:
                out = self.q_params(name, values)
                if self.variables[name].data == "label":
                    out = at_label(out, label_column(row, self.data_dim))
                q = self.q[name]
                infer: Any = dict(getattr(q, "infer", {}))  # Pyro types infer as its InferDict
                values[name] = pyro.sample(name, q(out), infer=infer)

    def q_params(self, name: str, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.q_nets[name](joined([values[p] for p in self.guide_spec[name].given or []]))

    def _classify(self, row: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        """Kingma's term log q(y | x) on labelled rows, as a factor of value 0 (module docstring)."""
        for name, v in self.variables.items():
            given = self.guide_spec[name].given if name in self.guide_spec else None
            if v.data != "label" or v.family is None or any(p in self.guide_spec for p in given or []):
                continue  # a label the guide infers from other latents has no classifier to train
            label = label_column(row, self.data_dim)
            log_q = torch.log_softmax(self.q_params(name, values), -1)  # (B, C)
            term = log_q.gather(-1, label.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (label >= 0)
            pyro.sample(
                f"{name}.classify",
                dist.Unit(term - term.detach(), has_rsample=True),
                obs=term.new_empty((*term.shape, 0)),
                infer={AUXILIARY: True},  # type: ignore[arg-type]  # a key of pyro-vae's own
            )


def at_label(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Logits of q(y | ·) made the point mass at the label where a row has one (≥ 0)."""
    point = torch.full_like(logits, -torch.inf).scatter(-1, label.clamp(min=0).unsqueeze(-1), 0.0)
    return torch.where((label >= 0).unsqueeze(-1), point, logits)
