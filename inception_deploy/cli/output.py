"""Printing results: tables with every line escaped (file names and labels come from users),
stage announcements on stderr (stdout keeps the results)."""

from __future__ import annotations

import contextlib
import sys

import click

from ..calibration.float_layers import precision_file
from ..errors import printable


def announce(line: str) -> None:
    """A pipeline stage starting, on stderr (stdout keeps the results)."""
    click.echo(printable(line), err=True)


class _CurrentStderr:
    """``sys.stderr`` as it is at each write: while a Ray job runs, file descriptor 2 goes to
    Ray's log and ``sys.stderr`` to the terminal (``serving.batch``)."""

    def write(self, text):
        return sys.stderr.write(text)

    def flush(self):
        sys.stderr.flush()

    def __getattr__(self, name):
        return getattr(sys.stderr, name)


@contextlib.contextmanager
def images_bar(disable: bool = False):
    """A progress bar in images (with images/s) on stderr; yields the ``progress(done, total)``
    callback that moves it."""
    from tqdm import tqdm

    with tqdm(unit="img", file=_CurrentStderr(), disable=disable, leave=False, smoothing=0.1) as bar:

        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        yield progress


def safe_lines(text: str) -> str:
    """Multi-line output with each line escaped (file names and labels come from users)."""
    return "\n".join(printable(line) for line in text.splitlines())


def report_artifact(result):
    shape = lambda dims: "x".join(str(d) for d in dims)  # noqa: E731
    verb = "kept" if result.reused else "wrote"
    click.echo(
        f"{verb} {printable(result.path)} ({result.size_bytes / 1e6:.1f} MB, {result.metadata['precision']}, "
        f"opset {result.opset}, {result.exporter} exporter, {result.input_name}[{shape(result.input_shape)}] "
        f"-> {result.output_name}[{shape(result.output_shape)}]) in {result.seconds:.1f} s"
    )
    floats = result.metadata.get("int8_float_modules")
    if floats:
        shown = ", ".join(floats[:4]) + (f" and {len(floats) - 4} more" if len(floats) > 4 else "")
        click.echo(printable(f"{len(floats)} layers kept float: {shown} (placement in {precision_file(result.path)})"))
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
