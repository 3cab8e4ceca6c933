"""What ``pyro-vae evaluate`` and ``pyro-vae sample`` do with a run directory, as functions.

:func:`evaluate_run` measures a trained run on a split of its data with a registered
estimator of log p(x) (:func:`pyro_vae.measure.measure`) and writes the record as JSON beside
the run; :func:`sample_run` decodes draws from its prior into a picture or an array.
"""

import json
from pathlib import Path

import numpy as np
import pyro

from . import plots
from .data import load_data
from .errors import ConfigError, DataError
from .estimators import ESTIMATORS
from .measure import measure
from .options import PositiveInt, check_value, show
from .registry import Spec
from .resolve import resolve_device
from .run import Run, atomic_write


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
) -> tuple[dict, Path]:
    """Estimate log p(x) of the run in ``run_dir`` on the first ``points`` points of ``split``.

    :param estimator: a registered estimator's name; ``options`` are its options, checked as a
        config file's.
    :returns: the record written (numbers, diagnostics, every point's log p̂) and its path,
        ``RUN_DIR/evaluation-ESTIMATOR-SPLIT.json`` unless ``out`` is given.
    """
    check_value("--batch-size", batch_size, PositiveInt)
    check_value("--points", points, PositiveInt | None)
    ESTIMATORS.get(estimator, key="--estimator")  # an unknown name is an error naming the flag
    allowed = ESTIMATORS.options(estimator)
    for name, value in (options or {}).items():  # named as the flags that set them
        if name in allowed:
            check_value(f"--{name.replace('_', '-')}", value, allowed[name].annotation)
    options = Spec.parse({"kind": estimator, **(options or {})}, "estimator", "--estimator").params
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / f"evaluation-{estimator}-{split}.json"
    torch_device = resolve_device(device, key="--device")
    run = Run.load(run_dir, device=torch_device)
    assert run.vae is not None  # Run.load builds the VAE
    data = load_data(run.config.data)
    if split not in ("train", "valid", "test") or getattr(data, split) is None:
        available = ", ".join(s for s in ("train", "valid", "test") if getattr(data, s, None) is not None)
        raise DataError(f"the data of this run has no {split} split; available: {available}")
    x = getattr(data, split)[:points].to(torch_device)  # (N, D)
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
    assert m.marginal is not None  # an estimator was given
    record = {
        "run_dir": str(run_dir),
        "split": split,
        "seed": seed,
        "device": str(torch_device),
        "method": describe_estimate(estimator, options, m.marginal),
        "num_samples": m.marginal.num_samples,
        **m.to_dict(),
        "log_px_per_point": m.marginal.log_px.tolist(),
        "mc_stderr_per_point": m.marginal.mc_stderr.tolist(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(_finite(record), indent=2) + "\n"))
    return record, out


def describe_estimate(name: str, options: dict, result) -> str:
    """``"is (samples = 5000, chunk_size = 500)"``, with the HMC acceptance rate where there is one."""
    words = ", ".join(f"{k} = {show(v)}" for k, v in options.items() if not isinstance(v, dict | type(None)))
    text = f"estimator {name}" + (f" ({words})" if words else "")
    acceptance = getattr(result, "acceptance", None)
    return text + (f", HMC acceptance {acceptance:.2f}" if acceptance is not None else "")


def sample_run(run_dir, n: int = 64, *, out=None, seed: int = 0, device: str = "cpu") -> Path:
    """``n`` draws from the prior of a trained run, decoded: a ``.png`` grid or a ``.npy`` array."""
    check_value("-n", n, PositiveInt)
    out = Path(out) if out is not None else Path(run_dir) / f"samples-{n}.png"
    if out.suffix not in (".png", ".npy"):
        raise ConfigError(f"--out {str(out)!r}: unknown format {out.suffix!r}; allowed: .png, .npy")
    run = Run.load(run_dir, device=resolve_device(device, key="--device"))
    assert run.vae is not None  # Run.load builds the VAE
    pyro.set_rng_seed(seed)
    x = run.vae.sample(n).cpu().numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, x)
    else:
        plots.image_grid(x, run.config.data.image_shape, out, title=f"{n} samples from p(x)")
    return out


def _finite(value):
    """NaN and infinities become None (JSON has neither)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
