"""matplotlib, asked for up front: commands with --plot call ``figure_class`` before their long
run, so a missing matplotlib is one line, not an error after the work."""

from __future__ import annotations

from .errors import InceptionDeployError, setting


def figure_class():
    """matplotlib's Figure, or a one-line error naming the extra that installs it."""
    try:
        from matplotlib.figure import Figure  # optional (the bench extra)
    except ImportError:
        raise InceptionDeployError(
            f"{setting('plot')} needs matplotlib: pip install 'inception-deploy[bench]'"
        ) from None
    return Figure
