"""Variational objectives, each a ``pyro.infer.ELBO`` chosen by name.

An objective entry is called with its options (``particles = 5``) and returns an
ELBO instance that works with ``pyro.infer.SVI`` on any model/guide pair, and whose
``differentiable_loss(model, guide, x)`` gives a loss tensor to ``backward()``
through, which is how pyro-vae's own training step uses it. Losses are negative
bounds summed over the data points of the batch.

Particles are vectorized: the k samples of z are drawn as one tensor with a
leading particle dimension, never by a Python loop.
"""

import pyro.infer

from .config import PositiveInt, Spec
from .registry import Registry

OBJECTIVES = Registry("objective")
register_objective = OBJECTIVES.register


@register_objective("elbo")
def elbo(*, particles: PositiveInt = 1) -> pyro.infer.ELBO:
    """The evidence lower bound with a Monte-Carlo KL term (Pyro's ``Trace_ELBO``)::

        ELBO(x) = E_{q(z|x)}[log p(x|z) + log p(z) − log q(z|x)] ≤ log p(x),

    estimated with ``particles`` reparameterized draws z ~ q(z|x) per data point
    (Kingma & Welling 2014, eq. 6).
    """
    return pyro.infer.Trace_ELBO(num_particles=particles, vectorize_particles=particles > 1)


@register_objective("meanfield")
def meanfield(*, particles: PositiveInt = 1) -> pyro.infer.ELBO:
    """The ELBO with the KL term in closed form where one exists (Pyro's ``TraceMeanField_ELBO``)::

        ELBO(x) = E_{q(z|x)}[log p(x|z)] − KL(q(z|x) || p(z)),

    which for a Gaussian guide and N(0, I) prior is
    KL = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1) (Kingma & Welling 2014, appendix B).
    Pairs with no registered closed form fall back to a Monte-Carlo estimate.
    """
    return pyro.infer.TraceMeanField_ELBO(num_particles=particles, vectorize_particles=particles > 1)


def make_objective(kind: str, **params) -> pyro.infer.ELBO:
    """Build a registered objective by name: ``make_objective("elbo", particles=5)``.

    Options are checked as a config file's would be, with the same error messages.
    """
    checked = Spec.parse({"kind": kind, **params}, "objective", "objective")
    return OBJECTIVES.get(checked.kind)(**checked.params)
