"""Printing results: tables with every line escaped (file names and labels come from users),
stage announcements on stderr (stdout keeps the results)."""

from __future__ import annotations

import contextlib
import functools
import sys
import threading

import click

from ..calibration.float_layers import precision_file
from ..errors import printable
from ..fileio import PLOT, POLYGRAPHY_OUTPUTS, check_writable
from ..plotting import figure_class
from ..progress import bar, counted, write_line

_announced = threading.Event()  # a stage line has been printed (opens_with stays quiet then)


def announce(line: str) -> None:
    """A pipeline stage starting, on stderr (stdout keeps the results), on a line of its own."""
    _announced.set()
    write_line(printable(line))


def opens_with(line: str, loading: str | None = None, within: float = 0.5):
    """A command decorator: ``line`` (what the command is busy with, e.g. importing PyTorch) is
    said when no stage has been announced ``within`` seconds of its start, so every command's
    first line comes within a second; one that fails at once prints only its error. Not with
    ``quiet``, nor when the module ``loading`` names is loaded already (a caller in Python)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            _announced.clear()
            timer = threading.Timer(within, lambda: _announced.is_set() or announce(line))
            timer.daemon = True
            if not kwargs.get("quiet") and (loading is None or loading not in sys.modules):
                timer.start()
            try:
                return fn(*args, **kwargs)
            finally:
                timer.cancel()

        return wrapper

    return decorate


@contextlib.contextmanager
def images_bar(disable: bool = False):
    """A progress bar in images (with images/s) on stderr; yields the ``progress(done, total)``
    callback that moves it."""
    with bar(unit="img", disable=disable, leave=False, smoothing=0.1) as images:

        def progress(done, total):
            images.total = total
            images.update(done - images.n)

        yield progress


def check_outputs(inputs, json_out=None, report=None, plot=None, save_outputs=None) -> None:
    """Before the work: each output file can be written without replacing one of the command's
    ``inputs`` or a file the toolkit did not write (``report``: the kind of the --json file), and
    --plot has matplotlib."""
    for path, kind in ((json_out, report), (plot, PLOT), (save_outputs, POLYGRAPHY_OUTPUTS)):
        if path:
            check_writable(path, kind, inputs)
    if plot:
        figure_class()


def safe_lines(text: str) -> str:
    """Multi-line output with each line escaped (file names and labels come from users)."""
    return "\n".join(printable(line) for line in text.splitlines())


def report_artifact(result):
    shape = lambda dims: "x".join(str(d) for d in dims)  # noqa: E731
    verb = "kept" if result.reused else "wrote"
    click.echo(
        f"{verb} {printable(result.path)} ({result.size_bytes / 1e6:.1f} MB, {result.metadata.precision}, "
        f"opset {result.opset}, {result.exporter} exporter, {result.input_name}[{shape(result.input_shape)}] "
        f"-> {result.output_name}[{shape(result.output_shape)}]) in {result.seconds:.1f} s"
    )
    floats = result.metadata.int8_float_modules
    if floats:
        shown = ", ".join(floats[:4]) + (f" and {len(floats) - 4} more" if len(floats) > 4 else "")
        click.echo(
            printable(
                f"{counted(len(floats), 'layer')} kept float: {shown} (placement in {precision_file(result.path)})"
            )
        )
    if result.budget is not None:
        click.echo(printable(result.budget.summary()))
    if result.parity is not None:
        click.echo(safe_lines(result.parity.table()))


def print_evaluation(report) -> None:
    click.echo(f"{printable(report.data)}: {report.images} images, reference {printable(report.reference)}")
    click.echo(safe_lines(report.table()))
    if report.losing_table():
        click.echo("classes losing most top-1 accuracy against the reference:")
        click.echo(safe_lines(report.losing_table()))
    if report.skipped:
        file, reason = report.skipped[0]
        click.echo(
            f"note: {len(report.skipped)} unreadable images skipped (first: {printable(file)}: {printable(reason)})",
            err=True,
        )
    for path, reason in report.not_run:
        click.echo(f"warning: {printable(path)} not evaluated: {printable(reason)}", err=True)
