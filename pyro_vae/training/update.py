"""The update of a training step, written once: clip the gradient's norm, then the optimizer's step.

    g ← g · min(1, c / (‖g‖₂ + 10⁻⁶))     when ``train.clip_norm`` = c (Pascanu et al. 2013)
    θ ← the optimizer's step with g         (the run's Adam: Kingma & Ba 2015)

with ``torch.nn.utils.clip_grad_norm_`` and ``optimizer.step()``, on the device (no host read of
the norm). Every path of a step calls :func:`update`: the eager step after its backward pass
(:mod:`pyro_vae.training.step`), the replayed step after its graph has given the gradients
(:mod:`pyro_vae.training.compiled`), and the compiled step inside the graph it traces
(:mod:`pyro_vae.training.capture`), where :func:`stepping_tensors` points the optimizer at the
graph's parameters and state, so that the compiler fuses the update with the backward pass.
"""

import contextlib
from collections.abc import Iterator, Sequence

import torch


def update(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], clip_norm: float | None) -> None:
    """The step of ``optimizer`` with the gradients ``p.grad`` of ``params``, clipped to ``clip_norm``."""
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, clip_norm, foreach=True)
    optimizer.step()


def params_of(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def steps_in_graph(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a graph can make ``optimizer``'s step (:func:`stepping_tensors`): ``torch.optim.Adam``
    with one group, fused (its step count a tensor on the device), without AMSGrad, maximize or
    weight decay, as ``pyro_vae.train`` makes it; else the optimizer steps after the graph."""
    if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    plain = not (group["amsgrad"] or group["maximize"] or group["weight_decay"] or group["differentiable"])
    return plain and group["fused"] and not torch.is_tensor(group["lr"])


def start_state(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> None:
    """Adam's state as its first fused step makes it (the step count on the device), so that a
    graph can take it as inputs before any step."""
    for p in params:
        if not optimizer.state[p]:
            optimizer.state[p].update(
                step=torch.zeros((), dtype=torch.float32, device=p.device),
                exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format),
            )


@contextlib.contextmanager
def stepping_tensors(
    optimizer: torch.optim.Optimizer, params: list, states: list[dict], lr: torch.Tensor
) -> Iterator[torch.optim.Optimizer]:
    """``optimizer`` (of :func:`steps_in_graph`) made to step ``params``, whose state is ``states``,
    at the learning rate ``lr`` (a tensor: an input of the graph, as the schedule changes it).

    Inside a traced graph its step is torch's own Adam written per tensor (``differentiable``:
    the bias corrections 1 − βᵗ computed from the step count as a tensor, never read back to
    the host, which tracing could not), for the compiler to fuse; the fused kernel of the
    eager step cannot be compiled with a tensor learning rate.
    """
    groups, state = optimizer.param_groups, optimizer.state
    per_tensor = {"fused": False, "foreach": False, "differentiable": True}
    optimizer.param_groups = [{**groups[0], **per_tensor, "params": params, "lr": lr}]
    optimizer.state = dict(zip(params, states, strict=True))  # type: ignore[assignment]
    try:
        yield optimizer
    finally:
        optimizer.param_groups, optimizer.state = groups, state
