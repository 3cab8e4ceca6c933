"""What ``pyro-vae sample`` and ``interpolate`` draw from a run directory, as functions.

:func:`sample_run` decodes draws from a trained run's prior into a picture or an array, and
:func:`interpolate_run` the paths between the codes of pairs of its data points
(:mod:`pyro_vae.pictures.latent_paths`) into a picture. Both check where they will write
(``--out``) before they start (:mod:`pyro_vae.evaluation.checks`). Drawing is one process's
work, under ``torchrun`` too.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import pyro
import torch

from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.core.files import atomic_write, make_dir
from pyro_vae.core.options import PositiveInt, Range, check_value
from pyro_vae.evaluation.checks import check_seed, check_writable, data_of, refuse_directory, split_of, where
from pyro_vae.evaluation.graph_drawing import graph_draws
from pyro_vae.pictures import plots
from pyro_vae.pictures.latent_paths import interpolate_pairs, pick_pairs
from pyro_vae.pictures.latent_plots import interpolation_grid
from pyro_vae.training.build import graph_data
from pyro_vae.training.graph_figures import interpolate_graph
from pyro_vae.training.resolve import resolve_device
from pyro_vae.training.run import CHECKPOINT, Run

#: draws decoded at a time by :func:`sample_run` (a few MB of images; bounded memory for any n)
SAMPLE_CHUNK = 10_000
#: the most tiles a ``.png`` grid of samples holds: 10 000 tiles make a picture about 4 700
#: pixels square that takes 1.4 GB and 7 s to draw (measured, digits); more cannot be seen at
#: once, and drawing them needs memory in proportion
MAX_GRID = 10_000


def sample_run(
    run_dir,
    n: int = 64,
    *,
    out=None,
    seed: int = 0,
    device: str = "cpu",
    chunk_size: int = SAMPLE_CHUNK,
    checkpoint: str = CHECKPOINT,
    given: dict[str, int] | None = None,
) -> Path:
    """``n`` draws from the prior of a trained run, decoded: a ``.png`` grid or a ``.npy`` array
    (for a declared graph: :mod:`pyro_vae.evaluation.graph_drawing`, ``given`` classes fixed).

    The draws are decoded ``chunk_size`` at a time (an array is written a chunk at a time too),
    so memory stays bounded for any ``n``. For ``n`` up to one chunk they are one batch, as
    they always were: the same seed gives the same draws. For more, each chunk continues the
    one random stream the seed starts, so the same seed and ``n`` still give the same array,
    and its first ``k * chunk_size`` rows are the draws of ``n = k * chunk_size``; they are a
    different sample than one batch of ``n`` would be (the prior's draws come chunk by chunk).
    """
    check_value("-n", n, PositiveInt)
    check_seed(seed)
    out = Path(out) if out is not None else Path(run_dir) / f"samples-{n}.png"
    refuse_directory(out, "samples.png")
    if out.suffix not in (".png", ".npy"):
        raise ConfigError(f"--out {str(out)!r}: unknown format {out.suffix!r}; allowed: .png, .npy")
    if out.suffix == ".png" and n > MAX_GRID:
        raise ConfigError(
            f"-n {n} is too many samples for a picture (at most {MAX_GRID} tiles); "
            "write them as an array with --out FILE.npy"
        )
    run = Run.load(run_dir, device=resolve_device(device, key="--device"), checkpoint=checkpoint)
    if run.graph is not None:
        check_writable(out, where(out, run_dir))
        drawn = graph_draws(run, n, given=given or {}, seed=seed)
        make_dir(out.parent, where(out, run_dir))
        if out.suffix == ".npy":
            atomic_write(out, lambda tmp: _write_npy(tmp, len(drawn.x), [drawn.x]))
            return out
        shape = run.config.data.image_shape
        return drawn.picture(out, tuple(shape) if shape else None)
    if given:
        raise ConfigError(
            f"--given {next(iter(given))}=...: the run's model is not a declared graph; it has no classes"
        )
    if run.program is not None:
        check_writable(out, where(out, run_dir))
        return _sample_program(run, n, out, seed, run_dir)
    vae = run.vae
    assert vae is not None  # Run.load builds the VAE
    size = n * (run.config.model.data_dim or 0) * 4 if out.suffix == ".npy" else 0  # float32
    check_writable(out, where(out, run_dir), need=size)
    pyro.set_rng_seed(seed)

    def draws():  # (≤ chunk_size, D) float32 arrays, n rows in all
        with torch.no_grad():
            for start in range(0, n, chunk_size):
                yield vae.sample(min(chunk_size, n - start)).cpu().numpy()

    make_dir(out.parent, where(out, run_dir))
    if out.suffix == ".npy":
        atomic_write(out, lambda tmp: _write_npy(tmp, n, draws()))
    else:
        x = np.concatenate(list(draws()))  # (n, D), n <= MAX_GRID
        plots.image_grid(x, run.config.data.image_shape, out, title=f"{n} samples from p(x)")
    return out


def interpolate_run(
    run_dir,
    pairs: int = 8,
    *,
    steps: int = 10,
    paths: Sequence[str] | None = None,
    split: str = "valid",
    out=None,
    seed: int = 0,
    device: str = "cpu",
    checkpoint: str = CHECKPOINT,
) -> Path:
    """Draw the decoded paths between ``pairs`` pairs of ``split`` points of a trained run.

    The pairs are drawn with ``seed`` (of different labels where the data have labels);
    ``paths`` defaults to every path the prior allows: linear, and spherical for a Gaussian
    prior. Writes ``out`` (default ``RUN_DIR/interpolation-PAIRS.png``) and returns its path.
    """
    check_value("--pairs", pairs, PositiveInt)
    check_value("--steps", steps, Annotated[int, Range(lo=2)])
    out = Path(out) if out is not None else Path(run_dir) / f"interpolation-{pairs}.png"
    if out.suffix != ".png":
        raise ConfigError(f"--out {str(out)!r}: unknown format {out.suffix!r}; allowed: .png")
    run = Run.load(run_dir, device=resolve_device(device, key="--device"), checkpoint=checkpoint)
    if run.graph is not None:
        return _interpolate_graph(run, pairs, steps, paths, split, out, seed)
    vae = run.vae
    if vae is None:
        raise ConfigError(
            f"{str(run_dir)!r} was trained on a registered program: it has no latent codes to interpolate"
        )
    data = data_of(run)
    x = split_of(data, split)
    if data.image_shape is None:
        raise DataError(f"the data of run {str(run_dir)!r} are not images: there is no picture to draw")
    check_writable(out)
    labels = getattr(data, f"{split}_labels")
    result = interpolate_pairs(vae, x, pairs, labels=labels, seed=seed, steps=steps, paths=paths)
    lo, hi = data.train.min().item(), data.train.max().item()
    return interpolation_grid(result, data.image_shape, out, vmin=lo, vmax=hi)


def _sample_program(run: Run, n: int, out: Path, seed: int, run_dir) -> Path:
    """What a registered program draws for ``n`` validation rows: its ``draw(x)``, ``(n, D)``."""
    program = run.program
    draw = getattr(program, "draw", None)
    if draw is None:
        kind = run.config.model.program.kind  # type: ignore[union-attr]
        raise ConfigError(
            f"the program {kind!r} has no draw(x) method, so there is nothing to sample: define one that "
            "returns (B, D) values for B data rows (samples, or completions of them)"
        )
    x = split_of(data_of(run), "valid")[:n].to(next(program.parameters()).device)  # type: ignore[union-attr]
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        images = draw(x).cpu().numpy()
    make_dir(out.parent, where(out, run_dir))
    if out.suffix == ".npy":
        atomic_write(out, lambda tmp: _write_npy(tmp, len(images), [images]))
        return out
    kind = run.config.model.program.kind  # type: ignore[union-attr]
    return plots.image_grid(
        images, run.config.data.image_shape, out, title=f"draw(x) of {kind} for {len(x)} points"
    )


def _interpolate_graph(run: Run, pairs: int, steps: int, paths, split: str, out: Path, seed: int) -> Path:
    """A declared graph's paths: straight lines between its continuous latents' codes."""
    if paths and set(paths) != {"linear"}:
        raise ConfigError("--path spherical: a declared graph's paths are straight lines (--path linear)")
    graph = run.graph
    assert graph is not None
    data = graph_data(run.config, data_of(run))
    rows, labels = split_of(data, split), getattr(data, f"{split}_labels")
    if data.image_shape is None:
        raise DataError("the data of the run are not images: there is no picture to draw")
    check_writable(out)
    idx = torch.as_tensor(pick_pairs(len(rows), pairs, labels=labels, seed=seed))
    device = next(graph.buffers(), rows).device
    result = interpolate_graph(graph, rows[idx[:, 0]].to(device), rows[idx[:, 1]].to(device), steps=steps)
    lo, hi = data.train[:, : graph.data_dim].min().item(), data.train[:, : graph.data_dim].max().item()
    return interpolation_grid(result, data.image_shape, out, vmin=lo, vmax=hi)


def _write_npy(path: Path, n: int, chunks) -> None:
    """Write ``n`` rows arriving in ``chunks`` as one ``.npy`` array, a chunk at a time: the
    same bytes as ``np.save`` of their concatenation, without holding it in memory."""
    try:
        with open(path, "wb") as f:
            for i, x in enumerate(chunks):
                if i == 0:
                    header = {"descr": np.lib.format.dtype_to_descr(x.dtype), "fortran_order": False}
                    np.lib.format.write_array_header_1_0(f, {**header, "shape": (n, *x.shape[1:])})
                f.write(np.ascontiguousarray(x).tobytes())
    except BaseException:  # an interrupt or a failed draw, too: no half-written temporary file
        path.unlink(missing_ok=True)
        raise
