"""Offline classification and evaluation of large image sets on a Ray cluster (the ``ray``
extra).

The inputs are read as a stream (a list file line by line, a folder as it is walked) and sent in
batches to a pool of actors, each holding one Predictor (the project's own decoding and
preprocessing: the same pixels as a local run); the driver writes one row per input to a JSON
Lines or Parquet file as batches finish, and reads more inputs only as the actors can take them.
The model file travels through Ray's object store, so the workers of a multi-node cluster need no
shared file system for it (the images they read do).

Nothing lost, nothing twice: an input that names no image is an error row written by the driver;
a batch whose actor died (killed, its node lost) goes to another actor, and a batch's rows are
written once, when its result arrives; ``resume`` skips the inputs the output already has a row
for; an interrupted run leaves whole rows only.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InceptionDeployError
from ..inputs import InputError, iter_inputs
from ..labels import read_labels
from ..metadata import read_sidecar, sidecar_path
from ..runtime.base import ENGINE_SUFFIXES
from ..runtime.predictor import Predictor
from .session import (
    RayOptions,
    import_ray,
    pool_map,
    probe,
    ray_session,
    require_ray,
    scratch_here,
    ship,
    unpack,
)
from .writers import (
    JsonLines,
    Parquet,
    check_output,
    check_same_run,
    output_format,
    run_record,
    stored_name,
)

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
    """Classify ``inputs`` (files, folders, globs, URIs, list files: ``iter_inputs``, read as the
    workers take them) with ``model`` on Ray, one row per input in ``output`` (.jsonl or
    .parquet): file, labels, indices and probabilities of the top ``topk``, or the error. An
    existing ``output`` is refused unless ``resume``, which skips the inputs it already has a row
    for. ``progress(done, total)`` after each batch of rows this run writes, ``total`` None until
    the inputs end."""
    say = progress or (lambda done, total: None)
    check_output(output, resume, inputs=[model, labels])
    for given in (model, output, labels, *inputs):
        name = os.fsdecode(given) if given is not None else ""
        if stored_name(name) != name:  # escaped: not UTF-8
            raise ConfigError(
                f"{stored_name(name)}: a name that is not UTF-8 cannot be given to Ray, which records "
                f"its job's command line as UTF-8; name the file in a list file or by its folder instead"
            )
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
    started_in = check_same_run(output, record) if output.exists() else None
    ray = import_ray(ray_options.address)  # the ray extra: only now
    report = BatchReport(output, 0)
    writer = writer_class(output, record, started_in)
    try:
        report.dropped_partial_row, report.resumed_failed = writer.dropped_partial_row, writer.failed_before
        batches = _batches(_to_classify(iter_inputs(inputs), writer, report), batch_size)
        first = next(batches, None)  # Ray starts only for an input that names an image
        if first is not None:
            with ray_session(ray, ray_options) as scratch:
                run = dict(batch_size=batch_size, topk=topk, engine=engine, scratch=scratch)
                batches = itertools.chain([first], batches)
                _run(ray, model, batches, writer, report, ray_options, predictor_options, say, **run)
        say(report.written, report.total - report.resumed)
    finally:
        writer.close()
    return report


def _to_classify(sources, writer, report: BatchReport):
    """The (id, source) of each input still to classify, as ``sources`` yields them: an input the
    output already has a row for is skipped (a file named twice needs two rows), one that names
    no image becomes its error row here, never sent to Ray. ``report.total`` counts them all."""
    for source in sources:
        report.total += 1
        name = stored_name(source.name if isinstance(source, InputError) else source)
        if writer.done.take(name):
            report.resumed += 1
        elif isinstance(source, InputError):
            writer.write([{"file": name, "error": source.reason}])
            report.written += 1
            report.failed += 1
        else:
            yield report.total, source


def _batches(rows, size: int):
    rows = iter(rows)
    while batch := list(itertools.islice(rows, size)):
        yield batch


def _run(ray, model, batches, writer, report, options, predictor_options, say, *, batch_size, topk, engine, scratch):
    """The Ray job: batches of (id, source) rows through the actor pool, rows written as they
    arrive."""

    files = {"model": [model, sidecar_path(model)] if engine else [model]}  # what the actors need
    if predictor_options["labels"] is not None:
        files["labels"] = [Path(predictor_options["labels"])]
    shipped = {role: ship(ray, paths) for role, paths in files.items()}
    gpu = engine or predictor_options["device"] in GPU_DEVICES
    options_in_actor = {**predictor_options, "batch_size": batch_size, "workers": 2, "threads": options.cpus_per_worker}
    # each reference in a list: the actor fetches it, Ray does not resolve it
    actor = {"files": shipped, "options": options_in_actor, "topk": topk, "scratch": scratch}
    begin = time.perf_counter()
    lost = lambda batch, why: [_row({"file": source, "error": why}) for _, source in batch]  # noqa: E731
    for rows in pool_map(ray, _Classifier, actor, batches, options, lost, gpus=1 if gpu else 0):
        writer.write(rows)
        report.written += len(rows)
        report.failed += sum(row["error"] is not None for row in rows)
        report.seconds = time.perf_counter() - begin
        say(report.written, None)


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

    def run(self, batch: list[tuple[int, str]]) -> list[dict]:
        predictions = self.predictor.predict([source for _, source in batch], topk=self.topk)
        return [_row(p.to_dict()) for p in predictions]


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
    rows = list(enumerate(map(str, files)))
    actor = {"models": shipped, "threads": options.cpus_per_worker, "scratch": scratch}
    top5 = np.full((len(files), len(models), 5), -1, dtype=np.int64)
    seconds, errors, done = np.zeros(len(models)), {}, 0
    lost = lambda batch, why: [{"id": i, "error": why} for i, _ in batch]  # noqa: E731
    for results in pool_map(ray, _Evaluator, actor, _batches(rows, batch_size), options, lost, gpus=1 if gpu else 0):
        for row in results:
            if row["error"] is not None:
                errors[row["id"]] = row["error"]
            else:
                top5[row["id"]] = row["top5"]
                seconds += row["seconds"]
        done += len(results)
        say(done, len(files))
    kept = np.asarray([i for i in range(len(files)) if i not in errors], dtype=int)
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

    def run(self, batch: list[tuple[int, str]]) -> list[dict]:
        from ..verify.evaluation import classify_decoded, decode

        decoded = [decode(source, self.models[0].config) for _, source in batch]
        images = [image for image, _ in decoded if image is not None]
        results = classify_decoded(self.models, images) if images else []
        rows, k = [], 0
        for (i, _), (image, error) in zip(batch, decoded):
            row = {"id": i, "error": error}
            if image is not None:  # each model's top 5, and its share of the batch's inference time
                row["top5"] = np.stack([top5[k] for top5, _ in results])
                row["seconds"] = np.asarray([s / len(images) for _, s in results])
                k += 1
            rows.append(row)
        return rows
