"""pyro_vae.training.run: checkpoints, run directories and metrics files."""

import pytest
import torch

import pyro_vae
from pyro_vae import Config
from pyro_vae.core.errors import RunDirError
from pyro_vae.core.files import lock_dir
from pyro_vae.inference.measure import evaluate_elbo
from pyro_vae.training.checkpoint import save_checkpoint
from pyro_vae.training.run import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    Run,
    append_metrics,
    check_same_run,
    claim_run_dir,
    first_difference,
    read_metrics,
    write_metrics,
)


def claim(path, **kwargs):
    with claim_run_dir(path, **kwargs):
        pass


def test_claiming_refuses_a_run_unless_overwrite_or_resume(tmp_path):
    fresh = tmp_path / "a" / "b"
    claim(fresh)
    assert not fresh.exists()  # made for a run that left it empty: removed
    fresh.mkdir()
    claim(fresh)
    assert fresh.is_dir() and list(fresh.iterdir()) == []  # one it found stays, and no .lock in it
    (fresh / CONFIG).write_text("")
    (fresh / "mine.txt").write_text("kept")
    with pytest.raises(RunDirError, match=r"already holds a run \(config\.toml\); resume it with --resume"):
        claim(fresh)
    claim(fresh, resume=True)
    assert (fresh / CONFIG).exists()
    claim(fresh, overwrite=True)
    assert not (fresh / CONFIG).exists() and (fresh / "mine.txt").read_text() == "kept"
    claim(fresh)  # empty of runs again
    with pytest.raises(RunDirError, match="is a file"):
        claim(fresh / "mine.txt")


def test_what_a_start_that_never_finished_an_epoch_left_is_replaced(tmp_path):
    (tmp_path / CONFIG).write_text("x")
    append_metrics(tmp_path / METRICS, {"epoch": 0, "elbo": -1.5})
    (tmp_path / "mine.txt").write_text("kept")
    with claim_run_dir(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "mine.txt"]
    append_metrics(tmp_path / METRICS, {"epoch": 0, "elbo": -1.5})
    append_metrics(tmp_path / METRICS, {"epoch": 1, "elbo": -1.25})  # an epoch finished: a run
    with pytest.raises(RunDirError, match=r"already holds a run \(metrics\.jsonl\)"):
        claim(tmp_path)


def test_a_new_run_that_fails_before_its_first_checkpoint_removes_what_it_wrote(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError), claim_run_dir(run_dir):
        (run_dir / CONFIG).write_text("x")
        raise ValueError("diverged")
    assert not run_dir.exists()
    run_dir.mkdir()
    with pytest.raises(ValueError), claim_run_dir(run_dir):
        (run_dir / CONFIG).write_text("x")
        (run_dir / CHECKPOINT).write_bytes(b"after epoch 1")
        raise ValueError("diverged in epoch 2")
    assert sorted(p.name for p in run_dir.iterdir()) == [CHECKPOINT, CONFIG]  # resumable: kept


def test_metrics_round_trip(tmp_path):
    rows = [{"epoch": 0, "elbo": -1.5}, {"epoch": 1, "elbo": -1.25, "note": "x"}]
    for row in rows:
        append_metrics(tmp_path / "m.jsonl", row)
    assert read_metrics(tmp_path / "m.jsonl") == rows
    write_metrics(tmp_path / "m.jsonl", rows[:1])
    assert read_metrics(tmp_path / "m.jsonl") == rows[:1]


def test_a_torn_last_metrics_line_is_dropped_a_damaged_one_refused(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"epoch": 0, "elbo": -1.5}\n{"epoch": 1, "el')  # killed while appending
    assert read_metrics(path) == [{"epoch": 0, "elbo": -1.5}]
    path.write_text('{"epoch": 0}\n{"epo\n{"epoch": 2}\n')
    with pytest.raises(RunDirError, match="line 2 is not a JSON object"):
        read_metrics(path)


def test_a_second_writer_is_refused_while_the_lock_is_held(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with claim_run_dir(run_dir):
        # flock is per open file: a second claim, even from this process, is refused
        for overwrite in (False, True):
            with (
                pytest.raises(RunDirError, match=r"is in use by process \d+"),
                claim_run_dir(run_dir, overwrite=overwrite),
            ):
                pass
    with lock_dir(run_dir):  # released when the first claim ended
        pass


def test_claiming_removes_stale_temporary_files(tmp_path):
    (tmp_path / ".checkpoint.pt.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / CHECKPOINT).write_bytes(b"kept")
    with claim_run_dir(tmp_path, resume=True):
        pass
    assert not (tmp_path / ".checkpoint.pt.tmp").exists() and (tmp_path / CHECKPOINT).read_bytes() == b"kept"


def test_first_difference_names_the_dotted_key():
    a = Config().to_dict()
    b = Config().override({"model.latent_dim": 5, "train.epochs": 9}).to_dict()
    assert first_difference(a, b) == "model.latent_dim = 2 → 5"
    assert first_difference(a, b, ignore={"model.latent_dim"}) == "train.epochs = 300 → 9"
    assert first_difference(a, b, ignore={"model.latent_dim", "train.epochs"}) is None


def test_a_checkpoint_from_another_run_is_refused(tmp_path):
    config = Config().override({"train.epochs": 3})
    config.save(tmp_path / CONFIG)
    other = config.override({"model.latent_dim": 4})
    save_checkpoint(tmp_path / CHECKPOINT, config=other.to_dict(), model={}, training={}, custom_model=False)
    from pyro_vae.training.checkpoint import load_checkpoint

    payload = load_checkpoint(tmp_path / CHECKPOINT)
    words = r"belongs to another run: config.toml differs \(model.latent_dim = 4 → 2\)"
    with pytest.raises(RunDirError, match=words):
        check_same_run(tmp_path, payload)
    extended = config.override({"train.epochs": 30})  # what a resumed run may change is not compared
    save_checkpoint(
        tmp_path / CHECKPOINT, config=extended.to_dict(), model={}, training={}, custom_model=False
    )
    check_same_run(tmp_path, load_checkpoint(tmp_path / CHECKPOINT))


@pytest.mark.slow
def test_run_load_rebuilds_the_trained_vae(tmp_path):
    config = Config().override(
        {
            "train.epochs": 1,
            "train.run_dir": str(tmp_path / "run"),
            "model.encoder.hidden": [8],
            "model.decoder.hidden": [8],
        }
    )
    run = pyro_vae.train(config, quiet=True)
    loaded = Run.load(run.dir)
    trained, rebuilt = run.vae.state_dict(), loaded.vae.state_dict()
    assert trained.keys() == rebuilt.keys()
    assert all(torch.equal(trained[k], rebuilt[k]) for k in trained)
    assert loaded.config.to_dict() == run.config.to_dict()
    assert loaded.history == read_metrics(run.dir / "metrics.jsonl") and loaded.history
    x = torch.rand(25, run.vae.config.data_dim, generator=torch.Generator().manual_seed(0))
    run.vae.eval()
    a = evaluate_elbo(run.vae.model, run.vae.guide, x, seed=5)
    b = evaluate_elbo(loaded.vae.model, loaded.vae.guide, x, seed=5)
    assert a.keys() == b.keys()
    tensors = [k for k in a if torch.is_tensor(a[k])]
    assert tensors and all(torch.equal(a[k], b[k]) for k in tensors)
    assert all(a[k] == b[k] for k in a.keys() - tensors)
