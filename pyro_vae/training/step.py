"""One training step: the SVI update on a minibatch, written out.

    loss = objective.differentiable_loss(model, guide, x_B, **inputs)
    loss.backward(); clip_grad_norm_(params, clip_norm); optimizer.step()

is the update ``pyro.infer.SVI.step`` makes (Hoffman et al. 2013, "Stochastic Variational
Inference"; Kingma & Welling 2014), run with a ``torch.optim`` optimizer over the parameters
the model and guide declare, and without reading the loss back to the host: it stays on the
device. ``inputs`` are the values a schedule gives the objective at this point of training
(KL warm-up's ``kl_weight``): inputs of the step, not state of the objective. The update
(clipping, then the optimizer's step) is :func:`pyro_vae.training.update.update`, which every
path of the step shares.

Given the dataset indices of the minibatch's points, the guide's noise is keyed by (seed,
step, point, particle, coordinate) (:mod:`pyro_vae.inference.noise`). The loss is computed
by the ``forward`` of a module, :class:`Loss`, so that with several processes
DistributedDataParallel wraps it and no step can skip the gradients' all-reduce; they are
summed, since the loss is a sum over points (:mod:`pyro_vae.core.distributed`). Then a global
minibatch split over N processes takes the step one process takes with all of it.

A process's share may be empty (a global minibatch of fewer points than processes, such as an
epoch's last): its loss is then 0 with a zero gradient for every parameter, so that it still
takes part in the gradients' all-reduce, adding nothing. The objective runs on one stand-in
point whose loss is dropped and whose part of the sums across processes is zero, for the
collectives inside the objective (free bits' batch statistic).
"""

import contextlib
import sys

import pyro
import torch
from pyro import poutine
from torch import nn

from pyro_vae.core.distributed import World, adding_nothing, sum_gradients
from pyro_vae.core.errors import ConfigError, PyroVAEError
from pyro_vae.inference.graphs import owners
from pyro_vae.inference.noise import IndexedNoise, step_seed
from pyro_vae.training.update import params_of, update


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


def check_synchronised(params: dict[str, torch.Tensor], modules: list[nn.Module]) -> None:
    """Refuse, under several processes, parameters that no module of ``modules`` holds."""
    held = {id(p) for m in modules for p in m.parameters()}
    loose = [name for name, p in params.items() if id(p) not in held]
    if loose:
        raise ConfigError(
            f"the model's parameters {', '.join(map(repr, loose[:3]))} live in Pyro's global param "
            "store, which several processes do not keep in step; make model and guide methods of "
            "a torch.nn.Module (a PyroModule) that holds them, or train on one process"
        )


class Loss(nn.Module):
    """``forward(x, index, seed, **inputs)``: the objective's loss on minibatch ``x``, with
    the guide's noise keyed by ``seed`` and the points' dataset indices ``index`` (or from the
    global stream when ``index`` is None). Its ``modules`` hold the parameters."""

    def __init__(self, objective, model, guide, modules=(), *, warn: bool = False):
        super().__init__()
        self.objective, self.model, self.guide = objective, model, guide
        self.parts = nn.ModuleList(modules)
        self.warn, self.unkeyed = warn, set[str]()

    def forward(self, x: torch.Tensor, index: torch.Tensor | None, seed: int, **inputs) -> torch.Tensor:
        if len(x) == 0:
            return self._empty(x, index, seed, **inputs)
        return self._loss(x, index, seed, **inputs)

    def _loss(self, x: torch.Tensor, index: torch.Tensor | None, seed: int, **inputs) -> torch.Tensor:
        if index is None:
            return self.objective.differentiable_loss(self.model, self.guide, x, **inputs)
        with IndexedNoise(seed, index, missed=self._missed):
            return self.objective.differentiable_loss(self.model, self.guide, x, **inputs)

    def _empty(self, x: torch.Tensor, index: torch.Tensor | None, seed: int, **inputs) -> torch.Tensor:
        """The loss of an empty share: 0, on every parameter (see the module docstring)."""
        stand_in = x.new_zeros((1, *x.shape[1:]))
        with torch.no_grad(), adding_nothing():  # only for the collectives inside the objective
            self._loss(stand_in, None if index is None else index.new_zeros(1), seed, **inputs)
        return sum((p.sum() * 0.0 for p in self.parameters()), torch.zeros((), device=x.device))

    def _missed(self, site: str) -> None:
        if site not in self.unkeyed:
            self.unkeyed.add(site)
            if self.warn:
                print(
                    f"pyro-vae: warning: the guide's site {site!r} is not a reparameterized Normal, "
                    "MultivariateNormal or flow of one, so each process draws it from its own "
                    "random stream: the run differs from its one-process run",
                    file=sys.stderr,
                )


def train_step(
    objective, model, guide, optimizer, x: torch.Tensor, *, clip_norm: float | None = None, **inputs
) -> torch.Tensor:
    """One SVI update on minibatch ``x``; returns the loss, still on the device."""
    return _backward_update(optimizer, objective.differentiable_loss(model, guide, x, **inputs), clip_norm)


def _backward_update(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip_norm) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    update(optimizer, params_of(optimizer), clip_norm)
    return loss.detach()


class TrainStep:
    """:func:`train_step` bound to one objective, program pair and optimizer; the one object a
    training loop calls, ``step(x, index=..., epoch=..., step=...)``, and so the one to replace
    by another (a compiled step) with the same call.

    :param seed: the run's seed, which with the step number keys the noise.
    :param modules: the modules that hold the parameters (by default :func:`owners`); with several
        processes in ``world`` their loss is wrapped by DistributedDataParallel.
    """

    def __init__(
        self,
        objective,
        model,
        guide,
        optimizer: torch.optim.Optimizer,
        *,
        clip_norm=None,
        seed: int = 0,
        modules=(),
        world: World | None = None,
    ):
        self.objective, self.model, self.guide, self.optimizer = objective, model, guide, optimizer
        self.clip_norm, self.seed = clip_norm, seed
        self._schedule = getattr(objective, "schedule_inputs", None)
        self.world = world = world or World()
        modules = modules or owners(model, guide)
        self.loss = Loss(objective, model, guide, modules, warn=world.size > 1 and world.main)
        self.forward: nn.Module = self.loss
        if world.size > 1:
            # buffers are constants of the parts, equal from the start (DDP broadcasts them once)
            ddp = nn.parallel.DistributedDataParallel(self.loss, forward_sync_buffers=False)
            ddp.register_comm_hook(None, sum_gradients)
            self.forward = ddp

    def inputs(self, epoch: float, step: int) -> dict:
        """The objective's schedule values after ``epoch`` (fractional) epochs and ``step`` updates."""
        return self._schedule(epoch, step) if self._schedule is not None else {}

    def __call__(
        self, x: torch.Tensor, *, index: torch.Tensor | None = None, epoch: float, step: int
    ) -> torch.Tensor:
        """One update on ``x``, the points ``index`` of the dataset (None: unkeyed noise)."""
        loss = self.forward(x, index, step_seed(self.seed, step), **self.inputs(epoch, step))
        return _backward_update(self.optimizer, loss, self.clip_norm)
