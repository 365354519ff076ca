"""Ray for one job: joined or started (and stopped after, if started here), its native log kept
out of the terminal, and the pool of actors a job's rows go through (the ``ray`` extra)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, InceptionDeployError, first_line, setting

log = logging.getLogger(__name__)
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # what the command line turns into a clean stop
ROWS_PER_BLOCK_BATCHES = 4  # a dataset block holds at most this many batches, and every worker gets one


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: ``address`` of a running Ray head (``host:6379``, ``ray://host:10001``
    or ``auto``; None starts a local Ray on this machine), ``workers`` actors each holding one
    Predictor on ``cpus_per_worker`` cores (and one GPU for an engine or ``--device cuda``)."""

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0


def require_ray() -> None:
    """The ray extra, checked without importing it (seconds): before anything is printed or started."""
    if importlib.util.find_spec("ray") is None:
        raise ModuleNotFoundError("No module named 'ray'", name="ray")


def ship(ray, paths: list[Path]) -> list:
    """Files for the actors, through the object store: (name, [reference to its bytes]) each, the
    reference in a list so that the actor fetches it and Ray does not resolve it. ``unpack``
    writes them back."""
    return [(path.name, [ray.put(path.read_bytes())]) for path in paths]


def unpack(ray, shipped: list, folder: Path) -> Path:
    """The ``ship``-ped files written into the new ``folder``, side by side (an engine beside its
    sidecar); the first one's path."""
    folder.mkdir(parents=True)
    for name, (ref,) in shipped:
        (folder / name).write_bytes(ray.get(ref))
    return folder / shipped[0][0]


def first_rows(dataset):
    """Each batch's rows whose id has not come before (Ray runs a block again when an actor dies
    mid-block), and how many ids have come so far."""
    seen: set[int] = set()
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows = [row for row in batch.to_pylist() if row["id"] not in seen]
        seen.update(row["id"] for row in rows)
        yield rows, len(seen)


def mapped(ray, sources: list[tuple[int, str]], actor, actor_kwargs, batch_size, options, gpus=0):
    """(id, source) rows in blocks of a few batches (at least one per worker), mapped batch by
    batch through a pool of ``actor`` built with ``actor_kwargs``."""
    import pyarrow as pa

    workers = _pool_size(ray, options, len(sources), batch_size)
    rows_per_block = max(1, min(batch_size * ROWS_PER_BLOCK_BATCHES, -(-len(sources) // workers)))
    chunks = [sources[k : k + rows_per_block] for k in range(0, len(sources), rows_per_block)]
    blocks = [pa.table({"id": [i for i, _ in c], "source": [os.fsencode(s) for _, s in c]}) for c in chunks]
    return ray.data.from_arrow(blocks).map_batches(
        actor,
        fn_constructor_kwargs=actor_kwargs,
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(blocks))),
        num_cpus=options.cpus_per_worker,
        num_gpus=gpus,
    )


def _pool_size(ray, options: RayOptions, rows: int, batch_size: int) -> int:
    """As many actors as can all be busy: no more than there are batches to run, nor than the
    cluster's CPUs hold at ``cpus_per_worker`` each (each actor holds a model: idle ones cost memory)."""
    batches = -(-rows // batch_size)
    fit = max(1, int(ray.cluster_resources().get("CPU", 1) // options.cpus_per_worker))
    size = max(1, min(options.workers, batches, fit))
    if size < options.workers:
        why = f"{rows} inputs make {batches} batches" if size == batches else f"the cluster has CPUs for {fit}"
        log.info("%d worker%s, not %d: %s", size, "s" * (size > 1), options.workers, why)
    return size


def scratch_here(folder: str | None) -> str | None:
    """``folder`` where this process sees it (an actor on this machine), else the temp default."""
    return folder if folder is not None and os.path.isdir(folder) else None


@contextlib.contextmanager
def ray_session(ray, options: RayOptions):
    """Ray joined or started for one job (and stopped after, if started here), its native log
    lines kept out of the terminal, its errors one line. Yields a scratch folder the driver
    removes after the job, for the actors on this machine to keep their model copies in: an
    actor killed while loading leaves nothing behind here."""
    # a local Ray's session folder (sockets, logs, spilled objects) is ours to remove after; short,
    # as Ray's socket paths must fit in 107 bytes
    temp = tempfile.mkdtemp(prefix="inception-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
    # started here: also when ray.init is interrupted half-way, with some of its processes running
    starts_here = options.address is None and not ray.is_initialized()
    try:
        with _native_stderr_to_log() as log:
            try:
                _connect(ray, options, log, temp)
                yield temp
            except ray.exceptions.RayError as e:
                raise InceptionDeployError(f"Ray: {ray_reason(e)} (Ray's own log: {log})") from None
            finally:
                if starts_here:
                    ray.shutdown()
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@contextlib.contextmanager
def _native_stderr_to_log():
    """Ray's C++ core and the processes a local Ray starts write notes to file descriptor 2
    (e.g. on every actor Ray Data creates); they go to a log file for the job, kept for the Ray
    error that names it and removed otherwise. Python's ``sys.stderr`` (progress, our messages)
    keeps the terminal."""
    fd, log = tempfile.mkstemp(prefix="inception-ray-", suffix=".log")
    saved = os.dup(2)
    rebind = _is_fd2(sys.stderr)
    previous = sys.stderr
    try:
        os.dup2(fd, 2)
        if rebind:
            sys.stderr = open(os.dup(saved), "w", buffering=1, encoding=previous.encoding, errors="backslashreplace")
        yield log
    except InceptionDeployError:
        log = None  # kept: the message names it
        raise
    finally:
        if rebind:
            sys.stderr.close()
            sys.stderr = previous
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
        if log is not None:
            os.unlink(log)


def _is_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a test runner's buffer
        return False


def _connect(ray, options: RayOptions, log: str, temp: str) -> None:
    """Join the cluster at ``options.address``, or start a local Ray with its session folder in
    ``temp``; nothing when this process is already connected (the caller's own session)."""
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    import ray.data  # configures its loggers when imported: quieten them after

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False  # ours is the progress bar
    if ray.is_initialized():  # the caller's own session (or an earlier job's, from Python)
        return
    handlers = {s: signal.getsignal(s) for s in _SIGNALS}
    try:
        if options.address is None:
            cpus = max(os.cpu_count() or 1, options.cpus_per_worker)  # the real cores; one worker fits
            ray.init(address="local", num_cpus=cpus, _temp_dir=temp, **quiet)
        else:
            ray.init(address=options.address, **quiet)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
        where = options.address or "a local Ray"
        hint = "; is a Ray head running there, and if it uses token authentication, is its token here?"
        hint = hint if options.address else ""
        raise InceptionDeployError(
            f"{where}: Ray cannot start or connect ({first_line(e)}{hint}; log: {log})"
        ) from None
    finally:  # ray.init takes SIGTERM over (a local Ray would exit 1): the caller's handlers come back
        if threading.current_thread() is threading.main_thread():
            for signum, handler in handlers.items():
                if handler is not None:
                    signal.signal(signum, handler)


def import_ray(address: str | None):
    """``ray``, imported after choosing token authentication for a cluster when this machine holds
    a token (heads started by ``ray start`` want it; Ray reads the mode when imported)."""
    if address is not None and "RAY_AUTH_MODE" not in os.environ and _auth_token_here():
        os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    return ray


def _auth_token_here() -> bool:
    """Whether this machine holds a Ray authentication token (Ray's own places for it)."""
    return bool(
        os.environ.get("RAY_AUTH_TOKEN")
        or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or Path.home().joinpath(".ray", "auth_token").is_file()
    )


def probe(address: str | None) -> None:
    """A one-line error, in seconds and before any slow work, when nothing listens at ``address``
    (ray.init would retry for a minute); ``auto`` is left to Ray, None means a local Ray."""
    if address in (None, "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{address}: not a Ray address; expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise InceptionDeployError(
            f"{address}: no Ray head answers there ({e.strerror or e}); start one with `ray start --head`, "
            f"or leave out {setting('RayOptions.address')} for a local Ray"
        ) from None


def ray_reason(e: Exception) -> str:
    """The user's error inside Ray's wrapping (an actor that could not load the model, say)."""
    cause = getattr(e, "cause", None) or e.__cause__
    return first_line(cause) if cause is not None else first_line(e)
