"""What ``pyro-vae evaluate``, ``sample`` and ``interpolate`` do with a run directory, as functions.

:func:`evaluate_run` measures a trained run on a split of its data with a registered
estimator of log p(x) (:func:`pyro_vae.inference.measure.measure`) and writes the record as JSON beside
the run; :func:`sample_run` decodes draws from its prior into a picture or an array, and
:func:`interpolate_run` the paths between the codes of pairs of its data points
(:mod:`pyro_vae.pictures.latent_paths`) into a picture.

Both check where they will write (``--out``) before they start: a directory in the way, a
file where a directory should be, or a directory that cannot be written in is refused in one
line, and nothing is left behind.

Under ``torchrun`` the processes of :func:`evaluate_run` share the points, in whole batches,
and gather every point's estimate (:mod:`pyro_vae.core.distributed`): the record is the one a
single process writes, and rank 0 writes it. Sampling is one process's work.
"""

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import pyro
import torch

from pyro_vae.core import distributed
from pyro_vae.core.errors import ConfigError, DataError, NotDefined, RunDirError
from pyro_vae.core.files import atomic_write, make_dir
from pyro_vae.core.options import PositiveInt, Range, check_value, show
from pyro_vae.core.registry import Spec
from pyro_vae.data.datasets import Data, load_data
from pyro_vae.inference.estimators import ESTIMATORS
from pyro_vae.inference.measure import measure
from pyro_vae.pictures import plots
from pyro_vae.pictures.latent_paths import interpolate_pairs
from pyro_vae.pictures.latent_plots import interpolation_grid
from pyro_vae.training.resolve import resolve_device
from pyro_vae.training.run import CHECKPOINT, Run

#: draws decoded at a time by :func:`sample_run` (a few MB of images; bounded memory for any n)
SAMPLE_CHUNK = 10_000
#: the most tiles a ``.png`` grid of samples holds: 10 000 tiles make a picture about 4 700
#: pixels square that takes 1.4 GB and 7 s to draw (measured, digits); more cannot be seen at
#: once, and drawing them needs memory in proportion
MAX_GRID = 10_000


def evaluate_run(
    run_dir,
    *,
    split: str = "valid",
    points: int | None = None,
    estimator: str = "is",
    options: dict | None = None,
    seed: int = 0,
    batch_size: int = 100,
    device: str = "cpu",
    out=None,
    progress=None,
    checkpoint: str = CHECKPOINT,
) -> tuple[dict, Path]:
    """Estimate log p(x) of the run in ``run_dir`` on the first ``points`` points of ``split``.

    :param estimator: a registered estimator's name; ``options`` are its options, checked as a
        config file's.
    :returns: the record written (numbers, diagnostics, every point's log p̂) and its path,
        ``RUN_DIR/evaluation-ESTIMATOR-SPLIT.json`` unless ``out`` is given (``…-best.json`` for
        ``checkpoint="best.pt"``, the epoch with the best validation ELBO).
    :raises NotDefined: for a run whose guide has no density (an autoencoder, the delta guide):
        log p(x) and the ELBO are not defined; the message gives its reconstruction term, and
        nothing is written.
    """
    check_value("--batch-size", batch_size, PositiveInt)
    check_value("--points", points, PositiveInt | None)
    ESTIMATORS.get(estimator, key="--estimator")  # an unknown name is an error naming the flag
    allowed = ESTIMATORS.options(estimator)
    for name, value in (options or {}).items():  # named as the flags that set them
        if name in allowed:
            check_value(f"--{name.replace('_', '-')}", value, allowed[name].annotation)
    options = Spec.parse({"kind": estimator, **(options or {})}, "estimator", "--estimator").params
    _check_seed(seed)
    run_dir = Path(run_dir)
    which = "" if checkpoint == CHECKPOINT else f"-{Path(checkpoint).stem}"
    out = Path(out) if out is not None else run_dir / f"evaluation-{estimator}-{split}{which}.json"
    _refuse_directory(out, "evaluation-results.json")
    torch_device = resolve_device(device, key="--device")
    w = distributed.join(torch_device, key="--device")
    torch_device = distributed.device_of(torch_device)
    run = Run.load(run_dir, device=torch_device, checkpoint=checkpoint)
    assert run.vae is not None  # Run.load builds the VAE
    if w.main:
        _check_writable(out, _where(out, run_dir))  # before the estimation, which may take hours
    data = _data_of(run)
    x = _split_of(data, split)[:points].to(torch_device)  # (N, D)
    run.vae.likelihood.check_data(x, f"the {split} split of {_data_words(run)}")
    pyro.set_rng_seed(seed)  # guides the keyed noise does not cover draw from the global stream
    m = measure(
        run.vae.model,
        run.vae.guide,
        x,
        estimator=estimator,
        options=options,
        encode=run.vae.encode,
        seed=seed,
        batch_size=batch_size,
        device=torch_device,
        progress=progress,
    )
    if m.log_px_absent is not None:  # a guide with no density: the estimator refused it
        raise NotDefined(
            f"log p(x) is not defined for the run {str(run_dir)!r}: {m.log_px_absent}, so neither the "
            f"estimator {estimator!r} nor the ELBO applies (an autoencoder); its reconstruction term "
            f"log p(x | f(x)) is {m.recon:.2f} nats per point on {m.points} {split} points",
            reason=m.log_px_absent,
        )
    assert m.marginal is not None  # an estimator was given
    record = {
        "run_dir": str(run_dir),
        "checkpoint": checkpoint,
        "epoch": run.epoch,
        "split": split,
        "seed": seed,
        "device": str(torch_device),
        "method": describe_estimate(estimator, options, m.marginal),
        "num_samples": m.marginal.num_samples,
        **m.to_dict(),
        "log_px_per_point": m.marginal.log_px.tolist(),
        "mc_stderr_per_point": m.marginal.mc_stderr.tolist(),
    }
    if w.main:
        make_dir(out.parent, _where(out, run_dir))
        atomic_write(out, lambda tmp: tmp.write_text(json.dumps(_finite(record), indent=2) + "\n"))
    return record, out


def _data_of(run: Run) -> Data:
    """The data the run was trained on, as its config records it, checked against its model
    (the file may have changed since)."""
    try:
        data = load_data(run.config.data)
    except DataError as e:
        raise DataError(f"the data of run {str(run.dir)!r} does not load: {e}") from None
    if data.dim != run.config.model.data_dim:
        raise DataError(
            f"run {str(run.dir)!r} was trained on points of {run.config.model.data_dim} values, "
            f"but {_data_words(run)} now holds {data.dim} values per point"
        )
    return data


def _split_of(data: Data, split: str) -> torch.Tensor:
    """The points of ``split`` (train, valid or test), or one line saying which splits there are."""
    if split not in ("train", "valid", "test") or getattr(data, split) is None:
        available = ", ".join(s for s in ("train", "valid", "test") if getattr(data, s, None) is not None)
        raise DataError(f"the data of this run has no {split} split; available: {available}")
    return getattr(data, split)


def _data_words(run: Run) -> str:
    path = run.config.data.path
    return f"data.path = {path!r}" if path else f"data.name = {run.config.data.name!r}"


def describe_estimate(name: str, options: dict, result) -> str:
    """``"is (samples = 5000, chunk_size = 500)"``, with the HMC acceptance rate where there is one."""
    words = ", ".join(f"{k} = {show(v)}" for k, v in options.items() if not isinstance(v, dict | type(None)))
    text = f"estimator {name}" + (f" ({words})" if words else "")
    acceptance = getattr(result, "acceptance", None)
    return text + (f", HMC acceptance {acceptance:.2f}" if acceptance is not None else "")


def sample_run(
    run_dir,
    n: int = 64,
    *,
    out=None,
    seed: int = 0,
    device: str = "cpu",
    chunk_size: int = SAMPLE_CHUNK,
    checkpoint: str = CHECKPOINT,
) -> Path:
    """``n`` draws from the prior of a trained run, decoded: a ``.png`` grid or a ``.npy`` array.

    The draws are decoded ``chunk_size`` at a time (an array is written a chunk at a time too),
    so memory stays bounded for any ``n``. For ``n`` up to one chunk they are one batch, as
    they always were: the same seed gives the same draws. For more, each chunk continues the
    one random stream the seed starts, so the same seed and ``n`` still give the same array,
    and its first ``k * chunk_size`` rows are the draws of ``n = k * chunk_size``; they are a
    different sample than one batch of ``n`` would be (the prior's draws come chunk by chunk).
    """
    check_value("-n", n, PositiveInt)
    _check_seed(seed)
    out = Path(out) if out is not None else Path(run_dir) / f"samples-{n}.png"
    _refuse_directory(out, "samples.png")
    if out.suffix not in (".png", ".npy"):
        raise ConfigError(f"--out {str(out)!r}: unknown format {out.suffix!r}; allowed: .png, .npy")
    if out.suffix == ".png" and n > MAX_GRID:
        raise ConfigError(
            f"-n {n} is too many samples for a picture (at most {MAX_GRID} tiles); "
            "write them as an array with --out FILE.npy"
        )
    run = Run.load(run_dir, device=resolve_device(device, key="--device"), checkpoint=checkpoint)
    vae = run.vae
    assert vae is not None  # Run.load builds the VAE
    size = n * (run.config.model.data_dim or 0) * 4 if out.suffix == ".npy" else 0  # float32
    _check_writable(out, _where(out, run_dir), need=size)
    pyro.set_rng_seed(seed)

    def draws():  # (≤ chunk_size, D) float32 arrays, n rows in all
        with torch.no_grad():
            for start in range(0, n, chunk_size):
                yield vae.sample(min(chunk_size, n - start)).cpu().numpy()

    make_dir(out.parent, _where(out, run_dir))
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
    vae = run.vae
    assert vae is not None  # Run.load builds the VAE
    data = _data_of(run)
    x = _split_of(data, split)
    if data.image_shape is None:
        raise DataError(f"the data of run {str(run_dir)!r} are not images: there is no picture to draw")
    _check_writable(out)
    labels = getattr(data, f"{split}_labels")
    result = interpolate_pairs(vae, x, pairs, labels=labels, seed=seed, steps=steps, paths=paths)
    lo, hi = data.train.min().item(), data.train.max().item()
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


def _check_writable(out: Path, what: str = "directory of --out", need: int = 0) -> None:
    """Refuse, before any work, a file ``out`` that could not be written: a directory in the
    way, a path under a file, a directory that cannot be written in (read-only, immutable, no
    permission) or that has less than ``need`` bytes free. Creates nothing."""
    out = Path(out)
    _refuse_directory(out)
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


def _where(out: Path, run_dir) -> str:
    return "run directory" if out.parent == Path(run_dir) else "directory of --out"


def _refuse_directory(out: Path, example: str = "out.json") -> None:
    if out.is_dir():
        raise RunDirError(f"--out {str(out)!r} is a directory; name a file, e.g. {str(out / example)!r}")


def _check_seed(seed: int) -> None:
    """NumPy, which Pyro seeds too, takes seeds from 0 to 2**32 - 1."""
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"--seed = {seed} is not allowed: expected an integer from 0 to {2**32 - 1}")


def _finite(value):
    """NaN and infinities become None (JSON has neither)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
