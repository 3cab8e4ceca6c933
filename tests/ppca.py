"""Probabilistic PCA as a VAE: a linear-Gaussian model with closed-form log p(x) and posterior.

Model: z ~ N(0, I_Z), x | z ~ N(W z + b, σ² I_D), so that exactly

    log p(x)  = log N(x; b, W Wᵀ + σ² I)
    p(z | x)  = N(M⁻¹ Wᵀ (x − b), σ² M⁻¹),   M = Wᵀ W + σ² I        (Tipping & Bishop 1999)

W has orthogonal columns, so M and the posterior covariance are diagonal and our
diagonal Gaussian guide can represent the exact posterior. A VAE with a linear decoder
(``hidden = []``), a fixed-scale Gaussian likelihood and a linear encoder is this model.
"""

import torch
from pyro.distributions import MultivariateNormal

from pyro_vae import VAE, ModelConfig
from pyro_vae.likelihoods import softplus_inverse

D, Z, SIGMA, N = 6, 3, 0.5, 40


def ppca(device, *, shift=0.0, scale_factor=1.0):
    """A linear VAE, data from its own model, and the exact posterior's parameters.

    ``shift`` and ``scale_factor`` move the guide away from the exact posterior.
    """
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(D, Z, generator=g))
    W = q * torch.tensor([2.0, 1.0, 0.5])  # orthogonal columns: a diagonal posterior
    b = torch.randn(D, generator=g)
    config = ModelConfig(
        latent_dim=Z,
        data_dim=D,
        likelihood={"kind": "gaussian", "scale": SIGMA},
        encoder={"kind": "mlp", "hidden": []},
        decoder={"kind": "mlp", "hidden": []},
    )
    vae = VAE(config)
    M = W.T @ W + SIGMA**2 * torch.eye(Z)
    A = torch.linalg.solve(M, W.T)  # posterior mean = A (x − b)
    post_sd = (SIGMA**2 / torch.diagonal(M)).sqrt()
    with torch.no_grad():
        vae.decoder[0].weight.copy_(W)
        vae.decoder[0].bias.copy_(b)
        enc = vae.encoder[0]
        enc.weight.zero_()
        enc.weight[:Z] = A
        enc.bias[:Z] = -A @ b + shift
        enc.bias[Z:] = softplus_inverse(scale_factor * post_sd - vae.q.min_scale)
    x = MultivariateNormal(b, W @ W.T + SIGMA**2 * torch.eye(D)).sample((N,))
    log_px = MultivariateNormal(b, W @ W.T + SIGMA**2 * torch.eye(D)).log_prob(x)
    post_loc = (x - b) @ A.T
    return vae.to(device), x.to(device), log_px.to(device), post_loc.to(device), post_sd.to(device)
