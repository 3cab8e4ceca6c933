"""How pyro_vae's names are imported: lazily, and by the flat paths they had before the subpackages.

A package's public names are bound by :func:`lazy_names`, which imports the module holding
one the first time it is used, so that ``import pyro_vae`` costs only what is used.

:class:`OldPaths` keeps code written against the flat layout working: ``import pyro_vae.priors``
or ``from pyro_vae.options import PositiveFloat`` gives the module that now lives at
``pyro_vae.models.priors`` (the same object, so that its registries are the ones in use).
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType

#: the flat layout's modules and where they are now; a package's modules follow it
MOVED = {
    "errors": "core.errors", "options": "core.options", "registry": "core.registry",
    "plugins": "core.plugins", "numeric": "core.numeric", "files": "core.files",
    "distributed": "core.distributed", "interrupts": "core.interrupts",
    "sections": "config.sections", "reference": "config.reference",
    "distributions": "models.distributions", "flows": "models.flows", "kl": "models.kl",
    "networks": "models.networks", "priors": "models.priors", "likelihoods": "models.likelihoods",
    "guides": "models.guides", "model": "models.vae",
    "array_files": "data.array_files", "downloads": "data.downloads", "catalog": "data.catalog",
    "traces": "inference.traces", "graphs": "inference.graphs",
    "objectives": "inference.objectives", "estimators": "inference.estimators",
    "estimators.noise": "inference.noise",
    "axes": "pictures.axes", "plots": "pictures.plots", "latent_paths": "pictures.latent_paths",
    "latent_plots": "pictures.latent_plots",
    "step": "training.step", "capture": "training.capture", "compiled": "training.compiled",
    "loop": "training.loop", "callbacks": "training.callbacks", "schedules": "training.schedules",
    "loggers": "training.loggers", "checkpoint": "training.checkpoint", "run": "training.run",
    "resolve": "training.resolve", "resume": "training.resume", "figures": "training.figures",
    "evaluate": "evaluation.evaluate",
    "comparison_run": "comparison.one_run", "report": "comparison.report",
    "side_by_side": "comparison.side_by_side",
    "arguments": "cli.arguments",
}  # fmt: skip
# ``measure`` is left out: ``pyro_vae.measure`` is the function, which its module would replace.
# ``config``, ``data``, ``training``, ``comparison`` and ``cli`` are packages now, of the same
# name; each binds the old module's public names (``from pyro_vae.config import Config``).


def lazy_names(package: str, homes: dict[str, str]) -> tuple[Callable, Callable]:
    """A package's module-level ``__getattr__`` and ``__dir__`` for the public names ``homes``
    maps to the modules defining them: each is imported on first use, then bound for good."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str):
        if name not in homes:
            if new_path(f"{package}.{name}") is not None:  # a flat layout's module: pyro_vae.priors
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *homes})

    return __getattr__, __dir__


def new_path(fullname: str) -> str | None:
    """``pyro_vae.objectives.renyi`` → ``pyro_vae.inference.objectives.renyi``; None for a
    name that did not move."""
    package, _, old = fullname.partition(".")
    if package != "pyro_vae":
        return None
    parts = old.split(".")
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        if head in MOVED:
            return ".".join(["pyro_vae", MOVED[head], *parts[i:]])
    return None


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module at its new path: imported there, bound here too."""

    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        pass  # the module ran once, under its new name


class OldPaths(importlib.abc.MetaPathFinder):
    """Finds the flat layout's module names (``pyro_vae.priors``) at their new paths."""

    def find_spec(self, fullname, path=None, target=None):
        new = new_path(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install_old_paths() -> None:
    """Put :class:`OldPaths` first in ``sys.meta_path`` (once): before the path finder, which
    would load ``pyro_vae.objectives.renyi`` a second time, as a new module, from the package's
    folder."""
    if not any(isinstance(finder, OldPaths) for finder in sys.meta_path):
        sys.meta_path.insert(0, OldPaths())
