"""M2 by configuration beside M2 written in plain Pyro, and the classifier trained on labels alone.

What is measured
----------------
Fashion-MNIST (54 000 training, 6 000 validation and 10 000 test images, grey values in [0, 1])
with ``--labels`` labels kept, balanced over the 10 classes (data.labels; the same points for
every method). Three models, the same networks (q(y|x): x → 256 → 10; q(z|x,y) and p(x|y,z):
one hidden layer of 256, softplus; z of 16; a Gaussian p(x|y,z) with a learned σ per pixel),
Adam at 1e-3, batches of 100, the same epochs:

* ``pyro-vae``: ``examples/graphs/m2_semi_supervised.toml`` trained by ``pyro_vae.train``
  (labelled rows observe y, the others sum over it; objective.classify = α = 1000);
* ``plain Pyro``: the M2 of Pyro's ``examples/vae/ss_vae_M2.py`` written the usual way: a model
  and a guide with ``config_enumerate``, ``TraceEnum_ELBO``, one SVI step for the unlabelled rows
  of a batch and one for its labelled rows, and the auxiliary classification loss
  (``poutine.scale(scale=α)`` on log q(y|x)) as a third SVI, on the same rows (the labelled ones
  repeated by the example's data.labelled_share, as often as pyro-vae sees them);
* ``classifier alone``: the q(y|x) network trained by cross-entropy on the labelled points only
  (Adam, the epoch with the best validation accuracy kept).

Printed: the test accuracy of q(y|x) (argmax) for each (pyro-vae's also at its epoch of best
validation accuracy, as the classifier alone's epoch is chosen), the test log p(x) of pyro-vae's M2 by
importance sampling (``--samples``), and seconds per epoch of the two M2s, side by side in one
process at one thread (``torch.set_num_threads(1)``).

Usage (Fashion-MNIST from pyro-vae's data cache, or a folder holding its four IDX files)::

    PYRO_VAE_DATA=../shared/data python benchmarks/m2_fashion.py --epochs 10 --labels 100
"""

import argparse
import time

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from torch import nn

import pyro_vae
from pyro_vae.config.run_config import load_config
from pyro_vae.config.sections import DataConfig
from pyro_vae.data.datasets import load_data
from pyro_vae.data.labelled import kept_labels
from pyro_vae.training.build import graph_data

EXAMPLE = "examples/graphs/m2_semi_supervised.toml"
ALPHA, HIDDEN, Z, C = 1000.0, 256, 16, 10


def mlp(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, HIDDEN), nn.Softplus(), nn.Linear(HIDDEN, n_out))


def gaussian(out: torch.Tensor) -> dist.Distribution:
    loc, raw = out.chunk(2, -1)
    return dist.Normal(loc, nn.functional.softplus(raw) + 1e-4).to_event(1)


class PlainM2(nn.Module):
    """Kingma et al.'s M2 as Pyro's semi-supervised example writes it."""

    def __init__(self, d: int, spread: torch.Tensor):
        super().__init__()
        self.encoder_y, self.encoder_z, self.decoder = mlp(d, C), mlp(d + C, 2 * Z), mlp(Z + C, d)
        # p(x|y,z) = N(decoder, σ²) with a learned σ per pixel, floored at 0.01 and started at the
        # data's spread: pyro-vae's gaussian family, written out
        start = spread.clamp(min=0.02) - 0.01
        self.raw_scale = nn.Parameter(start + torch.log(-torch.expm1(-start)))

    def model(self, xs, ys=None):
        pyro.module("m2", self)
        with pyro.plate("data", len(xs)):
            zs = pyro.sample("z", dist.Normal(xs.new_zeros(Z), 1.0).to_event(1))
            ys = pyro.sample("y", dist.OneHotCategorical(logits=xs.new_zeros(C)), obs=ys)
            loc = self.decoder(torch.cat([zs, ys.expand(*zs.shape[:-1], C)], -1))
            scale = nn.functional.softplus(self.raw_scale) + 0.01
            pyro.sample("x", dist.Normal(loc, scale).to_event(1), obs=xs)

    def guide(self, xs, ys=None):
        with pyro.plate("data", len(xs)):
            if ys is None:
                ys = pyro.sample("y", dist.OneHotCategorical(logits=self.encoder_y(xs)))
            pyro.sample("z", gaussian(self.encoder_z(torch.cat([xs.expand(*ys.shape[:-1], -1), ys], -1))))

    def model_classify(self, xs, ys):
        pyro.module("m2", self)
        with pyro.plate("data", len(xs)), poutine.scale(scale=ALPHA):
            pyro.sample("y_aux", dist.OneHotCategorical(logits=self.encoder_y(xs)), obs=ys)

    def guide_classify(self, xs, ys):
        pass


def accuracy(classify, x, labels) -> float:
    with torch.no_grad():
        return (classify(x).argmax(-1) == labels).float().mean().item()


def plain_pyro(data, rows, epochs: int, seed: int):
    """``rows``: the training rows pyro-vae's M2 trains on (the label column last, −1 where hidden,
    the labelled rows repeated by data.labelled_share), so that both see the same labels as often."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    m2 = PlainM2(data.dim, data.train.std(0))
    adam = pyro.optim.Adam({"lr": 1e-3})
    unsup = SVI(
        m2.model,
        config_enumerate(m2.guide, "parallel", expand=True),
        adam,
        loss=TraceEnum_ELBO(max_plate_nesting=1),
    )
    sup = SVI(m2.model, m2.guide, adam, loss=Trace_ELBO())
    aux = SVI(m2.model_classify, m2.guide_classify, adam, loss=Trace_ELBO())
    images, label = rows[:, :-1], rows[:, -1].long()
    labelled = label >= 0
    one_hot = nn.functional.one_hot(label.clamp(min=0), C).float()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for batch in torch.randperm(len(rows)).split(100):
            x, known = images[batch], labelled[batch]
            if (~known).any():
                unsup.step(x[~known])
            if known.any():
                sup.step(x[known], one_hot[batch][known])
                aux.step(x[known], one_hot[batch][known])
        seconds.append(time.perf_counter() - start)
    return accuracy(m2.encoder_y, data.test, data.test_labels), sum(seconds) / len(seconds)


def classifier_alone(data, kept, epochs: int, seed: int) -> float:
    torch.manual_seed(seed)
    net = mlp(data.dim, C)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = data.train[kept], data.train_labels[kept]
    best, best_test = -1.0, 0.0
    for _ in range(max(epochs, 200)):  # 100 points: a few steps an epoch, so many epochs
        for batch in torch.randperm(len(x)).split(100):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
        valid = accuracy(net, data.valid, data.valid_labels)
        if valid > best:
            best, best_test = valid, accuracy(net, data.test, data.test_labels)
    return best_test


def ours(data_config: DataConfig, epochs: int, labels: int, seed: int, samples: int, run_dir: str):
    config = load_config(
        EXAMPLE,
        {
            "data.name": data_config.name,
            "data.labels": labels,
            "train.epochs": epochs,
            "train.seed": seed,
            "train.run_dir": run_dir,
            "train.compile": "false",
        },
    )
    run = pyro_vae.train(config, overwrite=True)
    best = max(run.history[1:], key=lambda row: row["valid_accuracy"])  # as the classifier's is chosen
    seconds = sum(r["seconds"] for r in run.history[1:]) / epochs
    record, _ = pyro_vae.evaluate_run(run_dir, split="test", options={"samples": samples}, points=1000)
    return run.history[-1]["test_accuracy"], best, record["log_px"], record["log_px_stderr"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=1000, help="importance samples for the test log p(x)")
    parser.add_argument("--run-dir", default="runs/m2-fashion")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(EXAMPLE, {"data.name": "fashion_mnist", "data.labels": args.labels})
    data = load_data(config.data)
    kept = kept_labels(data.train_labels, args.labels, config.data.split_seed)
    rows = graph_data(config, data).train
    share = config.data.labelled_share
    print(f"Fashion-MNIST, {args.labels} labels (repeated to a share of {share}: {len(rows)} rows), ", end="")
    print(f"{args.epochs} epochs, seed {args.seed}, 1 thread")
    acc, best, log_px, stderr, ours_s = ours(
        config.data, args.epochs, args.labels, args.seed, args.samples, args.run_dir
    )
    print(f"pyro-vae M2       test accuracy {acc:.3f} (at the best validation accuracy, epoch ", end="")
    print(
        f"{best['epoch']}: {best['test_accuracy']:.3f})   test log p(x) {log_px:.1f} ± {stderr:.1f}", end=""
    )
    print(f"   {ours_s:.1f} s/epoch")
    plain_acc, plain_s = plain_pyro(data, rows, args.epochs, args.seed)
    print(f"plain-Pyro M2     test accuracy {plain_acc:.3f}   {plain_s:.1f} s/epoch", end="")
    print(f"   (pyro-vae {ours_s / plain_s:.2f}x its time)")
    alone = classifier_alone(data, kept, args.epochs, args.seed)
    print(f"classifier alone  test accuracy {alone:.3f}")


if __name__ == "__main__":
    main()
