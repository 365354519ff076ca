"""Errors the toolkit reports to users as one line (the CLI prints them and exits 2)."""

from __future__ import annotations

import contextlib
import unicodedata
from contextvars import ContextVar


class InceptionDeployError(Exception):
    """Base class: the message is complete and names the file or value that is wrong."""


class UnknownArchError(InceptionDeployError, ValueError):
    pass


class WeightsError(InceptionDeployError, ValueError):
    """A checkpoint could not be read, downloaded or did not fit the model."""


class ConfigError(InceptionDeployError, ValueError):
    """An invalid option value (preprocessing, batch sizes, ...)."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (or its type name): third-party errors often
    carry pages of detail, and ours are one line."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def printable(text: object) -> str:
    """``text`` with control, format and line-separator characters escaped (``\\x1b``, ``\\n``,
    ``\\u202e``): a file name or label from an untrusted source can neither split one error
    line in two nor send escape sequences to the terminal."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


# An error raised below the CLI names a setting the way the API spells it (``Int8Request.max_drop``,
# ``class_map``); a command swaps in its flags (``--int8-max-drop``) while it runs, so one message
# serves the Python caller and the command line alike (cli.guard holds the table).
_SETTING_NAMES: ContextVar[dict[str, str]] = ContextVar("setting_names", default={})


def setting(name: str) -> str:
    """How a message names the setting ``name``: as the API spells it, or as the running command's
    flag."""
    return _SETTING_NAMES.get().get(name, name)


@contextlib.contextmanager
def named_settings(names: dict[str, str]):
    """Messages raised inside name settings by ``names`` (API name -> flag)."""
    token = _SETTING_NAMES.set(names)
    try:
        yield
    finally:
        _SETTING_NAMES.reset(token)
