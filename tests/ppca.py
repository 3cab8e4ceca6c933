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
from pyro_vae.core.numeric import softplus_inverse

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


Z1, Z2 = 3, 2


def two_layer_ppca(device, *, shift=0.0, scale_factor=1.0):
    """A two-layer linear VAE (``latent_dims = [3, 2]``), its data and exact log p(x).

    Model: z₂ ~ N(0, I), z₁ | z₂ ~ N(A z₂ + a, s² I), x | z₁ ~ N(W z₁ + b, σ² I), so that
    z₁ ~ N(a, Σ₁) with Σ₁ = A Aᵀ + s² I and log p(x) = log N(x; W a + b, W Σ₁ Wᵀ + σ² I).
    The exact posterior factorises as the guide does, p(z₁, z₂ | x) = p(z₁ | x) p(z₂ | z₁):

        p(z₁ | x) = N(P₁ (Σ₁⁻¹ a + Wᵀ (x − b) / σ²), P₁),   P₁ = (Σ₁⁻¹ + Wᵀ W / σ²)⁻¹
        p(z₂ | z₁) = N(P₂ Aᵀ (z₁ − a) / s², P₂),            P₂ = (I + Aᵀ A / s²)⁻¹

    A's columns lie along axes and W's are orthogonal, so P₁ and P₂ are diagonal and the
    linear networks and diagonal Gaussians of the VAE represent it exactly; ``shift`` and
    ``scale_factor`` move both guide layers away from it.
    """
    g = torch.Generator().manual_seed(2)
    q, _ = torch.linalg.qr(torch.randn(D, Z1, generator=g))
    W = q * torch.tensor([1.5, 1.0, 0.7])
    b = torch.randn(D, generator=g)
    A = torch.zeros(Z1, Z2)
    A[0, 0], A[1, 1] = 1.2, 0.8
    a, s = torch.tensor([0.3, -0.2, 0.1]), 0.6
    config = ModelConfig(
        latent_dims=[Z1, Z2],
        data_dim=D,
        likelihood={"kind": "gaussian", "scale": SIGMA},
        encoder={"kind": "mlp", "hidden": []},
        decoder={"kind": "mlp", "hidden": []},
        inner={"kind": "mlp", "hidden": []},
    )
    vae = VAE(config)
    S1 = A @ A.T + s**2 * torch.eye(Z1)
    P1 = torch.linalg.inv(torch.linalg.inv(S1) + W.T @ W / SIGMA**2)
    P2 = torch.linalg.inv(torch.eye(Z2) + A.T @ A / s**2)

    def set_linear(layer, weight, bias, sd, min_scale):
        n = len(bias)
        layer.weight.zero_()
        layer.weight[:n] = weight
        layer.bias[:n] = bias
        layer.bias[n:] = softplus_inverse(sd - min_scale)

    with torch.no_grad():
        vae.decoder[0].weight.copy_(W)
        vae.decoder[0].bias.copy_(b)
        set_linear(vae.p_nets[0][0], A, a, torch.full((Z1,), s), vae.p_layers[0].min_scale)
        set_linear(
            vae.encoder[0],
            P1 @ W.T / SIGMA**2,
            P1 @ (torch.linalg.solve(S1, a) - W.T @ b / SIGMA**2) + shift,
            scale_factor * torch.diagonal(P1).sqrt(),
            vae.q.min_scale,
        )
        set_linear(
            vae.q_nets[0][0],
            P2 @ A.T / s**2,
            -P2 @ A.T @ a / s**2 + shift,
            scale_factor * torch.diagonal(P2).sqrt(),
            vae.q_layers[0].min_scale,
        )
    marginal = MultivariateNormal(W @ a + b, W @ S1 @ W.T + SIGMA**2 * torch.eye(D))
    x = marginal.sample((N,))
    return vae.to(device), x.to(device), marginal.log_prob(x).to(device)
