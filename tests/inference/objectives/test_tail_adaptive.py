"""Tail-adaptive f-divergence (:mod:`pyro_vae.inference.objectives.tail_adaptive`): the ELBO's
value, and the gradient of Wang et al.'s rank-weighted surrogate, against the definition."""

from tests.inference.objectives.by_hand import (
    cases,
    check_against_the_definition,
)


@cases("tail_adaptive")
def test_loss_and_gradient_equal_the_definition_by_hand(f64, name, options):
    check_against_the_definition(name, options)
