"""Do the example graphs do what their papers' models are for? Completion and clustering, measured.

What is measured
----------------
Both models train on the static binarized MNIST (50 000 training and 10 000 validation images,
no labels) and are measured on MNIST's 10 000 labelled test images, binarized once by a fixed
Bernoulli draw of their grey values (``--seed``), as the training images were.

* ``examples/graphs/cvae_completion.toml`` (Sohn et al. 2015; the task of Pyro's CVAE example),
  its bottom half Bernoulli: log p(bottom | top) of the first ``--points`` test images by
  importance sampling (K = ``--samples``), beside the deterministic network of Pyro's example,
  top → bottom with the generation network's shape, trained on the same images for the same
  epochs, whose log p(bottom | top) is that of its Bernoulli output. The completions of the
  first 16 test images are drawn to ``OUT/completions.png``.
* ``examples/graphs/gmvae.toml`` (Dilokthanakul et al. 2016), x Bernoulli: the clustering
  accuracy on the test images, each image assigned its most probable cluster under q(y | x)
  and each cluster labelled by its majority class (the usual measure for unsupervised
  clustering); samples of each cluster to ``OUT/clusters.png``.

Usage (one thread; ``../shared/data`` holds binarized_mnist.npz and mnist/t10k-*)::

    python benchmarks/graph_examples.py --data ../shared/data --epochs 10 --out runs/graph-examples
"""

import argparse
import math
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn

import pyro_vae
from pyro_vae.config.run_config import load_config
from pyro_vae.data.array_files import read_idx
from pyro_vae.data.datasets import Data
from pyro_vae.inference.estimators.importance import importance_sampling
from pyro_vae.models.graph.ancestral import encode
from pyro_vae.training.graph_figures import draws

GRAPHS = Path(__file__).resolve().parents[1] / "examples" / "graphs"


def mnist_data(folder: Path, seed: int) -> Data:
    bits = np.load(folder / "binarized_mnist.npz")
    grey = read_idx(folder / "mnist" / "t10k-images-idx3-ubyte.gz", "t10k-images").reshape(10000, -1) / 255.0
    labels = read_idx(folder / "mnist" / "t10k-labels-idx1-ubyte.gz", "t10k-labels")
    generator = torch.Generator().manual_seed(seed)
    test = (torch.rand(grey.shape, generator=generator) < torch.as_tensor(grey)).float()
    return Data(
        name="binarized_mnist",
        train=torch.as_tensor(bits["train"], dtype=torch.float32).reshape(50000, -1),
        valid=torch.as_tensor(bits["valid"], dtype=torch.float32).reshape(10000, -1),
        test=test,
        test_labels=torch.as_tensor(labels.astype(np.int64)),
        image_shape=(28, 28),
    )


def train(example: str, data: Data, epochs: int, out: Path, **overrides):
    config = load_config(
        GRAPHS / f"{example}.toml",
        {
            "data.name": "binarized_mnist",
            "train.epochs": epochs,
            "train.run_dir": str(out / example),
            "train.compile": "false",
            **overrides,
        },
    )
    return pyro_vae.train(config, data=data, overwrite=True)


def completion(data: Data, args, out: Path) -> None:
    run = train("cvae_completion", data, args.epochs, out, **{"model.variables.bottom.family": "bernoulli"})
    graph = run.graph
    x = data.test[: args.points]
    ml = importance_sampling(graph.model, graph.guide, x, seed=0, samples=args.samples)
    print(
        f"CVAE completion: test log p(bottom | top) = {ml.log_px.mean():.2f} ± "
        f"{ml.log_px.std() / math.sqrt(len(x)):.2f} nats per image ({len(x)} images, K = {args.samples})"
    )
    cut = len(graph.columns_top)  # type: ignore[arg-type]
    top_cols, bottom_cols = graph.columns_top, graph.columns_bottom
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(cut, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 784 - cut)
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(args.epochs):
        for batch in torch.randperm(len(data.train)).split(100):
            rows = data.train[batch]
            loss = nn.functional.binary_cross_entropy_with_logits(
                net(rows[:, top_cols]), rows[:, bottom_cols], reduction="sum"
            )
            optimizer.zero_grad()
            (loss / len(rows)).backward()
            optimizer.step()
    with torch.no_grad():
        base = dist.Bernoulli(logits=net(x[:, top_cols])).log_prob(x[:, bottom_cols]).sum(-1)
    print(
        f"deterministic network (Pyro's baseline): test log p(bottom | top) = {base.mean():.2f} ± "
        f"{base.std() / math.sqrt(len(x)):.2f}; the CVAE is {(ml.log_px - base).mean():.2f} nats per "
        "image better"
    )
    pyro.set_rng_seed(0)
    print(draws(graph, 16, data.test).picture(out / "completions.png", (28, 28)))


def clustering(data: Data, args, out: Path) -> None:
    run = train("gmvae", data, args.epochs, out, **{"model.variables.x.family": "bernoulli"})
    graph = run.graph
    with torch.no_grad():
        clusters = torch.cat([encode(graph, x)["y"].argmax(-1) for x in data.test.split(1000)])
    labels = data.test_labels
    correct = 0
    for c in clusters.unique():
        members = labels[clusters == c]
        correct += int(torch.bincount(members).max())
    print(
        f"GMVAE clustering accuracy on the {len(labels)} test images: {correct / len(labels):.3f} "
        f"({len(clusters.unique())} clusters used of 10; each labelled by its majority class)"
    )
    pyro.set_rng_seed(0)
    print(draws(graph, 80, data.test).picture(out / "clusters.png", (28, 28)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/graph-examples"))
    parser.add_argument("--only", choices=["completion", "clustering"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = mnist_data(args.data, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"binarized MNIST, {args.epochs} epochs, 1 thread")
    if args.only in (None, "completion"):
        completion(data, args, args.out)
    if args.only in (None, "clustering"):
        clustering(data, args, args.out)


if __name__ == "__main__":
    main()
