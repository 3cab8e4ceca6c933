"""Helpers shared by the tests of the command line, the comparison and the pictures."""

import contextlib
import io
import struct
from pathlib import Path

import pytest

from pyro_vae.cli.main import main
from pyro_vae.training.callbacks import Figures

TINY = ["--model.encoder.hidden", "[16]", "--model.decoder.hidden", "[16]"]
FIGURES = (
    "curves.png",
    "samples.png",
    "reconstructions.png",
    "latent.png",
    "latent_grid.png",
    "interpolation.png",
)
ARTEFACTS = ("config.toml", "metrics.jsonl", "checkpoint.pt", "best.pt", *FIGURES)  # no .lock: it goes
METRIC_KEYS = ("train_elbo", "valid_elbo", "train_recon", "train_kl", "valid_recon", "valid_kl", "seconds")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(argv) -> tuple[int, str, str]:
    """``main(argv)`` with stdout and stderr captured (usable outside a test's capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header, after checking that it is one."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its contents: 'nothing was written' is an equal snapshot."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


#: the pictures' callback as pyro-vae has it: the suite skips it (tests/conftest.py) but for the
#: tests marked ``figures`` and within :func:`run_figures`
DRAW_FIGURES = Figures.on_end


@contextlib.contextmanager
def run_figures():
    """Within it, runs end with their pictures: for fixtures whose runs' tests look at them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figures, "on_end", DRAW_FIGURES)
        yield
