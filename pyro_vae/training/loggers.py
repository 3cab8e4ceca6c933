"""Copies of a run's metrics and figures for experiment trackers: ``train.loggers = [...]``.

``metrics.jsonl`` stays the record of a run; a logger copies each of its rows, and the run's
figures, to a tracker. The built-in ones write inside the run directory and work offline:

``"tensorboard"``
    ``RUN_DIR/tensorboard/``: event files (``tensorboard --logdir RUN_DIR/tensorboard``), one
    scalar per number of a row and the figures as images under ``figures/<name>``.
``"mlflow"``
    ``RUN_DIR/mlflow.db``: an SQLite tracking store holding the experiment ``"pyro-vae"`` with
    one run named after the run directory; its figures go to ``RUN_DIR/mlartifacts/``.

Every numeric value of a row except ``epoch`` and ``step`` is logged at step = epoch, under
the name :func:`tag` gives it: ``<split>_<quantity>`` as ``<quantity>/<split>`` (``valid_elbo``
as ``elbo/valid``, ``train_elbo_stderr`` as ``elbo_stderr/train``, ``train_loss`` as
``loss/train``) and any other key as ``run/<key>`` (``run/seconds``, ``run/items_per_second``,
``run/lr``). Strings (``kl_estimator``) and ``None`` are left out.

``start_epoch`` is 0 for a new run and the checkpoint's epoch on resume. TensorBoard then hides
what earlier event files hold from epoch ``start_epoch + 1`` on (from epoch 0 on for a new
run, which clears what an overwritten run left); MLflow continues the directory's latest run
but keeps every value it was given, so epochs logged past the checkpoint show twice.

A logger of your own is a :class:`Logger` subclass registered by its config name::

    @register_logger("csv")
    class CSVLogger(Logger):
        def log_metrics(self, row): ...
"""

import contextlib
import importlib
import importlib.util
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import show
from pyro_vae.core.registry import LOGGERS

register_logger = LOGGERS.register

#: the prefixes of a row's keys that name a data split: ``valid_elbo`` is ``elbo/valid``
SPLITS = ("train", "valid", "test")


def tag(key: str) -> str:
    """The name a ``metrics.jsonl`` key is logged under (module docstring)."""
    split, _, quantity = key.partition("_")
    return f"{quantity}/{split}" if split in SPLITS and quantity else f"run/{key}"


def scalars(row: dict) -> dict[str, float]:
    """The numbers of a row by :func:`tag`; epoch and step are where they go, not values."""
    return {
        tag(key): float(value)
        for key, value in row.items()
        if key not in ("epoch", "step") and isinstance(value, int | float) and not isinstance(value, bool)
    }


class Logger:
    """Where a run's metrics are copied to; subclass it and register it with :func:`register_logger`.

    :param run_dir: the run directory; a logger writes nothing outside it.
    :param start_epoch: 0 for a new run, the checkpoint's epoch on resume; rows an interrupted
        run logged for later epochs are logged again and should replace the old ones.
    """

    #: the package the logger needs (checked by :func:`check_loggers` before a run starts)
    module: str | None = None
    #: what the logger imports to work, if not ``module`` itself (imported by the check)
    imports: str | None = None
    #: the extra of pyro-vae that installs it: ``pip install "pyro-vae[EXTRA]"``
    extra: str | None = None

    def __init__(self, run_dir: Path, *, start_epoch: int):
        self.run_dir, self.start_epoch = Path(run_dir), start_epoch

    def log_metrics(self, row: dict) -> None:
        """Log one ``metrics.jsonl`` row (:func:`scalars` gives its numbers at ``row["epoch"]``)."""
        raise NotImplementedError

    def log_figures(self, paths: list[Path], epoch: int) -> None:
        """Log PNG files of the run directory, as drawn after ``epoch``."""

    def close(self) -> None:
        """Write out what is pending; the logger is not used again."""


@register_logger("tensorboard")
class TensorBoardLogger(Logger):
    """TensorBoard event files in ``RUN_DIR/tensorboard/``: every number of every metrics row,
    and the figures as images (``pip install "pyro-vae[tensorboard]"``)."""

    module = extra = "tensorboard"
    imports = "torch.utils.tensorboard"

    def __init__(self, run_dir: Path, *, start_epoch: int):
        super().__init__(run_dir, start_epoch=start_epoch)
        from torch.utils.tensorboard import SummaryWriter

        # events that earlier files hold at steps >= purge_step are hidden from TensorBoard
        purge_step = start_epoch + 1 if start_epoch else 0
        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=purge_step)

    def log_metrics(self, row: dict) -> None:
        for name, value in scalars(row).items():
            self.writer.add_scalar(name, value, row["epoch"])

    def log_figures(self, paths: list[Path], epoch: int) -> None:
        from matplotlib.image import imread

        for path in paths:
            image = imread(path)  # (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, floats in [0, 1]
            if image.ndim == 3:
                image = image[..., :3]  # figures are opaque: the alpha channel carries nothing
            formats = "HWC" if image.ndim == 3 else "HW"
            self.writer.add_image(f"figures/{Path(path).stem}", image, epoch, dataformats=formats)

    def close(self) -> None:
        self.writer.close()  # flushes


@register_logger("mlflow")
class MLflowLogger(Logger):
    """An MLflow run in the SQLite store ``RUN_DIR/mlflow.db`` (experiment ``"pyro-vae"``):
    every number of every metrics row, and the figures as artifacts in ``RUN_DIR/mlartifacts/``
    (``pip install "pyro-vae[mlflow]"``)."""

    module = extra = "mlflow"
    experiment = "pyro-vae"

    def __init__(self, run_dir: Path, *, start_epoch: int):
        super().__init__(run_dir, start_epoch=start_epoch)
        from mlflow import MlflowClient

        # MLflow 3 refuses its file store by default and recommends SQLite; the client holds
        # the store's address, so nothing global (mlflow.set_tracking_uri) is touched
        self.tracking_uri = f"sqlite:///{(self.run_dir / 'mlflow.db').resolve()}"
        with _quieter("mlflow", "alembic"):  # its INFO lines on making the store are not the run's
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            self._start(start_epoch)

    def _start(self, start_epoch: int) -> None:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            artifacts = (self.run_dir / "mlartifacts").resolve().as_uri()
            experiment_id = self.client.create_experiment(self.experiment, artifact_location=artifacts)
        latest = (
            self.client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
            if start_epoch
            else []
        )
        if latest:  # a resumed run goes on in the MLflow run it started
            self.run_id = latest[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=self.run_dir.name).info.run_id

    def log_metrics(self, row: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)  # milliseconds, as MLflow keeps them
        metrics = [Metric(name, value, now, row["epoch"]) for name, value in scalars(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_figures(self, paths: list[Path], epoch: int) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), artifact_path="figures")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


@contextlib.contextmanager
def _quieter(*names: str) -> Iterator[None]:
    """Python loggers ``names`` at WARNING for the duration (their level is restored after)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _import_failure(name: str | None) -> str | None:
    """Why importing ``name`` fails (its first line), or None when it imports."""
    if name is None:
        return None
    try:
        importlib.import_module(name)
    except Exception as e:  # a broken dependency raises anything: TypeError, AttributeError …
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
    return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None  # finds, imports nothing
    except (ImportError, ValueError):
        return False


def check_loggers(names: list[str], key: str = "train.loggers") -> None:
    """Refuse unknown or repeated names and loggers whose package is missing, in one line each.

    It imports each logger's backend (what :attr:`Logger.imports` names), before anything of a
    run is written: a package that is found but broken (a tracker whose dependency has the
    wrong version) is refused here, not after ``config.toml`` exists.
    """
    for i, name in enumerate(names):
        given = f"{key} = {show(list(names))}"
        if not isinstance(name, str) or name not in LOGGERS:
            allowed = ", ".join(show(n) for n in LOGGERS.names())
            raise ConfigError(f"{given}: {show(name)} is not a known logger; allowed: {allowed}")
        if name in names[:i]:
            raise ConfigError(f"{given} names {show(name)} twice")
        entry = LOGGERS.get(name, key=key)
        module, extra = getattr(entry, "module", None), getattr(entry, "extra", None)
        if module is not None and not _installed(module):
            hint = f': pip install "pyro-vae[{extra}]"' if extra else ""
            raise ConfigError(f"{given} needs the {module} package, which is not installed{hint}")
        failure = _import_failure(getattr(entry, "imports", None) or module)
        if failure:
            raise ConfigError(
                f"{given} needs the {module} package, which is installed but fails to import ({failure})"
            )


def open_loggers(names: list[str], run_dir: Path, *, start_epoch: int) -> list[Logger]:
    """The loggers ``names`` (checked by :func:`check_loggers`), opened on ``run_dir``."""
    check_loggers(names)
    opened: list[Logger] = []
    try:
        for name in names:
            opened.append(LOGGERS.get(name)(Path(run_dir), start_epoch=start_epoch))
    except BaseException:
        for logger in opened:
            logger.close()
        raise
    return opened
