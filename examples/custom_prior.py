"""A prior of your own: a heavy-tailed Student-t p(z), registered from this file.

pyro-vae picks every part of a model from a registry by name. Registering a class
under a new name, as below, makes it a kind that configs can choose, with its
keyword-only arguments as options that are checked like pyro-vae's own. The
Student-t has no closed-form KL divergence from the Gaussian guide, so pyro-vae
estimates that term by sampling, and the run records which estimator it used
(``kl_estimator`` in ``metrics.jsonl``).

From Python, run this file: it registers the prior, builds the config, trains on the
built-in digits data and prints the validation ELBO and the importance-sampled log p(x)::

    python examples/custom_prior.py --epochs 100
    python examples/custom_prior.py --epochs 1 --run-dir /tmp/student_t --samples 100

From the command line, ``examples/custom_prior.toml`` names this file under ``plugins``,
which pyro-vae imports before it reads the model, and then chooses the prior::

    plugins = ["custom_prior.py"]

    [model]
    prior = { kind = "student_t", df = 3.0 }

so that ``pyro-vae train --config examples/custom_prior.toml`` trains it. A run's saved
config names the plugin by its absolute path, so ``pyro-vae evaluate RUN_DIR`` and
``pyro-vae sample RUN_DIR`` load a run trained either way.
"""

import argparse
from pathlib import Path

import pyro.distributions as dist
import torch
from torch import nn

import pyro_vae
from pyro_vae import register_prior
from pyro_vae.core.options import PositiveFloat, show


@register_prior("student_t")
class StudentT(nn.Module):
    """p(z) = Π_j t_ν(z_j; 0, 1), with ``df`` ν > 0 degrees of freedom.

    Its tails fall off polynomially, as |z|^−(ν+1), rather than like exp(−z²/2); as ν → ∞
    it becomes N(0, I). A prior entry is called as ``entry(latent_dim, **options)`` and
    returns a module whose ``forward()`` gives a distribution with event shape
    ``(latent_dim,)`` and no batch shape. Its tensors are buffers, so ``.to(device)``
    moves them with the rest of the model, and a checkpoint holds them.
    """

    def __init__(self, latent_dim: int, /, *, df: PositiveFloat = 5.0):
        super().__init__()
        self.register_buffer("df", torch.full((latent_dim,), df))  # (Z,)
        self.register_buffer("loc", torch.zeros(latent_dim))  # (Z,)
        self.register_buffer("scale", torch.ones(latent_dim))  # (Z,)

    def forward(self) -> dist.Distribution:
        return dist.StudentT(self.df, self.loc, self.scale).to_event(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--df", type=float, default=3.0, help="degrees of freedom ν (default 3)")
    parser.add_argument("--epochs", type=int, default=100, help="default 100")
    parser.add_argument("--run-dir", type=Path, help="default runs/digits-<date>-<time>")
    parser.add_argument("--samples", type=int, default=1000, help="K for log p(x) (default 1000)")
    args = parser.parse_args(argv)

    # custom_prior.toml, built in Python. The prior is registered above already; naming this file
    # in plugins writes it into the run's saved config, so that `pyro-vae evaluate` can load the run.
    config = pyro_vae.Config(
        plugins=[__file__],
        model=pyro_vae.ModelConfig(prior={"kind": "student_t", "df": args.df}),
        train=pyro_vae.TrainConfig(epochs=args.epochs, run_dir=str(args.run_dir or "")),
    )
    run = pyro_vae.train(config)

    last = run.history[-1]
    print(f"model.prior = {show(run.config.model.prior.to_dict())}")
    print(
        f"validation ELBO: {last['valid_elbo']:.2f} ± {last['valid_elbo_stderr']:.2f} nats per point "
        f"(KL estimator: {last['kl_estimator']})"
    )
    valid = pyro_vae.load_data(run.config.data).valid  # the split training held out
    device = next(run.vae.parameters()).device
    estimate = pyro_vae.log_marginal_likelihood(
        run.vae.model, run.vae.guide, valid, num_samples=args.samples, device=device
    )
    print(
        f"log p(x): {estimate.mean:.2f} ± {estimate.stderr:.2f} nats per point "
        f"(importance sampling, K = {args.samples}, {len(valid)} validation points)"
    )
    print(f"run: {run.dir}")


if __name__ == "__main__":
    main()
