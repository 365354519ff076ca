"""Ray for one job: joined or started (and stopped after, if started here), its native log kept
out of the terminal, and the pool of actors a job's rows go through (the ``ray`` extra)."""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import itertools
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError, InceptionDeployError, first_line, setting

log = logging.getLogger(__name__)
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # what the command line turns into a clean stop
IN_FLIGHT = 2  # batches sent to each actor at a time: one it runs, one it has ready for next
ATTEMPTS = 3  # actors a batch may see die before its inputs are given up as errors
STOP_GRACE_S = 10  # how long a local Ray's processes have to exit after ray.shutdown
_TEMP = "/tmp" if os.path.isdir("/tmp") else None  # short: Ray's socket paths must fit in 107 bytes
_OURS = "inception-ray-"  # then the id of the process whose job made it


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


def pool_map(ray, actor_class, actor_kwargs: dict, batches: Iterator[list], options: RayOptions, lost, gpus: int = 0):
    """Each of ``batches`` through a pool of ``actor_class`` actors (built with ``actor_kwargs``,
    their ``run(batch)`` called), yielding each batch's result once, in the order they finish.
    ``batches`` is pulled only as the actors can take more (IN_FLIGHT per actor), so a stream of
    millions is never held.

    An actor that dies (killed, out of memory, its node lost) has its batches sent to the others
    and is restarted by Ray where resources allow (``max_restarts``); it gets work again once it
    answers, and is left out if it cannot come back. A batch whose actor died ATTEMPTS times (an
    image that crashes the decoder, or needs more memory than a worker has) is not sent again:
    ``lost(batch, reason)`` stands for its result. An actor whose constructor fails (a model its
    machine cannot load) ends the job, as does the loss of every actor."""
    batches = iter(batches)
    first = list(itertools.islice(batches, options.workers))  # enough to know whether all workers have work
    if not first:
        return
    size = _pool_size(ray, options, first, gpus)
    remote = ray.remote(num_cpus=options.cpus_per_worker, num_gpus=gpus, max_restarts=-1, max_task_retries=0)
    actors = [remote(actor_class).remote(**actor_kwargs) for _ in range(size)]
    waiting = collections.deque(first)  # not sent yet, or sent to an actor that died
    queued = {actor: collections.deque() for actor in actors}  # its result references, oldest (running) first
    batch_of: dict = {}  # result reference -> its batch
    restarting: dict = {}  # reference to a restarted actor's first answer -> the actor
    deaths: dict = {}  # id of a batch -> how many actors died running it
    ended = False  # ``batches`` has no more
    try:
        while True:
            for actor, refs in queued.items():
                while actor not in restarting.values() and len(refs) < IN_FLIGHT:
                    batch = waiting.popleft() if waiting else next(batches, None)
                    if batch is None:
                        ended = True
                        break
                    refs.append(actor.run.remote(batch))
                    batch_of[refs[-1]] = batch
            if not batch_of and not waiting and ended:
                return
            (ref,), _ = ray.wait([*batch_of, *restarting], num_returns=1)
            if ref in restarting:  # back, or gone for good
                actor = restarting.pop(ref)
                try:
                    ray.get(ref)
                except ray.exceptions.RayActorError:
                    del queued[actor]
                    if not queued:
                        raise
                continue
            actor = next(a for a, refs in queued.items() if ref in refs)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                if e.actor_init_failed:
                    raise
                # the actor is gone: what it finished before dying stands (its result is kept
                # apart from the actor); the oldest unfinished batch was running (a death on its
                # count), the others only waited behind it. Blaming the oldest sent, finished or
                # not, gave up a good batch sent beside a poison one (a flaky test found it).
                blamed = False
                for lost_ref in queued[actor]:
                    batch = batch_of.pop(lost_ref)
                    try:
                        finished = ray.get(lost_ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError):
                        pass
                    else:
                        yield finished
                        continue
                    deaths[id(batch)] = deaths.get(id(batch), 0) + (not blamed)
                    blamed = True
                    if deaths[id(batch)] < ATTEMPTS:
                        waiting.append(batch)
                    else:
                        yield lost(
                            batch, f"its worker died {ATTEMPTS} times on this batch (killed, out of memory, a crash)"
                        )
                queued[actor].clear()
                restarting[actor.__ray_ready__.remote()] = actor
                continue
            queued[actor].remove(ref)
            del batch_of[ref]
            yield result
    finally:
        for actor in actors:
            ray.kill(actor)


def _pool_size(ray, options: RayOptions, first: list[list], gpus: int) -> int:
    """As many actors as can all be busy: no more than there are batches to run (``first`` holds
    up to one per worker), nor than the cluster's CPUs hold at ``cpus_per_worker`` each (each
    actor holds a model: idle ones cost memory)."""
    resources = ray.cluster_resources()
    if gpus and resources.get("GPU", 0) < gpus:  # its actors would wait for one for ever
        raise InceptionDeployError(
            f"the Ray cluster has no GPU, and workers running an engine or on a GPU device reserve {gpus} each"
        )
    fit = max(1, int(resources.get("CPU", 1) // options.cpus_per_worker))
    size = max(1, min(options.workers, len(first), fit))
    if size < options.workers:
        rows = sum(map(len, first))
        why = f"{rows} inputs make {len(first)} batches" if size == len(first) else f"the cluster has CPUs for {fit}"
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
    _remove_what_killed_runs_left()
    temp = tempfile.mkdtemp(prefix=f"{_OURS}{os.getpid()}-", dir=_TEMP)
    # started here: also when ray.init is interrupted half-way, with some of its processes running
    starts_here = options.address is None and not ray.is_initialized()
    began = time.time()
    try:
        with _native_stderr_to_log() as log:
            try:
                _connect(ray, options, log, temp)
                yield temp
            except ray.exceptions.RayError as e:
                raise InceptionDeployError(f"Ray: {ray_reason(e)} (Ray's own log: {log})") from None
            finally:
                if starts_here:
                    _shutdown(ray, began, temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _remove_what_killed_runs_left() -> None:
    """The scratch folders (and empty logs) of jobs killed outright (SIGKILL, the machine lost),
    which could not remove their own: ours by name, which holds the id of a process no longer
    running. A log with something in it stays: an error may have named it."""
    import psutil  # with the ray extra

    for path in Path(_TEMP or tempfile.gettempdir()).glob(f"{_OURS}*-*"):
        pid = path.name[len(_OURS) :].split("-")[0]
        if not pid.isdigit() or psutil.pid_exists(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.suffix == ".log" and path.is_file() and not path.stat().st_size:
                path.unlink()


def _shutdown(ray, began: float, temp: str) -> None:
    """Stop the local Ray started here, and wait for its processes (the raylet's workers go on a
    moment after it, and one starting up then makes its session folder again): this process's
    descendants of Ray's started since ``began``, then any process whose command line still names
    the session folder ``temp`` (a worker the raylet was starting as it stopped), each killed if
    still there after STOP_GRACE_S."""
    import psutil  # with the ray extra

    def those(processes, ours) -> list:
        found = []
        for process in processes:
            with contextlib.suppress(psutil.Error):  # gone already
                if ours(process, " ".join(process.cmdline())):
                    found.append(process)
        return found

    descendants = psutil.Process().children(recursive=True)
    started = those(descendants, lambda p, line: "ray" in line and p.create_time() >= began - 1)
    ray.shutdown()
    for processes in (started, those(psutil.process_iter(), lambda p, line: temp in line)):
        _, alive = psutil.wait_procs(processes, timeout=STOP_GRACE_S)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()


@contextlib.contextmanager
def _native_stderr_to_log():
    """Ray's C++ core and the processes a local Ray starts write notes to file descriptor 2
    (e.g. on every actor created); they go to a log file for the job, kept for the Ray
    error that names it and removed otherwise. Python's ``sys.stderr`` (progress, our messages)
    keeps the terminal."""
    fd, log = tempfile.mkstemp(prefix=f"{_OURS}{os.getpid()}-", suffix=".log", dir=_TEMP)
    saved = os.dup(2)
    rebind = _is_fd2(sys.stderr)
    previous = sys.stderr
    try:
        os.dup2(fd, 2)
        if rebind:
            sys.stderr = open(os.dup(saved), "w", buffering=1, encoding=previous.encoding, errors="backslashreplace")
        yield log
    except InceptionDeployError as e:
        if log in str(e):
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
    logging.getLogger("ray").setLevel(logging.ERROR)
    if ray.is_initialized():  # the caller's own session (or an earlier job's, from Python)
        return
    main = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in _SIGNALS}
    deferred: list[int] = []  # a stop asked for while Ray starts: Ray's processes must be known to stop them
    for signum in _SIGNALS if main else ():
        signal.signal(signum, lambda signum, frame: deferred.append(signum))
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
        if main:
            for signum, handler in handlers.items():
                if handler is not None:
                    signal.signal(signum, handler)
            for signum in deferred[:1]:  # now to the caller's handler, with Ray started and stoppable
                os.kill(os.getpid(), signum)


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
    if getattr(e, "actor_init_failed", False):  # the constructor's traceback, its error last
        last = str(e).strip().splitlines()[-1]
        return re.sub(r"^[\w.]*(Error|Exception): ", "", last)
    cause = getattr(e, "cause", None) or e.__cause__
    return first_line(cause) if cause is not None else first_line(e)
