"""Stage announcements: how long-running work tells its caller it is still alive.

The API takes an optional ``progress`` callback (one line of text per call; the CLI prints it on
stderr, Python users get silence by default). Stages that can run for minutes with nothing to
show, like a TensorRT engine build, also report elapsed time while they run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

Progress = Callable[[str], None]
HEARTBEAT_SECONDS = 8.0  # no stage stays silent longer than this


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


def _elapsed(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
