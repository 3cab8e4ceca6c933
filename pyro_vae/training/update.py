"""The update of a training step, written once: clip the gradient's norm, then the optimizer's step.

    g ← g · min(1, c / (‖g‖₂ + 10⁻⁶))     when ``train.clip_norm`` = c (Pascanu et al. 2013)
    θ ← the optimizer's step with g         (the run's Adam: Kingma & Ba 2015)

with ``torch.nn.utils.clip_grad_norm_`` and ``optimizer.step()``, on the device (no host read of
the norm). Every path of a step calls :func:`update`: the eager step after its backward pass
(:mod:`pyro_vae.training.step`), the replayed step after its graph has given the gradients
(:mod:`pyro_vae.training.compiled`), and the compiled step inside the graph it traces
(:mod:`pyro_vae.training.capture`), where :func:`clip` is the same and Adam's step is
:func:`adam_in_graph`, so that the compiler fuses the update with the backward pass.

Why the graph writes Adam's step out: torch's fused kernel cannot be traced with the learning
rate as a tensor (a schedule changes it), and its per-tensor form computes the bias corrections
1 − βᵗ inside every parameter's loop, which the compiler then recomputes for every element:
the compiled digits step took 0.80–0.92× the hand-written PyTorch step that way, against 0.65×
with the corrections made once outside the graph (:func:`adam_corrections`;
``benchmarks/step_overhead.py --case digits``). Both give the fused step's parameters to float
rounding, which the check of a compiled graph against the eager step confirms.
"""

from collections.abc import Sequence

import torch


def update(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], clip_norm: float | None) -> None:
    """The step of ``optimizer`` with the gradients ``p.grad`` of ``params``, clipped to ``clip_norm``."""
    clip(params, clip_norm)
    optimizer.step()


def clip(params: Sequence[torch.Tensor], clip_norm: float | None) -> None:
    """Scale the gradients ``p.grad`` of ``params`` so that their joint norm is at most ``clip_norm``."""
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, clip_norm, foreach=True)


def params_of(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def steps_in_graph(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a graph can make ``optimizer``'s step (:func:`adam_in_graph`): ``torch.optim.Adam``
    with one group, fused (its step count a tensor on the device), without AMSGrad, maximize or
    weight decay, as ``pyro_vae.train`` makes it; else the optimizer steps after the graph."""
    if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    plain = not (group["amsgrad"] or group["maximize"] or group["weight_decay"] or group["differentiable"])
    return bool(plain and group["fused"]) and not torch.is_tensor(group["lr"])


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


def adam_corrections(
    optimizer: torch.optim.Optimizer, steps: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam's step sizes lr/(1 − β₁ᵗ) and roots √(1 − β₂ᵗ) for the coming step t of each
    parameter (``steps``: the counts so far), inputs of the graph made on the device before it."""
    group = optimizer.param_groups[0]
    beta1, beta2 = group["betas"]
    t = torch.stack(steps) + 1
    return group["lr"] / (1 - beta1**t), torch.sqrt(1 - beta2**t)


def adam_in_graph(optimizer: torch.optim.Optimizer, params, grads, states, sizes, roots) -> None:
    """``optimizer``'s step (of :func:`steps_in_graph`) in place, inside a traced graph, with the
    step sizes and roots of :func:`adam_corrections` (Kingma & Ba 2015, Algorithm 1, as
    ``torch.optim.Adam`` makes it)::

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,
        θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
    """
    group = optimizer.param_groups[0]
    (beta1, beta2), eps = group["betas"], group["eps"]
    for p, g, state, size, root in zip(params, grads, states, sizes, roots, strict=True):
        m, v = state["exp_avg"], state["exp_avg_sq"]
        state["step"].add_(1)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        p.sub_(size * m / (v.sqrt() / root + eps))
