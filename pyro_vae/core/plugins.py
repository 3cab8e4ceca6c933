"""Users' own parts: Python files or modules imported before a config that names them is read.

A plugin registers priors, guides, likelihoods, networks, objectives, estimators or datasets
(``pyro_vae.register_prior`` …) so that a config file or a flag can name them. Importing one
is an explicit step of loading a config file (:func:`pyro_vae.config.run_config.load_config`) or a run
(:meth:`pyro_vae.training.run.Run.load`), never a side effect of building a config object.
"""

import importlib
import importlib.util
from pathlib import Path

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import show

_IMPORTED: dict[str, object] = {}


def plugin_key(name: str, relative_to: Path | None = None) -> str:
    """How a plugin is named in a saved config: a file's absolute path, or a module's name."""
    if not name.endswith(".py"):
        return name
    path = Path(name)
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    return str(path.resolve())


def import_plugin(name: str) -> str:
    """Import a user's file (``path/to/file.py``) or module once; return its :func:`plugin_key`."""
    key = plugin_key(name)
    if key in _IMPORTED:
        return key
    try:
        if key.endswith(".py"):
            if not Path(key).is_file():
                raise ConfigError(f"plugins: {name!r} does not exist")
            spec = importlib.util.spec_from_file_location(f"pyro_vae_plugin_{len(_IMPORTED)}", key)
            assert spec is not None and spec.loader is not None  # a .py file always has a loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(name)
    except ConfigError:
        raise
    except Exception as e:  # a user's file may fail in any way: say which file and how
        raise ConfigError(f"plugins: importing {name!r} failed: {type(e).__name__}: {e}") from None
    _IMPORTED[key] = module
    return key


def import_plugins(names) -> list[str]:
    """Import every plugin of a config's ``plugins`` list; their keys, in order."""
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"plugins = {show(names)} is not allowed: expected a list of strings")
    return [import_plugin(n) for n in names]
