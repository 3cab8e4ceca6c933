"""The update of a training step: the gradient clipped to its norm, then the optimizer's step,
checked against clipping and Adam (Kingma & Ba 2015) computed by hand in float64; and Adam's step
as a compiled graph makes it (its state started, its bias corrections, its update), against the
same and against torch's fused Adam."""

import math

import pytest
import torch

from pyro_vae.training.update import (
    adam_corrections,
    adam_in_graph,
    clip,
    params_of,
    start_state,
    steps_in_graph,
    update,
)

LR, BETAS, EPS = 0.1, (0.9, 0.999), 1e-8
SHAPES = [(3,), (2, 2), ()]


def tensors(seed: int, scale: float = 1.0, dtype=torch.float64) -> list[torch.Tensor]:
    """A few small tensors of ``SHAPES``, drawn from a generator of their own."""
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(shape, generator=g, dtype=dtype) for shape in SHAPES]


def norm(gs: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float((g.double() ** 2).sum()) for g in gs))


def clipped(gs: list[torch.Tensor], c: float | None) -> list[torch.Tensor]:
    """g · min(1, c / (‖g‖₂ + 10⁻⁶)), ‖g‖ over all the tensors together."""
    factor = 1.0 if c is None else min(1.0, c / (norm(gs) + 1e-6))
    return [g * factor for g in gs]


def adam_by_hand(theta, grads, c: float | None, *, lr=LR, betas=BETAS, eps=EPS) -> list[torch.Tensor]:
    """θ after one Adam step per gradient, as Kingma & Ba (2015, Algorithm 1) write it:
    m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², θ ← θ − lr · m̂ / (√v̂ + ε), with
    m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ); each g clipped first."""
    b1, b2 = betas
    theta = [p.clone() for p in theta]
    m = [torch.zeros_like(p) for p in theta]
    v = [torch.zeros_like(p) for p in theta]
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(clipped(gs, c)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            theta[i] = theta[i] - lr * m_hat / (v_hat.sqrt() + eps)
    return theta


# the gradients of three steps: norms far apart, so that a clip factor that differs from step
# to step changes Adam's step (a factor shared by all steps would nearly cancel in m̂ / √v̂)
GRADS = [tensors(1, scale=5.0), tensors(2, scale=0.05), tensors(3, scale=1.0)]


@pytest.mark.parametrize("fused", [False, True], ids=["per-tensor", "fused"])
@pytest.mark.parametrize("clip_norm", [None, 0.5, 1e3], ids=["no-clip", "clips", "loose-clip"])
def test_update_is_clipping_then_adams_step(fused, clip_norm):
    theta = tensors(0)
    params = [p.clone().requires_grad_() for p in theta]
    optimizer = torch.optim.Adam(params, lr=LR, betas=BETAS, eps=EPS, fused=fused)
    for gs in GRADS:
        for p, g in zip(params, gs, strict=True):
            p.grad = g.clone()
        update(optimizer, params, clip_norm)
        for p, g in zip(params, clipped(gs, clip_norm), strict=True):  # clipped in place
            torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=0)
    want = adam_by_hand(theta, GRADS, clip_norm)
    for p, w in zip(params, want, strict=True):
        torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-12)


def test_the_clip_changes_adams_steps():
    """The test above can tell a clipped update from an unclipped one: clipping at 0.5 cuts the
    first gradient (norm > 5) but not the second (norm < 0.5), and moves θ by far more than its
    tolerance."""
    assert norm(GRADS[0]) > 5 and norm(GRADS[1]) < 0.5
    theta = tensors(0)
    with_clip, without = adam_by_hand(theta, GRADS, 0.5), adam_by_hand(theta, GRADS, None)
    apart = [a - b for a, b in zip(with_clip, without, strict=True)]
    assert norm(apart) > 1e-3
    # a loose bound leaves every gradient as it is
    assert all(torch.equal(a, b) for a, b in zip(clipped(GRADS[0], 1e3), GRADS[0], strict=True))


@pytest.mark.parametrize("clip_norm", [None, 0.5], ids=["no-clip", "clips"])
def test_update_with_sgd_moves_by_the_clipped_gradient(clip_norm):
    """SGD's step is linear in g: θ − lr · g · min(1, c / (‖g‖ + 10⁻⁶)), exactly."""
    theta, gs = tensors(0), tensors(1, scale=2.0)
    params = [p.clone().requires_grad_() for p in theta]
    for p, g in zip(params, gs, strict=True):
        p.grad = g.clone()
    update(torch.optim.SGD(params, lr=LR), params, clip_norm)
    moved = [(t - p.detach()) / LR for t, p in zip(theta, params, strict=True)]
    assert norm(moved) == pytest.approx(norm(gs) if clip_norm is None else clip_norm, rel=1e-6)
    for step, g in zip(moved, clipped(gs, clip_norm), strict=True):
        torch.testing.assert_close(step, g, rtol=1e-10, atol=1e-12)


def test_update_clips_only_the_tensors_it_is_given():
    """The norm is that of ``params``' gradients; another parameter's gradient is left alone
    (yet the optimizer steps it, as it steps all it holds)."""
    f64 = torch.float64
    a, b = (torch.zeros(2, dtype=f64, requires_grad=True) for _ in range(2))
    a.grad, b.grad = torch.tensor([3.0, 4.0], dtype=f64), torch.tensor([30.0, 40.0], dtype=f64)
    update(torch.optim.SGD([a, b], lr=1.0), [a], 1.0)
    torch.testing.assert_close(a.grad, torch.tensor([3.0, 4.0], dtype=f64) / (5 + 1e-6), rtol=1e-14, atol=0)
    torch.testing.assert_close(b.detach(), torch.tensor([-30.0, -40.0], dtype=f64), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Which optimizers a graph can step
# ---------------------------------------------------------------------------------------------


def adam(lr=LR, **options):
    return lambda params: torch.optim.Adam(params, lr=lr, **options)


def two_groups(params):
    return torch.optim.Adam([{"params": params[:1]}, {"params": params[1:]}], lr=LR, fused=True)


@pytest.mark.parametrize(
    ("make", "in_graph"),
    [
        pytest.param(adam(fused=True), True, id="adam-fused"),
        pytest.param(adam(), False, id="adam-default"),
        pytest.param(adam(fused=False, foreach=False), False, id="adam-loop"),
        pytest.param(adam(foreach=True), False, id="adam-foreach"),
        pytest.param(adam(fused=True, amsgrad=True), False, id="amsgrad"),
        pytest.param(adam(fused=True, maximize=True), False, id="maximize"),
        pytest.param(adam(fused=True, weight_decay=0.1), False, id="decay"),
        pytest.param(adam(fused=True, lr=torch.tensor(LR)), False, id="tensor-lr"),
        pytest.param(two_groups, False, id="two-groups"),
        pytest.param(lambda ps: torch.optim.AdamW(ps, lr=LR, fused=True), False, id="adamw"),
        pytest.param(lambda ps: torch.optim.SGD(ps, lr=LR), False, id="sgd"),
    ],
)
def test_steps_in_graph(make, in_graph):
    params = [p.requires_grad_() for p in tensors(0, dtype=torch.float32)]
    assert bool(steps_in_graph(make(params))) is in_graph  # falsy (None) for fused=None


def test_params_of_lists_every_group_in_order():
    params = [p.requires_grad_() for p in tensors(0, dtype=torch.float32)]
    found = params_of(two_groups(params))
    assert len(found) == len(params) and all(a is b for a, b in zip(found, params, strict=True))


# ---------------------------------------------------------------------------------------------
# Adam's state before its first step, and its step on a graph's tensors
# ---------------------------------------------------------------------------------------------


def fused_adam(theta: list[torch.Tensor], lr: float = LR):
    params = [p.clone().requires_grad_() for p in theta]
    return params, torch.optim.Adam(params, lr=lr, betas=BETAS, eps=EPS, fused=True)


def set_grads(params, gs):
    for p, g in zip(params, gs, strict=True):
        p.grad = g.clone()


def test_start_state_is_the_state_the_first_fused_step_makes():
    theta, gs = tensors(0, dtype=torch.float32), tensors(1, dtype=torch.float32)
    started, a = fused_adam(theta)
    start_state(a, started)
    for p in started:
        state = a.state[p]
        step = state["step"]
        assert (step.shape, step.dtype, step.device, step.item()) == ((), torch.float32, p.device, 0)
        for key in ("exp_avg", "exp_avg_sq"):
            assert state[key].shape == p.shape and state[key].dtype == p.dtype and not state[key].any()
    plain, b = fused_adam(theta)
    for params, optimizer in ((started, a), (plain, b)):  # a step from either state: the same
        set_grads(params, gs)
        update(optimizer, params, None)
    for p, q in zip(started, plain, strict=True):
        assert torch.equal(p, q)
        assert a.state[p].keys() == b.state[q].keys()
        for key, value in b.state[q].items():
            assert a.state[p][key].dtype == value.dtype and torch.equal(a.state[p][key], value), key
    start_state(a, started)  # a state already made is kept
    assert all(a.state[p]["step"].item() == 1 and a.state[p]["exp_avg"].any() for p in started)


@pytest.mark.parametrize("clip_norm", [None, 0.5], ids=["no-clip", "clips"])
def test_clip_scales_the_gradients_to_the_norm_in_place(clip_norm):
    params = [p.requires_grad_() for p in tensors(0)]
    set_grads(params, GRADS[0])
    grads = [p.grad for p in params]
    clip(params, clip_norm)
    assert all(p.grad is g for p, g in zip(params, grads, strict=True))  # the same tensors, scaled
    for p, g in zip(params, clipped(GRADS[0], clip_norm), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=0)


def test_adam_corrections_are_those_of_the_coming_step():
    """lr / (1 − β₁ᵗ) and √(1 − β₂ᵗ) at t = the count so far + 1, one per parameter, from the
    optimizer's own lr and betas."""
    params = [p.requires_grad_() for p in tensors(0, dtype=torch.float32)]
    optimizer = torch.optim.Adam(params, lr=0.02, betas=(0.8, 0.99), fused=True)
    steps = [torch.tensor(0.0), torch.tensor(4.0), torch.tensor(99.0)]
    sizes, roots = adam_corrections(optimizer, steps)
    t = [1, 5, 100]
    want_sizes = torch.tensor([0.02 / (1 - 0.8**k) for k in t])
    want_roots = torch.tensor([math.sqrt(1 - 0.99**k) for k in t])
    torch.testing.assert_close(sizes, want_sizes, rtol=1e-6, atol=0)
    torch.testing.assert_close(roots, want_roots, rtol=1e-6, atol=0)
    assert [s.item() for s in steps] == [0.0, 4.0, 99.0]  # the counts are the graph's to advance


def graph_steps(optimizer, params, grads_per_step, clip_norm) -> list[dict]:
    """The update as the compiled graph makes it, eagerly: Adam's state started, then per step
    the gradients clipped, the corrections made from the counts, Adam's step written out."""
    start_state(optimizer, params)
    states = [optimizer.state[p] for p in params]
    with torch.no_grad():
        for gs in grads_per_step:
            set_grads(params, gs)
            clip(params, clip_norm)
            sizes, roots = adam_corrections(optimizer, [s["step"] for s in states])
            adam_in_graph(optimizer, params, [p.grad for p in params], states, sizes, roots)
    return states


@pytest.mark.parametrize("clip_norm", [None, 0.5], ids=["no-clip", "clips"])
def test_adam_in_graph_is_adam_by_hand(clip_norm):
    """Three steps in float64 from the optimizer's lr, betas and ε (none of them torch's
    defaults), against Kingma & Ba's formula; to the float32 rounding of the corrections."""
    theta = tensors(0)
    params = [p.clone().requires_grad_() for p in theta]
    hyper = {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-3}
    optimizer = torch.optim.Adam(params, **hyper, fused=True)
    states = graph_steps(optimizer, params, GRADS, clip_norm)
    want = adam_by_hand(theta, GRADS, clip_norm, **hyper)
    for p, w, state in zip(params, want, states, strict=True):
        torch.testing.assert_close(p.detach(), w, rtol=1e-6, atol=1e-8)
        assert state["step"].item() == len(GRADS)
    # the test tells the optimizer's hyperparameters from the defaults
    default = adam_by_hand(theta, GRADS, clip_norm, lr=0.05)
    assert norm([a - b for a, b in zip(want, default, strict=True)]) > 1e-3


def test_adam_in_graph_is_the_fused_step_on_copies():
    """In float32, from the same start, as torch's fused Adam makes them: the parameters and
    the moments after three clipped steps, to float rounding."""
    theta = tensors(0, dtype=torch.float32)
    grads = [[g.float() for g in gs] for gs in GRADS]
    graphed, optimizer = fused_adam(theta)
    states = graph_steps(optimizer, graphed, grads, 0.5)
    fused, reference = fused_adam(theta)
    for gs in grads:
        set_grads(fused, gs)
        update(reference, fused, 0.5)
    for p, q, state in zip(graphed, fused, states, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        ref = reference.state[q]
        assert state["step"].item() == ref["step"].item() == len(grads)
        torch.testing.assert_close(state["exp_avg"], ref["exp_avg"], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(state["exp_avg_sq"], ref["exp_avg_sq"], rtol=1e-5, atol=1e-9)
