"""Exception types raised by protofl.

Every error protofl raises on bad input is a subclass of :class:`ProtoflError` *and* of the
matching built-in (``ValueError`` or ``TypeError``), so callers can catch either.
"""

from __future__ import annotations


class ProtoflError(Exception):
    """Base class of every error protofl raises on purpose."""


class LabelError(ProtoflError, ValueError):
    """Labels with the right type but wrong values or shape."""


class LabelTypeError(ProtoflError, TypeError):
    """Labels of a type that cannot hold class ids (strings, objects, complex numbers)."""


class ConfigError(ProtoflError, ValueError):
    """An invalid configuration value, unknown key or unknown name."""


class DataError(ProtoflError, ValueError):
    """A dataset that is missing, truncated, corrupt or of the wrong shape."""


class DataNotFoundError(DataError):
    """A dataset that is not where protofl looked for it."""


class PayloadError(ProtoflError, ValueError):
    """A message between server and client that fails validation."""


class TrainingError(ProtoflError, RuntimeError):
    """Training cannot go on (for example a loss became NaN)."""
