"""Variational objectives, each a ``pyro.infer.ELBO`` chosen by name.

An objective entry is called with its options (``particles = 5``) and returns an ELBO
instance that works with ``pyro.infer.SVI`` on any model/guide pair whose sites sit
under one data plate, and whose ``differentiable_loss(model, guide, x)`` gives a loss
tensor to ``backward()`` through, which is how pyro-vae's own training step uses it
(and how plain PyTorch, Lightning or DDP loops can). Losses are negative bounds summed
over the data points of the batch: their value is the bound's estimate, their gradient
the estimator's. Particles are vectorized, never looped over in Python, and nothing is
read back to the host.

=================  ==========================================================  =========
name               what                                                        module
=================  ==========================================================  =========
``elbo``           Pyro's ``Trace_ELBO``                                        trace_elbo
``meanfield``      Pyro's ``TraceMeanField_ELBO`` (closed-form KL)              trace_elbo
``tracegraph``     Pyro's ``TraceGraph_ELBO`` (non-reparameterizable sites)     trace_elbo
``iwae``           importance-weighted bound (Burda et al. 2016)                renyi
``renyi``          Rényi α bound (Li & Turner 2016)                             renyi
``beta``           β-VAE (Higgins et al. 2017)                                  beta
``tail_adaptive``  tail-adaptive f-divergence (Wang et al. 2018)                tail_adaptive
``iwae_dreg``      IWAE with doubly-reparameterized gradients (Tucker 2019)     dreg
``elbo_stl``       ELBO with sticking-the-landing gradients (Roeder 2017)       stl
``autoencoder``    reconstruction term alone: with the ``delta`` guide, the     autoencoder
                   plain autoencoder (Hinton & Salakhutdinov 2006)
=================  ==========================================================  =========

A new objective is one new file here: the ``objective`` registry imports every module of this
package the first time it is asked for a name. Every objective also takes the modifiers
``kl_warmup``, ``kl_warmup_unit`` and ``free_bits`` (the registry's shared options,
:func:`pyro_vae.core.registry.objective_modifiers`; see :mod:`pyro_vae.inference.objectives.modifiers`),
but for one with no KL term to act on (``has_kl = False``: ``autoencoder``), which refuses them.

Every objective but ``autoencoder`` scores z under q(z|x) and so needs a guide with a density
(``needs_density``, :func:`check_guide`): the ``delta`` guide, a point mass, trains with
``autoencoder`` only. An objective may name the guide it is meant with (``implied_guide``:
``autoencoder``'s is ``delta``), which ``pyro-vae compare`` gives its runs (:func:`paired_guide`).
"""

from typing import Any

import pyro.infer

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import parse_value, show
from pyro_vae.core.registry import GUIDES, OBJECTIVES, Spec
from pyro_vae.inference.objectives.base import LocalBound, register_objective
from pyro_vae.inference.objectives.modifiers import Modified


def make_objective(kind: str, **params) -> pyro.infer.ELBO:
    """Build a registered objective by name: ``make_objective("iwae", particles=5)``.

    Options are checked as a config file's would be, with the same error messages.
    """
    checked = Spec.parse({"kind": kind, **params}, "objective", "objective")
    options = dict(checked.params)
    mods = {name: options.pop(name) for name in OBJECTIVES.shared_option_names()}
    objective = OBJECTIVES.get(checked.kind)(**options)
    given = [name for name in ("kl_warmup", "free_bits") if mods[name]]
    if given and not getattr(objective, "has_kl", True):
        raise ConfigError(
            f"objective.{given[0]} = {show(mods[given[0]])} is not allowed for {checked.kind}: it has no "
            "KL term for KL warm-up or free bits to act on"
        )
    if given or mods["classify"] != 1.0:
        objective = Modified(objective, **mods)
    return objective


def check_guide(objective: pyro.infer.ELBO, kind: str, point_masses: list[str], guide: str) -> None:
    """Refuse an objective that scores z under q(z|x) (``needs_density``, every one but
    ``autoencoder``) with a guide whose sites ``point_masses`` have no density.

    :param kind: the objective's name; ``guide``: the guide in words (``model.guide.kind = "delta"``).
    """
    if point_masses and getattr(objective, "needs_density", True):
        raise ConfigError(
            f'objective.kind = "{kind}" needs the density of q(z|x), which {guide} does not have (its site '
            f'{point_masses[0]!r} is a point mass); train it with objective.kind = "autoencoder" (the '
            "reconstruction term alone), or choose a guide with a density"
        )


def paired_guide(spec: dict, guide: Spec) -> Spec:
    """The guide a comparison trains the objective ``spec`` with: the one it implies
    (``implied_guide``: ``delta`` for ``autoencoder``), else the base config's ``guide``,
    refused where the objective needs a density that guide does not have (:func:`check_guide`)."""
    objective = make_objective(**spec)
    implied = getattr(objective, "implied_guide", None)
    if implied is not None:
        return Spec(implied)
    densities = getattr(GUIDES.get(guide.kind), "has_density", True)
    words = f'model.guide.kind = "{guide.kind}"'
    check_guide(objective, spec["kind"], [] if densities else ["z"], words)
    return guide


#: short names in objective words (``iwae:k=5``)
ALIASES = {"k": "particles"}


def parse_objective(word: str | dict) -> tuple[str, dict]:
    """``"iwae:k=5"`` → its label and ``{"kind": "iwae", "particles": 5}``, validated.

    A word is ``NAME[:key=value[,key=value...]]``; ``k`` stands for ``particles``. A dict is
    a spec, ``{"kind": "iwae", "particles": 5}``. Raises :class:`ConfigError` naming the word.
    """
    if isinstance(word, dict):
        given = dict(word)
        name = str(given.pop("kind", ""))
        pairs = [(k, show(v)) for k, v in given.items()]
        options: list[tuple[str, Any]] = list(given.items())
    else:
        name, _, rest = word.partition(":")
        items = [item.partition("=") for item in rest.split(",")] if rest.strip() else []
        if any(not eq or not k.strip() for k, eq, _ in items):
            raise ConfigError(f"objective {word!r}: expected NAME or NAME:key=value[,key=value...]")
        pairs = [(k.strip(), v.strip()) for k, _, v in items]
        options = [(k, parse_value(v)) for k, v in pairs]  # a list: a key given twice is seen
    name = name.strip()
    label = name + "".join((":" if i == 0 else ",") + f"{k}={v}" for i, (k, v) in enumerate(pairs))
    spec = {"kind": name}
    for key, value in options:
        key = ALIASES.get(key, key)
        if key in spec:
            raise ConfigError(f"objective {label!r}: {key} is given twice")
        spec[key] = value
    try:
        spec = Spec.parse(spec, "objective", "objective").to_dict()
        make_objective(**spec)  # the checks an objective makes when built, such as renyi's alpha != 1
    except ConfigError as e:
        raise ConfigError(f"objective {label!r}: {e}") from None
    return label, spec


__all__ = [
    "OBJECTIVES",
    "LocalBound",
    "Modified",
    "check_guide",
    "make_objective",
    "paired_guide",
    "parse_objective",
    "register_objective",
]
