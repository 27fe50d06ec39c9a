"""Public exceptions. Each message names the problem and the fix."""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class of every error Conveyor raises on purpose."""


class ConfigError(ConveyorError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class PayloadError(ConveyorError, ValueError):
    """Job arguments cannot be stored: not JSON, not keyword arguments, or too large."""


class UnknownTaskError(ConveyorError, LookupError):
    """No task with this name is registered on the app."""


class SchemaError(ConveyorError):
    """The database schema is missing, older or newer than this version of Conveyor."""


class JobNotFoundError(ConveyorError, LookupError):
    """No job has the given id (it may have been pruned by retention)."""


class DatabaseUnavailableError(ConveyorError, ConnectionError):
    """The database cannot be reached; nothing was written."""
