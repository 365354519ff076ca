"""Offline classification of large image sets on a Ray cluster (Ray Data, the ``ray`` extra).

The inputs become a Ray Dataset of (id, source) rows; a pool of actors, each holding one
Predictor (the project's own decoding and preprocessing: the same pixels as a local run),
classifies them batch by batch, and the driver streams one row per input to a JSON Lines or
Parquet file as results arrive. The model file travels through Ray's object store, so the
workers of a multi-node cluster need no shared file system for it (the images they read do).

Nothing lost, nothing twice: an input that names no image is an error row written by the driver;
Ray restarts a killed actor and runs its batch again (Ray Data's default for actor pools) and
the driver writes each input id once; ``resume`` skips the inputs the output already has a row
for; an interrupted run leaves whole rows only.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, InceptionDeployError, first_line
from ..fileio import Kind, check_writable, json_kind, sha256_file, write_json
from ..inputs import InputError, expand_inputs, is_uri
from ..labels import read_labels
from ..metadata import load_json, preprocess_of, read_sidecar, sidecar_path
from ..runtime.base import ENGINE_SUFFIXES
from ..runtime.predictor import Predictor

log = logging.getLogger(__name__)
OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # what the command line turns into a clean stop
GPU_DEVICES = ("cuda", "tensorrt")  # an actor running on these reserves one GPU
ROWS_PER_BLOCK_BATCHES = 4  # a dataset block holds at most this many batches, and every worker gets one


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: ``address`` of a running Ray head (``host:6379``, ``ray://host:10001``
    or ``auto``; None starts a local Ray on this machine), ``workers`` actors each holding one
    Predictor on ``cpus_per_worker`` cores (and one GPU for an engine or ``--device cuda``)."""

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0


@dataclass
class BatchReport:
    output: Path
    total: int  # inputs named (after expanding folders, globs and lists)
    written: int = 0  # rows this run added
    failed: int = 0  # error rows this run added
    resumed: int = 0  # inputs skipped because the output already had their row
    resumed_failed: int = 0  # error rows the output had before this run (not retried)
    dropped_partial_row: bool = False  # an interrupted earlier run's incomplete last line was removed
    seconds: float = 0.0  # classification, from the first batch sent to the last row written

    @property
    def images_per_s(self) -> float:
        return (self.written - self.failed) / self.seconds if self.seconds else 0.0


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"{path}: unknown output format {suffix or '(no suffix)'}; use .jsonl or .parquet")
    return OUTPUT_FORMATS[suffix]


def require_ray() -> None:
    """The ray extra, checked without importing it (seconds): before anything is printed or started."""
    if importlib.util.find_spec("ray") is None:
        raise ModuleNotFoundError("No module named 'ray'", name="ray")


def record_path(output: str | os.PathLike) -> Path:
    """``tags.jsonl`` -> ``tags.jsonl.run.json``: which model and preprocessing wrote the output."""
    return Path(f"{output}.run.json")


RUN_RECORD = json_kind("a run record of inception-run", ("model", "model_sha256", "preprocess", "labels_sha256"))
# an output is ours when the record of the run that wrote it lies beside it
BATCH_OUTPUT = Kind(
    "an output of inception-run (with its run record beside it)", lambda path: RUN_RECORD.recognise(record_path(path))
)


def check_output(output: str | os.PathLike, resume: bool, inputs=()) -> None:
    """Before anything slow: a known format, a writable place, no earlier output replaced, and
    only an output of inception-run resumed; and Ray is installed."""
    require_ray()
    output_format(output)
    if resume and Path(output).is_file() and not BATCH_OUTPUT.recognise(Path(output)):
        raise ConfigError(
            f"{output}: not an output of inception-run (no run record {record_path(output).name} beside it); "
            f"cannot resume it"
        )
    check_writable(output, BATCH_OUTPUT, inputs)
    check_writable(record_path(output), RUN_RECORD, inputs)
    if Path(output).exists() and not resume:
        raise ConfigError(
            f"{output}: exists; --resume continues it (skipping inputs it has a row for), or name another"
        )


def run_record(model: Path, config, labels: list[str]) -> dict:
    """What makes two runs' rows comparable: the model file, its preprocessing and its labels."""
    return {
        "model": str(model),
        "model_sha256": sha256_file(model),
        "preprocess": config.to_dict(),
        "labels_sha256": hashlib.sha256("\n".join(labels).encode()).hexdigest(),
    }


def _check_same_run(output: Path, record: dict) -> None:
    """Resuming continues the rows of the same model, preprocessing and labels, never mixes them."""
    path = record_path(output)
    before = load_json(path.read_bytes(), path, "run record")
    differs = [
        what
        for key, what in (("model_sha256", "model"), ("preprocess", "preprocessing"), ("labels_sha256", "labels"))
        if before.get(key) != record[key]
    ]
    if differs:
        raise ConfigError(
            f"{output}: was written with another {' and '.join(differs)} ({before.get('model')}, per {path.name}); "
            f"resuming with {record['model']} would mix two models' rows: name another output"
        )


def classify_on_ray(
    model: str | os.PathLike,
    inputs,
    output: str | os.PathLike,
    *,
    ray_options: RayOptions = RayOptions(),
    topk: int = 5,
    resume: bool = False,
    batch_size: int | None = None,
    device: str = "auto",
    arch: str | None = None,
    labels: str | os.PathLike | None = None,
    precision: str | None = None,
    openvino_mode: str = "latency",
    progress=None,
) -> BatchReport:
    """Classify ``inputs`` (files, folders, globs, URIs, list files: ``expand_inputs``) with
    ``model`` on Ray, one row per input in ``output`` (.jsonl or .parquet): file, labels, indices
    and probabilities of the top ``topk``, or the error. An existing ``output`` is refused unless
    ``resume``, which skips the inputs it already has a row for. ``progress(done, total)`` after
    each batch of rows."""
    say = progress or (lambda done, total: None)
    check_output(output, resume, inputs=[model, labels])
    writer_class = _JsonLines if output_format(output) == "jsonl" else _Parquet
    output = Path(output)
    _probe(ray_options.address)
    model = Path(model)
    engine = model.suffix.lower() in ENGINE_SUFFIXES
    predictor_options = dict(device=device, arch=arch, labels=labels, batch_size=batch_size, precision=precision)
    predictor_options["openvino_mode"] = openvino_mode
    if engine or device in GPU_DEVICES:  # the GPU may be on the workers only: check what can be checked here
        for path in (model, sidecar_path(model)) if engine else (model,):
            if not path.is_file():
                raise InceptionDeployError(f"{path}: no such file")
        batch_size = batch_size or 8
        meta = read_sidecar(model) if engine else Predictor(model, device="cpu", arch=arch).backend.metadata
        record = run_record(model, preprocess_of(meta), read_labels(labels) if labels else meta["labels"]["names"])
    else:  # a model, label file or option the workers could not use fails here, before Ray starts
        predictor = Predictor(model, **predictor_options)
        batch_size, topk = predictor.batch_size, max(1, min(topk, len(predictor.labels)))
        record = run_record(model, predictor.config, predictor.labels)
        del predictor
    if output.exists():
        _check_same_run(output, record)
    ray = _import_ray(ray_options.address)  # the ray extra: only now
    sources = expand_inputs(inputs)
    report = BatchReport(output, len(sources))
    writer = writer_class(output, record)
    try:
        report.dropped_partial_row, report.resumed_failed = writer.dropped_partial_row, writer.failed_before
        todo = _not_done(sources, writer.done, report)
        writer.write([{"file": stored_name(s.name), "error": s.reason} for s in todo if isinstance(s, InputError)])
        report.written = report.failed = sum(isinstance(s, InputError) for s in todo)
        say(report.resumed + report.written, report.total)
        todo = [(i, s) for i, s in enumerate(todo) if not isinstance(s, InputError)]
        if todo:
            with _ray_session(ray, ray_options) as scratch:
                run = dict(batch_size=batch_size, topk=topk, engine=engine, scratch=scratch)
                _run(ray, model, todo, writer, report, ray_options, predictor_options, say, **run)
    finally:
        writer.close()
    return report


def _not_done(sources: list, done: Counter, report: BatchReport) -> list:
    """The sources without a row in the output yet (a file named twice needs two rows), matched
    by absolute path: ``a.jpg`` and ``./a.jpg`` are one file, from the folder the run started in."""
    done = Counter({_same_file(name): count for name, count in done.items()})
    todo = []
    for source in sources:
        name = _same_file(stored_name(source.name if isinstance(source, InputError) else source))
        if done[name] > 0:
            done[name] -= 1
            report.resumed += 1
        else:
            todo.append(source)
    return todo


def stored_name(name: str) -> str:
    """A file name as rows store it: a name that is not UTF-8 (bytes Python keeps as surrogate
    escapes) gets backslash escapes, which JSON and Parquet can hold."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _same_file(name: str) -> str:
    return name if is_uri(name) else os.path.abspath(name)


def _run(ray, model, todo, writer, report, options, predictor_options, say, *, batch_size, topk, engine, scratch):
    """The Ray Data job: blocks of (id, source) rows through the actor pool, rows written as
    they arrive, each id once."""

    files = {"model": [model, sidecar_path(model)] if engine else [model]}  # what the actors need
    if predictor_options["labels"] is not None:
        files["labels"] = [Path(predictor_options["labels"])]
    shipped = {role: _ship(ray, paths) for role, paths in files.items()}
    gpu = engine or predictor_options["device"] in GPU_DEVICES
    options_in_actor = {**predictor_options, "batch_size": batch_size, "workers": 2, "threads": options.cpus_per_worker}
    dataset = _mapped(
        ray,
        todo,
        _Classifier,
        # each reference in a list: the actor fetches it, Ray does not resolve it
        {"files": shipped, "options": options_in_actor, "topk": topk, "scratch": scratch},
        batch_size,
        options,
        gpus=1 if gpu else 0,
    )
    begin = time.perf_counter()
    for rows, _ in _first_rows(dataset):
        for row in rows:
            del row["id"]
        writer.write(rows)
        report.written += len(rows)
        report.failed += sum(row["error"] is not None for row in rows)
        report.seconds = time.perf_counter() - begin
        say(report.resumed + report.written, report.total)


def _ship(ray, paths: list[Path]) -> list:
    """Files for the actors, through the object store: (name, [reference to its bytes]) each, the
    reference in a list so that the actor fetches it and Ray does not resolve it. ``_unpack``
    writes them back."""
    return [(path.name, [ray.put(path.read_bytes())]) for path in paths]


def _unpack(ray, shipped: list, folder: Path) -> Path:
    """The ``_ship``-ped files written into the new ``folder``, side by side (an engine beside its
    sidecar); the first one's path."""
    folder.mkdir(parents=True)
    for name, (ref,) in shipped:
        (folder / name).write_bytes(ray.get(ref))
    return folder / shipped[0][0]


def _first_rows(dataset):
    """Each batch's rows whose id has not come before (Ray runs a block again when an actor dies
    mid-block), and how many ids have come so far."""
    seen: set[int] = set()
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows = [row for row in batch.to_pylist() if row["id"] not in seen]
        seen.update(row["id"] for row in rows)
        yield rows, len(seen)


def _mapped(ray, sources: list[tuple[int, str]], actor, actor_kwargs, batch_size, options, gpus=0):
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


class _Classifier:
    """A Ray actor holding one Predictor: a batch of (id, source) rows -> one result row each."""

    def __init__(self, files, options, topk, scratch):
        import ray

        self.folder = tempfile.TemporaryDirectory(prefix="inception-ray-", dir=_existing(scratch))
        paths = {role: _unpack(ray, shipped, Path(self.folder.name, role)) for role, shipped in files.items()}
        options = dict(options, threads=max(1, int(options["threads"])), labels=paths.get("labels"))
        self.predictor = Predictor(paths["model"], **options)
        self.folder.cleanup()  # loaded: an actor killed later leaves no copy behind
        self.topk = topk

    def __call__(self, batch):
        import pyarrow as pa

        sources = [os.fsdecode(s) for s in batch.column("source").to_pylist()]
        predictions = self.predictor.predict(sources, topk=self.topk)
        rows = [{"id": i, **_row(p.to_dict())} for i, p in zip(batch.column("id").to_pylist(), predictions)]
        return pa.Table.from_pylist(rows, schema=_schema(pa, with_id=True))


def _row(prediction: dict) -> dict:
    """A row with every column (Parquet's schema); JSON Lines drops the empty ones."""
    return {
        "file": stored_name(prediction["file"]),
        "labels": prediction.get("labels"),
        "indices": prediction.get("indices"),
        "probabilities": prediction.get("probabilities"),
        "error": prediction.get("error"),
    }


def _schema(pa, with_id: bool = False):
    fields = [("id", pa.int64())] if with_id else []
    fields += [
        ("file", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("indices", pa.list_(pa.int64())),
        ("probabilities", pa.list_(pa.float64())),
        ("error", pa.string()),
    ]
    return pa.schema(fields)


def on_ray(options: RayOptions = RayOptions()):
    """A ``classify`` for ``evaluation.evaluate``: each labelled image decoded once and classified
    by every model in a pool of actors (eager PyTorch travels pickled, artifacts as file bytes);
    the report's images/s is then per worker."""
    require_ray()
    _probe(options.address)

    def classify(models, files, batch_size, workers, skipped, say):
        ray = _import_ray(options.address)
        with _ray_session(ray, options) as scratch:
            return _evaluate(ray, models, files, batch_size, options, skipped, say, scratch)

    return classify


def _evaluate(ray, models, files, batch_size, options, skipped, say, scratch):
    import numpy as np

    shipped, gpu = [], False  # (name, how to open it, [the module] or its _ship-ped files, preprocessing)
    for m in models:
        config = m.config.to_dict()
        if m.open_args is None:  # eager PyTorch: the module itself
            shipped.append((m.name, None, [ray.put(m.runner.model)], config))
            continue
        path = Path(m.name)
        parts = [path] + [sidecar_path(path)] * (path.suffix.lower() in ENGINE_SUFFIXES)
        shipped.append((m.name, m.open_args, _ship(ray, parts), config))
        gpu = gpu or len(parts) > 1 or m.open_args["device"] in GPU_DEVICES
    ids = list(range(len(files)))
    dataset = _mapped(
        ray,
        [(i, str(f)) for i, f in zip(ids, files)],
        _Evaluator,
        {"models": shipped, "threads": options.cpus_per_worker, "scratch": scratch},
        batch_size,
        options,
        gpus=1 if gpu else 0,
    )
    top5 = np.full((len(files), len(models), 5), -1, dtype=np.int64)
    seconds, errors = np.zeros(len(models)), {}
    for rows, done in _first_rows(dataset):
        for row in rows:
            if row["error"] is not None:
                errors[row["id"]] = row["error"]
            else:
                top5[row["id"]] = np.reshape(row["top5"], (len(models), 5))
                seconds += row["seconds"]
        say(done, len(files))
    skipped += [(str(files[i]), errors[i]) for i in sorted(errors)]
    kept = np.asarray([i for i in ids if i not in errors], dtype=int)
    for k, m in enumerate(models):
        m.top5, m.seconds = [top5[kept, k]], float(seconds[k])
    return kept


class _Evaluator:
    """A Ray actor holding every model under evaluation: a batch of (id, file) -> per file its
    top-5 classes under each model (or the error), with each model's share of inference time."""

    def __init__(self, models, threads, scratch):
        import ray

        from ..evaluation import EvalModel
        from ..preprocess import PreprocessConfig
        from ..runtime.open import open_backend
        from ..runtime.torch_runner import TorchRunner

        threads = max(1, int(threads))
        self.folder = tempfile.TemporaryDirectory(prefix="inception-ray-", dir=_existing(scratch))
        self.models = []
        for k, (name, open_args, payload, config) in enumerate(models):
            if open_args is None:
                import torch

                torch.set_num_threads(threads)
                runner = TorchRunner(ray.get(payload[0]))
            else:  # the file, and an engine's sidecar beside it
                runner = open_backend(
                    _unpack(ray, payload, Path(self.folder.name, str(k))), **open_args, threads=threads
                )
            self.models.append(EvalModel(name, runner, PreprocessConfig.from_dict(config)))
        self.folder.cleanup()  # loaded: an actor killed later leaves no copy behind

    def __call__(self, batch):
        import pyarrow as pa

        from ..evaluation import classify_decoded, decode

        ids, sources = batch.column("id").to_pylist(), [os.fsdecode(s) for s in batch.column("source").to_pylist()]
        decoded = [decode(source, self.models[0].config) for source in sources]
        images = [image for image, _ in decoded if image is not None]
        results = classify_decoded(self.models, images) if images else []
        rows, k = [], 0
        for i, (image, error) in zip(ids, decoded):
            row = {"id": i, "error": error, "top5": None, "seconds": None}
            if image is not None:
                row["top5"] = [int(c) for top5, _ in results for c in top5[k]]
                row["seconds"] = [s / len(images) for _, s in results]
                k += 1
            rows.append(row)
        return pa.Table.from_pylist(
            rows,
            schema=pa.schema(
                [
                    ("id", pa.int64()),
                    ("error", pa.string()),
                    ("top5", pa.list_(pa.int64())),
                    ("seconds", pa.list_(pa.float64())),
                ]
            ),
        )


def _existing(folder: str | None) -> str | None:
    """``folder`` where this process sees it (an actor on this machine), else the temp default."""
    return folder if folder is not None and os.path.isdir(folder) else None


@contextlib.contextmanager
def _ray_session(ray, options: RayOptions):
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
                raise InceptionDeployError(f"Ray: {_ray_reason(e)} (Ray's own log: {log})") from None
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


def _import_ray(address: str | None):
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


def _probe(address: str | None) -> None:
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
            f"or leave out --ray-address for a local Ray"
        ) from None


def _ray_reason(e: Exception) -> str:
    """The user's error inside Ray's wrapping (an actor that could not load the model, say)."""
    cause = getattr(e, "cause", None) or e.__cause__
    return first_line(cause) if cause is not None else first_line(e)


_ROW_START = b'{"file": '  # how json.dumps begins every row (the file column comes first)


@contextlib.contextmanager
def _writing(path: Path):
    """A full disk or a vanished folder is one line naming the output, not a traceback."""
    try:
        yield
    except OSError as e:
        raise InceptionDeployError(f"{path}: cannot write ({e.strerror or first_line(e)})") from None


class _Output:
    """What both formats share: a new output starts with the record of its run beside it (the
    proof, when resuming, that the file is ours); a run that wrote no row leaves neither."""

    def __init__(self, path: Path, record: dict):
        self.path, self.done, self.dropped_partial_row, self.failed_before = path, Counter(), False, 0
        self.created, self.rows = not path.exists(), 0
        if self.created:
            write_json(record_path(path), record, RUN_RECORD)

    def _forget_if_empty(self) -> bool:
        """A run that wrote no row into a new output leaves neither it nor its record."""
        empty = self.created and not self.rows
        if empty:
            self.path.unlink(missing_ok=True)
            record_path(self.path).unlink(missing_ok=True)
        return empty


class _JsonLines(_Output):
    """Rows appended as JSON lines, flushed per batch; whatever ends a run, the file holds whole
    rows only (an incomplete last row, from a killed process, is removed before resuming)."""

    def __init__(self, path: Path, record: dict):
        super().__init__(path, record)
        if not self.created:
            self._read_done()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")

    def _read_done(self) -> None:
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1
        for number, line in enumerate(data[:complete].decode("utf-8", "replace").splitlines(), 1):
            try:
                row = json.loads(line)
                if not isinstance(row["file"], str) or ("error" in row) == ("indices" in row):
                    raise ValueError("not a row of ours")
                self.done[row["file"]] += 1
                self.failed_before += "error" in row
            except (ValueError, TypeError, KeyError):
                raise InceptionDeployError(
                    f"{self.path}: line {number} is not a row of inception-run's output; cannot resume it"
                ) from None
        if complete < len(data):  # the file is ours (its run record), and so is a row begun as ours are
            if not data[complete:].startswith(_ROW_START):
                raise InceptionDeployError(
                    f"{self.path}: its last line is neither a whole row nor the start of one; cannot resume it"
                )
            with open(self.path, "r+b") as f:
                f.truncate(complete)
            self.dropped_partial_row = True

    def write(self, rows: list[dict]) -> None:
        if rows:  # one write per batch: a row is never split by an interrupt between writes
            text = "".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n" for r in rows)
            with _writing(self.path):
                self.file.write(text)
                self.file.flush()
            self.rows += len(rows)

    def close(self) -> None:
        self.file.close()
        if self._forget_if_empty():  # a run that failed before its first row leaves nothing
            return
        if self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a signal during the flush: drop the incomplete row
                    f.seek(0)
                    f.truncate(f.read().rfind(b"\n") + 1)


class _Parquet(_Output):
    """Rows buffered into row groups of a temporary file beside the output (the rows of the
    output being resumed first), renamed over it when the run ends, interrupted or not, if it
    added a row; a process killed outright leaves the output as it was."""

    ROW_GROUP = 4096

    def __init__(self, path: Path, record: dict):
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(path, record)
        self.pa, self.schema, self.buffer = pa, _schema(pa), []
        previous = None
        if not self.created:
            try:
                names = pq.read_schema(path).names
                if sorted(names) != sorted(self.schema.names):
                    raise ValueError(f"its columns are {', '.join(names)}")
                previous = pq.read_table(path, schema=self.schema)
            except Exception as e:  # pyarrow's ArrowInvalid and friends
                raise InceptionDeployError(
                    f"{path}: not a Parquet output of inception-run ({first_line(e)}); cannot resume it"
                ) from None
            self.done.update(previous.column("file").to_pylist())
            self.failed_before = previous.num_rows - previous.column("error").null_count
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        self.tmp = Path(name)
        self.writer = pq.ParquetWriter(self.tmp, self.schema)
        if previous is not None:
            self.writer.write_table(previous)

    def write(self, rows: list[dict]) -> None:
        self.buffer += rows
        self.rows += len(rows)
        if len(self.buffer) >= self.ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            with _writing(self.path):
                self.writer.write_table(self.pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer = []

    def close(self) -> None:
        try:
            self._flush()
            self.writer.close()
            if self.rows:  # a run that failed before its first row leaves the output as it was
                os.chmod(self.tmp, 0o644)
                os.replace(self.tmp, self.path)
            self._forget_if_empty()
        finally:
            self.tmp.unlink(missing_ok=True)
