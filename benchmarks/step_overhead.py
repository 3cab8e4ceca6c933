"""Time pyro-vae's training step against the same VAE written by hand in plain PyTorch.

What is measured
----------------
One optimisation step on a minibatch of 100 points, for two models:

* ``mnist``: binarized MNIST (784 values), encoder and decoder MLPs with hidden layers
  [300, 300] and tanh, 40 latent dimensions, Bernoulli likelihood on logits;
* ``digits``: pyro-vae's default config (``pyro_vae.Config()``): scikit-learn's 8×8 digits
  (64 values in [0, 1]), MLPs [256, 256] tanh, 2 latent dimensions, Gaussian likelihood
  with a learned per-dimension scale σ_d = softplus(s_d) + 0.01.

* ``vamp``: the ``mnist`` model with a VampPrior of 500 pseudo-inputs (Tomczak & Welling
  2018), whose hand-written log p(z) is the log-mean-exp over a (B, K, Z) table of Normal
  log densities, as the authors' code computes it; ours is two matrix products
  (``pyro_vae.models.priors.DiagonalNormalMixture``).

All use a diagonal Normal guide (σ = softplus(·) + 1e-4); ``mnist`` and ``digits`` a N(0, I)
prior.

"Ours" is exactly the step ``pyro_vae.train`` runs: ``VAE(config.model)``, the objective
``make_objective("elbo")`` (Pyro's ``Trace_ELBO`` on the device), the programs
``vae.programs(param_sites=False)``, after one loss with validation on
(``pyro_vae.training.step.check_programs``), ``torch.optim.Adam(vae.parameters(), lr=1e-3, fused=True)`` and
``pyro_vae.training.step.TrainStep``, inside ``pyro_vae.training.step.stepping`` (Pyro's validation
off, no ``param`` sites: the optimizer holds the parameters), given the minibatch's dataset
indices so that the guide's noise is keyed by (seed, step, point, coordinate)
(:mod:`pyro_vae.inference.noise`), as it is in training. "Ours, global noise" is the same
step drawing its noise from torch's generator instead: the ratio of the two is what the keyed
noise costs.

"Hand-written" is a plain ``nn.Module`` holding the same layers, started from a copy of
our VAE's parameters, with the same single-sample reparameterized ELBO written out:
z = μ + σ ε, log p(x|z) by ``binary_cross_entropy_with_logits`` (or the Gaussian log
density), log p(z) and log q(z|x) as Normal log densities, loss = −Σ_batch ELBO, and the
same ``torch.optim.Adam`` (fused, as ours: the optimizer is not what is compared). This file
reads no loss back to the host (no ``.item()``), and neither does ours.

How
---
Both run in one process on the same minibatches (contiguous slices of the training data,
held in memory and shuffled once). After a warm-up of each, ``--rounds`` rounds alternate
a block of ``--steps`` steps of ours with a block of the hand-written step on the same
minibatches, swapping which goes first every round. A block's time (``time.perf_counter``,
with a device synchronisation on CUDA) divided by its steps is one per-step sample. The
table gives the median per-step time of each (the global-noise step runs in the same rounds,
third), their ratio median(ours) / median(hand)
(judged against the target), and the median and interquartile range of the per-round
ratios ours/hand as its spread. ``torch.set_num_threads`` is PyTorch's default unless
``--threads`` is given. Blocks that take over twice their median are counted and reported:
they mean something else took the CPU (another process, or the host of a virtual
machine); the medians ignore them.

``--check`` first verifies that the two compute the same thing: with our guide's draw of z
replayed into both, the hand-written loss and our ``Trace_ELBO`` loss, and all their
gradients, agree to float32 rounding.

Usage::

    python benchmarks/step_overhead.py [--case mnist|digits|vamp|all] [--rounds N] [--steps N]
                                       [--warmup N] [--device cpu|cuda] [--threads N] [--check]
"""

import argparse
import dataclasses
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

import pyro_vae
from pyro_vae import VAE, Config, Data, DataConfig, ModelConfig, Spec
from pyro_vae.training.compiled import CompiledStep
from pyro_vae.training.step import TrainStep, check_programs, stepping

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"
BATCH = 100
LR = 1e-3
SEED = 0
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
SLOW_BLOCK = 2.0  # a block over this many times its median counts as disturbed


# ---------------------------------------------------------------------------------------------
# The hand-written VAE
# ---------------------------------------------------------------------------------------------


def normal_log_prob(x: torch.Tensor, loc, scale) -> torch.Tensor:
    """log N(x; loc, scale²), elementwise."""
    return -0.5 * ((x - loc) / scale) ** 2 - torch.log(scale) - HALF_LOG_2PI


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with tanh between them (the layout of ``pyro_vae.models.networks.mlp``)."""
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class HandVAE(nn.Module):
    """The VAE as a PyTorch user writes it: one module, the single-sample ELBO spelled out."""

    def __init__(self, vae: VAE):
        super().__init__()
        config = vae.config
        if config.encoder.params["activation"] != "tanh" or config.decoder.params["activation"] != "tanh":
            raise ValueError("HandVAE writes tanh MLPs only")
        self.q_min_scale = vae.q.min_scale
        self.encoder = mlp([config.data_dim, *config.encoder.params["hidden"], 2 * config.latent_dim])
        self.decoder = mlp([config.latent_dim, *config.decoder.params["hidden"], config.data_dim])
        self.bernoulli = config.likelihood.kind == "bernoulli"
        self.vamp = config.prior.kind == "vamp"
        if self.vamp:  # Tomczak & Welling's log p(z): log-mean-exp over a (B, K, Z) table
            self.pseudo_inputs = nn.Parameter(torch.empty(config.prior.params["components"], config.data_dim))
        if not self.bernoulli:
            self.x_min_scale = vae.likelihood.min_scale
            self.raw_scale = nn.Parameter(torch.empty(config.data_dim))
        with torch.no_grad():  # the same starting point as our VAE: its parameters, copied
            for name, p in self.named_parameters():
                p.copy_(vae.get_parameter(our_name(name)))

    def loss(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """−Σ_n [log p(x_n|z_n) + log p(z_n) − log q(z_n|x_n)], z_n = μ_n + σ_n ε_n."""
        loc, raw = self.encoder(x).chunk(2, dim=-1)  # (B, Z) each
        scale = F.softplus(raw) + self.q_min_scale
        if eps is None:
            eps = torch.randn_like(loc)
        z = loc + scale * eps  # (B, Z)
        out = self.decoder(z)  # (B, D)
        if self.bernoulli:
            log_px = -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
        else:
            x_scale = F.softplus(self.raw_scale) + self.x_min_scale  # (D,)
            log_px = normal_log_prob(x, out, x_scale).sum(-1)
        if self.vamp:
            u_loc, u_raw = self.encoder(self.pseudo_inputs).chunk(2, dim=-1)  # (K, Z) each
            u_scale = F.softplus(u_raw) + self.q_min_scale
            log_components = normal_log_prob(z[:, None, :], u_loc, u_scale).sum(-1)  # (B, K)
            log_pz = torch.logsumexp(log_components, dim=-1) - math.log(len(u_loc))
        else:
            log_pz = (-0.5 * z**2 - HALF_LOG_2PI).sum(-1)
        log_qz = normal_log_prob(z, loc, scale).sum(-1)
        return -(log_px + log_pz - log_qz).sum()


def our_name(hand_name: str) -> str:
    """The name in our VAE of a hand-written parameter (the likelihood's scale and the
    VampPrior's pseudo-inputs sit in their parts)."""
    return {"raw_scale": "likelihood.raw_scale", "pseudo_inputs": "prior.pseudo_inputs"}.get(
        hand_name, hand_name
    )


def hand_step(vae: HandVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
    """The hand-written counterpart of ``pyro_vae.training.step.TrainStep``."""
    loss = vae.loss(x)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# ---------------------------------------------------------------------------------------------
# The two cases, built as pyro_vae.train builds them
# ---------------------------------------------------------------------------------------------


def mnist() -> tuple[Config, Data, str]:
    """The binarized-MNIST MLP VAE; random binary data of the same shape when the file is absent."""
    mlp300 = Spec("mlp", {"hidden": [300, 300], "activation": "tanh"})
    model = ModelConfig(latent_dim=40, likelihood=Spec("bernoulli"), encoder=mlp300, decoder=mlp300)
    if MNIST.is_file():
        data = DataConfig(name="binarized_mnist", path=str(MNIST))
        return Config(model=model, data=data), pyro_vae.load_data(data, seed=SEED), "binarized MNIST"
    x = torch.randint(0, 2, (50_000, 784), generator=torch.Generator().manual_seed(SEED)).float()
    note = f"random binary 50000x784 ({MNIST} is absent)"
    return Config(model=model), Data(name="random", train=x, valid=x[:1000]), note


def vamp() -> tuple[Config, Data, str]:
    """The binarized-MNIST MLP VAE with a VampPrior of 500 pseudo-inputs."""
    config, data, note = mnist()
    model = dataclasses.replace(config.model, prior=Spec("vamp", {"components": 500}))
    return dataclasses.replace(config, model=model), data, note


def digits() -> tuple[Config, Data, str]:
    """pyro-vae's default config on scikit-learn's digits."""
    config = Config()
    return config, pyro_vae.load_data(config.data, seed=SEED), "scikit-learn digits"


CASES = {
    "mnist": (mnist, 0.85, 1.10),
    "digits": (digits, 1.0, None),
    "vamp": (vamp, 0.85, None),
}  # name -> (config and data, target compiled/hand, target eager/hand)


@dataclasses.dataclass
class Case:
    name: str
    data_note: str
    vae: VAE
    objective: pyro.infer.ELBO
    hand: HandVAE
    ours_step: Callable[[tuple], torch.Tensor]
    global_step: Callable[[tuple], torch.Tensor]
    hand_step: Callable[[tuple], torch.Tensor]
    replayed_step: Callable[[tuple], torch.Tensor]
    compiled_step: Callable[[tuple], torch.Tensor]
    compiled: CompiledStep
    #: (x, the points' indices in the dataset) pairs
    batches: list[tuple[torch.Tensor, torch.Tensor]]


def build_case(name: str, device: torch.device) -> Case:
    """Our VAE, objective and optimizer as ``pyro_vae.train`` builds them, and the hand-written twin."""
    config, data, note = CASES[name][0]()
    pyro.set_rng_seed(SEED)
    vae = VAE(dataclasses.replace(config.model, data_dim=data.dim))
    vae.initialize(data.train)  # as pyro_vae.train starts it
    vae.to(device)
    train = data.train.to(device)
    objective = pyro_vae.make_objective("elbo")
    model, guide = vae.programs(param_sites=False)
    check_programs(model, guide, objective, train[:BATCH])
    optimizer = torch.optim.Adam(vae.parameters(), lr=LR, fused=True)  # as pyro_vae.train makes it
    step = TrainStep(objective, model, guide, optimizer)
    compiled = CompiledStep(step, "auto")
    compiled.target = "compiled"  # what auto chooses for a long run (replayed if the check refuses it)
    replayed = CompiledStep(step, "auto")
    replayed.target = "replayed"  # what auto chooses for a run too short to repay compiling

    hand = HandVAE(vae).to(device)
    hand_optimizer = torch.optim.Adam(hand.parameters(), lr=LR, fused=True)

    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SEED)).to(device)
    train = train[order]  # (N, D), shuffled once
    batches = [(train[i : i + BATCH], order[i : i + BATCH]) for i in range(0, len(train) - BATCH + 1, BATCH)]
    return Case(
        name=name,
        data_note=note,
        vae=vae,
        objective=objective,
        hand=hand,
        ours_step=lambda batch: step(batch[0], index=batch[1], epoch=0.0, step=0),
        global_step=lambda batch: step(batch[0], epoch=0.0, step=0),
        hand_step=lambda batch: hand_step(hand, hand_optimizer, batch[0]),
        replayed_step=lambda batch: replayed(batch[0], index=batch[1], epoch=0.0, step=0),
        compiled_step=lambda batch: compiled(batch[0], index=batch[1], epoch=0.0, step=0),
        compiled=compiled,
        batches=batches,
    )


# ---------------------------------------------------------------------------------------------
# Correctness check and timing
# ---------------------------------------------------------------------------------------------


def check(case: Case) -> str:
    """Our Trace_ELBO loss and gradients equal the hand-written ones for the same draw of z."""
    vae, hand, x = case.vae, case.hand, case.batches[0][0]
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    z = guide_trace.nodes["z"]["value"]  # (B, Z), a function of the guide's parameters
    ours = case.objective.differentiable_loss(vae.model, poutine.replay(vae.guide, trace=guide_trace), x)
    with torch.no_grad():
        loc, raw = hand.encoder(x).chunk(2, dim=-1)
        eps = (z - loc) / (F.softplus(raw) + hand.q_min_scale)  # the ε behind our draw
    theirs = hand.loss(x, eps)
    vae.zero_grad(set_to_none=True)
    hand.zero_grad(set_to_none=True)
    ours.backward()
    theirs.backward()
    if not torch.allclose(ours, theirs, rtol=1e-5, atol=1e-3):
        raise RuntimeError(f"{case.name}: loss {ours.item():.6f} (ours) != {theirs.item():.6f} (hand)")
    worst = 0.0
    for name, p in hand.named_parameters():
        g_ours, g_hand = vae.get_parameter(our_name(name)).grad, p.grad
        err = ((g_ours - g_hand).abs().max() / g_hand.abs().max().clamp(min=1e-12)).item()
        worst = max(worst, err)
    if worst > 1e-4:
        raise RuntimeError(f"{case.name}: gradients differ, worst relative error {worst:.2e}")
    vae.zero_grad(set_to_none=True)
    hand.zero_grad(set_to_none=True)
    return (
        f"check {case.name}: loss ours {ours.item():.4f}, hand {theirs.item():.4f}; "
        f"gradients agree (worst max |difference| / max |gradient| {worst:.1e})"
    )


def time_block(step, batches: list, start: int, steps: int, sync) -> float:
    """Seconds per step over ``steps`` steps on batches ``start``, ``start + 1``, ... (cyclic)."""
    sync()
    t0 = time.perf_counter()
    for i in range(start, start + steps):
        step(batches[i % len(batches)])
    sync()
    return (time.perf_counter() - t0) / steps


STEPS = ("ours", "hand", "global", "replayed", "compiled")


def measure(case: Case, rounds: int, steps: int, warmup: int, sync) -> dict:
    """Rounds of a block of each step, their order rotated each round; per-step medians, the
    ratios of each to the hand-written step and the spread of the per-round ratio ours/hand."""
    fns = {
        "ours": case.ours_step,
        "hand": case.hand_step,
        "global": case.global_step,
        "replayed": case.replayed_step,
        "compiled": case.compiled_step,
    }
    times: dict[str, list[float]] = {name: [] for name in STEPS}
    with stepping():  # as pyro_vae.train runs its steps
        for fn in fns.values():  # the compiled step compiles in its first call
            time_block(fn, case.batches, 0, warmup, sync)
        for r in range(rounds):
            start = warmup + r * steps  # all see the same minibatches in a round
            for which in STEPS[r % len(STEPS) :] + STEPS[: r % len(STEPS)]:
                times[which].append(time_block(fns[which], case.batches, start, steps, sync))
    median = {name: statistics.median(t) for name, t in times.items()}
    per_round = {
        name: statistics.quantiles(
            [a / h for a, h in zip(times[name], times["hand"], strict=True)], n=4, method="inclusive"
        )
        for name in STEPS
    }
    slow = sum(t > SLOW_BLOCK * statistics.median(ts) for ts in times.values() for t in ts)
    return {
        "ms": {name: 1e3 * m for name, m in median.items()},
        "ratio": {name: m / median["hand"] for name, m in median.items()},
        "round_ratio": per_round,
        "noise_cost": median["ours"] / median["global"],
        "compile_seconds": case.compiled.compile_seconds,
        "path": case.compiled.path,
        "slow": slow,
    }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> list[str]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ)
    lines = [
        f"CPU: {cpu_model()}, {cores} cores usable; torch threads {torch.get_num_threads()} {env}".rstrip(),
        f"python {platform.python_version()}, torch {torch.__version__}, pyro {pyro.__version__}, "
        f"pyro_vae {pyro_vae.__version__}",
    ]
    if device.type == "cuda":
        lines.append(f"device: {torch.cuda.get_device_name(device)}")
    if hasattr(os, "getloadavg"):
        lines.append("load average before (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return lines


def table(results: dict[str, dict]) -> str:
    rows = [
        "| case | hand-written ms | eager (Pyro each step) ms | replayed ms | compiled ms "
        "| eager / hand | replayed / hand | compiled / hand | targets (compiled; eager) "
        "| compile s | keyed noise: eager / global |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, r in results.items():
        target, eager_target = CASES[name][1], CASES[name][2]
        ms, ratio, q = r["ms"], r["ratio"], r["round_ratio"]
        cells = {
            w: f"{ratio[w]:.2f}× ({q[w][0]:.2f}–{q[w][2]:.2f})" for w in ("ours", "replayed", "compiled")
        }
        verdict = f"≤ {target:.2f}× {'met' if ratio['compiled'] <= target else 'missed'}"
        if eager_target is not None:
            lean = min(ratio["ours"], ratio["replayed"])
            verdict += f"; ≤ {eager_target:.2f}× {'met' if lean <= eager_target else 'missed'}"
        if r["path"] != "compiled":
            verdict += f" (ran {r['path']}: the compiled step was refused)"
        rows.append(
            f"| {name} | {ms['hand']:.2f} | {ms['ours']:.2f} | {ms['replayed']:.2f} | {ms['compiled']:.2f} "
            f"| {cells['ours']} | {cells['replayed']} | {cells['compiled']} | {verdict} "
            f"| {r['compile_seconds']:.1f} | {r['noise_cost']:.3f}× |"
        )
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=30, help="alternating rounds (default 30)")
    parser.add_argument("--steps", type=int, default=50, help="steps per block (default 50)")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up steps of each (default 50)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: PyTorch's choice)")
    parser.add_argument("--check", action="store_true", help="first check that the two losses agree")
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.steps < 1 or args.warmup < 1:
        parser.error("need --rounds >= 2, --steps >= 1 and --warmup >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None

    start = time.perf_counter()
    print("\n".join(machine(device)))
    print(f"{args.rounds} rounds x {args.steps} steps of each after {args.warmup} warm-up steps, on {device}")
    results = {}
    for name in CASES if args.case == "all" else [args.case]:
        case = build_case(name, device)
        print(f"{name}: {case.data_note}, batch {BATCH}, {len(case.batches)} distinct minibatches")
        if args.check:
            print(check(case))
        results[name] = measure(case, args.rounds, args.steps, args.warmup, sync)
        if results[name]["slow"]:
            print(
                f"  warning: {results[name]['slow']} of {len(STEPS) * args.rounds} blocks took over "
                f"{SLOW_BLOCK:g}x their median: something else competed for the CPU; timings are noisy"
            )
    print(f"\n{table(results)}\n\n({time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
    main()
