"""Offline classification and evaluation of large image sets on a Ray cluster (Ray Data, the
``ray`` extra).

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

import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import InceptionDeployError
from ..inputs import InputError, expand_inputs, is_uri
from ..labels import read_labels
from ..metadata import read_sidecar, sidecar_path
from ..runtime.base import ENGINE_SUFFIXES
from ..runtime.predictor import Predictor
from .session import (
    RayOptions,
    first_rows,
    import_ray,
    mapped,
    probe,
    ray_session,
    require_ray,
    scratch_here,
    ship,
    unpack,
)
from .writers import JsonLines, Parquet, check_output, check_same_run, output_format, run_record, schema, stored_name

GPU_DEVICES = ("cuda", "tensorrt")  # an actor running on these reserves one GPU


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
    writer_class = JsonLines if output_format(output) == "jsonl" else Parquet
    output = Path(output)
    probe(ray_options.address)
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
        record = run_record(model, meta.preprocess, read_labels(labels) if labels else meta.labels)
    else:  # a model, label file or option the workers could not use fails here, before Ray starts
        predictor = Predictor(model, **predictor_options)
        batch_size, topk = predictor.batch_size, max(1, min(topk, len(predictor.labels)))
        record = run_record(model, predictor.config, predictor.labels)
        del predictor
    if output.exists():
        check_same_run(output, record)
    ray = import_ray(ray_options.address)  # the ray extra: only now
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
            with ray_session(ray, ray_options) as scratch:
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


def _same_file(name: str) -> str:
    return name if is_uri(name) else os.path.abspath(name)


def _run(ray, model, todo, writer, report, options, predictor_options, say, *, batch_size, topk, engine, scratch):
    """The Ray Data job: blocks of (id, source) rows through the actor pool, rows written as
    they arrive, each id once."""

    files = {"model": [model, sidecar_path(model)] if engine else [model]}  # what the actors need
    if predictor_options["labels"] is not None:
        files["labels"] = [Path(predictor_options["labels"])]
    shipped = {role: ship(ray, paths) for role, paths in files.items()}
    gpu = engine or predictor_options["device"] in GPU_DEVICES
    options_in_actor = {**predictor_options, "batch_size": batch_size, "workers": 2, "threads": options.cpus_per_worker}
    dataset = mapped(
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
    for rows, _ in first_rows(dataset):
        for row in rows:
            del row["id"]
        writer.write(rows)
        report.written += len(rows)
        report.failed += sum(row["error"] is not None for row in rows)
        report.seconds = time.perf_counter() - begin
        say(report.resumed + report.written, report.total)


class _Classifier:
    """A Ray actor holding one Predictor: a batch of (id, source) rows -> one result row each."""

    def __init__(self, files, options, topk, scratch):
        import ray

        self.folder = tempfile.TemporaryDirectory(prefix="inception-ray-", dir=scratch_here(scratch))
        paths = {role: unpack(ray, shipped, Path(self.folder.name, role)) for role, shipped in files.items()}
        options = dict(options, threads=max(1, int(options["threads"])), labels=paths.get("labels"))
        self.predictor = Predictor(paths["model"], **options)
        self.folder.cleanup()  # loaded: an actor killed later leaves no copy behind
        self.topk = topk

    def __call__(self, batch):
        import pyarrow as pa

        sources = [os.fsdecode(s) for s in batch.column("source").to_pylist()]
        predictions = self.predictor.predict(sources, topk=self.topk)
        rows = [{"id": i, **_row(p.to_dict())} for i, p in zip(batch.column("id").to_pylist(), predictions)]
        return pa.Table.from_pylist(rows, schema=schema(pa, with_id=True))


def _row(prediction: dict) -> dict:
    """A row with every column (Parquet's schema); JSON Lines drops the empty ones."""
    return {
        "file": stored_name(prediction["file"]),
        "labels": prediction.get("labels"),
        "indices": prediction.get("indices"),
        "probabilities": prediction.get("probabilities"),
        "error": prediction.get("error"),
    }


def on_ray(options: RayOptions = RayOptions()):
    """A ``classify`` for ``evaluation.evaluate``: each labelled image decoded once and classified
    by every model in a pool of actors (eager PyTorch travels pickled, artifacts as file bytes);
    the report's images/s is then per worker."""
    require_ray()
    probe(options.address)

    def classify(models, files, batch_size, workers, say):
        ray = import_ray(options.address)
        with ray_session(ray, options) as scratch:
            return _evaluate(ray, models, files, batch_size, options, say, scratch)

    return classify


def _evaluate(ray, models, files, batch_size, options, say, scratch):
    import numpy as np

    from ..verify.evaluation import Classified

    shipped, gpu = [], False  # (name, how to open it, [the module] or its shipped files, preprocessing)
    for m in models:
        config = m.config.to_dict()
        if m.open_args is None:  # eager PyTorch: the module itself
            shipped.append((m.name, None, [ray.put(m.runner.model)], config))
            continue
        path = Path(m.name)
        parts = [path] + [sidecar_path(path)] * (path.suffix.lower() in ENGINE_SUFFIXES)
        shipped.append((m.name, m.open_args, ship(ray, parts), config))
        gpu = gpu or len(parts) > 1 or m.open_args["device"] in GPU_DEVICES
    ids = list(range(len(files)))
    dataset = mapped(
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
    for rows, done in first_rows(dataset):
        for row in rows:
            if row["error"] is not None:
                errors[row["id"]] = row["error"]
            else:
                top5[row["id"]] = np.reshape(row["top5"], (len(models), 5))
                seconds += row["seconds"]
        say(done, len(files))
    kept = np.asarray([i for i in ids if i not in errors], dtype=int)
    skipped = [(str(files[i]), errors[i]) for i in sorted(errors)]
    return Classified(kept, [top5[kept, k] for k in range(len(models))], [float(s) for s in seconds], skipped)


class _Evaluator:
    """A Ray actor holding every model under evaluation: a batch of (id, file) -> per file its
    top-5 classes under each model (or the error), with each model's share of inference time."""

    def __init__(self, models, threads, scratch):
        import ray

        from ..preprocess import PreprocessConfig
        from ..runtime.open import open_backend
        from ..runtime.torch_runner import TorchRunner
        from ..verify.evaluation import EvalModel

        threads = max(1, int(threads))
        self.folder = tempfile.TemporaryDirectory(prefix="inception-ray-", dir=scratch_here(scratch))
        self.models = []
        for k, (name, open_args, payload, config) in enumerate(models):
            if open_args is None:
                import torch

                torch.set_num_threads(threads)
                runner = TorchRunner(ray.get(payload[0]))
            else:  # the file, and an engine's sidecar beside it
                runner = open_backend(
                    unpack(ray, payload, Path(self.folder.name, str(k))), **open_args, threads=threads
                )
            self.models.append(EvalModel(name, runner, PreprocessConfig.from_dict(config)))
        self.folder.cleanup()  # loaded: an actor killed later leaves no copy behind

    def __call__(self, batch):
        import pyarrow as pa

        from ..verify.evaluation import classify_decoded, decode

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
