"""Interrupt a real training run, resume it, and compare it with the run that never stopped.

    python benchmarks/resume_equality.py --after 75 -- --config examples/binarized_mnist.toml \\
        --train.epochs 4 --train.device cpu --objective.kind iwae --objective.particles 5

runs ``pyro-vae train ARGS`` twice in fresh run directories: once to the end, and once
interrupted by SIGINT ``--after`` seconds after it began training (its first metrics row;
wherever it is then: within an epoch, between epochs or while measuring), then
``pyro-vae train --resume`` to the end. It prints the interrupted run's checkpoint position
and whether the two final checkpoints (parameters, optimizer and schedule state,
epoch/step/position, RNG state) and metrics rows
are equal bitwise, the seconds aside. Exit status 0 when they are, 1 when not.

With ``--extend-from E`` the second run is not interrupted but trained for ``E`` epochs and
then extended with ``pyro-vae train --resume DIR --train.epochs N`` to the ``N`` of the
arguments (``--epochs N``, default 300, the default run's)::

    python benchmarks/resume_equality.py --extend-from 50 --epochs 120

The default run (no arguments) is what a user runs: ``train.compile = "auto"``.
"""

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pyro_vae.training.checkpoint import load_checkpoint

TIMED = {"seconds", "epoch_seconds", "items_per_second", "compile_seconds"}


def differences(a, b, place: str = "") -> list[str]:
    """Where two checkpoint payloads (or metrics rows) differ, wall-clock values aside."""
    if isinstance(a, torch.Tensor):
        same = isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
        return [] if same else [place]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{place} (keys)"]
        return [d for k in a if k not in TIMED for d in differences(a[k], b[k], f"{place}/{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{place} (length)"]
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in differences(x, y, f"{place}/{i}")]
    return [] if a == b else [place]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--after", type=float, default=60.0, help="seconds before SIGINT (default 60)")
    parser.add_argument("--dir", type=Path, help="where to put the two runs (default: a new temporary one)")
    parser.add_argument("--extend-from", type=int, help="train this many epochs, then extend (no SIGINT)")
    parser.add_argument("--epochs", type=int, default=300, help="train.epochs of both runs (default 300)")
    parser.add_argument("args", nargs="*", help="pyro-vae train arguments, after --")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="resume-equality-"))
    whole, cut = root / "whole", root / "cut"
    train = [sys.executable, "-m", "pyro_vae", "train", *args.args, "--quiet"]
    epochs = ["--train.epochs", str(args.epochs)]

    start = time.perf_counter()
    subprocess.run([*train, *epochs, "--train.run_dir", str(whole)], check=True)
    print(f"uninterrupted run: {time.perf_counter() - start:.0f} s in {whole}")

    if args.extend_from is not None:
        first = ["--train.epochs", str(args.extend_from)]
        subprocess.run([*train, *first, "--train.run_dir", str(cut)], check=True)
        print(f"a run of {args.extend_from} epochs, extended to {args.epochs}")
    else:
        process = subprocess.Popen(
            [*train, *epochs, "--train.run_dir", str(cut)], stderr=subprocess.PIPE, text=True
        )
        while not (cut / "metrics.jsonl").exists() and process.poll() is None:
            time.sleep(0.1)  # --after counts from the untrained model's row: training has begun
        time.sleep(args.after)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate()
        print(f"interrupted run: exit status {process.returncode}; {stderr.strip()}")
    saved = load_checkpoint(cut / "checkpoint.pt")
    t = saved["training"]
    where = f"epoch {t['epoch']} done, step {t['step']}, batch {t['batch']} of the next"
    print(f"its checkpoint: {where}; step path {saved.get('step_path')}")
    resume = [sys.executable, "-m", "pyro_vae", "train", "--resume", str(cut), *epochs, "--quiet"]
    subprocess.run(resume, check=True)

    a, b = load_checkpoint(whole / "checkpoint.pt"), load_checkpoint(cut / "checkpoint.pt")
    found = [d for part in ("model", "training", "rng") for d in differences(a[part], b[part], part)]
    read = lambda d: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    rows = [read(whole), read(cut)]
    found += differences(rows[0], rows[1], "metrics")
    tensors = sum(t.numel() for t in a["model"].values())
    if found:
        print(f"DIFFERENT: {', '.join(found[:10])}")
        return 1
    print(
        f"bitwise equal: {len(a['model'])} parameter tensors ({tensors} values), the optimizer and "
        f"schedule state, the RNG state and {len(rows[0])} metrics rows; step path {a.get('step_path')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
