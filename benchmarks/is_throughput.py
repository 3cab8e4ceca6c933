"""Importance-sampling throughput: pyro-vae's estimator against the same computation by hand.

What is measured
----------------
log p̂(x) = log (1/K) Σ_k p(x, z_k) / q(z_k|x) for binarized-MNIST points, on the MNIST MLP
VAE (784–300–300–40, tanh, Bernoulli likelihood, diagonal Normal guide):

* ours, eager: ``pyro_vae.importance_sampling(vae.model, vae.guide, x, samples=K,
  chunk_size=C, batch_size=B, compile=False)``: Pyro traces of the guide and the model, K
  drawn at most C at a time for B points at a time, a running log-sum-exp;
* hand-written: the same network in plain PyTorch: one encoder pass per batch of points,
  then per chunk of C samples one batched decoder pass, the three log densities written with
  ``binary_cross_entropy_with_logits`` and Normal log densities, and the same running
  log-sum-exp;
* ours, compiled: ``pyro_vae.importance_sampling(..., compile=True)``, the chunk captured and
  compiled by Inductor (:mod:`pyro_vae.inference.estimators.chunks`); its graph is made in the warm-up
  round and kept on the VAE, so the timed rounds measure its steady state (the compile time
  is what ``pyro-vae evaluate`` adds once per shape).

Ours sizes its chunks below C where a chunk's (C, B, 784) tensors would exceed
``pyro_vae.inference.estimators.chunks.ELEMENTS`` (so that the allocator reuses them instead of
faulting in fresh pages from the kernel); the hand-written estimator uses C as given, and a
second hand-written row uses ours' chunk length, to show what that alone is worth. The
allocator's state is shared by all in the process, so the kernel shares are indicative;
``pyro-vae evaluate`` in a process of its own is the clean measure.

All run in one process on the same points, their order rotated each round, and the table
gives the median seconds of each, the ratio to the hand-written one (target: compiled ≤
0.9×) and the share of wall time spent in the kernel (``getrusage``'s system time; target
under 10 %). ``--memory`` runs ours in a fresh
process for K = 1000 and K = 10000 at the same chunk size and reports each process's peak
resident memory (on CUDA, ``torch.cuda.max_memory_allocated``): it must not grow with K.
``--full`` times ours (``compile="auto"``) on the whole 10000-point validation split at K = 5000.

Usage::

    python benchmarks/is_throughput.py [--points 200] [--samples 1000] [--chunk 500] [--batch 100]
                                       [--rounds 5] [--memory] [--full] [--device cpu|cuda]
"""

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyro
import torch
import torch.nn.functional as F

import pyro_vae
from pyro_vae.inference.estimators.chunks import chunk_length

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"


def build(device, run_dir=None):
    """The MNIST MLP VAE: a trained one from ``run_dir``, else freshly initialised."""
    if run_dir:
        return pyro_vae.Run.load(run_dir, device=device).vae
    config = pyro_vae.ModelConfig(
        latent_dim=40,
        data_dim=784,
        likelihood={"kind": "bernoulli"},
        encoder={"kind": "mlp", "hidden": [300, 300], "activation": "tanh"},
        decoder={"kind": "mlp", "hidden": [300, 300], "activation": "tanh"},
    )
    pyro.set_rng_seed(0)
    return pyro_vae.VAE(config).to(device).eval()


def load_points(n, device):
    if DATA.is_file():
        x = np.load(DATA)["valid"][:n]
    else:  # random binary data of the same shape, said in the output
        x = (np.random.default_rng(0).random((n, 784)) < 0.13).astype(np.uint8)
    return torch.from_numpy(x.astype(np.float32)).to(device)


def ours(vae, x, k, chunk, batch, compile=False):
    return pyro_vae.importance_sampling(
        vae.model, vae.guide, x, samples=k, chunk_size=chunk, batch_size=batch, compile=compile
    ).log_px


def compiled(vae, x, k, chunk, batch):
    """Ours with the chunk compiled (its graph is kept on the VAE: compiled in the warm-up round)."""
    return ours(vae, x, k, chunk, batch, compile=True)


@torch.no_grad()
def hand(vae, x, k, chunk, batch):
    """The same estimate written directly against the networks."""
    out = []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]  # (B, D)
        loc, raw = vae.encoder(xb).chunk(2, dim=-1)  # (B, Z) each, one encoder pass
        scale = F.softplus(raw) + vae.q.min_scale
        total = torch.full((len(xb),), -math.inf, device=x.device)
        for start in range(0, k, chunk):
            c = min(chunk, k - start)
            z = loc + scale * torch.randn(c, *loc.shape, device=x.device)  # (C, B, Z)
            logits = vae.decoder(z)  # (C, B, D)
            log_px_z = -F.binary_cross_entropy_with_logits(
                logits, xb.expand_as(logits), reduction="none"
            ).sum(-1)
            log_pz = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_qz = (-0.5 * ((z - loc) / scale).pow(2) - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
            total = torch.logaddexp(total, torch.logsumexp(log_px_z + log_pz - log_qz, 0))
        out.append(total - math.log(k))
    return torch.cat(out)


def timed(fn, sync):
    """Wall seconds, kernel (system) seconds and the result of ``fn()``."""
    sync()
    start, kernel = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
    result = fn()
    sync()
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_stime - kernel, result


def peak_memory_mb(k, chunk, batch, points, device) -> float:
    """Run ours once in a fresh process and return its peak memory (MB)."""
    code = (
        "import json, resource, sys, torch; sys.path.insert(0, 'benchmarks'); import is_throughput as b;"
        f"d = torch.device('{device}'); vae = b.build(d); x = b.load_points({points}, d);"
        f"b.ours(vae, x, {k}, {chunk}, {batch});"
        "mb = torch.cuda.max_memory_allocated() / 2**20 if d.type == 'cuda' else "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; print(json.dumps(mb))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory", action="store_true", help="peak memory for K = 1000 and 10000")
    parser.add_argument("--full", action="store_true", help="time ours on 10000 points at K = 5000")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--run-dir", help="a trained binarized-MNIST run to measure (default: untrained)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    vae = build(device, args.run_dir)
    x = load_points(args.points, device)
    print(
        f"{'binarized MNIST' if DATA.is_file() else 'random binary data'}: {len(x)} points, "
        f"K = {args.samples}, chunk {args.chunk}, batch {args.batch}, {device}, "
        f"torch {torch.__version__}, pyro {pyro.__version__}, {torch.get_num_threads()} threads"
    )
    names = ("ours", "compiled", "hand", "hand_small")
    length = chunk_length(args.samples, args.chunk, args.batch, x.shape[-1])
    fns = {
        "ours": ours,
        "compiled": compiled,
        "hand": hand,
        "hand_small": lambda vae, x, k, chunk, batch: hand(vae, x, k, length, batch),
    }
    times: dict[str, list[float]] = {n: [] for n in names}
    kernel: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds + 1):  # round 0 warms up (and compiles)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds, sys_seconds, _ = timed(
                lambda f=fns[name]: f(vae, x, args.samples, args.chunk, args.batch), sync
            )
            if r:
                times[name].append(seconds)
                kernel[name].append(sys_seconds / seconds)
    h = statistics.median(times["hand"])
    print("| estimator | median s | ratio to hand | per-round ratios | kernel time / wall |")
    print("| --- | ---: | ---: | --- | ---: |")
    labels = {
        "hand": "hand-written",
        "hand_small": f"hand-written, chunks of {length} (as ours)",
        "ours": "pyro-vae, eager",
        "compiled": "pyro-vae, compiled",
    }
    for name, label in labels.items():
        m = statistics.median(times[name])
        ratios = [a / b for a, b in zip(times[name], times["hand"], strict=True)]
        spread = f"{min(ratios):.3f}–{max(ratios):.3f}" if name != "hand" else ""
        share = statistics.median(kernel[name])
        print(f"| {label} | {m:.3f} | {m / h:.3f}× | {spread} | {100 * share:.1f} % |")
    if args.memory:
        for k in (1000, 10000):
            mb = peak_memory_mb(k, args.chunk, args.batch, 100, device)
            print(f"peak memory, K = {k}, chunk {args.chunk}, 100 points: {mb:.0f} MB")
    if args.full:
        full = load_points(10000, device)
        seconds, _, estimate = timed(lambda: ours(vae, full, 5000, args.chunk, args.batch, "auto"), sync)
        print(
            f"full validation split: {len(full)} points at K = 5000 in {seconds:.0f} s "
            f"(log p̂ = {estimate.mean().item():.2f} ± {estimate.std().item() / 100:.2f})"
        )


if __name__ == "__main__":
    main()
