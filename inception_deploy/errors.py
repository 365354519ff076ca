"""Errors the toolkit reports to users as one line (the CLI prints them and exits 2)."""


class InceptionDeployError(Exception):
    """Base class: the message is complete and names the file or value that is wrong."""


class UnknownArchError(InceptionDeployError, ValueError):
    pass


class WeightsError(InceptionDeployError, ValueError):
    """A checkpoint could not be read, downloaded or did not fit the model."""


class ConfigError(InceptionDeployError, ValueError):
    """An invalid option value (preprocessing, batch sizes, ...)."""
