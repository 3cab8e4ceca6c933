"""Resuming a run: interrupted anywhere (SIGINT, SIGTERM, kill -9), it continues bit for bit.

The interrupted runs are real processes (``tests/stop_after.py`` stops one at a step count
the test chooses, or the test signals it from outside); the resumed runs and the references
run in this process through ``pyro_vae.cli.main.main``. On the CPU, a resumed run's parameters,
optimizer and schedule state, RNG state and metrics rows (seconds aside) equal those of the
run that was never interrupted, bitwise.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyro_vae.cli.main import main
from pyro_vae.training import paths
from pyro_vae.training.checkpoint import load_checkpoint
from pyro_vae.training.run import CHECKPOINT, METRICS

pytestmark = pytest.mark.slow

HOOK = Path(__file__).resolve().parents[1] / "stop_after.py"
# every step eager: train.compile = "auto" chooses by timing the first steps, so two runs could
# take different paths (metrics' step_path), and tests/stop_after.py counts eager steps
TINY = [
    "--model.encoder.hidden", "[16]", "--model.decoder.hidden", "[16]", "--train.device", "cpu",
    "--train.compile", "false",
]  # fmt: skip
VARIANTS = {
    "elbo": [],
    # KL warm-up, a learning-rate schedule, five importance samples and clipping together
    "iwae-warmup-schedule": [
        "--objective.kind", "iwae", "--objective.particles", "5", "--objective.kl_warmup", "3",
        "--train.lr_schedule.kind", "exponential", "--train.lr_schedule.gamma", "0.8",
        "--train.clip_norm", "50",
    ],
}  # fmt: skip
EPOCHS, STEPS_PER_EPOCH = 4, 17  # 1617 digits in batches of 100
# wall-clock: the only values allowed to differ
TIMED = {"seconds", "epoch_seconds", "items_per_second", "compile_seconds"}


def run_cli(*args) -> None:
    assert main([*args, "--quiet"]) == 0


def hooked(env: dict, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HOOK), *args, "--quiet"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_same_values(a, b, place=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), place
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), place
        for key in a:
            if key not in TIMED:
                assert_same_values(a[key], b[key], f"{place}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), place
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_values(x, y, f"{place}/{i}")
    else:
        assert a == b, (place, a, b)


def assert_same_run(resumed: Path, reference: Path, epochs: int = EPOCHS) -> None:
    a, b = load_checkpoint(resumed / CHECKPOINT), load_checkpoint(reference / CHECKPOINT)
    for part in ("model", "training", "rng"):
        assert_same_values(a[part], b[part], part)
    rows = [json.loads(line) for line in (resumed / METRICS).read_text().splitlines()]
    expected = [json.loads(line) for line in (reference / METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(epochs + 1))
    assert_same_values(rows, expected, "metrics")


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The uninterrupted runs of every variant."""
    out = {}
    for name, args in VARIANTS.items():
        out[name] = tmp_path_factory.mktemp("reference") / name
        run_cli("train", "--train.epochs", str(EPOCHS), "--train.run_dir", str(out[name]), *TINY, *args)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [2 * STEPS_PER_EPOCH, 40], ids=["epoch-boundary", "mid-epoch"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_an_interrupted_run_resumes_to_the_uninterrupted_one(tmp_path, references, variant, stop_after):
    run_dir = tmp_path / "run"
    args = ["train", "--train.epochs", str(EPOCHS), "--train.run_dir", str(run_dir), *TINY]
    args += VARIANTS[variant]
    stopped = hooked({"STOP_AFTER": str(stop_after), "STOP_SIGNAL": "SIGINT", "FIGURES": "1"}, *args)
    assert stopped.returncode == 130, stopped.stderr
    line = stopped.stderr.strip().splitlines()[-1]
    assert line.startswith("pyro-vae: interrupted by SIGINT") and "Traceback" not in stopped.stderr
    assert line.endswith(f"resume with: pyro-vae train --resume {run_dir}")
    saved = load_checkpoint(run_dir / CHECKPOINT)["training"]
    assert saved["step"] == stop_after
    assert saved["batch"] == stop_after % STEPS_PER_EPOCH  # 0 at the boundary, 6 into epoch 3
    assert not (run_dir / "samples.png").exists()  # the end was not reached
    run_cli("train", "--resume", str(run_dir))
    assert_same_run(run_dir, references[variant])


@pytest.mark.slow
def test_a_finished_run_extended_with_more_epochs_equals_the_longer_run(tmp_path, references):
    run_dir = tmp_path / "run"
    run_cli("train", "--train.epochs", "2", "--train.run_dir", str(run_dir), *TINY)
    run_cli("train", "--resume", str(run_dir), "--train.epochs", str(EPOCHS))
    assert_same_run(run_dir, references["elbo"])


@pytest.mark.slow
def test_sigterm_from_outside_and_a_second_writer(tmp_path, references, capsys):
    """A real run signalled at whatever moment it has reached; meanwhile a second writer is refused."""
    run_dir = tmp_path / "run"
    # TINY pins the eager step: a run this long would otherwise compile it (train.compile =
    # "auto"), with other rounding than the short eager reference's
    args = ["train", "--train.epochs", "100000", "--train.run_dir", str(run_dir), *TINY]
    process = subprocess.Popen(
        [sys.executable, "-m", "pyro_vae", *args, "--quiet"], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (run_dir / CHECKPOINT).exists():
            time.sleep(0.2)
        assert (run_dir / CHECKPOINT).exists(), "no checkpoint after the first epoch"
        for extra in ([], ["--overwrite"]):  # with or without --overwrite
            assert main([*args, "--quiet", *extra]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"is in use by process {process.pid}" in err[0], err
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1].startswith("pyro-vae: interrupted by SIGTERM")
    assert f"resume with: pyro-vae train --resume {run_dir}" in stderr
    saved = load_checkpoint(run_dir / CHECKPOINT)["training"]
    # resume to the end of the epoch it was in (or the one after): as if never stopped
    epochs = saved["epoch"] + 1
    run_cli("train", "--resume", str(run_dir), "--train.epochs", str(epochs))
    reference = tmp_path / "reference"
    run_cli("train", "--train.epochs", str(epochs), "--train.run_dir", str(reference), *TINY)
    a, b = load_checkpoint(run_dir / CHECKPOINT), load_checkpoint(reference / CHECKPOINT)
    assert_same_values(a["model"], b["model"], "model")
    assert_same_values(a["training"], b["training"], "training")


@pytest.mark.slow
def test_kill_9_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, references):
    run_dir = tmp_path / "run"
    args = ["train", "--train.epochs", str(EPOCHS), "--train.run_dir", str(run_dir), *TINY]
    # checkpoints after epochs 1, 2 (and best.pt after each): the fourth write dies half-way
    killed = hooked({"KILL_IN_SAVE": "4"}, *args, "--train.checkpoint_every", "{ epochs = 1 }")
    assert killed.returncode == -signal.SIGKILL
    assert (run_dir / ".best.pt.tmp").exists()  # the torn temporary file, never renamed
    assert load_checkpoint(run_dir / CHECKPOINT)["training"]["epoch"] == 2  # the last complete one
    run_cli("train", "--resume", str(run_dir), "--train.checkpoint_every", "{ epochs = 1 }")
    assert not list(run_dir.glob(".*.tmp"))  # the stale temporary file is gone
    assert_same_run(run_dir, references["elbo"])


@pytest.mark.slow
@pytest.mark.parametrize("path", ["replayed"])  # compiled: benchmarks/resume_equality.py
def test_with_default_settings_a_resumed_or_extended_run_is_the_uninterrupted_one(
    tmp_path, monkeypatch, path
):
    """``train.compile = "auto"`` as a user leaves it, deciding the replayed or the compiled path
    (its thresholds moved, as for a longer run): a run stopped by SIGINT just before the first
    epoch's short last minibatch and resumed, and a 1-epoch run extended to 2, end bitwise equal
    to the 2-epoch run, which recorded the same path."""
    auto = TINY[: TINY.index("--train.compile")]

    def decide(target):  # auto's thresholds, moved so that it decides ``target`` for these runs
        monkeypatch.setattr(paths, "AUTO_SECONDS", 0.0 if target == "compiled" else float("inf"))
        monkeypatch.setattr(paths, "REPLAY_SECONDS", 0.0 if target == "replayed" else float("inf"))

    decide(path)
    reference, stopped, extended = tmp_path / "reference", tmp_path / "stopped", tmp_path / "extended"
    run_cli("train", "--train.epochs", "2", "--train.run_dir", str(reference), *auto)
    assert load_checkpoint(reference / CHECKPOINT)["step_path"] == path
    rows = [json.loads(line) for line in (reference / METRICS).read_text().splitlines()]
    assert [r["step_path"] for r in rows[1:]] == ["eager" if path == "replayed" else path] * 2
    args = ["train", "--train.epochs", "2", "--train.run_dir", str(stopped), *auto]
    env = {"STOP_AFTER": str(STEPS_PER_EPOCH - 1), "STOP_SIGNAL": "SIGINT", "AUTO_PATH": path}
    cut = hooked(env, *args, timeout=600)
    assert cut.returncode == 130, cut.stderr
    assert load_checkpoint(stopped / CHECKPOINT)["training"]["batch"] == STEPS_PER_EPOCH - 1
    decide("eager")  # a compiled run stays compiled; a replayed one computes what eager does
    run_cli("train", "--resume", str(stopped))
    assert_same_run(stopped, reference, epochs=2)
    decide(path)
    run_cli("train", "--train.epochs", "1", "--train.run_dir", str(extended), *auto)
    run_cli("train", "--resume", str(extended), "--train.epochs", "2")
    assert_same_run(extended, reference, epochs=2)
