"""pyro_vae.core.imports: ``import pyro_vae`` costs only what is used, and the flat layout's
module paths give the modules at their new paths."""

import importlib
import subprocess
import sys
import textwrap

import pytest

import pyro_vae
from pyro_vae.core.imports import MOVED, new_path
from pyro_vae.core.plugins import import_plugin
from pyro_vae.core.registry import Spec


def test_import_pyro_vae_loads_no_plotting_tracking_learning_or_compiler_module():
    code = textwrap.dedent(
        """
        import sys
        import pyro_vae
        heavy = ("matplotlib", "sklearn", "tensorboard", "mlflow", "torch._inductor", "torch._dynamo")
        print([m for m in heavy if m in sys.modules])
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_public_name_is_bound_from_its_module():
    assert set(dir(pyro_vae)) >= set(pyro_vae.__all__)
    for name in pyro_vae.__all__:
        getattr(pyro_vae, name)
    assert set(vars(pyro_vae)) >= set(pyro_vae.__all__)  # bound for good once used
    assert pyro_vae.Config is importlib.import_module("pyro_vae.config.run_config").Config
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        pyro_vae.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("pyro_vae.options", "pyro_vae.core.options"),
        ("pyro_vae.registry", "pyro_vae.core.registry"),
        ("pyro_vae.priors", "pyro_vae.models.priors"),
        ("pyro_vae.kl", "pyro_vae.models.kl"),
        ("pyro_vae.objectives", "pyro_vae.inference.objectives"),
        ("pyro_vae.objectives.renyi", "pyro_vae.inference.objectives.renyi"),
        ("pyro_vae.estimators", "pyro_vae.inference.estimators"),
        ("pyro_vae.estimators.noise", "pyro_vae.inference.noise"),
        ("pyro_vae.model", "pyro_vae.models.vae"),
        ("pyro_vae.schedules", "pyro_vae.training.schedules"),
    ],
)
def test_an_old_path_is_the_same_module_as_the_new_one(old, new):
    assert new_path(old) == new
    assert importlib.import_module(old) is importlib.import_module(new)


def test_old_from_imports_and_attributes_still_work():
    from pyro_vae.objectives import LocalBound
    from pyro_vae.options import PositiveFloat
    from pyro_vae.priors import PRIORS

    from pyro_vae.core.options import PositiveFloat as new_positive_float
    from pyro_vae.core.registry import PRIORS as new_priors
    from pyro_vae.inference.objectives.base import LocalBound as new_local_bound

    assert (PositiveFloat, LocalBound, PRIORS) == (new_positive_float, new_local_bound, new_priors)
    assert pyro_vae.kl is importlib.import_module("pyro_vae.models.kl")  # an attribute, as before
    assert callable(pyro_vae.measure)  # the function, never its module


def test_new_paths_and_the_packages_that_replaced_old_modules_are_left_alone():
    assert new_path("pyro_vae.models.priors") is None and new_path("pyro_vae.data.catalog") is None
    assert new_path("pyro_vae.config") is None and "measure" not in MOVED
    from pyro_vae.config import Config
    from pyro_vae.data import load_data

    assert Config is pyro_vae.Config and load_data is pyro_vae.load_data


def test_a_plugin_written_against_the_flat_layout_registers_its_part(tmp_path, scoped_registries):
    plugin = tmp_path / "old_plugin.py"
    plugin.write_text(
        textwrap.dedent(
            """
            import torch
            import pyro.distributions as dist
            from pyro_vae.options import PositiveFloat
            from pyro_vae.priors import register_prior


            @register_prior("old_layout_laplace")
            class Laplace(torch.nn.Module):
                def __init__(self, latent_dim, /, *, scale: PositiveFloat = 1.0):
                    super().__init__()
                    self.register_buffer("loc", torch.zeros(latent_dim))
                    self.scale = scale

                def forward(self):
                    return dist.Laplace(self.loc, self.scale).to_event(1)
            """
        )
    )
    import_plugin(str(plugin))
    spec = Spec.parse({"kind": "old_layout_laplace", "scale": 2}, "prior", "model.prior")
    assert spec == Spec("old_layout_laplace", {"scale": 2.0})
