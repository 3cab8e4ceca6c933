"""Models declared as graphs of named variables (:mod:`pyro_vae.config.graph`): the conditional
families a variable is drawn from, the discrete ones among them, and the Pyro programs built
from a declaration."""

from pyro_vae.models.graph.families import register_family
from pyro_vae.models.graph.program import GraphProgram

__all__ = ["GraphProgram", "register_family"]
