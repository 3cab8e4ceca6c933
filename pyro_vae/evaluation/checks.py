"""What every command on a trained run checks before it starts working: the seed, where it will
write (``--out``), and the run's data, loaded as its config records them.

A directory in the way, a file where a directory should be, or a directory that cannot be
written in is refused in one line, before any work, and nothing is left behind.
"""

import shutil
from pathlib import Path

import torch

from pyro_vae.core.errors import ConfigError, DataError, RunDirError
from pyro_vae.core.files import make_dir
from pyro_vae.data.datasets import Data, load_data
from pyro_vae.training.run import Run


def check_seed(seed: int) -> None:
    """NumPy, which Pyro seeds too, takes seeds from 0 to 2**32 - 1."""
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"--seed = {seed} is not allowed: expected an integer from 0 to {2**32 - 1}")


def check_writable(out: Path, what: str = "directory of --out", need: int = 0) -> None:
    """Refuse, before any work, a file ``out`` that could not be written: a directory in the
    way, a path under a file, a directory that cannot be written in (read-only, immutable, no
    permission) or that has less than ``need`` bytes free. Creates nothing."""
    out = Path(out)
    refuse_directory(out)
    parent = out.parent
    while not parent.exists() and parent != parent.parent:  # the directories to be created
        parent = parent.parent
    make_dir(parent, what)  # it exists: this only checks that it is a directory one can write in
    free = shutil.disk_usage(parent).free
    if need > free:
        raise RunDirError(
            f"cannot write {str(out)!r}: it needs {need / 1e9:.1f} GB and {str(parent)!r} has "
            f"{free / 1e9:.1f} GB free"
        )


def where(out: Path, run_dir) -> str:
    """The words for the directory ``out`` is written in."""
    return "run directory" if out.parent == Path(run_dir) else "directory of --out"


def refuse_directory(out: Path, example: str = "out.json") -> None:
    if out.is_dir():
        raise RunDirError(f"--out {str(out)!r} is a directory; name a file, e.g. {str(out / example)!r}")


def data_of(run: Run) -> Data:
    """The data the run was trained on, as its config records it, checked against its model
    (the file may have changed since)."""
    try:
        data = load_data(run.config.data)
    except DataError as e:
        raise DataError(f"the data of run {str(run.dir)!r} does not load: {e}") from None
    if data.dim != run.config.model.data_dim:
        raise DataError(
            f"run {str(run.dir)!r} was trained on points of {run.config.model.data_dim} values, "
            f"but {data_words(run)} now holds {data.dim} values per point"
        )
    return data


def split_of(data: Data, split: str) -> torch.Tensor:
    """The points of ``split`` (train, valid or test), or one line saying which splits there are."""
    if split not in ("train", "valid", "test") or getattr(data, split) is None:
        available = ", ".join(s for s in ("train", "valid", "test") if getattr(data, s, None) is not None)
        raise DataError(f"the data of this run has no {split} split; available: {available}")
    return getattr(data, split)


def data_words(run: Run) -> str:
    """``data.path = '...'`` or ``data.name = '...'``: where the run's data come from."""
    path = run.config.data.path
    return f"data.path = {path!r}" if path else f"data.name = {run.config.data.name!r}"
