"""The variational autoencoder as a pair of Pyro programs.

Generative model (``VAE.model``), for each data point n in the plate ``"data"``::

    z_n ~ p(z)                          site "z"
    x_n ~ p_θ(x | z_n)                  site "x", observed

Amortized guide (``VAE.guide``)::

    z_n ~ q_φ(z | x_n)                  site "z"

Training maximises a variational bound on Σ_n log p_θ(x_n); the default is the
evidence lower bound E_q[log p_θ(x, z) − log q_φ(z|x)] (Kingma & Welling 2014,
"Auto-Encoding Variational Bayes"; Rezende et al. 2014).

The parameters belong to the ``torch.nn.Module`` (``vae.parameters()``); the two
programs also declare them as Pyro ``param`` sites, so ``pyro.infer.SVI`` with a
``pyro.optim`` optimiser finds and trains them, without copying them into Pyro's
global parameter store (two VAEs can live in one process).
"""

import weakref

import pyro
import torch
from pyro.distributions import constraints
from pyro.poutine.runtime import effectful
from torch import nn

from .config import ModelConfig
from .errors import ConfigError
from .guides import GUIDES
from .likelihoods import LIKELIHOODS
from .networks import NETWORKS
from .priors import PRIORS


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
        p.unconstrained = weakref.ref(p)
        _param(name, p, constraint=constraints.real, event_dim=None, name=name)


class VAE(nn.Module):
    """A VAE built from a :class:`~pyro_vae.config.ModelConfig`.

    ``vae.model(x)`` and ``vae.guide(x)`` take a batch ``x`` of shape ``(B, data_dim)``.
    Any leading particle dimensions that an objective adds to ``z`` pass through the
    networks unchanged.
    """

    #: Whether the programs declare the parameters as Pyro ``param`` sites, which is what
    #: ``pyro.infer.SVI`` and ``pyro.optim`` need to find them. ``pyro_vae.train`` optimises
    #: ``vae.parameters()`` directly and turns this off while it trains, saving the sites' cost.
    emit_param_sites = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.data_dim is None:
            raise ConfigError(
                "model.data_dim is not set: give the number of values per data point "
                "(pyro_vae.train fills it in from the data)"
            )
        self.config = config
        data_dim, latent_dim = config.data_dim, config.latent_dim
        self.prior = PRIORS.get(config.prior.kind)(latent_dim, **config.prior.params)
        self.likelihood = LIKELIHOODS.get(config.likelihood.kind)(data_dim, **config.likelihood.params)
        self.q = GUIDES.get(config.guide.kind)(latent_dim, **config.guide.params)
        self.encoder = NETWORKS.get(config.encoder.kind)(
            data_dim, self.q.param_features, **config.encoder.params
        )
        self.decoder = NETWORKS.get(config.decoder.kind)(
            latent_dim, self.likelihood.param_features, **config.decoder.params
        )

    def model(self, x: torch.Tensor) -> None:
        """p(z) p_θ(x|z) with x observed; sites ``"z"`` and ``"x"`` in plate ``"data"``."""
        if self.emit_param_sites:
            for name in ("prior", "likelihood", "decoder"):
                declare_params(getattr(self, name), name)
        with pyro.plate("data", x.shape[0], device=x.device):
            z = pyro.sample("z", self.prior())  # (..., B, Z)
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """q_φ(z|x); site ``"z"`` in plate ``"data"``."""
        if self.emit_param_sites:
            for name in ("q", "encoder"):
                declare_params(getattr(self, name), name)
        with pyro.plate("data", x.shape[0], device=x.device):
            pyro.sample("z", self.q(self.encoder(x)))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean E_q[z|x], shape ``(B, Z)``."""
        return self.q(self.encoder(x)).mean

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x | z = E_q[z|x]]: the decoder's mean at the posterior mean, shape ``(B, D)``."""
        return self.likelihood.mean(self.decoder(self.encode(x)))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z], shape ``(..., D)``."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True) -> torch.Tensor:
        """``n`` draws z ~ p(z) decoded: E[x|z] when ``mean`` (what pictures show), else x ~ p(x|z)."""
        z = self.prior().sample((n,))  # (n, Z)
        out = self.decoder(z)
        return self.likelihood.mean(out) if mean else self.likelihood(out).sample()
