"""Do the per-point Monte-Carlo errors of ``pyro-vae evaluate`` hold? Replicate seeds say.

What is measured
----------------
A trained run is evaluated by importance sampling (``--estimator is``) on N points with S
seeds (the seeds ``pyro-vae evaluate --seed s`` uses: the same keyed draws). For each point n
the S estimates log p̂_s(x_n) spread around their mean m_n; an error σ_sn reported by seed s
holds if ±2σ_sn covers its own estimate's distance to m_n. Printed, for each way of
computing σ:

* the spread ratio, sd_s log p̂_s(x_n) / median_s σ_sn per point, its median and 90th
  percentile over points (1 is right; above 1 the errors are too small);
* coverage: the share of (seed, point) pairs with |log p̂_s − m_n| ≤ 2σ_sn, over the pairs
  whose error is reported (target ≥ 93 %, 95 % for exact errors; with S = 10 the mean m_n is
  itself an estimate, which makes a deviation from it about 5 % smaller);
* the share of pairs left untrusted (Pareto k̂ > 0.7, or no error at all).

The last row keeps the points whose k̂, fitted to all S seeds' weights together (S·K of them),
is ≤ 0.7: their tails are light enough, not only the draws of one seed.

The ways: ``jackknife (before)``, the delete-a-block jackknife of 20 blocks that
``pyro-vae evaluate`` reported before Pareto k̂ (reimplemented here; over every pair, and over
the pairs with k̂ ≤ 0.7), ``Pareto tail, each point's own k̂``,
:class:`pyro_vae.inference.estimators.weights.WeightStats` alone (the tail's error of
:mod:`pyro_vae.inference.estimators.tail_error`, each point trusted on its own k̂), and
``Pareto tail, k̂ pooled (now)``, what ``evaluate`` reports: the same with each seed's points
pooled (:mod:`pyro_vae.inference.estimators.pooled_tail`). All see the same log weights.

Usage (about a minute for each run below on 2 CPU cores, after training)::

    pyro-vae train --train.run_dir runs/digits-default        # the defaults: digits, 300 epochs
    python benchmarks/coverage.py runs/digits-default --samples 100 --points 180
    pyro-vae train --config examples/binarized_mnist.toml --train.epochs 5 \\
        --data.path ../shared/data/binarized_mnist.npz --train.run_dir runs/bmnist-5
    python benchmarks/coverage.py runs/bmnist-5 --samples 100 --points 1000

``--train`` trains the default digits run into RUN_DIR first when it does not exist.
"""

import argparse
import math
import sys
from pathlib import Path

import pyro
import torch

from pyro_vae.evaluation.checks import data_of, split_of
from pyro_vae.inference.estimators.chunks import Chunks
from pyro_vae.inference.estimators.pareto import UNTRUSTED_K, pareto_k, tail_length
from pyro_vae.inference.estimators.pooled_tail import pooled
from pyro_vae.inference.estimators.weights import WeightStats
from pyro_vae.inference.sites import max_plate_nesting
from pyro_vae.training.run import Run


def log_weights(run_dir: Path, samples: int, points: int, seeds: int, split: str) -> torch.Tensor:
    """log w, ``(S, K, N)`` float64: the draws of ``evaluate --seed s`` for s < S."""
    run = Run.load(run_dir, device=torch.device("cpu"))
    vae = run.vae
    assert vae is not None
    x = split_of(data_of(run), split)[:points]
    nesting = max_plate_nesting(vae.model, vae.guide, x[:1])
    out = []
    with torch.no_grad(), pyro.validation_enabled(False):
        for seed in range(seeds):
            chunks = Chunks(
                vae.model, vae.guide, seed=seed, nesting=nesting, plate="data", mode=False, planned=1
            )
            batches = [
                torch.cat(
                    [chunks(x[i : i + 100], i, k, min(100, samples - k)) for k in range(0, samples, 100)]
                )
                for i in range(0, len(x), 100)
            ]
            out.append(torch.cat(batches, 1).double())  # (K, N)
    return torch.stack(out)


def block_jackknife(log_w: torch.Tensor, blocks: int = 20) -> torch.Tensor:
    """The error reported before: a delete-a-block jackknife of log mean w, ``(K, B)`` → ``(B,)``."""
    k = len(log_w)
    block = torch.arange(k) * blocks // k
    sums = torch.stack([log_w[block == m].logsumexp(0) for m in range(blocks)])  # (M, B)
    sizes = torch.bincount(block, minlength=blocks).double()[:, None]
    others = torch.stack([sums[torch.arange(blocks) != m].logsumexp(0) for m in range(blocks)])
    theta = others - (k - sizes).log()
    return ((blocks - 1) / blocks * (theta - theta.mean(0)).square().sum(0)).sqrt()


def coverage_table(w: torch.Tensor) -> list[tuple[str, dict]]:
    """The rows printed: each way of computing σ, with its numbers (module docstring)."""
    s, k, n = w.shape
    flat = w.permute(1, 0, 2).reshape(k, s * n)  # (K, S·N): every seed's points side by side
    log_px = (flat.logsumexp(0) - math.log(k)).view(s, n)
    k_hat = pareto_k(flat.topk(tail_length(k) + 1, 0).values).view(s, n)
    stats = WeightStats(s * n, k, dtype=torch.float64)
    stats.add(flat)
    own = stats.finish()[2].view(s, n)
    now = torch.stack([_pooled(w[i]) for i in range(s)])  # each seed's points pooled, as evaluate does
    before = block_jackknife(flat).view(s, n)
    light = k_hat <= UNTRUSTED_K
    pooled = w.permute(1, 0, 2).reshape(s * k, n)  # all seeds' weights of a point together
    tail = pareto_k(pooled.topk(tail_length(s * k) + 1, 0).values) <= UNTRUSTED_K  # (N,)
    return [
        ("jackknife (before), all pairs", numbers(log_px, before, torch.ones_like(light))),
        (f"jackknife (before), k̂ ≤ {UNTRUSTED_K}", numbers(log_px, before, light)),
        ("Pareto tail, each point's own k̂", numbers(log_px, own, torch.isfinite(own))),
        ("Pareto tail, k̂ pooled (now)", numbers(log_px, now, torch.isfinite(now))),
        (f"  on points of all seeds' k̂ ≤ {UNTRUSTED_K}", numbers(log_px, now, torch.isfinite(now) & tail)),
    ]


def _pooled(log_w: torch.Tensor) -> torch.Tensor:
    """The errors ``evaluate`` reports from one seed's ``(K, N)`` log weights: each point's fit,
    the tail's shape then learnt from all N (:mod:`pyro_vae.inference.estimators.pooled_tail`)."""
    stats = WeightStats(log_w.shape[1], len(log_w), dtype=torch.float64)
    stats.add(log_w)
    _, _, stderr, k = stats.finish()
    return pooled(k, stderr, stats.fit)[1] if stats.fit is not None else stderr


def numbers(log_px: torch.Tensor, stderr: torch.Tensor, reported: torch.Tensor) -> dict:
    """Spread ratio (median, p90), coverage and the share of pairs not reported, ``(S, N)`` in."""
    shown = torch.where(reported, stderr, torch.full_like(stderr, math.nan))
    ratio = log_px.std(0) / shown.nanmedian(0).values  # (N,), NaN for a point never reported
    deviation = (log_px - log_px.mean(0)).abs()
    covered = (deviation <= 2 * stderr)[reported]
    return {
        "ratio_median": ratio.nanmedian().item(),
        "ratio_p90": ratio.nanquantile(0.9).item(),
        "coverage": covered.double().mean().item(),
        "left_out": 1 - reported.double().mean().item(),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--samples", type=int, default=100, help="K per point (default 100)")
    p.add_argument("--points", type=int, default=180, help="the first N points of the split (default 180)")
    p.add_argument("--seeds", type=int, default=10, help="S replicate seeds (default 10)")
    p.add_argument("--split", default="valid")
    p.add_argument("--train", action="store_true", help="train the default digits run first if absent")
    args = p.parse_args(argv)
    if args.train and not args.run_dir.exists():
        from pyro_vae.cli.main import main as cli

        if cli(["train", "--train.run_dir", str(args.run_dir), "--quiet"]) != 0:
            sys.exit("training failed")
    w = log_weights(args.run_dir, args.samples, args.points, args.seeds, args.split)
    ess = torch.exp(2 * w.logsumexp(1) - (2 * w).logsumexp(1))
    print(
        f"{args.run_dir}: K = {args.samples}, {w.shape[2]} {args.split} points, {args.seeds} seeds, "
        f"mean ESS {ess.mean():.1f}"
    )
    print(f"{'error':34s} {'spread/σ median':>15s} {'p90':>6s} {'±2σ covers':>10s} {'left out':>9s}")
    for name, r in coverage_table(w):
        print(
            f"{name:34s} {r['ratio_median']:15.2f} {r['ratio_p90']:6.2f} "
            f"{r['coverage']:10.1%} {r['left_out']:9.1%}"
        )


if __name__ == "__main__":
    main()
