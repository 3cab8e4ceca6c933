"""Repeated gradient estimates, and the z-scores that compare two estimators' means."""

import torch


def gradient_draws(objective, vae, x, params, draws):
    """``draws`` independent gradient estimates, flattened: (draws, number of coordinates)."""
    objective.differentiable_loss(vae.model, vae.guide, x)  # set-up call

    def one():
        loss = objective.differentiable_loss(vae.model, vae.guide, x)
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    return torch.stack([one() for _ in range(draws)])


def z_scores(a, b):
    """Per coordinate, the difference of the two means in units of its standard error."""
    se = (a.var(0) / len(a) + b.var(0) / len(b)).sqrt()
    assert (se > 0).all()
    return (a.mean(0) - b.mean(0)) / se
