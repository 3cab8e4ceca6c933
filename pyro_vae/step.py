"""One training step: the SVI update on a minibatch, written out.

    loss = objective.differentiable_loss(model, guide, x_B, **inputs)
    loss.backward(); clip_grad_norm_(params, clip_norm); optimizer.step()

is the update ``pyro.infer.SVI.step`` makes (Hoffman et al. 2013, "Stochastic Variational
Inference"; Kingma & Welling 2014), run with a ``torch.optim`` optimizer over the parameters
the model and guide declare, and without reading the loss back to the host: it stays on the
device. ``inputs`` are the values a schedule gives the objective at this point of training
(KL warm-up's ``kl_weight``): inputs of the step, not state of the objective. Clipping, when
asked for, rescales the whole gradient g to g·min(1, c/‖g‖₂) (Pascanu et al. 2013) with
``torch.nn.utils.clip_grad_norm_``, on the device (no host read of the norm).
"""

import contextlib

import pyro
import torch
from pyro import poutine

from .errors import PyroVAEError


def declared_params(model, guide, objective, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The parameters that ``model`` and ``guide`` declare, found as ``pyro.infer.SVI`` finds them.

    This first loss is computed with Pyro's validation on, so a model/guide pair with
    mismatched shapes fails here with Pyro's own message rather than deep in training.
    """
    with pyro.validation_enabled(True), poutine.trace(param_only=True) as capture:
        objective.differentiable_loss(model, guide, x)
    # Pyro types a site's value as Optional; a param site's is its (constrained) parameter
    params = {
        name: site["value"].unconstrained()  # type: ignore[union-attr]
        for name, site in capture.trace.nodes.items()
    }
    if not params:
        raise PyroVAEError("the model and guide declare no parameters (pyro.param / pyro.module) to train")
    return params


def check_programs(model, guide, objective, x: torch.Tensor) -> None:
    """One loss with Pyro's validation on: shapes and supports checked once, before training."""
    with pyro.validation_enabled(True):
        objective.differentiable_loss(model, guide, x)


@contextlib.contextmanager
def stepping():
    """The setting of every training step: Pyro's validation off (the data was checked when
    loaded, and the first loss with validation on, :func:`check_programs`)."""
    with pyro.validation_enabled(False):
        yield


def train_step(
    objective, model, guide, optimizer, x: torch.Tensor, *, clip_norm: float | None = None, **inputs
) -> torch.Tensor:
    """One SVI update on minibatch ``x``; returns the loss, still on the device."""
    loss = objective.differentiable_loss(model, guide, x, **inputs)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm is not None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip_norm, foreach=True)
    optimizer.step()
    return loss.detach()


class TrainStep:
    """:func:`train_step` bound to one objective, program pair and optimizer; the one object a
    training loop calls, ``step(x, epoch=..., step=...)``, and so the one to replace by another
    (a compiled step) with the same call."""

    def __init__(self, objective, model, guide, optimizer: torch.optim.Optimizer, *, clip_norm=None):
        self.objective, self.model, self.guide, self.optimizer = objective, model, guide, optimizer
        self.clip_norm = clip_norm
        self._schedule = getattr(objective, "schedule_inputs", None)

    def inputs(self, epoch: float, step: int) -> dict:
        """The objective's schedule values after ``epoch`` (fractional) epochs and ``step`` updates."""
        return self._schedule(epoch, step) if self._schedule is not None else {}

    def __call__(self, x: torch.Tensor, *, epoch: float, step: int) -> torch.Tensor:
        inputs = self.inputs(epoch, step)
        return train_step(
            self.objective, self.model, self.guide, self.optimizer, x, clip_norm=self.clip_norm, **inputs
        )
