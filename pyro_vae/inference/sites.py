"""The sites of a Pyro trace, and running a program at given values or with particles.

Helpers every per-point computation of :mod:`pyro_vae.inference.traces` builds on: which sites
are sampled, latent or point masses (no density; :class:`~pyro_vae.core.errors.NotDefined`),
how many plates a model nests, a program run at given values of its latent sites
(:func:`at_values`) or vectorized over a ``"particles"`` plate to the left of its own
(:func:`in_particle_plate`, as Pyro's ``vectorize_particles``), and a site's log-density summed
to one value per (particle, data point) (:func:`per_particle_datum`).
"""

import contextlib

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pyro_vae.core.errors import NotDefined
from pyro_vae.models.kl import POINT_MASS, is_point_mass

PARTICLES = "particles"


def sample_sites(trace) -> dict:
    """The sample sites of a trace that hold values (latent or observed), by name, in order."""
    return {n: s for n, s in trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}


def latent_sites(trace) -> dict:
    """The sample sites of a trace that are not observed, by name, in order."""
    return {n: s for n, s in sample_sites(trace).items() if not s["is_observed"]}


@contextlib.contextmanager
def _aside(*args):
    """No gradients, no effects seen outside, and draws from a fork of torch's generators."""
    cuda = {a.device for a in args if torch.is_tensor(a) and a.device.type == "cuda"}
    with torch.no_grad(), poutine.block(), torch.random.fork_rng(devices=list(cuda)):
        yield


def max_plate_nesting(model, guide, *args, **kwargs) -> int:
    """How many plates deep the pair's sites sit (one trace of each, without gradients).

    The traces' draws come from a fork of torch's generators, which are left as they were: a
    seeded estimate that calls this does not move the global stream.
    """
    with _aside(*args):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    depth = 0
    for trace in (guide_trace, model_trace):
        for site in sample_sites(trace).values():
            frames = [f.dim for f in site["cond_indep_stack"] if f.vectorized]
            depth = max(depth, len(site["fn"].batch_shape), *(-d for d in frames))
    return depth


def point_mass_sites(guide, *args, **kwargs) -> list[str]:
    """The guide's latent sites that are point masses (one trace, as :func:`max_plate_nesting`'s)."""
    with _aside(*args):
        trace = poutine.trace(guide).get_trace(*args, **kwargs)
    return [name for name, site in latent_sites(trace).items() if is_point_mass(site["fn"])]


def enumerated_sites(guide, *args, **kwargs) -> list[str]:
    """The guide's sites marked to be summed over their classes (``infer={"enumerate":
    "parallel"}``), from one trace as :func:`max_plate_nesting`'s."""
    with _aside(*args):
        trace = poutine.trace(guide).get_trace(*args, **kwargs)
    return [
        name for name, site in latent_sites(trace).items() if site["infer"].get("enumerate") == "parallel"
    ]


def not_defined(what: str, sites, why: str = "") -> NotDefined:
    """The error for ``what`` (a quantity) of a guide whose ``sites`` are point masses."""
    return NotDefined(
        f"{what} is not defined for this guide: its site {sites[0]!r} is a point mass ({POINT_MASS}; "
        f"q(z|x) = δ(z − f(x))){why}",
        reason=POINT_MASS,
    )


def at_values(fn, values: dict):
    """``fn`` (a guide) run at given latent values ``{site: value}``: its sites take them as if
    drawn, not observed (``poutine.condition`` would mark them observed, and the model would
    then not replay them as latents)."""
    return _AtValues(values)(fn)


class _AtValues(Messenger):
    def __init__(self, values: dict):
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg):
        if msg["name"] in self.values and not msg["is_observed"]:
            msg["value"] = self.values[msg["name"]]


def in_particle_plate(fn, particles: int, dim: int):
    """``fn`` run inside ``pyro.plate("particles", particles, dim=dim)``."""

    def wrapped(*args, **kwargs):
        with pyro.plate(PARTICLES, particles, dim=dim):
            return fn(*args, **kwargs)

    return wrapped


def per_particle_datum(log_prob: torch.Tensor, site: dict, plate: str) -> torch.Tensor:
    """Reduce a site's log-density (or KL) to shape ``(k, B)``: sum over all other dimensions."""
    frames = {f.name: f for f in site["cond_indep_stack"] if f.vectorized}
    if plate not in frames:
        raise ValueError(
            f"site {site['name']!r} is not inside the plate {plate!r}: per-data-point bounds "
            "need every latent and observed site under the data plate"
        )
    shape = [1] * max(-f.dim for f in frames.values())
    for f in frames.values():
        shape[f.dim] = f.size
    log_prob = log_prob.expand(torch.broadcast_shapes(log_prob.shape, tuple(shape)))
    data_dim = frames[plate].dim
    if PARTICLES in frames:
        out = log_prob.movedim((frames[PARTICLES].dim, data_dim), (0, 1))
    else:
        out = log_prob.movedim(data_dim, 0).unsqueeze(0)
    return out.reshape(out.shape[0], out.shape[1], -1).sum(-1)  # (k, B)


def to_site_layout(t: torch.Tensor, site: dict, plate: str) -> torch.Tensor:
    """A ``(k, B)`` tensor shaped to broadcast against a site's value (batch, then event dims)."""
    frames = {f.name: f.dim for f in site["cond_indep_stack"] if f.vectorized}
    shape = [1] * len(site["fn"].batch_shape)
    shape[frames[PARTICLES]] = t.shape[0]
    shape[frames[plate]] = t.shape[1]
    ordered = t if frames[PARTICLES] < frames[plate] else t.T
    return ordered.reshape(shape + [1] * len(site["fn"].event_shape))
