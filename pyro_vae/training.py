"""Training: stochastic variational inference, one epoch after another, top to bottom.

Each step draws a minibatch x_B and takes a gradient step on the objective's loss,
a Monte-Carlo estimate of −Σ_{n∈B} bound(x_n)::

    loss = objective.differentiable_loss(model, guide, x_B)
    loss.backward(); optimizer.step()

which is the update ``pyro.infer.SVI.step`` makes (Hoffman et al. 2013, "Stochastic
Variational Inference"; Kingma & Welling 2014), written out so that it runs with a
``torch.optim`` optimizer over the parameters the model and guide declare, without
reading the loss back to the host each step: losses are summed on the device and
read once per epoch, with the validation ELBO.
"""

import contextlib
import dataclasses
import math
import sys
import time
from pathlib import Path

import pyro
import torch
from pyro import poutine
from tqdm.auto import tqdm

from . import plots
from .config import Config
from .data import Data, load_data
from .errors import ConfigError, DataError, PyroVAEError
from .evaluation import evaluate_elbo, summarize
from .model import VAE
from .objectives import make_objective
from .run import CHECKPOINT, CONFIG, METRICS, Run, append_metrics, fresh_dir, prepare_run_dir, save_checkpoint

CHECKPOINT_SECONDS = 60  # a checkpoint at least this often, and after the last epoch


def fits_on(device: torch.device, data: Data) -> bool:
    """Whether the data takes under half of the device's free memory (always, for the CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return (data.train.nbytes + data.valid.nbytes) < free / 2


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU; asking for absent CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f'{key} = "{name}" is not allowed: expected "cpu", "cuda" or "cuda:N"') from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f'{key} = "{name}" but this machine has no CUDA device; use "cpu" or "auto"')
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f'{key} = "{name}" but this machine has {torch.cuda.device_count()} CUDA device(s)'
            )
    return device


def declared_params(model, guide, objective, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The parameters that ``model`` and ``guide`` declare, found as ``pyro.infer.SVI`` finds them.

    This first loss is computed with Pyro's validation on, so a model/guide pair with
    mismatched shapes fails here with Pyro's own message rather than deep in training.
    """
    with pyro.validation_enabled(True), poutine.trace(param_only=True) as capture:
        objective.differentiable_loss(model, guide, x)
    params = {name: site["value"].unconstrained() for name, site in capture.trace.nodes.items()}
    if not params:
        raise PyroVAEError("the model and guide declare no parameters (pyro.param / pyro.module) to train")
    return params


@contextlib.contextmanager
def stepping(vae=None):
    """The setting of every training step.

    Pyro's validation is off: the data was checked when loaded and the first loss was
    computed with validation on (:func:`declared_params`). A VAE skips its ``param`` sites:
    the optimizer already holds its parameters.
    """
    with pyro.validation_enabled(False):
        if vae is None:
            yield
            return
        vae.emit_param_sites = False
        try:
            yield
        finally:
            vae.emit_param_sites = True


def train_step(objective, model, guide, optimizer, x: torch.Tensor) -> torch.Tensor:
    """One SVI update on minibatch ``x``; returns the loss, still on the device."""
    loss = objective.differentiable_loss(model, guide, x)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def train(
    config: Config | None = None,
    *,
    model=None,
    guide=None,
    data: Data | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> Run:
    """Train a VAE (or a user's own ``model``/``guide`` pair) as ``config`` describes.

    :param config: the run; ``Config()`` (digits, default VAE) when omitted.
    :param model, guide: optional Pyro programs ``model(x)``, ``guide(x)`` to train instead
        of the VAE that ``config.model`` describes; their sites must sit under one plate
        named ``"data"`` for the per-data-point metrics.
    :param data: optional :class:`~pyro_vae.data.Data` to use instead of ``config.data``.
    :param overwrite: replace a run already in ``config.train.run_dir``.
    :param quiet: no progress bar or messages.
    :returns: a :class:`~pyro_vae.run.Run` with the trained VAE, its metrics and its directory.
    """
    config = config or Config()
    if (model is None) != (guide is None):
        raise ConfigError("pass both model and guide, or neither")
    tc = config.train
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))

    # Everything a user can get wrong is checked before anything is written.
    device = resolve_device(tc.device)
    data = data or load_data(config.data)
    if model is None:
        if config.model.data_dim not in (None, data.dim):
            raise ConfigError(
                f"model.data_dim = {config.model.data_dim} but the data has {data.dim} values per point"
            )
        image = data.image_shape if data.image_shape and len(data.image_shape) in (2, 3) else None
        image = config.model.image_shape or (list(image) if image else None)
        config = dataclasses.replace(
            config, model=dataclasses.replace(config.model, data_dim=data.dim, image_shape=image)
        )
    # the run's saved config finds its data from any directory: a relative path becomes absolute
    path = str(Path(config.data.path).resolve()) if config.data.path else None
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, image_shape=data.image_shape, path=path)
    )
    run_dir = Path(tc.run_dir) if tc.run_dir else fresh_dir("runs", config.data.name)
    config = dataclasses.replace(config, train=dataclasses.replace(tc, run_dir=str(run_dir)))

    pyro.set_rng_seed(tc.seed)
    vae = None
    if model is None:
        vae = VAE(config.model)
        for split in ("train", "valid"):
            try:
                vae.likelihood.check_data(getattr(data, split), f"the {split} data of {config.data.name!r}")
            except DataError as e:
                raise DataError(f"{e} (model.likelihood.kind = {config.model.likelihood.kind!r})") from None
        vae.initialize(data.train)
        vae.to(device)
        model, guide = vae.model, vae.guide
    if fits_on(device, data):
        data = data.to(device)  # held on the device: a step copies nothing from the host
    else:
        data = data.to(torch.device("cpu")).pin()  # copied a batch at a time, asynchronously
    objective = make_objective(config.objective.kind, **config.objective.params)
    params = declared_params(model, guide, objective, data.train[: tc.batch_size])
    optimizer = torch.optim.Adam(params.values(), lr=tc.lr)
    set_progress = getattr(objective, "set_progress", None)

    prepare_run_dir(run_dir, overwrite=overwrite)
    config.save(run_dir / CONFIG)
    n, batch = len(data.train), tc.batch_size
    train_subset = data.train[: len(data.valid)]  # a fixed sample, for a train ELBO comparable to valid
    say(
        f"pyro-vae: training on {config.data.name} ({n} train / {len(data.valid)} valid points, "
        f"{data.dim} values each) on {device}, objective {config.objective.kind}; run: {run_dir}"
    )

    def evaluate(epoch: int, step: int, train_loss, seconds: float, seen: int = 0) -> dict:
        row = {"epoch": epoch, "step": step, "train_loss": train_loss}
        for split, x in (("train", train_subset), ("valid", data.valid)):
            parts = evaluate_elbo(model, guide, x, batch_size=tc.eval_batch_size, device=device)
            row.update({f"{split}_{k}": v for k, v in summarize(parts).items()})
        row.update(kl_estimator=parts["kl_estimator"], seconds=seconds)
        row["items_per_second"] = seen / seconds if seconds else None
        return row

    history = []
    bar = tqdm(
        range(1, tc.epochs + 1),
        unit="epoch",
        disable=quiet or not sys.stderr.isatty(),
        dynamic_ncols=True,
    )
    step, saved, spent = 0, time.perf_counter(), 0.0

    def out_of_time(seconds: float) -> bool:
        return tc.max_seconds is not None and seconds >= tc.max_seconds

    with stepping(vae):
        history.append(evaluate(0, 0, None, 0.0))
        append_metrics(run_dir / METRICS, history[-1])
        if history[0]["kl_estimator"] == "monte_carlo":
            layered = vae is not None and len(vae.config.layers) > 1
            why = "it would be biased below the top layer" if layered else "it has no closed form here"
            say(
                f"pyro-vae: KL(q || p) is estimated by Monte Carlo ({why}), in the metrics and in "
                "objectives that would use the closed form"
            )
        for epoch in bar:
            start = time.perf_counter()
            where = data.train.device
            order = torch.randperm(n, device=where) if config.data.shuffle else torch.arange(n, device=where)
            total, seen = torch.zeros((), device=device), 0
            for i in range(0, n, batch):
                if set_progress is not None:  # a KL warm-up schedule, read on the host
                    set_progress(epoch=epoch - 1 + i / n, step=step)
                x = data.train[order[i : i + batch]].to(device, non_blocking=True)  # no-op when held there
                total += train_step(objective, model, guide, optimizer, x)
                step, seen = step + 1, seen + len(x)
                if out_of_time(spent + time.perf_counter() - start):
                    break
            train_loss = total.item() / seen  # the epoch's one host read of the training loss
            seconds = time.perf_counter() - start
            spent += seconds
            if not math.isfinite(train_loss):
                raise PyroVAEError(
                    f"training diverged in epoch {epoch}: the loss is {train_loss}; "
                    f"try a smaller --train.lr (now {tc.lr:g})"
                )
            history.append(evaluate(epoch, step, train_loss, seconds, seen))
            append_metrics(run_dir / METRICS, history[-1])
            bar.set_postfix(
                {
                    "loss": f"{train_loss:.2f}",
                    "valid ELBO": f"{history[-1]['valid_elbo']:.2f}",
                    "items/s": f"{seen / seconds:.0f}",
                }
            )
            last = epoch == tc.epochs or out_of_time(spent)
            if last or time.perf_counter() - saved > CHECKPOINT_SECONDS:
                state = vae.state_dict() if vae is not None else {k: p.detach() for k, p in params.items()}
                save_checkpoint(
                    run_dir / CHECKPOINT,
                    config=config,
                    model_state=state,
                    optimizer_state=optimizer.state_dict(),
                    epoch=epoch,
                    step=step,
                    custom_model=vae is None,
                )
                saved = time.perf_counter()
            if last:
                break

    run = Run(config=config, dir=run_dir, model=model, guide=guide, vae=vae, history=history)
    if vae is not None:
        vae.eval()
        plots.write_run_figures(run, data)
    last = history[-1]
    say(
        f"pyro-vae: {last['epoch']} epochs in {spent:.1f} s; validation ELBO "
        f"{last['valid_elbo']:.2f} ± {last['valid_elbo_stderr']:.2f} nats per point (untrained: "
        f"{history[0]['valid_elbo']:.2f}); results in {run_dir}"
    )
    return run
