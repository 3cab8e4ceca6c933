"""Long runs: what a resume may change, divergence, warnings, schedules, clipping, best.pt,
early stopping and the checkpoint cadence (in-process, tiny runs on the digits)."""

import contextlib
import io
import json
import math
import shutil
import subprocess
import sys

import pytest
import torch

import pyro_vae.training.trainer
from pyro_vae import Config
from pyro_vae.cli.main import main
from pyro_vae.training.checkpoint import load_checkpoint, save_checkpoint
from pyro_vae.training.run import BEST, CHECKPOINT, METRICS
from pyro_vae.training.step import TrainStep, train_step
from tests.ppca import ppca

TINY = ["--model.encoder.hidden", "[16]", "--model.decoder.hidden", "[16]", "--train.device", "cpu"]
#: for a test that patches TrainStep.__call__: every step eager, whatever train.compile = "auto"
#: would choose by timing the first steps (a replayed or compiled step does not call it)
EAGER = ["--train.compile", "false"]


def cli(*argv) -> tuple[int, list[str]]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, err.getvalue().strip().splitlines()


def rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    assert cli("train", "--train.epochs", 2, "--train.run_dir", run_dir, "--quiet", *TINY)[0] == 0
    return run_dir


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--model.latent_dim", "5"], "--model.latent_dim cannot change when resuming"),
        (["--train.lr", "0.01"], "--train.lr cannot change when resuming"),
        (["--objective.kind", "iwae"], "--objective.kind cannot change when resuming"),
        (["--data.split_seed", "3"], "--data.split_seed cannot change when resuming"),
        (["--overwrite"], "pass one of them"),
        (["--config", "x.toml"], "pass --config or --resume, not both"),
        (["--train.epochs", "1"], "--train.epochs 1 is fewer than the 2 epochs"),
    ],
)
def test_resume_refuses_what_would_make_another_run(finished, args, words):
    before = (finished / CHECKPOINT).read_bytes(), (finished / METRICS).read_text()
    config = (finished / "config.toml").read_text()
    code, err = cli("train", "--resume", finished, *args)
    assert code == 2 and len(err) == 1 and err[0].startswith("pyro-vae: error:") and words in err[0], err
    assert ((finished / CHECKPOINT).read_bytes(), (finished / METRICS).read_text()) == before  # untouched
    assert (finished / "config.toml").read_text() == config


def test_resume_of_a_directory_without_a_checkpoint(tmp_path):
    code, err = cli("train", "--resume", tmp_path / "nowhere")
    assert code == 2 and err == [f"pyro-vae: error: nothing to resume in {str(tmp_path / 'nowhere')!r}: "
                                 "it holds no checkpoint.pt"]  # fmt: skip
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_a_schedule_that_spans_train_epochs_cannot_be_extended(tmp_path):
    run_dir = tmp_path / "run"
    cosine = ["--train.lr_schedule.kind", "cosine"]
    assert cli("train", "--train.epochs", 1, "--train.run_dir", run_dir, "--quiet", *TINY, *cosine)[0] == 0
    code, err = cli("train", "--resume", run_dir, "--train.epochs", 3, "--quiet")
    assert code == 2 and len(err) == 1 and "lr_schedule 'cosine' spans train.epochs" in err[0]
    fixed = tmp_path / "fixed"
    period = [*cosine, "--train.lr_schedule.period", "3"]
    assert cli("train", "--train.epochs", 1, "--train.run_dir", fixed, "--quiet", *TINY, *period)[0] == 0
    assert cli("train", "--resume", fixed, "--train.epochs", 3, "--quiet")[0] == 0
    assert [r["epoch"] for r in rows(fixed)] == [0, 1, 2, 3]


def test_divergence_stops_and_names_the_last_good_checkpoint(tmp_path, monkeypatch):
    step = TrainStep.__call__
    calls = []

    def diverging(self, x, **kwargs):
        loss = step(self, x, **kwargs)
        calls.append(1)
        return loss * math.nan if len(calls) > 20 else loss  # in the second epoch (17 steps each)

    monkeypatch.setattr(TrainStep, "__call__", diverging)
    run_dir = tmp_path / "run"
    code, err = cli("train", "--train.epochs", 5, "--train.run_dir", run_dir, *TINY, *EAGER, "--quiet")
    assert code == 2 and len(err) == 1, err
    assert err[0] == (
        "pyro-vae: error: training diverged in epoch 2: the loss is nan; try a smaller --train.lr "
        f"(now 0.001); the last good checkpoint is {run_dir / CHECKPOINT} (epoch 1)"
    )
    assert load_checkpoint(run_dir / CHECKPOINT)["training"]["epoch"] == 1
    assert [r["epoch"] for r in rows(run_dir)] == [0, 1]
    assert not (run_dir / "samples.png").exists()


def test_an_elbo_that_ends_below_the_untrained_one_is_warned_about(tmp_path):
    run_dir = tmp_path / "run"
    code, err = cli(
        "train", "--train.epochs", 2, "--train.run_dir", run_dir, "--train.lr", "1e6", *TINY, "--quiet"
    )
    first, last = rows(run_dir)[0]["valid_elbo"], rows(run_dir)[-1]["valid_elbo"]
    assert code == 0 and last < first
    assert err == [
        f"pyro-vae: warning: the validation ELBO ended below the untrained model's ({last:.4g} < "
        f"{first:.4g}): the learning rate may be too large (train.lr = 1e+06)"
    ]


def test_clipping_rescales_the_gradient_to_the_norm():
    vae, x, *_ = ppca("cpu", shift=3.0, scale_factor=0.7)
    model, guide = vae.programs(param_sites=False)
    params = list(vae.parameters())
    objective = pyro_vae.make_objective("elbo")

    def update(clip_norm):
        before = [p.detach().clone() for p in params]
        rng = torch.get_rng_state()
        train_step(objective, model, guide, torch.optim.SGD(params, lr=1.0), x, clip_norm=clip_norm)
        torch.set_rng_state(rng)
        change = [b - p.detach() for b, p in zip(before, params, strict=True)]  # = the (clipped) gradient
        with torch.no_grad():
            for p, b in zip(params, before, strict=True):
                p.copy_(b)
        return change

    full = update(None)
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in full])).item()
    assert norm > 10
    clipped = update(1.0)
    assert torch.linalg.vector_norm(torch.cat([g.flatten() for g in clipped])).item() == pytest.approx(
        1.0, rel=1e-4
    )
    for g, c in zip(full, clipped, strict=True):  # the same direction, scaled by 1/‖g‖
        torch.testing.assert_close(c, g / norm, rtol=1e-4, atol=1e-7)
    assert all(
        torch.equal(g, c) for g, c in zip(full, update(10 * norm), strict=True)
    )  # a loose bound: as is


@pytest.mark.slow
def test_best_checkpoint_and_early_stopping(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--train.epochs", 40, "--train.patience", 2, "--train.lr", 0.03, "--train.run_dir", run_dir]
    code, err = cli("train", *args, *TINY)
    history = rows(run_dir)
    elbos = [r["valid_elbo"] for r in history]
    stopped = history[-1]["epoch"]
    best = max(range(1, stopped + 1), key=lambda e: elbos[e])
    # it stopped at the first epoch two past the best so far, not before
    assert stopped < 40 and stopped - best == 2
    assert all(e - max(range(1, e + 1), key=lambda k: elbos[k]) < 2 for e in range(1, stopped))
    assert code == 0 and any(
        "stopped early: the validation ELBO has not improved for 2 epochs" in line for line in err
    )
    kept = load_checkpoint(run_dir / BEST)
    assert kept["training"]["epoch"] == best and kept["training"]["best_epoch"] == best
    assert kept["training"]["best_elbo"] == elbos[best]
    assert load_checkpoint(run_dir / CHECKPOINT)["training"]["epoch"] == stopped
    best_run = pyro_vae.Run.load(run_dir, checkpoint=BEST)
    last_run = pyro_vae.Run.load(run_dir)
    x = torch.rand(5, 64, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(best_run.vae.encode(x), last_run.vae.encode(x))
    assert (best_run.epoch, last_run.epoch) == (best, stopped)
    for which, suffix, epoch in (("best.pt", "-best", best), ("checkpoint.pt", "", stopped)):
        assert (
            cli("evaluate", run_dir, "--checkpoint", which, "--points", 20, "--samples", 4, "--quiet")[0] == 0
        )
        record = json.loads((run_dir / f"evaluation-is-valid{suffix}.json").read_text())
        assert (record["checkpoint"], record["epoch"]) == (which, epoch)


def test_checkpoint_cadence_in_epochs(tmp_path, monkeypatch):
    saved = []
    save = pyro_vae.training.trainer.save_checkpoint

    def recording(path, **kwargs):
        saved.append((path.name, kwargs["training"]["epoch"]))
        save(path, **kwargs)

    monkeypatch.setattr(pyro_vae.training.trainer, "save_checkpoint", recording)
    run_dir = tmp_path / "run"
    every = ["--train.checkpoint_every", "{ epochs = 2 }"]
    assert cli("train", "--train.epochs", 6, "--train.run_dir", run_dir, "--quiet", *TINY, *every)[0] == 0
    # after the first epoch, then every second one, and at the end
    assert [e for name, e in saved if name == CHECKPOINT] == [1, 3, 5, 6]
    bests = [e for name, e in saved if name == BEST]
    elbos = [r["valid_elbo"] for r in rows(run_dir)]
    assert bests == [e for e in range(1, 7) if elbos[e] > max(elbos[1:e], default=-math.inf)]
    every = Config.from_dict(load_checkpoint(run_dir / CHECKPOINT)["config"]).train.checkpoint_every
    assert every.epochs == 2 and every.seconds is None


@pytest.mark.slow
@pytest.mark.figures  # the trackers receive them
def test_tracking_through_training_and_resume(tmp_path):
    pytest.importorskip("tensorboard")
    from tests.training.test_loggers import tensorboard_scalars

    run_dir = tmp_path / "run"
    loggers = ["--train.loggers", '["tensorboard"]']
    assert cli("train", "--train.epochs", 2, "--train.run_dir", run_dir, "--quiet", *TINY, *loggers)[0] == 0
    assert cli("train", "--resume", run_dir, "--train.epochs", 3, "--quiet")[0] == 0
    values, events = tensorboard_scalars(run_dir)
    history = rows(run_dir)
    as_logged = [(r["epoch"], torch.tensor(r["valid_elbo"]).item()) for r in history]  # float32
    assert values["elbo/valid"] == as_logged and len(as_logged) == 4  # one value per epoch
    assert values["run/lr"] == [(r["epoch"], torch.tensor(r["lr"]).item()) for r in history]
    figures = {tag for tag in events.Tags()["images"]}
    assert {"figures/curves", "figures/samples", "figures/reconstructions"} <= figures
    assert [image.step for image in events.Images("figures/curves")] == [2, 3]  # at each end


def test_a_logger_whose_extra_is_missing_is_refused_before_anything_is_written(tmp_path, scoped_registries):
    from pyro_vae.training.loggers import Logger, register_logger

    class Missing(Logger):
        module, extra = "no_such_module_pyro_vae", "nothing"

    register_logger("missing", Missing)
    code, err = cli("train", "--train.run_dir", tmp_path / "run", "--train.loggers", '["missing"]', *TINY)
    assert code == 2 and len(err) == 1 and 'pip install "pyro-vae[nothing]"' in err[0], err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_full_disk_ends_in_one_line_and_leaves_nothing_that_blocks_a_rerun(tmp_path):
    """Files are limited to 1 MB (RLIMIT_FSIZE: writes past it fail as on a full disk): the
    default digits model's checkpoint (about 2 MB with Adam's state) cannot be written."""
    resource = pytest.importorskip("resource")
    run_dir = tmp_path / "run"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))

    args = ["--train.epochs", "2", "--train.run_dir", str(run_dir), "--train.device", "cpu", "--quiet"]
    done = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "train", *args],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"pyro-vae: error: cannot write {str(run_dir / CHECKPOINT)!r}: file too large"
    ]
    # no checkpoint was ever written: nothing is left that would block the same command again,
    # temporary files included
    assert not run_dir.exists()


def test_a_checkpoint_whose_shapes_do_not_match_its_config_is_refused_in_one_line(finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    payload = load_checkpoint(run_dir / CHECKPOINT)
    wider = Config.from_dict(payload["config"]).override({"model.encoder.hidden": [24]})
    wider.save(run_dir / "config.toml")  # the directory agrees with the checkpoint's config...
    save_checkpoint(  # ...whose weights are the [16]-wide encoder's
        run_dir / CHECKPOINT,
        config=wider.to_dict(),
        model=payload["model"],
        training=payload["training"],
        custom_model=False,
    )
    for command in (
        ["evaluate", run_dir, "--points", 5],
        ["sample", run_dir, "-n", 4],
        ["train", "--resume", run_dir],
    ):
        code, err = cli(*command)
        assert code == 2 and len(err) == 1, (command, err)
        assert err[0].startswith(
            f"pyro-vae: error: {run_dir / CHECKPOINT} does not fit the model its config describes"
        )
        assert "size mismatch" in err[0]


def test_a_torn_metrics_file_is_read_to_its_last_whole_line(finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    text = (run_dir / METRICS).read_text()
    (run_dir / METRICS).write_text(text + '{"epoch": 3, "step": 51, "train_lo')  # killed mid-append
    assert [r["epoch"] for r in pyro_vae.Run.load(run_dir).history] == [0, 1, 2]
    assert cli("evaluate", run_dir, "--points", 5, "--samples", 4, "--quiet")[0] == 0
    lines = text.splitlines()
    (run_dir / METRICS).write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    code, err = cli("evaluate", run_dir, "--points", 5, "--quiet")
    assert code == 2 and err == [
        f"pyro-vae: error: {str(run_dir / METRICS)!r} is damaged: line 2 is not a JSON object"
    ]


@pytest.mark.slow
def test_an_early_stopped_run_resumed_stays_stopped_unless_patience_grows(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--train.epochs", 40, "--train.patience", 2, "--train.lr", 0.03, "--train.run_dir", run_dir]
    assert cli("train", *args, "--quiet", *TINY)[0] == 0
    stopped = rows(run_dir)[-1]["epoch"]
    assert cli("train", "--resume", run_dir, "--quiet")[0] == 0
    assert rows(run_dir)[-1]["epoch"] == stopped  # nothing more was trained
    assert cli("train", "--resume", run_dir, "--train.patience", 5, "--quiet")[0] == 0
    assert rows(run_dir)[-1]["epoch"] > stopped


def test_a_users_own_model_resumes_exactly(tmp_path):
    import pyro

    from tests import one_factor

    data, model, guide = one_factor.data(250, 50), one_factor.model, one_factor.guide

    def config(name, epochs):
        return Config().override(
            {
                "train.epochs": epochs,
                "train.lr": 0.05,
                "train.run_dir": str(tmp_path / name),
                "train.device": "cpu",
            }
        )

    pyro_vae.train(config("whole", 6), model=model, guide=guide, data=data, quiet=True)
    pyro.clear_param_store()
    pyro_vae.train(config("cut", 3), model=model, guide=guide, data=data, quiet=True)
    pyro.clear_param_store()  # a new process: the parameters come from the checkpoint
    pyro_vae.train(config("cut", 6), model=model, guide=guide, data=data, resume=tmp_path / "cut", quiet=True)
    a, b = (load_checkpoint(tmp_path / name / CHECKPOINT) for name in ("whole", "cut"))
    assert a["model"].keys() == b["model"].keys() == {"w", "a", "s"}
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["valid_elbo"] for r in rows(tmp_path / "whole")] == [
        r["valid_elbo"] for r in rows(tmp_path / "cut")
    ]


@pytest.mark.slow
def test_tracking_keeps_the_untrained_row_through_a_resume_within_the_first_epoch(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    import os
    import signal

    from tests.training.test_loggers import tensorboard_scalars

    step, calls = TrainStep.__call__, []

    def interrupting(self, x, **kwargs):
        loss = step(self, x, **kwargs)
        calls.append(1)
        if len(calls) == 5:  # within epoch 1: Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(TrainStep, "__call__", interrupting)
    run_dir = tmp_path / "run"
    args = ["--train.epochs", 2, "--train.run_dir", run_dir, "--quiet", "--train.loggers", '["tensorboard"]']
    assert cli("train", *args, *TINY, *EAGER)[0] == 130
    monkeypatch.setattr(TrainStep, "__call__", step)
    assert cli("train", "--resume", run_dir, "--quiet")[0] == 0
    values, _ = tensorboard_scalars(run_dir)
    assert values["elbo/valid"] == [(r["epoch"], torch.tensor(r["valid_elbo"]).item()) for r in rows(run_dir)]
    assert [e for e, _ in values["elbo/valid"]] == [0, 1, 2]
