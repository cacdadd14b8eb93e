"""The one exception root of driftnet.

Every error keeps the values that explain it and says whether retrying can help
(``transient``). Edges convert them: HTTP -> 4xx/503 with a reason, CLI -> one line and a
non-zero exit, loader -> a quarantine row with a typed reason code.
"""

from __future__ import annotations

import tomllib

from pydantic import ValidationError


class DriftnetError(Exception):
    """Root of every error driftnet raises on purpose."""

    transient: bool = False

    def __init__(self, message: str, **values: object) -> None:
        super().__init__(message)
        self.message = message
        self.values = values

    def __str__(self) -> str:
        if not self.values:
            return self.message
        details = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"{self.message} ({details})"


class ConfigError(DriftnetError):
    """A configuration file or setting is missing or invalid; fix the config and restart."""


class TransientError(DriftnetError):
    """A dependency is temporarily unavailable (disk busy, broker down); retry later."""

    transient = True


class TransportError(TransientError):
    """The transport could not durably accept or deliver records."""


class LakeError(DriftnetError):
    """The lake could not be read or written as laid out in schemas.lake."""


def validation_problems(exc: ValidationError) -> str:
    """What a pydantic validation error lists, as ``field.path: message; ...``: config and
    manifest errors name every bad field on one line."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
                     for err in exc.errors())


def toml_file_error(what: str, path: object,
                    exc: OSError | UnicodeDecodeError | tomllib.TOMLDecodeError) -> ConfigError:
    """The error for a TOML file (``what``: "tenants file", "config file") that cannot be
    read: missing, unreadable, not UTF-8 or not TOML."""
    if isinstance(exc, FileNotFoundError):
        message = f"{what} not found"
    elif isinstance(exc, OSError):
        message = f"cannot read the {what}: {exc.strerror or exc}"
    elif isinstance(exc, UnicodeDecodeError):
        message = f"{what} is not UTF-8 text: {exc.reason} at byte {exc.start}"
    else:
        message = f"{what} is not valid TOML: {exc}"
    return ConfigError(message, path=str(path))
