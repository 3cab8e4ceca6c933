"""The variational autoencoder as a pair of Pyro programs.

Generative model (``VAE.model``), for each data point n in the plate ``"data"``::

    z_n ~ p(z)                          site "z"
    x_n ~ p_θ(x | z_n)                  site "x", observed

Amortized guide (``VAE.guide``)::

    z_n ~ q_φ(z | x_n)                  site "z"

With ``latent_dims = [d₁, …, d_L]`` the model stacks L stochastic layers, sites
``"z1"`` … ``"zL"`` (Burda, Grosse & Salakhutdinov 2016, "Importance Weighted
Autoencoders", section 5; the two-layer models of their Table 1)::

    model:  z_L ~ p(z_L),  z_l ~ N(μ_θ(z_{l+1}), diag σ_θ(z_{l+1})²),  x ~ p_θ(x | z₁)
    guide:  z₁ ~ q_φ(z₁ | x),  z_{l+1} ~ q_φ(z_{l+1} | z_l)

so that p(x, z) = p(z_L) Π_l p(z_l | z_{l+1}) p(x | z₁) and q(z|x) = q(z₁|x) Π_l q(z_{l+1}|z_l).

Training maximises a variational bound on Σ_n log p_θ(x_n); the default is the
evidence lower bound E_q[log p_θ(x, z) − log q_φ(z|x)] (Kingma & Welling 2014,
"Auto-Encoding Variational Bayes"; Rezende et al. 2014).

The parameters belong to the ``torch.nn.Module`` (``vae.parameters()``). ``vae.model`` and
``vae.guide`` also declare them as Pyro ``param`` sites, so ``pyro.infer.SVI`` with a
``pyro.optim`` optimiser finds and trains them, without copying them into Pyro's global
parameter store (two VAEs can live in one process). ``vae.programs(param_sites=False)``
gives the same two programs without those sites, for a loop whose optimizer holds
``vae.parameters()`` already (``pyro_vae.train``): the choice is made where the programs are
taken, never by a flag flipped on the module.
"""

import weakref

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.poutine.runtime import effectful
from torch import nn

from pyro_vae.config.sections import ModelConfig
from pyro_vae.core.errors import ConfigError, RunDirError
from pyro_vae.models.guides import GUIDES, DiagonalNormal
from pyro_vae.models.likelihoods import LIKELIHOODS
from pyro_vae.models.networks import NETWORKS
from pyro_vae.models.priors import PRIORS


def _own_value(name, value, *args, **kwargs):
    return value


# A ``param`` effect whose value is the module's own tensor, not a copy from the param store.
_param = effectful(_own_value, type="param")


def declare_params(module: nn.Module, prefix: str) -> None:
    """Emit a Pyro ``param`` site for each parameter of ``module``, valued by that parameter.

    ``pyro.infer.SVI`` reads ``site["value"].unconstrained()`` to find what to optimise;
    these parameters are unconstrained already, so that is the parameter itself.
    """
    for name, p in module.named_parameters(prefix):
        p.unconstrained = weakref.ref(p)  # type: ignore[attr-defined]  # what Pyro's params carry
        _param(name, p, constraint=constraints.real, event_dim=None, name=name)


class VAE(nn.Module):
    """A VAE built from a :class:`~pyro_vae.config.run_config.ModelConfig`.

    ``vae.model(x)`` and ``vae.guide(x)`` take a batch ``x`` of shape ``(B, data_dim)``.
    Any leading particle dimensions that an objective adds to ``z`` pass through the
    networks unchanged.

    Parts: ``prior``, ``likelihood``, ``decoder`` (z₁ → p(x|z₁)), ``encoder`` and ``q``
    (x → q(z₁|x)); in a hierarchical model also ``q_nets``/``q_layers`` (z_l → q(z_{l+1}|z_l))
    and ``p_nets``/``p_layers`` (z_{l+1} → p(z_l|z_{l+1})). A part may define
    ``initialize(x)``, called with the training data before training, and a prior may define
    ``attach(posterior, data_dim)`` to be given the guide (the VampPrior's mixture of q).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.data_dim is None:
            raise ConfigError(
                "model.data_dim is not set: give the number of values per data point "
                "(pyro_vae.train fills it in from the data)"
            )
        self.config = config
        dims = config.layers
        data_dim = config.data_dim
        image = tuple(config.image_shape) if config.image_shape else None
        if image is not None and len(image) == 2:
            image = (1, *image)

        def network(spec, n_in, n_out):
            return NETWORKS.get(spec.kind)(n_in, n_out, **spec.params)

        def guide_part(dim):
            return GUIDES.get(config.guide.kind)(dim, **config.guide.params)

        self.prior = PRIORS.get(config.prior.kind)(dims[-1], **config.prior.params)
        self.likelihood = LIKELIHOODS.get(config.likelihood.kind)(data_dim, **config.likelihood.params)
        self.q = guide_part(dims[0])
        self.encoder = network(config.encoder, image or data_dim, self.q.param_features)
        per_value, rest = divmod(self.likelihood.param_features, data_dim)
        out = (per_value * image[0], *image[1:]) if image and rest == 0 else self.likelihood.param_features
        self.decoder = network(config.decoder, dims[0], out)
        # hierarchical layers: q(z_{l+1} | z_l) and p(z_l | z_{l+1}) for l = 1..L-1
        self.q_layers = nn.ModuleList(guide_part(d) for d in dims[1:])
        self.q_nets = nn.ModuleList(
            network(config.inner, d, q.param_features) for d, q in zip(dims, self.q_layers, strict=False)
        )
        self.p_layers = nn.ModuleList(DiagonalNormal(d) for d in dims[:-1])
        self.p_nets = nn.ModuleList(
            network(config.inner, d, p.param_features) for d, p in zip(dims[1:], self.p_layers, strict=True)
        )
        self.sites = ("z",) if len(dims) == 1 else tuple(f"z{i + 1}" for i in range(len(dims)))
        if hasattr(self.prior, "attach"):
            self.prior.attach(self.top_posterior, data_dim)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Give every part that defines ``initialize(x)`` the training data (a learned σ starts
        at the data's spread, the VampPrior's pseudo-inputs at training points)."""
        for part in self.modules():
            if part is not self and hasattr(part, "initialize"):
                part.initialize(x)  # type: ignore[operator]  # Module.__getattr__ is typed Tensor | Module

    def programs(self, *, param_sites: bool = True):
        """``(model, guide)``: with Pyro ``param`` sites for ``pyro.infer.SVI`` and ``pyro.optim``
        (``vae.model``, ``vae.guide``), or without them for an optimizer that holds
        ``vae.parameters()`` already, which saves the sites' cost in every step."""
        return (self.model, self.guide) if param_sites else (self.bare_model, self.bare_guide)

    def model(self, x: torch.Tensor) -> None:
        """p(z) p_θ(x|z) with x observed; sites ``"z"`` (or ``"z1"``…) and ``"x"`` in plate ``"data"``."""
        for name in ("prior", "likelihood", "decoder", "p_layers", "p_nets"):
            declare_params(getattr(self, name), name)
        self.bare_model(x)

    def guide(self, x: torch.Tensor) -> None:
        """q_φ(z|x); sites ``"z"`` (or ``"z1"``…) in plate ``"data"``."""
        for name in ("q", "encoder", "q_layers", "q_nets"):
            declare_params(getattr(self, name), name)
        self.bare_guide(x)

    def bare_model(self, x: torch.Tensor) -> None:
        """:meth:`model` without ``param`` sites."""
        # Pyro annotates device as a str; a torch.device is what it passes on to torch
        with pyro.plate("data", x.shape[0], device=x.device):  # type: ignore[arg-type]
            z = pyro.sample(self.sites[-1], self.prior())  # (..., B, Z_L)
            for site, p, net in reversed(list(zip(self.sites, self.p_layers, self.p_nets, strict=False))):
                z = pyro.sample(site, p(net(z)))  # (..., B, Z_l)
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def bare_guide(self, x: torch.Tensor) -> None:
        """:meth:`guide` without ``param`` sites."""
        # Pyro annotates device as a str; a torch.device is what it passes on to torch
        with pyro.plate("data", x.shape[0], device=x.device):  # type: ignore[arg-type]
            z = pyro.sample(self.sites[0], self.q(self.encoder(x)))  # (..., B, Z_1)
            for site, q, net in zip(self.sites[1:], self.q_layers, self.q_nets, strict=True):
                z = pyro.sample(site, q(net(z)))

    def top_posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z_L | x) for the top layer, following the lower layers' centres (see :func:`center`).

        For a one-layer model this is exactly q(z|x); it is what a VampPrior mixes.
        """
        d = self.q(self.encoder(x))
        for q, net in zip(self.q_layers, self.q_nets, strict=True):
            d = q(net(center(d)))
        return d

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The centre of q(z₁|x) (its mean where known, see :func:`center`), shape ``(B, Z₁)``."""
        return center(self.q(self.encoder(x)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x | z₁ = centre of q(z₁|x)]: the decoder's mean, shape ``(B, D)``."""
        return self.likelihood.mean(self.decoder(self.encode(x)))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z₁], shape ``(..., D)``."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True) -> torch.Tensor:
        """``n`` draws z ~ p(z) decoded: E[x|z₁] when ``mean`` (what pictures show), else x ~ p(x|z₁)."""
        z = self.prior().sample((n,))  # (n, Z_L)
        for p, net in reversed(list(zip(self.p_layers, self.p_nets, strict=True))):
            z = p(net(z)).sample()
        out = self.decoder(z)
        return self.likelihood.mean(out) if mean else self.likelihood(out).sample()


def load_weights(vae: nn.Module, state: dict, *, where: str) -> None:
    """``vae.load_state_dict(state)``, or one line saying that the weights in ``where`` are not
    this model's (a checkpoint whose shapes do not match its config)."""
    try:
        vae.load_state_dict(state)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else type(e).__name__
        raise RunDirError(f"{where} does not fit the model its config describes: {detail[:200]}") from None


def center(d: torch.distributions.Distribution) -> torch.Tensor:
    """A representative point of ``d``: its mean, or for a flow with no closed-form mean
    (an IAF guide) the flow applied to its base distribution's centre."""
    try:
        return d.mean
    except NotImplementedError:
        if isinstance(d, dist.TransformedDistribution):
            z = center(d.base_dist)
            for t in d.transforms:
                z = t(z)
            return z
        if isinstance(d, dist.Independent):
            return center(d.base_dist)
        raise
