"""Errors that pyro-vae reports to its users as one line, with a non-zero exit from the CLI."""


class PyroVAEError(Exception):
    """Base class for problems with a user's input (config, data, run directory, device)."""


class ConfigError(PyroVAEError, ValueError):
    """A config key is unknown, or its value has the wrong type or range."""


class DataError(PyroVAEError, ValueError):
    """The data is missing, has the wrong shape or dtype, or lies outside the likelihood's support."""


class RunDirError(PyroVAEError, FileExistsError):
    """The run directory already holds another run, or holds no run where one is expected."""


class NotDefined(PyroVAEError, ValueError):
    """A quantity asked for does not exist for this model: log p(x), the ELBO or a KL when the
    guide has no density (a point estimate, the ``delta`` guide).

    ``reason`` is the why in a few words, for a table that shows the quantity as absent.
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message
