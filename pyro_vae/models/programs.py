"""A user's own Pyro program as a model: ``model.program = { kind = "NAME", ... }``.

A program is a ``torch.nn.Module`` class whose methods ``model(x)`` and ``guide(x)`` are Pyro
programs on a batch of data rows ``x`` ``(B, D)``, their sites under one plate named ``"data"``,
registered in a plugin file::

    import pyro_vae

    @pyro_vae.register_program("cvae")
    class CVAE(torch.nn.Module):
        def __init__(self, data_dim, /, *, latent: int = 16, hidden: int = 256): ...
        def model(self, x): ...
        def guide(self, x): ...
        def draw(self, x): ...   # optional: what `pyro-vae sample` shows for data rows x

It is built as ``Class(data_dim, **options)``, its options being its typed keyword-only
parameters as for every registered part, so the run's ``config.toml`` records and rebuilds it:
``train``, ``evaluate``, ``compare`` and ``--resume`` treat it as a built-in model, its parameters
are the module's own, and ``pyro-vae sample`` shows ``draw(x)`` of validation rows where the
class defines it.

Every site's density enters the bounds with one scale. A term that only trains (a classifier's
α log q(y|x), as Pyro's semi-supervised example adds with ``poutine.scale``) is written as a
factor of value 0 marked auxiliary, which every objective trains and no bound reports::

    pyro.factor("classify", alpha * (t - t.detach()), has_rsample=True)   # value 0, gradient α ∇t
"""

from torch import nn

from pyro_vae.config.sections import ModelConfig
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import PROGRAMS

register_program = PROGRAMS.register


def build_program(config: ModelConfig) -> nn.Module:
    """The program ``config.program`` names, built for ``config.data_dim`` values per row."""
    assert config.program is not None
    if config.data_dim is None:
        raise ConfigError("model.data_dim is not set: give the number of values per data point")
    module = PROGRAMS.get(config.program.kind, key="model.program.kind")(
        config.data_dim, **config.program.params
    )
    missing = [m for m in ("model", "guide") if not callable(getattr(module, m, None))]
    if not isinstance(module, nn.Module) or missing:
        raise ConfigError(
            f"model.program.kind = {config.program.kind!r} must build a torch.nn.Module with methods "
            "model(x) and guide(x)" + (f"; it has no {' or '.join(missing)}" if missing else "")
        )
    return module
