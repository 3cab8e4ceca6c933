"""What the training loop calls at the ends of epochs: metrics, checkpoints, early stopping,
tracking, the progress bar, messages and figures (:class:`pyro_vae.training.loop.Callback`)."""

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from pyro_vae.inference.measure import accuracy, measure
from pyro_vae.training.loop import Callback, Epoch, TrainState
from pyro_vae.training.run import FIGURES, Run, append_metrics

if TYPE_CHECKING:
    from pyro_vae.training.loggers import Logger


class Metrics(Callback):
    """One row per epoch in ``metrics.jsonl`` (epoch 0: the untrained model), kept in ``history``.

    A row holds the epoch, step, learning rate and training loss, and the ELBO with its
    reconstruction and KL terms and standard error on a fixed sample of training points and
    on the validation points (:func:`pyro_vae.inference.measure.measure`, draws keyed by ``seed``), the
    seconds of training and items per second, and whether the step ran compiled with the seconds
    spent compiling it (:mod:`pyro_vae.training.compiled`); for a semi-supervised graph, the
    accuracy of q(y|x) on the validation and test labels (``valid_accuracy``, ``test_accuracy``).
    It also keeps the state's best epoch: the one
    with the highest validation ELBO, or for a guide with no ELBO (the delta guide, whose rows
    hold None for the ELBO, its error and the KL) the highest validation reconstruction term
    (:func:`criterion`).
    """

    def __init__(
        self,
        path: Path | None,
        model,
        guide,
        splits: dict,
        *,
        batch_size: int,
        device,
        seed: int,
        history=(),
        classifier=None,
        labelled: dict | None = None,
    ):
        self.path, self.model, self.guide, self.splits = path, model, guide, splits
        #: q(y|x)'s logits of a semi-supervised graph, scored on ``labelled`` {split: (x, labels)}
        self.classifier, self.labelled = classifier, labelled or {}
        self.batch_size, self.device, self.seed = batch_size, device, seed
        #: the rows so far: those of the run being resumed, then one per epoch
        self.history: list[dict] = list(history)

    def _record(self, state: TrainState, epoch: Epoch | None) -> dict:
        row: dict = {"epoch": state.epoch, "step": state.step, "lr": epoch.lr if epoch else state.lr}
        row["train_loss"] = epoch.loss if epoch else None
        for split, x in self.splits.items():
            m = measure(
                self.model, self.guide, x, elbo_batch_size=self.batch_size, device=self.device, seed=self.seed
            )
            row.update({f"{split}_elbo": m.elbo, f"{split}_recon": m.recon, f"{split}_kl": m.kl})
            row[f"{split}_elbo_stderr"] = m.elbo_stderr
            row["kl_estimator"] = m.kl_estimator
        for split, (x, labels) in self.labelled.items():
            row[f"{split}_accuracy"] = accuracy(self.classifier, x, labels, batch_size=self.batch_size)
        seconds = epoch.seconds if epoch else 0.0
        row.update(seconds=seconds, items_per_second=epoch.points / seconds if epoch and seconds else None)
        # the rounding the steps had: a replayed graph computes the eager step's bits, so it is "eager"
        path = None if epoch is None else "compiled" if epoch.path == "compiled" else "eager"
        row.update(step_path=path, compile_seconds=epoch.compile_seconds if epoch else 0.0)
        self.history.append(row)
        if self.path is not None:  # None: a process that measures but does not write
            append_metrics(self.path, row)
        return row

    def on_start(self, state):
        if not self.history:  # a resumed run has its rows
            self._record(state, None)

    def on_epoch_end(self, state, epoch: Epoch):
        row = self._record(state, epoch)
        key, _ = criterion(row)
        if row[key] > state.best_elbo:
            state.best_epoch, state.best_elbo = state.epoch, row[key]


def criterion(row: dict) -> tuple[str, str]:
    """What a run's epochs are judged by, higher being better: the row key and its name in
    messages. The validation ELBO; for a guide with no density (the delta guide, an
    autoencoder), whose ELBO is not defined, the validation reconstruction term log p(x|z)."""
    return ("valid_elbo", "ELBO") if row.get("valid_elbo") is not None else ("valid_recon", "reconstruction")


class Checkpoints(Callback):
    """``checkpoint.pt`` after the first epoch, then every ``epochs`` epochs and/or ``seconds``
    seconds (whichever comes first), on an interrupt and at the end; ``best.pt`` whenever the
    validation ELBO (or reconstruction, :func:`criterion`) is the best so far. ``save(path,
    state)`` writes one (:func:`pyro_vae.training.checkpoint.save_checkpoint`)."""

    def __init__(
        self,
        path: Path,
        best: Path,
        save: Callable[[Path, TrainState], None],
        *,
        epochs: int | None,
        seconds: float | None,
    ):
        self.path, self.best, self._save = path, best, save
        self.epochs, self.seconds = epochs, seconds
        #: the epoch and step of the last checkpoint written (or resumed from)
        self.saved: tuple[int, int] | None = None
        self.saved_at = time.monotonic()

    def save(self, state: TrainState) -> None:
        self._save(self.path, state)
        self.saved, self.saved_at = (state.epoch, state.step), time.monotonic()

    def on_start(self, state):
        if state.step:
            self.saved = (state.epoch, state.step)  # resumed from it

    def on_epoch_end(self, state, epoch):
        due = self.saved is None  # the first epoch
        due |= (
            self.epochs is not None and self.saved is not None and state.epoch - self.saved[0] >= self.epochs
        )
        due |= self.seconds is not None and time.monotonic() - self.saved_at >= self.seconds
        if due:
            self.save(state)
        if state.best_epoch == state.epoch:
            self._save(self.best, state)

    def on_interrupt(self, state):
        self.save(state)

    def on_end(self, state):
        if self.saved != (state.epoch, state.step):
            self.save(state)


class EarlyStopping(Callback):
    """Stop when the validation ELBO (or reconstruction, :func:`criterion`, read from the rows of
    ``metrics``) has not improved for ``patience`` epochs (the protocol of Tomczak & Welling
    2018, "VAE with a VampPrior", §4: a look-ahead of 50 epochs)."""

    def __init__(self, patience: int, metrics: Metrics | None = None):
        self.patience, self.metrics = patience, metrics

    def on_start(self, state):
        self.on_epoch_end(state, None)  # a resumed run that had stopped early stays stopped

    def on_epoch_end(self, state, epoch):
        if state.best_epoch is not None and state.epoch - state.best_epoch >= self.patience:
            name = criterion(self.metrics.history[-1])[1] if self.metrics and self.metrics.history else "ELBO"
            state.stop = (
                f"stopped early: the validation {name} has not improved for {self.patience} epochs "
                f"(best {state.best_elbo:.2f} at epoch {state.best_epoch}, kept in best.pt)"
            )


class Tracking(Callback):
    """Every metrics row, and the run's figures at the end, to experiment trackers
    (:mod:`pyro_vae.training.loggers`)."""

    def __init__(self, loggers: "list[Logger]", metrics: Metrics, run_dir: Path):
        self.loggers, self.metrics, self.run_dir = loggers, metrics, run_dir

    def on_start(self, state):
        if state.epoch == 0:  # the untrained row: new, or purged by a resume within epoch 1
            self._log(self.metrics.history[0])

    def on_epoch_end(self, state, epoch):
        self._log(self.metrics.history[-1])

    def _log(self, row: dict) -> None:
        for logger in self.loggers:
            logger.log_metrics(row)

    def on_end(self, state):
        figures = [self.run_dir / name for name in FIGURES if (self.run_dir / name).is_file()]
        for logger in self.loggers:
            logger.log_figures(figures, state.epoch)

    def close(self):
        for logger in self.loggers:
            logger.close()


class ProgressBar(Callback):
    """A tqdm bar of epochs on a terminal: loss, validation ELBO (or reconstruction), items/s."""

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
        key, _ = criterion(row)
        assert self.bar is not None  # made in on_start
        self.bar.set_postfix(
            {
                "loss": f"{epoch.loss:.2f}",
                "valid ELBO" if key == "valid_elbo" else "valid recon": f"{row[key]:.2f}",
                "items/s": f"{row['items_per_second'] or 0:.0f}",
            }
        )
        self.bar.update()

    def close(self):
        if self.bar is not None:
            self.bar.close()


class Messages(Callback):
    """Lines on stderr: how the KL is estimated, after the untrained model's metrics; at the
    end, the result, why training stopped early, and a warning when the validation ELBO (or
    reconstruction, :func:`criterion`) ended below the untrained model's."""

    def __init__(self, metrics: Metrics, run_dir: Path, *, lr: float, layered: bool, quiet: bool):
        self.metrics, self.run_dir, self.lr, self.layered, self.quiet = metrics, run_dir, lr, layered, quiet
        self.path: str | None = None  # what ran the last epoch's steps: eager, replayed or compiled

    def on_epoch_end(self, state, epoch):
        self.path = epoch.path

    def say(self, line: str, *, warning: bool = False) -> None:
        if warning or not self.quiet:
            print(f"pyro-vae: {'warning: ' if warning else ''}{line}", file=sys.stderr)

    def on_start(self, state):
        if self.metrics.history[0]["kl_estimator"] == "monte_carlo" and state.step == 0:
            why = "it would be biased below the top layer" if self.layered else "it has no closed form here"
            self.say(
                f"KL(q || p) is estimated by Monte Carlo ({why}), in the metrics and in "
                "objectives that would use the closed form"
            )

    def on_end(self, state):
        first, last = self.metrics.history[0], self.metrics.history[-1]
        if state.stop:
            self.say(state.stop)
        compiling = sum(row.get("compile_seconds") or 0.0 for row in self.metrics.history)
        path = self.path or last.get("step_path") or "eager"
        doing = "compiling" if path == "compiled" else "capturing"
        how = f"{path} step" + (f", {compiling:.1f} s of it {doing}" if compiling else "")
        key, name = criterion(last)
        error = f" ± {last['valid_elbo_stderr']:.2f}" if key == "valid_elbo" else ""
        self.say(
            f"{last['epoch']} epochs in {state.seconds:.1f} s ({how}); validation {name} "
            f"{last[key]:.2f}{error} nats per point (untrained: {first[key]:.2f}); results in {self.run_dir}"
        )
        if last["epoch"] > 0 and not last[key] >= first[key]:
            self.say(
                f"the validation {name} ended below the untrained model's ({last[key]:.4g} < "
                f"{first[key]:.4g}): the learning rate may be too large (train.lr = {self.lr:g})",
                warning=True,
            )


class Figures(Callback):
    """The pictures of a trained run in its directory, at the end: a VAE's
    (:func:`figures.write_run_figures`), a declared graph's (:mod:`graph_figures`), and the curves
    of a user's own model."""

    def __init__(self, run: Run, data):
        self.run, self.data = run, data

    @torch.no_grad()
    def on_end(self, state):
        module = self.run.vae if self.run.vae is not None else self.run.graph
        if module is not None:
            module.eval()
            if not all(math.isfinite(p.sum().item()) for p in module.parameters()):
                return
        # matplotlib: only for a run that ends
        from pyro_vae.training import figures, graph_figures
        from pyro_vae.training.run import CURVES

        if self.run.vae is not None:
            figures.write_run_figures(self.run, self.data)
        elif self.run.graph is not None:
            graph_figures.write_graph_figures(self.run, self.data)
        else:
            figures.training_curves(self.run.history, self.run.dir / CURVES)


__all__ = [
    "Checkpoints",
    "EarlyStopping",
    "Figures",
    "Messages",
    "Metrics",
    "ProgressBar",
    "Tracking",
    "criterion",
]
