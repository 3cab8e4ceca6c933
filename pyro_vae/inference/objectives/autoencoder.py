"""The autoencoder objective: the reconstruction term alone, with no KL term,

    L_AE(x) = E_{q(z|x)}[log p(x|z)],        loss = −scale · Σ_n L_AE(x_n).

With the ``delta`` guide, q(z|x) = δ(z − f(x)), the expectation is one point and the loss is
−Σ_n log p(x_n | f(x_n)): the standard, deterministic autoencoder's reconstruction loss
(Hinton & Salakhutdinov 2006, "Reducing the dimensionality of data with neural networks";
Goodfellow, Bengio & Courville 2016, "Deep Learning", ch. 14). For a Bernoulli likelihood
with logits g(z) it is the binary cross-entropy Σ_d BCE(g_d(f(x)), x_d); for a Gaussian of
fixed scale σ it is the squared error |x − g(f(x))|² / 2σ² plus D log(σ√(2π)).

It is no bound on log p(x), and nothing in it fits the prior: p(z) takes no part in the loss,
so a learned prior is not trained and samples decoded from p(z) show what the decoder makes
of codes it was never trained on. The ELBO, the KL and log p(x) are not defined for the delta
guide (:class:`pyro_vae.models.guides.PointEstimate`); the metrics report the reconstruction term,
and training keeps the epoch with the best validation reconstruction.

With a guide that has a density (``normal``, ``iaf``, ...) it is a *stochastic autoencoder*:
z ~ q(z|x) is a noisy code, and with no KL to hold q near the prior a Gaussian guide's scale
is free to shrink to its floor (``min_scale``), toward the plain autoencoder. That is allowed
(``pyro-vae train``); ``pyro-vae compare`` trains this objective with the delta guide
(:attr:`AutoencoderLoss.implied_guide`), so that ``--objectives elbo autoencoder`` sets a
plain autoencoder beside the VAE.

KL warm-up and free bits act on a KL term, which this objective does not have: they are
refused (:func:`pyro_vae.inference.objectives.make_objective`).
"""

from pyro_vae.inference.objectives.base import LocalBound, register_objective


class AutoencoderLoss(LocalBound):
    """−scale · Σ_n mean_k log p(x_n | z_kn): the reconstruction term of :mod:`pyro_vae.inference.traces`."""

    #: no KL term: KL warm-up and free bits have nothing to act on
    has_kl = False
    #: q(z|x) is only sampled, never scored: a point-mass guide (``delta``) is fine
    needs_density = False
    #: the guide ``pyro-vae compare`` trains this objective with
    implied_guide = "delta"

    def bound(self, terms):
        value = terms.recon.mean(0)  # (B,)
        return value, value


@register_objective("autoencoder")
def autoencoder() -> AutoencoderLoss:
    """The reconstruction term E_q[log p(x|z)] alone, no KL: with the ``delta`` guide, the plain
    autoencoder (Hinton & Salakhutdinov 2006). Non-zero ``kl_warmup`` or ``free_bits`` is refused."""
    return AutoencoderLoss()
