"""What the training loop calls at the ends of epochs: metrics, checkpoints, the progress bar,
messages and figures (:class:`pyro_vae.loop.Callback`)."""

import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import plots
from .loop import Callback, Epoch, TrainState
from .measure import measure
from .run import CHECKPOINT, Run, append_metrics, save_checkpoint

#: a checkpoint at least this often, and after the last epoch
CHECKPOINT_SECONDS = 60


class Metrics(Callback):
    """One row per epoch in ``metrics.jsonl`` (epoch 0: the untrained model), kept in ``history``.

    A row holds the epoch, step and training loss, and the ELBO with its reconstruction and
    KL terms and standard error on a fixed sample of training points and on the validation
    points (:func:`pyro_vae.measure.measure`, draws keyed by ``seed``), the seconds of
    training and items per second.
    """

    def __init__(self, path: Path, model, guide, splits: dict, *, batch_size: int, device, seed: int):
        self.path, self.model, self.guide, self.splits = path, model, guide, splits
        self.batch_size, self.device, self.seed = batch_size, device, seed
        self.history: list[dict] = []

    def _record(self, state: TrainState, loss, seconds: float, seen: int) -> None:
        row = {"epoch": state.epoch, "step": state.step, "train_loss": loss}
        for split, x in self.splits.items():
            m = measure(
                self.model, self.guide, x, elbo_batch_size=self.batch_size, device=self.device, seed=self.seed
            )
            row.update({f"{split}_elbo": m.elbo, f"{split}_recon": m.recon, f"{split}_kl": m.kl})
            row[f"{split}_elbo_stderr"] = m.elbo_stderr
            row["kl_estimator"] = m.kl_estimator
        row.update(seconds=seconds, items_per_second=seen / seconds if seconds else None)
        self.history.append(row)
        append_metrics(self.path, row)

    def on_start(self, state):
        self._record(state, None, 0.0, 0)

    def on_epoch_end(self, state, epoch: Epoch):
        self._record(state, epoch.loss, epoch.seconds, epoch.points)


class Checkpoints(Callback):
    """``checkpoint.pt`` at least every :data:`CHECKPOINT_SECONDS` and after the last epoch:
    the model's state, the training state and the RNG state (:func:`pyro_vae.run.save_checkpoint`)."""

    def __init__(self, path: Path, config, model_state, *, custom_model: bool):
        self.path, self.config, self.model_state, self.custom_model = path, config, model_state, custom_model
        self.saved = time.perf_counter()

    def save(self, state: TrainState) -> None:
        save_checkpoint(
            self.path,
            config=self.config,
            model_state=self.model_state(),
            training=state.state_dict(),
            custom_model=self.custom_model,
        )
        self.saved = time.perf_counter()

    def on_epoch_end(self, state, epoch):
        if time.perf_counter() - self.saved > CHECKPOINT_SECONDS:
            self.save(state)

    def on_end(self, state):
        self.save(state)


class ProgressBar(Callback):
    """A tqdm bar of epochs on a terminal: loss, validation ELBO, items/s."""

    def __init__(self, epochs: int, metrics: Metrics, *, quiet: bool):
        self.epochs, self.metrics, self.quiet = epochs, metrics, quiet
        self.bar: tqdm | None = None

    def on_start(self, state):
        disable = self.quiet or not sys.stderr.isatty()
        self.bar = tqdm(
            total=self.epochs, initial=state.epoch, unit="epoch", disable=disable, dynamic_ncols=True
        )

    def on_epoch_end(self, state, epoch):
        row = self.metrics.history[-1]
        assert self.bar is not None  # made in on_start
        self.bar.set_postfix(
            {
                "loss": f"{epoch.loss:.2f}",
                "valid ELBO": f"{row['valid_elbo']:.2f}",
                "items/s": f"{row['items_per_second']:.0f}",
            }
        )
        self.bar.update()

    def on_end(self, state):
        assert self.bar is not None
        self.bar.close()


class Messages(Callback):
    """Lines on stderr: how the KL is estimated, after the untrained model's metrics, and the
    result at the end."""

    def __init__(self, metrics: Metrics, run_dir: Path, *, layered: bool, quiet: bool):
        self.metrics, self.run_dir, self.layered = metrics, run_dir, layered
        self.say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))

    def on_start(self, state):
        if self.metrics.history[0]["kl_estimator"] == "monte_carlo":
            why = "it would be biased below the top layer" if self.layered else "it has no closed form here"
            self.say(
                f"pyro-vae: KL(q || p) is estimated by Monte Carlo ({why}), in the metrics and in "
                "objectives that would use the closed form"
            )

    def on_end(self, state):
        first, last = self.metrics.history[0], self.metrics.history[-1]
        self.say(
            f"pyro-vae: {last['epoch']} epochs in {state.seconds:.1f} s; validation ELBO "
            f"{last['valid_elbo']:.2f} ± {last['valid_elbo_stderr']:.2f} nats per point (untrained: "
            f"{first['valid_elbo']:.2f}); results in {self.run_dir}"
        )


class Figures(Callback):
    """The pictures of a trained VAE in its run directory, at the end (:func:`plots.write_run_figures`)."""

    def __init__(self, run: Run, data):
        self.run, self.data = run, data

    @torch.no_grad()
    def on_end(self, state):
        assert self.run.vae is not None  # Figures are made for a VAE built from the config
        self.run.vae.eval()
        plots.write_run_figures(self.run, self.data)


__all__ = ["CHECKPOINT", "CHECKPOINT_SECONDS", "Checkpoints", "Figures", "Messages", "Metrics", "ProgressBar"]
