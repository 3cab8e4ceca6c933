"""The sections of a run's config: typed, validated, frozen dataclasses with their defaults.

    [model]       ModelConfig      what p(z), p(x|z) and q(z|x) are
    [train]       TrainConfig      how long, how fast, where
    [data]        DataConfig       what it is trained on

(the ``[objective]`` section is a :class:`~pyro_vae.core.registry.Spec` of itself). Parts chosen
from a registry (prior, likelihood, guide, encoder, decoder, inner) are a ``Spec``: a
``kind`` plus that entry's own options, written in TOML as ``prior = { kind = "normal" }``.
Every option has a default here, so a file names only what it changes. Validation is pure:
no files are read, no plugins imported, no devices probed; an error names the key, the bad
value and what is allowed. Reading and writing files is :mod:`pyro_vae.config.run_config`'s.
"""

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Annotated, Literal

from pyro_vae.config.graph import parse_variables
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import PositiveFloat, PositiveInt, Range, check_value, plain, show
from pyro_vae.core.registry import GUIDES, Spec


def spec(family: str, kind: str, **params):
    """A dataclass field holding a registry choice of ``family``, default ``kind(**params)``."""
    return field(default_factory=lambda: Spec(kind, dict(params)), metadata={"family": family})


class _Section:
    """Validation shared by the section dataclasses below.

    ``__post_init__`` checks and normalises every field (a registry choice becomes a
    :class:`Spec` holding all of its options), so a section built in Python is the same
    object as one loaded from a file. It only reads its arguments.
    """

    _key = ""
    # set by @dataclass on each subclass; declared so that dataclasses.fields() accepts a _Section
    __dataclass_fields__: typing.ClassVar[dict[str, dataclasses.Field[typing.Any]]]

    def __post_init__(self):
        hints = typing.get_type_hints(type(self), include_extras=True)
        for f in dataclasses.fields(self):
            key = f"{self._key}.{f.name}"
            value = getattr(self, f.name)
            family, hint = f.metadata.get("family"), hints[f.name]
            if family:
                value = None if value is None else Spec.parse(value, family, key)
            elif isinstance(hint, type) and issubclass(hint, _Section):  # a table of its own
                value = value if isinstance(value, hint) else hint.from_dict(value)
            else:
                value = plain(check_value(key, value, hint))
            object.__setattr__(self, f.name, value)
        self.check()

    @classmethod
    def from_dict(cls, values: dict):
        where = cls._key if "." in cls._key else f"[{cls._key}]"  # a table inside a section, or one
        if not isinstance(values, dict):
            raise ConfigError(f"{where} must be a table, got {values!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in values if k not in names]
        if unknown:
            raise ConfigError(f"unknown key {cls._key}.{unknown[0]}; allowed in {where}: {', '.join(names)}")
        return cls(**values)

    def check(self) -> None:
        """Checks across fields; overridden where a section has them."""

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Spec | _Section) else plain(value)
        return out


#: the size of the latent code when neither model.latent_dim nor model.latent_dims is given
DEFAULT_LATENT_DIM = 2

#: [height, width] or [channels, height, width] of image data: model.image_shape and
#: data.image_shape are this one type, checked by :func:`check_image_shape`
ImageShape = list[PositiveInt]


def check_image_shape(key: str, shape: ImageShape | None) -> None:
    """An image shape has two or three sizes; ``key`` names the config key in the error."""
    if shape is not None and len(shape) not in (2, 3):
        raise ConfigError(f"{key} = {show(shape)} is not allowed: expected [H, W] or [C, H, W]")


def same_images(a: ImageShape, b: ImageShape) -> bool:
    """Whether two image shapes describe the same images: [H, W] is [1, H, W], one grey channel
    (as the networks read a two-size shape and the data drop a single channel)."""

    def channels_first(shape):
        return tuple(shape) if len(shape) == 3 else (1, *shape)

    return channels_first(a) == channels_first(b)


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The generative model p(z) p_θ(x|z) and the amortized guide q_φ(z|x)."""

    _key = "model"

    #: size of the latent code z; unset means 2, or the first of latent_dims when they are set
    #: (given with them, it must equal their first)
    latent_dim: PositiveInt | None = None
    #: sizes of stacked stochastic layers z₁ (next to the data) … z_L (under the prior), e.g.
    #: [100, 50]: a hierarchical model z_L → … → z₁ → x; unset means one layer of latent_dim
    latent_dims: list[PositiveInt] | None = None
    #: filled in from the data when training; needed to build a VAE by hand
    data_dim: PositiveInt | None = None
    #: [height, width] or [channels, height, width] of image data, filled in from the data when
    #: training (data.image_shape; given here too, it must agree); networks that see images
    #: (conv) need it
    image_shape: ImageShape | None = None
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
    #: a model declared as a graph of named variables, in place of the keys above (which then
    #: keep their defaults): ``[model.variables.NAME]``, see pyro_vae.config.graph
    variables: typing.Any = None
    #: a user's own Pyro program, registered with pyro_vae.register_program, in place of the
    #: keys above: { kind = "NAME", option = ... }; see pyro_vae.models.programs
    program: Spec | None = field(default=None, metadata={"family": "program"})

    def check(self) -> None:
        if getattr(GUIDES.get(self.guide.kind), "discrete", False):
            raise ConfigError(
                f"model.guide.kind = {show(self.guide.kind)} draws a class, for a discrete variable of a "
                "graph (model.variables); z is continuous: use a guide with a density on it"
            )
        if self.variables is not None and self.program is not None:
            raise ConfigError("model.variables and model.program both declare the model: give one")
        if self.variables is not None:
            object.__setattr__(self, "variables", parse_variables(self.variables))
        if self.variables is not None or self.program is not None:
            self._check_graph_alone()
        object.__setattr__(self, "latent_dim", self._latent_dim())
        check_image_shape("model.image_shape", self.image_shape)
        if self.image_shape and self.data_dim and math.prod(self.image_shape) != self.data_dim:
            raise ConfigError(
                f"model.image_shape = {self.image_shape} does not hold model.data_dim = "
                f"{self.data_dim} values"
            )

    def _latent_dim(self) -> int:
        """latent_dim as given, else the default; with latent_dims, their first (the layer next
        to the data, as in a one-layer model), which a given latent_dim must equal."""
        if self.latent_dims is None:
            return DEFAULT_LATENT_DIM if self.latent_dim is None else self.latent_dim
        if not self.latent_dims:
            raise ConfigError("model.latent_dims = [] is not allowed: give at least one layer size")
        if self.latent_dim not in (None, self.latent_dims[0]):
            raise ConfigError(
                f"model.latent_dim = {self.latent_dim} conflicts with model.latent_dims = "
                f"{show(self.latent_dims)}: set latent_dims alone for a hierarchical model"
            )
        return self.latent_dims[0]

    def _check_graph_alone(self) -> None:
        """A graph or a program is the whole model: the one-layer model's keys keep their defaults."""
        preset = ("latent_dim", "latent_dims", "prior", "likelihood", "encoder", "decoder", "guide", "inner")
        default = ModelConfig()
        for name in preset:
            if name == "latent_dim" and self.latent_dim in (None, DEFAULT_LATENT_DIM):
                continue
            if getattr(self, name) != getattr(default, name):
                by = "model.variables" if self.variables is not None else "model.program"
                raise ConfigError(
                    f"model.{name} has no effect on a model declared by {by}: declare it there "
                    f"(a variable's family, size or network; a program's options), or leave {by} out"
                )

    def to_dict(self) -> dict:
        values = super().to_dict()
        if self.variables is not None:
            graph = {"variables": {n: v.to_dict() for n, v in self.variables.items()}}
            return {k: v for k, v in values.items() if k in ("data_dim", "image_shape")} | graph
        if self.program is not None:
            return {k: v for k, v in values.items() if k in ("data_dim", "image_shape", "program")}
        del values["variables"], values["program"]
        if self.latent_dims is not None:  # latent_dim is derived then: writing it would pin it
            del values["latent_dim"]
        return values

    @property
    def layers(self) -> tuple[int, ...]:
        """The stochastic layers' sizes, from the data up: (z₁, …, z_L)."""
        if self.latent_dims is not None:
            return tuple(self.latent_dims)
        return (typing.cast(int, self.latent_dim),)  # never None once checked


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Every(_Section):
    """How often checkpoint.pt is written: every so many epochs and/or seconds, whichever comes
    first; in TOML ``{ epochs = 10 }``, ``{ seconds = 60.0 }`` or both."""

    _key = "train.checkpoint_every"

    #: passes over the training data between checkpoints
    epochs: PositiveInt | None = None
    #: wall-clock seconds between checkpoints
    seconds: PositiveFloat | None = None

    def check(self) -> None:
        if self.epochs is None and self.seconds is None:
            raise ConfigError(
                f"{self._key} = {show(self.to_dict())} is not allowed: "
                "give epochs, seconds or both, e.g. { epochs = 10 }"
            )

    def to_dict(self) -> dict:
        return {k: v for k, v in super().to_dict().items() if v is not None}


@dataclass(frozen=True)
class TrainConfig(_Section):
    """How the objective is optimised, and where the run is written."""

    _key = "train"

    #: passes over the training data
    epochs: PositiveInt = 300
    #: data points per training step: the global minibatch, which several processes share
    batch_size: PositiveInt = 100
    #: Adam's learning rate (at the start, when a schedule changes it)
    lr: PositiveFloat = 1e-3
    #: how the learning rate changes from epoch to epoch: constant, exponential, step, cosine or
    #: burda (Burda et al. 2016: 3^i epochs at lr·10^(-i/7)); see pyro_vae.training.schedules
    lr_schedule: Spec = spec("lr_schedule", "constant")
    #: clip the gradient to this Euclidean norm before each update (unset: no clipping)
    clip_norm: PositiveFloat | None = None
    #: stop when the validation ELBO has not improved for this many epochs (unset: never)
    patience: PositiveInt | None = None
    #: write checkpoint.pt every so many epochs and/or seconds, whichever comes first (also
    #: after the first epoch, on an interrupt and at the end), e.g. { epochs = 10 }
    checkpoint_every: Every = Every(seconds=60.0)
    #: experiment trackers that also receive every epoch's metrics and the figures:
    #: "tensorboard", "mlflow" (optional extras; see pyro_vae.training.loggers)
    loggers: list[str] = field(default_factory=list)
    #: seeds the initialisation, the data order and every draw of training (not the data
    #: split: data.split_seed)
    seed: Annotated[int, Range(lo=0, hi=2**32 - 1)] = 0
    #: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N"; under torchrun, "cuda" is each
    #: process's own GPU (cuda:LOCAL_RANK)
    device: str = "auto"
    #: how several processes (torchrun) talk: "auto" (nccl for CUDA, gloo for the CPU), "gloo"
    #: or "nccl"
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    #: run the training step as a captured graph (pyro_vae.training.compiled): "auto" decides from
    #: the config (a cost model of the eager step over the planned steps, no clock): it compiles a
    #: run whose steps would take 2 minutes or more, replays the graph (bit for bit the eager step)
    #: for one of 10 s or more, and trains eager, saying why, where the step cannot be captured; a
    #: resumed run keeps its path; true compiles or fails with the reason; false runs Pyro's
    #: program every step
    compile: Literal["auto"] | bool = "auto"
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
    8×8 handwritten digits) or one fetched into the user's cache on first use
    (``"binarized_mnist"``, ``"mnist"`` ...; ``pyro-vae data list``). With ``path`` set to a
    ``.npy``/``.npz`` file, ``name`` is only a label for the run.
    """

    _key = "data"

    #: a built-in or fetched dataset when path is unset, otherwise the run's label for the data
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
    #: image shape for pictures, e.g. [28, 28]; inferred for square images when unset; the
    #: run's model.image_shape follows it
    image_shape: ImageShape | None = None
    #: every value is divided by this when loaded: 255 maps 8-bit images to [0, 1]
    divide_by: PositiveFloat = 1.0
    #: "none": the values as loaded; "dynamic": grey values in [0, 1] are the probabilities of
    #: a 1, and every epoch trains on a fresh Bernoulli draw of each training point (Burda et
    #: al. 2016), keyed by (train.seed, epoch, point); the validation and test points, and the
    #: training points that pictures and the training ELBO show, are one draw fixed by
    #: data.split_seed
    binarize: Literal["none", "dynamic"] = "none"
    #: a semi-supervised run: keep this many training labels, balanced over the classes and
    #: chosen by data.split_seed, and hide the others from training (unset: every label is kept)
    labels: PositiveInt | None = None
    #: with data.labels: the labelled rows are repeated so that they make up about this share of
    #: the training rows each epoch, as Kingma et al. (2014) draw labelled points into every
    #: minibatch (unset: each row once, so that 100 labels among 54 000 rows are rarely seen;
    #: without data.labels every row is labelled, and nothing is repeated)
    labelled_share: Annotated[float, Range(lo=0, hi=1, lo_open=True, hi_open=True)] | None = None

    @property
    def label(self) -> str:
        """What the run calls its data: ``name``, or with ``path`` set and ``name`` left at its
        default, the file's name (so a run on a file does not say it trains on the digits)."""
        if self.path is None or self.name != "digits":
            return self.name
        return PurePath(self.path).name

    def check(self) -> None:
        check_image_shape("data.image_shape", self.image_shape)
