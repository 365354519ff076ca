"""matplotlib, asked for up front: commands with --plot call ``figure_class`` before their long
run, so a missing matplotlib is one line, not an error after the work. Figures are saved as
PNGs atomically, over nothing but an earlier plot of ours (``fileio.PLOT``)."""

from __future__ import annotations

from .errors import InceptionDeployError, setting
from .fileio import PLOT, atomic_path


def figure_class():
    """matplotlib's Figure, or a one-line error naming the extra that installs it."""
    try:
        from matplotlib.figure import Figure  # optional (the bench extra)
    except ImportError:
        raise InceptionDeployError(
            f"{setting('plot')} needs matplotlib: pip install 'inception-deploy[bench]'"
        ) from None
    return Figure


def save_png(figure, path) -> None:
    with atomic_path(path, PLOT) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def save_panels(path, panels, width: float = 10.0, height: float = 4.0) -> None:
    """One panel per callable in ``panels`` (each draws on the matplotlib Axes it is given), one
    above the other, saved as a PNG at ``path``."""
    figure = figure_class()(figsize=(width, height * len(panels)))
    for row, draw in enumerate(panels, 1):
        draw(figure.add_subplot(len(panels), 1, row))
    figure.tight_layout()
    save_png(figure, path)
