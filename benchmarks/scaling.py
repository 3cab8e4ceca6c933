"""Steps per second of pyro-vae's training on 1 and on N processes (torchrun, gloo, one thread each).

What is measured
----------------
The training loop ``pyro_vae.train`` runs (:func:`pyro_vae.training.loop.fit` over
:class:`pyro_vae.training.step.TrainStep`, keyed noise, the per-step stop vote) on the binarized-MNIST
MLP VAE of ``benchmarks/step_overhead.py`` (784-300-300-40, tanh, Bernoulli likelihood, N(0, I)
prior, diagonal Normal guide, ``elbo``, Adam), for ``--batch`` points per step in all: the
global minibatch, of which each of the N processes takes its share and DistributedDataParallel
sums the gradients. One process is the plain one-process step (no process group at all).

How
---
The script starts itself under ``torchrun --standalone --nproc-per-node P`` for P = 1 and
P = ``--procs``, alternately, ``--rounds`` times, each process with ``torch.set_num_threads``
of ``--threads`` (default 1). Each job builds the model as ``pyro_vae.train`` does, runs one
epoch of ``--warmup`` steps, then times one epoch of ``--steps`` steps between two barriers;
rank 0 reports steps per second. The table gives the median steps per second of each P, the
speed-up median(P) / median(1), and the median and range of the per-round ratios. On a
machine with as many cores as processes × threads, the speed-up is what more processes buy.

Usage::

    python benchmarks/scaling.py [--procs 2] [--batch 4000] [--rounds 5] [--steps 60]
                                 [--warmup 10] [--threads 1]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist.npz"


def worker(args) -> None:
    """One process of a job: build, warm up, time ``--steps`` steps; rank 0 prints JSON."""
    import numpy as np
    import pyro
    import torch

    from pyro_vae import VAE, ModelConfig, make_objective
    from pyro_vae.core import distributed
    from pyro_vae.core.registry import Spec
    from pyro_vae.training.loop import TrainState, fit
    from pyro_vae.training.step import TrainStep, check_programs, owners, stepping

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    world = distributed.join(device, "gloo")
    need = (args.warmup + args.steps) * args.batch
    if MNIST.is_file():
        x = torch.from_numpy(np.load(MNIST)["train"]).float()
    else:
        x = torch.randint(0, 2, (50_000, 784), generator=torch.Generator().manual_seed(0)).float()
    x = x.repeat(-(-need // len(x)), 1)[:need]  # (need, 784)
    mlp = Spec("mlp", {"hidden": [300, 300], "activation": "tanh"})
    config = ModelConfig(latent_dim=40, data_dim=784, likelihood=Spec("bernoulli"), encoder=mlp, decoder=mlp)
    pyro.set_rng_seed(0)
    vae = VAE(config)
    vae.initialize(x)
    objective = make_objective("elbo")
    model, guide = vae.programs(param_sites=False)
    check_programs(model, guide, objective, x[: args.batch])
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3, fused=True)  # as pyro_vae.train makes it
    step = TrainStep(objective, model, guide, optimizer, seed=0, modules=owners(model, guide), world=world)
    state = TrainState(optimizer)
    warm, timed = x[: args.warmup * args.batch], x[args.warmup * args.batch :]
    with stepping():
        fit(state, step, warm, epochs=1, batch_size=args.batch, world=world)
        world.barrier()
        start = time.perf_counter()
        fit(state, step, timed, epochs=2, batch_size=args.batch, world=world)
        world.barrier()
        seconds = time.perf_counter() - start
    if world.main:
        print(json.dumps({"procs": world.size, "steps": args.steps, "seconds": seconds}))
    distributed.leave()


def job(procs: int, args) -> float:
    """Steps per second of one job of ``procs`` processes."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
        __file__, "--worker", "--batch", str(args.batch), "--steps", str(args.steps),
        "--warmup", str(args.warmup), "--threads", str(args.threads),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"the {procs}-process job failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["steps"] / result["seconds"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=2, help="processes to compare with one (default 2)")
    parser.add_argument("--batch", type=int, default=4000, help="global minibatch (default 4000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per job (default 60)")
    parser.add_argument("--warmup", type=int, default=10, help="warm-up steps per job (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="threads per process (default 1)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if (
        args.procs < 2
        or args.batch < args.procs
        or min(args.rounds, args.steps, args.warmup, args.threads) < 1
    ):
        parser.error("need --procs >= 2, --batch >= --procs, and --rounds, --steps, --warmup, --threads >= 1")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {args.procs} vs 1 process, "
        f"{args.threads} thread(s) each; global batch {args.batch}; data: "
        f"{'binarized MNIST' if MNIST.is_file() else 'random binary 784-dimensional points'}"
    )
    rates: dict[int, list[float]] = {1: [], args.procs: []}
    for r in range(args.rounds):
        for procs in (1, args.procs) if r % 2 == 0 else (args.procs, 1):
            rates[procs].append(job(procs, args))
        one, many = rates[1][-1], rates[args.procs][-1]
        print(f"round {r + 1}: 1 process {one:.1f} steps/s, {args.procs} processes {many:.1f}")
    one, many = statistics.median(rates[1]), statistics.median(rates[args.procs])
    ratios = sorted(m / o for m, o in zip(rates[args.procs], rates[1], strict=True))
    print(
        f"\n| processes | steps/s (median) | points/s | speed-up |\n| ---: | ---: | ---: | ---: |\n"
        f"| 1 | {one:.1f} | {one * args.batch:.0f} | 1.00× |\n"
        f"| {args.procs} | {many:.1f} | {many * args.batch:.0f} | {many / one:.2f}× "
        f"(per round {statistics.median(ratios):.2f}, {ratios[0]:.2f}–{ratios[-1]:.2f}) |"
    )


if __name__ == "__main__":
    main()
