"""The experiment-tracking loggers: what they write is read back and compared exactly."""

import matplotlib.pyplot as plt
import pytest

from pyro_vae import ConfigError, Logger, register_logger
from pyro_vae.training.loggers import check_loggers, open_loggers, scalars, tag


def row(epoch: int, offset: float = 0.0) -> dict:
    """A metrics.jsonl row whose values are distinct, exactly representable in float32, and
    shifted by ``offset`` (a resumed run logs other values for the same epochs)."""
    return {
        "epoch": epoch,
        "step": 10 * epoch,
        "train_loss": None if epoch == 0 else 100.5 - epoch + offset,
        "train_elbo": -90.25 - epoch + offset,
        "valid_elbo": -95.5 - epoch + offset,
        "valid_kl": 4.0 + epoch + offset,
        "valid_elbo_stderr": 0.125,
        "kl_estimator": "closed_form",
        "seconds": 2.0 * epoch,
        "items_per_second": None if epoch == 0 else 1000.0,
    }


def test_tags_follow_the_split_and_quantity():
    assert tag("valid_elbo") == "elbo/valid"
    assert tag("train_elbo_stderr") == "elbo_stderr/train"
    assert tag("train_loss") == "loss/train"
    assert tag("items_per_second") == "run/items_per_second"
    assert tag("lr") == "run/lr"
    assert scalars(row(0)) == {
        "elbo/train": -90.25,
        "elbo/valid": -95.5,
        "kl/valid": 4.0,
        "elbo_stderr/valid": 0.125,
        "run/seconds": 0.0,
    }


def log_epochs(names, run_dir, epochs, *, start_epoch, offset):
    loggers = open_loggers(names, run_dir, start_epoch=start_epoch)
    for epoch in epochs:
        for logger in loggers:
            logger.log_metrics(row(epoch, offset))
    return loggers


def figure(path):
    fig, ax = plt.subplots(figsize=(1, 1), dpi=20)
    ax.plot([0, 1], [1, 0])
    fig.savefig(path)
    plt.close(fig)
    return path


def tensorboard_scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    values = {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}
    return values, events


def test_tensorboard_writes_scalars_at_epochs_and_figures_as_images(tmp_path):
    pytest.importorskip("tensorboard")
    (logger,) = log_epochs(["tensorboard"], tmp_path, range(3), start_epoch=0, offset=0.0)
    logger.log_figures([figure(tmp_path / "curves.png")], epoch=2)
    logger.close()

    values, events = tensorboard_scalars(tmp_path)
    assert set(values) == {
        "loss/train",
        "elbo/train",
        "elbo/valid",
        "kl/valid",
        "elbo_stderr/valid",
        "run/seconds",
        "run/items_per_second",
    }
    assert values["elbo/valid"] == [(0, -95.5), (1, -96.5), (2, -97.5)]
    assert values["loss/train"] == [(1, 99.5), (2, 98.5)]  # None at epoch 0 is left out
    (image,) = events.Images("figures/curves")
    assert (image.step, image.width, image.height) == (2, 20, 20)


def test_tensorboard_resume_replaces_the_epochs_after_the_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    for logger in log_epochs(["tensorboard"], tmp_path, range(5), start_epoch=0, offset=0.0):
        logger.close()
    for logger in log_epochs(["tensorboard"], tmp_path, range(3, 5), start_epoch=2, offset=0.5):
        logger.close()

    values, _ = tensorboard_scalars(tmp_path)
    assert values["elbo/valid"] == [(0, -95.5), (1, -96.5), (2, -97.5), (3, -98.0), (4, -99.0)]
    assert values["kl/valid"] == [(0, 4.0), (1, 5.0), (2, 6.0), (3, 7.5), (4, 8.5)]


def test_tensorboard_new_run_hides_what_an_overwritten_run_left(tmp_path):
    pytest.importorskip("tensorboard")
    for logger in log_epochs(["tensorboard"], tmp_path, range(5), start_epoch=0, offset=0.0):
        logger.close()
    for logger in log_epochs(["tensorboard"], tmp_path, range(2), start_epoch=0, offset=0.5):
        logger.close()

    values, _ = tensorboard_scalars(tmp_path)
    assert values["elbo/valid"] == [(0, -95.0), (1, -96.0)]


@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore:The ``noload`` loader strategy:DeprecationWarning"
)  # MLflow's, SQLAlchemy 2.1
def test_mlflow_logs_metrics_and_figures_and_resume_continues_the_run(tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow import MlflowClient

    run_dir = tmp_path / "vae-run"
    (logger,) = log_epochs(["mlflow"], run_dir, range(5), start_epoch=0, offset=0.0)
    logger.log_figures([figure(tmp_path / "curves.png")], epoch=4)
    logger.close()
    run_id, uri = logger.run_id, logger.tracking_uri
    assert uri == f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert (run.info.run_name, run.info.status) == ("vae-run", "FINISHED")
    assert client.get_experiment(run.info.experiment_id).name == "pyro-vae"
    history = [(m.step, m.value) for m in client.get_metric_history(run_id, "elbo/valid")]
    assert sorted(history) == [(0, -95.5), (1, -96.5), (2, -97.5), (3, -98.5), (4, -99.5)]
    assert [m.step for m in client.get_metric_history(run_id, "loss/train")] == [1, 2, 3, 4]
    assert [a.path for a in client.list_artifacts(run_id, "figures")] == ["figures/curves.png"]
    assert (run_dir / "mlartifacts").is_dir()

    (resumed,) = log_epochs(["mlflow"], run_dir, range(3, 5), start_epoch=2, offset=0.5)
    resumed.close()
    assert resumed.run_id == run_id
    assert len(client.search_runs([run.info.experiment_id])) == 1
    history = [(m.step, m.value) for m in client.get_metric_history(run_id, "kl/valid")]
    # MLflow keeps every value: the interrupted run's and the resumed run's for epochs 3 and 4
    assert sorted(history) == [(0, 4.0), (1, 5.0), (2, 6.0), (3, 7.0), (3, 7.5), (4, 8.0), (4, 8.5)]


class _Missing(Logger):
    module = "no_such_module_pyro_vae"
    extra = "nothing"


@pytest.fixture
def missing(scoped_registries):
    register_logger("missing", _Missing)


def test_a_logger_whose_package_is_missing_is_refused_in_one_line(missing):
    message = (
        'train.loggers = ["missing"] needs the no_such_module_pyro_vae package, which is not installed: '
        'pip install "pyro-vae[nothing]"'
    )
    with pytest.raises(ConfigError) as error:
        check_loggers(["missing"])
    assert str(error.value) == message


def test_an_unknown_or_repeated_logger_is_refused_in_one_line():
    with pytest.raises(ConfigError) as error:
        check_loggers(["tensorboard", "tensorbord"], key="train.loggers")
    assert str(error.value) == (
        'train.loggers = ["tensorboard", "tensorbord"]: "tensorbord" is not a known logger; '
        'allowed: "mlflow", "tensorboard"'
    )
    with pytest.raises(ConfigError, match=r'names "mlflow" twice$'):
        check_loggers(["mlflow", "mlflow"])


def test_a_logger_whose_package_is_found_but_fails_to_import_is_refused_in_one_line(
    tmp_path, monkeypatch, scoped_registries
):
    """As tensorboard is where protobuf has the wrong version: found, but its import raises."""
    (tmp_path / "broken_tracker").mkdir()
    (tmp_path / "broken_tracker" / "__init__.py").write_text(
        'raise TypeError("Descriptors cannot be created directly.\\nMore lines.")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    class Broken(Logger):
        module, extra = "broken_tracker", "broken"

    register_logger("broken", Broken)
    with pytest.raises(ConfigError) as error:
        check_loggers(["broken"])
    assert str(error.value) == (
        'train.loggers = ["broken"] needs the broken_tracker package, which is installed but fails to '
        "import (TypeError: Descriptors cannot be created directly.)"
    )


def test_mlflow_says_nothing_of_its_own_while_making_its_store(tmp_path, capfd):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    (logger,) = log_epochs(["mlflow"], tmp_path / "run", range(1), start_epoch=0, offset=0.0)
    logger.close()
    out, err = capfd.readouterr()
    assert "INFO" not in out + err, out + err


def test_a_registered_logger_is_opened_with_the_run(tmp_path, scoped_registries):
    class Rows(Logger):
        def __init__(self, run_dir, *, start_epoch):
            super().__init__(run_dir, start_epoch=start_epoch)
            self.rows: list = []

        def log_metrics(self, row):
            self.rows.append(scalars(row))

    register_logger("rows", Rows)
    (logger,) = log_epochs(["rows"], tmp_path, range(2), start_epoch=0, offset=0.0)
    assert isinstance(logger, Rows) and logger.run_dir == tmp_path and logger.start_epoch == 0
    assert [r["elbo/valid"] for r in logger.rows] == [-95.5, -96.5]
    assert logger.rows[1]["run/items_per_second"] == 1000.0
