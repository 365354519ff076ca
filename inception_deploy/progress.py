"""Stage announcements: how long-running work tells its caller it is still alive.

The API takes an optional ``progress`` callback (one line of text per call; the CLI prints it on
stderr, Python users get silence by default). Stages that can run for minutes with nothing to
show, like a TensorRT engine build, also report elapsed time while they run.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import contextmanager

Progress = Callable[[str], None]
HEARTBEAT_SECONDS = 5.0  # no stage stays silent longer than 8 s: this, and the time a line takes to arrive


def silent(line: str) -> None:
    """The default progress callback."""


@contextmanager
def heartbeat(say: Progress, what: str, every: float = HEARTBEAT_SECONDS):
    """While the body runs, say "still <what> (N s)" every ``every`` seconds from a thread."""
    start = time.perf_counter()
    done = threading.Event()

    def beat():
        while not done.wait(every):
            say(f"still {what} ({_elapsed(time.perf_counter() - start)})...")

    thread = threading.Thread(target=beat, name="inception-deploy-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@contextmanager
def stage(say: Progress, what: str, every: float = HEARTBEAT_SECONDS):
    """Say "<what>..." now and, while the body runs, "still <what> (N s)..." every ``every`` seconds."""
    say(f"{what}...")
    with heartbeat(say, what, every):
        yield


def counted(number: float, noun: str) -> str:
    """ "1 layer", "3 layers", "0.5 points", "1 point": a count and its noun, agreeing."""
    return f"{number:g} {noun}" + ("" if number == 1 else "s")


class _Stderr:
    """``sys.stderr`` as it is at each write (a test runner or a Ray job swaps it). Where it is no
    terminal (a pipe, a log file), a progress bar's redraws become whole lines and its clearing
    nothing: no carriage return glues the next message to a bar there."""

    def write(self, text: str) -> int:
        stream = sys.stderr
        if _is_terminal(stream):
            return stream.write(text)
        lines = [line.rstrip() for line in text.replace("\r", "\n").split("\n")]
        stream.write("".join(f"{line}\n" for line in lines if line.strip()))
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return _is_terminal(sys.stderr)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False


_bars: weakref.WeakSet = weakref.WeakSet()  # the bars drawn on stderr now


def bar(**options):
    """A tqdm progress bar on stderr: redrawn in place on a terminal; elsewhere a whole line at
    most every HEARTBEAT_SECONDS, so a piped command is never silent long nor glued together."""
    from tqdm import tqdm

    stream = _Stderr()
    if not stream.isatty():
        options = {"mininterval": HEARTBEAT_SECONDS, **options}
    progress = tqdm(file=stream, **options)
    _bars.add(progress)
    return progress


def write_line(text: str) -> None:
    """``text`` as a line of its own on stderr: the bars drawn there are cleared first and
    redrawn after, so a message never lands in the middle of one."""
    drawn = [b for b in list(_bars) if not b.disable and _is_terminal(sys.stderr)]
    for b in drawn:
        b.clear()
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
    for b in drawn:
        b.refresh()


def _elapsed(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
