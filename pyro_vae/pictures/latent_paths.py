"""Paths through a trained VAE's latent space, decoded: interpolation and traversals.

**Interpolation** between the codes z_a = c(x_a) and z_b = c(x_b) of two data points, where c
is the centre of q(z₁|x) (:meth:`pyro_vae.VAE.encode`), decodes E[x | z(t)] for t from 0 to 1:

* linear: z(t) = (1 − t) z_a + t z_b;
* spherical, for a Gaussian prior N(μ, diag σ²): with u = (z − μ)/σ the standardised codes and
  cos Ω = u_a·u_b / (|u_a| |u_b|),

      u(t) = sin((1 − t) Ω) / sin Ω · u_a + sin(t Ω) / sin Ω · u_b,     z(t) = μ + σ u(t)

  (Shoemake 1985, "Animating rotation with quaternion curves"; White 2016, "Sampling generative
  networks", section 2.2). Under N(0, I) in Z dimensions almost all the prior's mass lies near
  the sphere |u| = √Z, and the middle of a straight line between two typical codes is well inside
  it, where the decoder has seen few codes; the spherical path stays at their radii.

Both paths pass through z_a at t = 0 and z_b at t = 1, so a path's ends decode to the two
reconstructions. In a model of several stochastic layers the paths run in z₁, the layer the
decoder reads; there the prior is not Gaussian, so the path is linear.

**Traversals** vary one direction v of the latent space, the others held at a data point's
code z₀: z(p) = z₀ + (F_v⁻¹(p) − v·z₀) v for prior quantiles p, where F_v is the distribution of
v·z under p(z₁). The directions are latent units (v = e_u), most active first, the activity
being A_u = Var_x E_q[z_u | x] (Burda, Grosse & Salakhutdinov 2016, section 5.2), or the
principal directions of the posterior means E_q[z|x] over data points. F_v⁻¹ is exact for a
Gaussian prior (v·z ~ N(v·μ, Σ_i v_i² σ_i²)) and the empirical quantile of ``prior_samples``
draws of z₁ otherwise (a mixture, a VampPrior, a flow, a lower layer).
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyro.distributions as dist
import torch

from pyro_vae.core.errors import ConfigError

PathKind = Literal["linear", "spherical"]
PATHS: tuple[PathKind, ...] = ("linear", "spherical")
#: the quantiles a traversal steps through by default: 5 % … 95 %
PROBS = tuple(np.linspace(0.05, 0.95, 9).round(4).tolist())


def lerp(za: torch.Tensor, zb: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(1 − t) z_a + t z_b for codes (P, Z) and steps t (T,): shape (P, T, Z)."""
    t = t.to(za)[:, None]  # (T, 1)
    return (1 - t) * za[:, None] + t * zb[:, None]


def slerp(za: torch.Tensor, zb: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The spherical path from z_a to z_b about the origin (P, Z), (P, Z), (T,) → (P, T, Z).

    Codes at an angle Ω below 1e-4 (or of norm zero) take the straight line, its limit; so do
    antipodal codes (Ω within 1e-4 of π, as any two codes of opposite sign in one dimension),
    between which no one great circle runs.
    """
    t = t.to(za)[:, None]  # (T, 1)
    na, nb = za.norm(dim=-1), zb.norm(dim=-1)  # (P,)
    cos = ((za * zb).sum(-1) / (na * nb).clamp_min(torch.finfo(za.dtype).tiny)).clamp(-1, 1)
    omega = torch.arccos(cos)[:, None, None]  # (P, 1, 1)
    sin = torch.sin(omega)
    straight = (omega < 1e-4) | (omega > torch.pi - 1e-4) | (na * nb == 0)[:, None, None]
    safe = torch.where(straight, torch.ones_like(sin), sin)
    wa = torch.where(straight, 1 - t, torch.sin((1 - t) * omega) / safe)  # (P, T, 1)
    wb = torch.where(straight, t.expand_as(wa), torch.sin(t * omega) / safe)
    return wa * za[:, None] + wb * zb[:, None]


def gaussian_prior(vae) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(μ, σ) of the prior over z₁ when it is a diagonal Gaussian, else None."""
    if len(vae.config.layers) > 1:
        return None
    p = vae.prior()
    base = p.base_dist if isinstance(p, dist.Independent) else p
    if isinstance(base, dist.Normal) and base.loc.shape[-1:] == p.event_shape:
        return base.loc.expand(p.event_shape), base.scale.expand(p.event_shape)
    return None


@torch.no_grad()
def path_codes(
    vae, za: torch.Tensor, zb: torch.Tensor, steps: int, path: PathKind = "linear"
) -> torch.Tensor:
    """The codes (P, T, Z) of ``steps`` points along ``path`` from each z_a to each z_b."""
    if steps < 2:
        raise ConfigError(f"steps = {steps} is not allowed: a path needs at least 2 (its two ends)")
    t = torch.linspace(0, 1, steps, dtype=za.dtype, device=za.device)
    if path == "linear":
        return lerp(za, zb, t)
    if path != "spherical":
        raise ConfigError(f"path = {path!r} is not allowed; allowed: {', '.join(PATHS)}")
    gaussian = gaussian_prior(vae)
    if gaussian is None:
        raise ConfigError(
            f"path = 'spherical' needs a Gaussian prior over z₁; this model's prior is "
            f"{vae.config.prior.kind!r} over {len(vae.config.layers)} layer(s): use path = 'linear'"
        )
    mu, sigma = gaussian
    return mu + sigma * slerp((za - mu) / sigma, (zb - mu) / sigma, t)


@dataclass
class Interpolation:
    """Decoded paths between pairs of data points: ``images[path]`` is (P, T, D)."""

    xa: torch.Tensor  # (P, D)
    xb: torch.Tensor  # (P, D)
    t: torch.Tensor  # (T,)
    codes: dict[str, torch.Tensor]  # path -> (P, T, Z)
    images: dict[str, torch.Tensor]  # path -> (P, T, D)


@torch.no_grad()
def interpolate(
    vae, xa: torch.Tensor, xb: torch.Tensor, *, steps: int = 10, paths=("linear",)
) -> Interpolation:
    """Decode E[x|z] along each of ``paths`` between the codes of ``xa`` and ``xb`` (P, D) each."""
    za, zb = vae.encode(xa), vae.encode(xb)  # (P, Z) each
    codes = {p: path_codes(vae, za, zb, steps, p) for p in paths}
    images = {p: vae.decode(z) for p, z in codes.items()}  # (P, T, D)
    t = torch.linspace(0, 1, steps)
    return Interpolation(xa, xb, t, codes, images)


def allowed_paths(vae) -> list[PathKind]:
    """The paths this model's prior allows: linear, and spherical for a Gaussian prior."""
    return [p for p in PATHS if p == "linear" or gaussian_prior(vae) is not None]


@torch.no_grad()
def interpolate_pairs(
    vae, x: torch.Tensor, pairs: int, *, labels=None, seed: int = 0, steps: int = 10, paths=None
) -> Interpolation:
    """:func:`interpolate` between ``pairs`` pairs of the points ``x`` (N, D) that
    :func:`pick_pairs` draws with ``seed``; ``paths`` defaults to :func:`allowed_paths`."""
    idx = torch.as_tensor(pick_pairs(len(x), pairs, labels=labels, seed=seed))
    param = next(vae.parameters())
    xa, xb = (x[idx[:, i]].to(param) for i in (0, 1))
    return interpolate(vae, xa, xb, steps=steps, paths=allowed_paths(vae) if paths is None else paths)


def pick_pairs(n: int, pairs: int, *, labels=None, seed: int = 0) -> np.ndarray:
    """``pairs`` index pairs (pairs, 2) of distinct points among ``n``, in a seeded random order;
    with ``labels``, the two points of a pair have different labels where the data allow."""
    if not 1 <= pairs <= n // 2:
        raise ConfigError(f"--pairs {pairs} is not allowed: from 1 to {n // 2} for {n} data points")
    order = np.random.default_rng(seed).permutation(n)
    if labels is None:
        return order[: 2 * pairs].reshape(pairs, 2)
    labels = np.asarray(labels)
    chosen: list[list[int]] = []
    left = list(order)
    while len(chosen) < pairs:
        a = left.pop(0)
        b = next((j for j in left if labels[j] != labels[a]), left[0])
        left.remove(b)
        chosen.append([a, b])
    return np.array(chosen)


@dataclass
class Traversal:
    """Decoded traversals from one code: ``images`` (V, Q, D) for V directions and Q quantiles."""

    x: torch.Tensor  # (D,): the data point whose code the other coordinates keep
    probs: tuple[float, ...]  # (Q,)
    values: torch.Tensor  # (V, Q): v·z at each step, the prior's quantiles
    directions: torch.Tensor  # (V, Z), unit vectors
    names: list[str]  # (V,): "z₃" or "PC 1"
    spread: torch.Tensor  # (V,): the activity A_u, or the variance of the means along v
    images: torch.Tensor  # (V, Q, D)


def prior_codes(vae, n: int) -> torch.Tensor:
    """``n`` draws of z₁ from the model's prior over it, ∫ p(z₁|z₂) … p(z_L) (n, Z₁)."""
    z = vae.prior().sample((n,))
    for p, net in reversed(list(zip(vae.p_layers, vae.p_nets, strict=True))):
        z = p(net(z)).sample()
    return z


def prior_quantiles(vae, directions: torch.Tensor, probs, *, prior_samples: int = 20_000) -> torch.Tensor:
    """F_v⁻¹(p) for each direction v (V, Z) and probability p (Q,): shape (V, Q)."""
    p = torch.tensor(probs, dtype=directions.dtype, device=directions.device)
    gaussian = gaussian_prior(vae)
    if gaussian is not None:
        mu, sigma = gaussian
        along = dist.Normal(directions @ mu, (directions.square() @ sigma.square()).sqrt())  # (V,)
        return along.icdf(p[:, None]).T  # (V, Q)
    cuda = [directions.device] if directions.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # the same quantiles every time, the caller's stream left alone
        torch.manual_seed(0)
        z = prior_codes(vae, prior_samples)  # (S, Z)
    return torch.quantile(z.to(directions) @ directions.T, p, dim=0).T  # (V, Q)


@torch.no_grad()
def traverse(
    vae,
    x: torch.Tensor,
    data: torch.Tensor,
    *,
    directions: int = 8,
    basis: Literal["units", "principal"] = "units",
    probs=PROBS,
) -> Traversal:
    """Traverse the ``directions`` most active units (or principal directions) of the posterior
    means of ``data`` (N, D) through the prior's quantiles ``probs``, from the code of ``x`` (D,)."""
    means = torch.cat([vae.encode(data[i : i + 1000]) for i in range(0, len(data), 1000)])  # (N, Z)
    dim = means.shape[1]
    k = min(directions, dim)
    if basis == "units":
        spread, units = means.var(0).sort(descending=True)
        spread, units = spread[:k], units[:k]
        vectors = torch.eye(dim, dtype=means.dtype, device=means.device)[units]  # (V, Z)
        names = [f"z{_subscript(int(u) + 1)}" for u in units]
    elif basis == "principal":
        centred = means - means.mean(0)
        _, s, vt = torch.linalg.svd(centred, full_matrices=False)
        spread, vectors = s[:k].square() / max(len(means) - 1, 1), vt[:k]
        names = [f"PC {i + 1}" for i in range(k)]
    else:
        raise ConfigError(f"basis = {basis!r} is not allowed; allowed: units, principal")
    values = prior_quantiles(vae, vectors, probs)  # (V, Q)
    z0 = vae.encode(x[None])[0]  # (Z,)
    codes = z0 + (values - (vectors @ z0)[:, None])[..., None] * vectors[:, None]  # (V, Q, Z)
    return Traversal(x, tuple(probs), values, vectors, names, spread, vae.decode(codes))


def _subscript(n: int) -> str:
    return str(n).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))
