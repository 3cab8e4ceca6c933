"""A model of your own: a conditional VAE of the digits given their labels, as a Pyro model/guide pair.

pyro-vae trains and measures any pair of Pyro programs ``model(x)``, ``guide(x)`` whose
sample sites sit under one ``pyro.plate("data", ...)``, not only the VAE that a config
file describes. This one conditions both networks on the digit's label y, which no
config can say (Sohn, Lee & Yan 2015, "Learning Structured Output Representation using
Deep Conditional Generative Models")::

    z ~ N(0, I),   x | z, y ~ N(f_θ(z, y), diag σ²)      model (σ learned per pixel)
    z | x, y ~ N(μ_φ(x, y), diag σ_φ(x, y)²)            guide

``pyro_vae.train`` hands the programs one tensor per batch, so each row carries its label
as 10 one-hot columns after the 64 pixels. The likelihood, the guide's distribution and
the networks are pyro-vae's own parts, taken from its registries by the names a config
file uses. The script trains on the built-in digits data, prints the validation ELBO and
log p(x | y) by importance sampling, and draws every digit from the model into
``samples_by_label.png`` in the run directory, one row per label::

    python examples/custom_model.py --epochs 100
    python examples/custom_model.py --epochs 1 --run-dir /tmp/cvae --samples 100
"""

import argparse
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

import pyro_vae
from pyro_vae.models.guides import GUIDES
from pyro_vae.models.likelihoods import LIKELIHOODS
from pyro_vae.models.networks import NETWORKS
from pyro_vae.pictures.plots import image_grid
from pyro_vae.training.resolve import resolve_device

LABELS = 10


class ConditionalVAE(nn.Module):
    """p(z) p_θ(x | z, y) and q_φ(z | x, y) on rows ``[x, one_hot(y)]`` of shape (B, D + 10)."""

    def __init__(self, pixels: int, latent_dim: int, hidden: list[int]):
        super().__init__()
        self.pixels, self.latent_dim = pixels, latent_dim
        self.likelihood = LIKELIHOODS.get("gaussian")(pixels)
        self.q = GUIDES.get("normal")(latent_dim)
        mlp = NETWORKS.get("mlp")
        self.decoder = mlp(latent_dim + LABELS, self.likelihood.param_features, hidden=hidden)
        self.encoder = mlp(pixels + LABELS, self.q.param_features, hidden=hidden)

    def model(self, xy: torch.Tensor) -> None:
        # pyro.module declares the networks' parameters, which is how training finds them
        pyro.module("decoder", self.decoder)
        pyro.module("likelihood", self.likelihood)
        x, y = xy[:, : self.pixels], xy[:, self.pixels :]  # (B, D), (B, 10)
        with pyro.plate("data", len(xy), device=xy.device):
            z = pyro.sample("z", dist.Normal(xy.new_zeros(self.latent_dim), 1.0).to_event(1))
            # z is (..., B, Z): objectives with several particles add dimensions on the left
            zy = torch.cat([z, y.expand(*z.shape[:-1], LABELS)], -1)  # (..., B, Z + 10)
            pyro.sample("x", self.likelihood(self.decoder(zy)), obs=x)

    def guide(self, xy: torch.Tensor) -> None:
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", len(xy), device=xy.device):
            pyro.sample("z", self.q(self.encoder(xy)))

    @torch.no_grad()
    def sample(self, labels: torch.Tensor) -> torch.Tensor:
        """E[x | z, y] for z ~ p(z), one per label, (N, D)."""
        z = torch.randn(len(labels), self.latent_dim, device=labels.device)  # (N, Z)
        zy = torch.cat([z, F.one_hot(labels, LABELS).to(z)], -1)
        return self.likelihood.mean(self.decoder(zy))


def with_labels(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, F.one_hot(labels, LABELS).to(x)], -1)  # (N, D + 10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=100, help="default 100")
    parser.add_argument("--run-dir", type=Path, help="default runs/digits-<date>-<time>")
    parser.add_argument("--latent-dim", type=int, default=2, help="default 2")
    parser.add_argument("--hidden", type=int, nargs="*", default=[256, 256], help="default 256 256")
    parser.add_argument("--samples", type=int, default=1000, help="K for log p(x | y) (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    args = parser.parse_args(argv)

    overrides = {"train.epochs": args.epochs, "train.seed": args.seed}
    if args.run_dir:
        overrides["train.run_dir"] = str(args.run_dir)
    config = pyro_vae.Config().override(overrides)  # the [train] and [data] sections apply; [model] does not
    data = pyro_vae.load_data(config.data)
    labelled = pyro_vae.Data(
        name=data.name,
        train=with_labels(data.train, data.train_labels),
        valid=with_labels(data.valid, data.valid_labels),
    )

    pyro.set_rng_seed(args.seed)
    cvae = ConditionalVAE(data.dim, args.latent_dim, args.hidden)
    cvae.likelihood.initialize(data.train)  # σ_d starts at the pixels' standard deviations
    device = resolve_device(config.train.device)
    cvae.to(device)
    run = pyro_vae.train(config, model=cvae.model, guide=cvae.guide, data=labelled)

    is_k = {"samples": args.samples}
    m = pyro_vae.measure(cvae.model, cvae.guide, labelled.valid, estimator="is", options=is_k, device=device)
    print(
        f"validation ELBO: {m.elbo:.2f} ± {m.elbo_stderr:.2f} nats per point "
        f"(reconstruction {m.recon:.2f}, KL {m.kl:.2f}; KL estimator: {m.kl_estimator})"
    )
    print(
        f"log p(x | y): {m.log_px:.2f} ± {m.log_px_stderr:.2f} nats per point "
        f"(importance sampling, K = {args.samples}, {m.points} validation points)"
    )
    labels = torch.arange(LABELS, device=device).repeat_interleave(8)  # 8 draws of each digit
    path = image_grid(
        cvae.sample(labels).cpu().numpy(),
        data.image_shape,
        run.dir / "samples_by_label.png",
        title="E[x | z, y] for z ~ p(z); y = 0…9 by row",
        ncols=8,
    )
    print(f"samples: {path}")


if __name__ == "__main__":
    main()
