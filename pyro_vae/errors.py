"""Errors that pyro-vae reports to its users as one line, with a non-zero exit from the CLI."""


class PyroVAEError(Exception):
    """Base class for problems with a user's input (config, data, run directory, device)."""


class ConfigError(PyroVAEError, ValueError):
    """A config key is unknown, or its value has the wrong type or range."""


class DataError(PyroVAEError, ValueError):
    """The data is missing, has the wrong shape or dtype, or lies outside the likelihood's support."""


class RunDirError(PyroVAEError, FileExistsError):
    """The run directory already holds another run, or holds no run where one is expected."""
