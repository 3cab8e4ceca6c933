"""A run directory: what training leaves in it, how a process claims it, how a run is read back.

Layout of a run directory::

    config.toml          the resolved config: every option, defaults included
    metrics.jsonl        one JSON object per epoch (epoch 0 is the untrained model)
    checkpoint.pt        everything needed to continue the run exactly (pyro_vae.training.checkpoint):
                         after the first epoch, every train.checkpoint_every, on an interrupt
                         and at the end
    best.pt              the same, at the epoch with the best validation ELBO so far
    curves.png           training curves
    samples.png          decoded draws from the prior
    reconstructions.png  validation points beside their reconstructions
    latent.png           posterior means of the validation points
    latent_grid.png      the decoder over a grid of z (2-D latent spaces only)
    interpolation.png    decoded paths between the codes of pairs of validation points (images)
    traversals.png       one latent direction at a time through the prior's quantiles (images,
                         latent spaces of more than 2 dimensions)
    .lock                held by the process training in the directory (pyro_vae.core.files)

Every file but ``metrics.jsonl`` is written to a temporary name and renamed, so a reader
never sees half of one; ``metrics.jsonl`` grows by one line per epoch, and a torn last line
(a crash while appending) is ignored when it is read.
"""

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pyro_vae.config.run_config import Config, read_config_file
from pyro_vae.core.errors import PyroVAEError, RunDirError
from pyro_vae.core.files import append_line, atomic_write, lock_dir, make_dir
from pyro_vae.core.options import show
from pyro_vae.core.plugins import import_plugins
from pyro_vae.training.checkpoint import load_checkpoint

if TYPE_CHECKING:
    from torch import nn

    from pyro_vae.models.graph.program import GraphProgram
    from pyro_vae.models.vae import VAE  # model imports the registries; run stays light to import

CHECKPOINT, BEST = "checkpoint.pt", "best.pt"
CONFIG = "config.toml"
METRICS = "metrics.jsonl"
CURVES, SAMPLES, RECONSTRUCTIONS = "curves.png", "samples.png", "reconstructions.png"
LATENT, LATENT_GRID = "latent.png", "latent_grid.png"
INTERPOLATION, TRAVERSALS = "interpolation.png", "traversals.png"
FIGURES = (CURVES, SAMPLES, RECONSTRUCTIONS, LATENT, LATENT_GRID, INTERPOLATION, TRAVERSALS)
ARTEFACTS = (CONFIG, METRICS, CHECKPOINT, BEST, *FIGURES)
#: what experiment trackers write in a run directory (pyro_vae.training.loggers)
TRACKERS = ("tensorboard", "mlflow.db", "mlartifacts")

#: keys a resumed run may change: they extend or observe the run, not what it computes
EXTENDABLE = {
    "train.epochs",
    "train.max_seconds",
    "train.patience",
    "train.checkpoint_every",
    "train.loggers",
    "train.device",
    "train.backend",
    "train.compile",
    "train.run_dir",
}


def fresh_dir(parent: str, name: str) -> Path:
    """``<parent>/<name>-<date>-<time>``, with a suffix if one was made in the same second."""
    stem = f"{parent}/{name}-{datetime.now():%Y%m%d-%H%M%S}"
    candidates = (Path(stem if i == 1 else f"{stem}-{i}") for i in range(1, 1000))
    return next(p for p in candidates if not p.exists())


@contextlib.contextmanager
def claim_run_dir(path: Path, *, overwrite: bool = False, resume: bool = False) -> Iterator[None]:
    """Create ``path`` and hold its lock while training in it.

    Refuses a directory another process is training in (with or without ``overwrite``), and
    one that holds another run unless ``overwrite`` (its files are removed) or ``resume``.
    What a start that never finished an epoch left (a config and the untrained model's
    metrics, no checkpoint) is no run: it is replaced, and a new run that fails before its
    first checkpoint removes what it wrote, so the same command can be run again. Temporary
    files a killed process left are removed.
    """
    path = Path(path)
    existed = path.is_dir()
    make_dir(path, "run directory")
    try:
        with lock_dir(path):
            _claim(path, overwrite=overwrite, resume=resume)
            try:
                yield
            except BaseException:
                if not resume and not (path / CHECKPOINT).exists():
                    _remove_artefacts(path)
                raise
    finally:
        if not existed:
            with contextlib.suppress(OSError):  # a directory this run made and left empty
                path.rmdir()


def _claim(path: Path, *, overwrite: bool, resume: bool) -> None:
    if not (overwrite or resume) and _never_trained(path):
        _remove_artefacts(path)
    held = [name for name in (CONFIG, METRICS, CHECKPOINT) if (path / name).exists()]
    if held and not (overwrite or resume):
        raise RunDirError(
            f"run directory {str(path)!r} already holds a run ({', '.join(held)}); resume it with "
            f"--resume {path}, choose another --train.run_dir or pass --overwrite"
        )
    if overwrite:
        _remove_artefacts(path)
    for tmp in path.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _never_trained(path: Path) -> bool:
    """Whether ``path`` holds only what a run that never finished an epoch writes: its config
    and at most the untrained model's metrics row, no checkpoint."""
    if (path / CHECKPOINT).exists() or (path / BEST).exists() or not (path / METRICS).is_file():
        return False
    try:
        rows = read_metrics(path / METRICS)
    except RunDirError:
        return False
    return all(row.get("epoch") == 0 for row in rows)


def _remove_artefacts(path: Path) -> None:
    for name in ARTEFACTS:
        (path / name).unlink(missing_ok=True)
    for name in TRACKERS:
        if (path / name).is_dir():
            shutil.rmtree(path / name, ignore_errors=True)
        else:
            (path / name).unlink(missing_ok=True)


def append_metrics(path: Path, row: dict) -> None:
    append_line(path, json.dumps(row))


def read_metrics(path: Path) -> list[dict]:
    """The rows of a ``metrics.jsonl``; a torn last line is dropped, a damaged one refused."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise RunDirError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
    lines = text.split("\n")
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines):  # no newline after it: a write cut short
                break
            raise RunDirError(f"{str(path)!r} is damaged: line {i} is not a JSON object") from None
    return rows


def write_metrics(path: Path, rows: list[dict]) -> None:
    """Replace ``metrics.jsonl`` by ``rows`` (what a resumed run keeps of it)."""
    atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in rows)))


def first_difference(old: dict, new: dict, *, ignore=(), prefix: str = "") -> str | None:
    """The first key (dotted) whose value differs between two config dicts, as
    ``key = old → new``; None if they agree outside ``ignore``."""
    for key in sorted(old.keys() | new.keys()):
        dotted = f"{prefix}{key}"
        if dotted in ignore:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, ignore=ignore, prefix=f"{dotted}.")
            if found:
                return found
        elif a != b:
            return f"{dotted} = {show(a)} → {show(b)}"
    return None


def check_same_run(run_dir: Path, checkpoint: dict) -> None:
    """Refuse a checkpoint that ``config.toml`` beside it does not describe (copied from another
    run, say); keys a resume may change are not compared."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return
    try:
        beside = Config.from_dict(read_config_file(path)).to_dict()
    except PyroVAEError:  # a config.toml that no longer loads (a plugin gone) says nothing here
        return
    saved = Config.from_dict(checkpoint["config"]).to_dict()
    differs = first_difference(saved, beside, ignore=EXTENDABLE)
    if differs:
        raise RunDirError(
            f"the checkpoint in {str(run_dir)!r} belongs to another run: {CONFIG} differs ({differs})"
        )


def resumable(run_dir) -> Path:
    """The checkpoint a run directory can be resumed from; one line if it has none."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise RunDirError(f"nothing to resume in {str(run_dir)!r}: it holds no {CHECKPOINT}")
    return path


def checkpoint_config(run_dir) -> Config:
    """The config a run's checkpoint records (plugins imported): what ``--resume`` continues."""
    payload = load_checkpoint(resumable(run_dir))
    import_plugins(payload["config"].get("plugins", []))
    return Config.from_dict(payload["config"])


@dataclass
class Run:
    """The result of :func:`pyro_vae.train`: the trained VAE, its metrics and its directory.

    ``run.model`` and ``run.guide`` are the trained Pyro programs (``run.vae.model`` and
    ``run.vae.guide`` for a VAE built from the config).
    """

    config: Config
    dir: Path
    model: object
    guide: object
    vae: "VAE | None" = None
    history: list[dict] = field(default_factory=list)
    #: the epochs of training the loaded parameters had (None for a run just trained)
    epoch: int | None = None
    #: the programs of a model declared as a graph (``run.graph.model``, ``run.graph.guide``)
    graph: "GraphProgram | None" = None
    #: a registered program (``model.program``), the module whose methods are the programs
    program: "nn.Module | None" = None

    @classmethod
    def load(cls, run_dir, device="cpu", checkpoint: str = CHECKPOINT) -> "Run":
        """Rebuild the trained VAE of a run directory from its checkpoint (``best.pt`` for the
        epoch with the best validation ELBO)."""
        from pyro_vae.models.graph.program import GraphProgram
        from pyro_vae.models.programs import build_program
        from pyro_vae.models.vae import VAE, load_weights  # model imports the registries; run stays light

        run_dir = Path(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise RunDirError(f"run directory {str(run_dir)!r} is a file, not a directory")
        if not run_dir.is_dir():
            raise RunDirError(f"run directory {str(run_dir)!r} does not exist")
        payload = load_checkpoint(run_dir / checkpoint, map_location=device)
        import_plugins(payload["config"].get("plugins", []))  # the parts the config may name
        if payload["custom_model"]:
            raise RunDirError(
                f"{str(run_dir)!r} was trained on a user's own model/guide; read its parameters "
                "with pyro_vae.training.checkpoint.load_checkpoint(path)['model']"
            )
        check_same_run(run_dir, payload)
        config = Config.from_dict(payload["config"])
        metrics = run_dir / METRICS
        history = read_metrics(metrics) if metrics.exists() else []
        epoch = payload["training"]["epoch"]
        if config.model.program is not None:
            program = build_program(config.model).to(device)
            load_weights(program, payload["model"], where=str(run_dir / checkpoint))
            program.eval()
            return cls(
                config, run_dir, program.model, program.guide, history=history, epoch=epoch, program=program
            )
        if config.model.variables is not None:
            graph = GraphProgram.from_config(config.model, config.guide).to(device)
            load_weights(graph, payload["model"], where=str(run_dir / checkpoint))
            graph.eval()
            return cls(config, run_dir, graph.model, graph.guide, history=history, epoch=epoch, graph=graph)
        vae = VAE(config.model).to(device)
        load_weights(vae, payload["model"], where=str(run_dir / checkpoint))
        vae.eval()
        return cls(config, run_dir, vae.model, vae.guide, vae=vae, history=history, epoch=epoch)
