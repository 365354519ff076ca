"""Errors the toolkit reports to users as one line (the CLI prints them and exits 2)."""

from __future__ import annotations

import unicodedata


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
