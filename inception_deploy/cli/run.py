"""inception-run: classify images locally or through a Triton server."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click
from PIL import Image

from ..batch import RayOptions
from ..errors import printable
from ..inputs import expand_inputs, sample_photos
from ..metadata import MAX_BATCH
from ..progress import bar, counted, write_line
from ..runtime.base import DEVICES
from ..runtime.predictor import Predictor, caveats
from ..serving.client import TritonClient
from .guard import EXIT_PARTLY_FAILED, one_line_errors
from .options import check_ray_options, command, openvino_mode_option, option, precision_option, ray_options
from .output import images_bar


@command("run")
@click.argument(
    "model",
    type=click.Path(),
    help="An exported .onnx file, or a TensorRT engine (.plan, .engine, .trt) with its .json sidecar. "
    "With --server: the first image.",
)
@click.argument(
    "inputs",
    nargs=-1,
    help="Image files, folders (searched recursively), glob patterns, URIs (http, s3, gs) and list files "
    "(.txt/.lst, one input per line).",
)
@option(
    "--samples",
    "use_samples",
    is_flag=True,
    group="Output",
    help="Also classify the photos shipped with the package (a quick check that needs no images).",
)
@option("--topk", type=click.IntRange(min=1), default=5, group="Output", help="Classes to show per image.")
@option(
    "--json",
    "as_json",
    is_flag=True,
    group="Output",
    help="One JSON object per image and line: file, labels, indices, probabilities (or error).",
)
@option("--no-progress", is_flag=True, group="Output", help="No progress bar on stderr.")
@option(
    "--labels",
    type=click.Path(dir_okay=False),
    group="Model",
    help="Class names, one per line, instead of those stored in the model.",
)
@option(
    "--arch",
    metavar="NAME",
    group="Model",
    help="Preprocessing and labels for a model exported without inception-deploy metadata.",
)
@option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    group="Backend",
    help="ONNX Runtime provider (auto: TensorRT, CUDA, CPU, whichever is available), or "
    "OpenVINO on the CPU. Engines run on TensorRT.",
)
@precision_option("Backend")
@openvino_mode_option("Backend")
@option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH),
    group="Backend",
    help="Images per inference call.  [default: 8, or the model's limit]",
)
@option(
    "--workers",
    type=click.IntRange(1, 1024),
    group="Backend",
    help="Decoding threads; with --server, requests in flight; with --ray, actors each holding the model.  "
    "[default: min(4, CPU count); server: 8; ray: 2]",
)
@option(
    "--server",
    metavar="URL",
    group="Server",
    help="Classify on a Triton server instead (http://HOST:8000 or grpc://HOST:8001), through a "
    "pipeline written by inception-triton; MODEL is then the first image.",
)
@option(
    "--model",
    "server_model",
    metavar="NAME",
    group="Server",
    help="With --server: the pipeline to use.  [default: the server's only *_pipeline model]",
)
@ray_options("Classify")
@option(
    "--output",
    type=click.Path(dir_okay=False),
    group="Ray",
    help="With --ray: the results, one row per input, as JSON Lines (.jsonl, .ndjson) or Parquet (.parquet).",
)
@option(
    "--resume",
    is_flag=True,
    group="Ray",
    help="With --ray: continue an existing --output, skipping the inputs it already has a row for.",
)
@one_line_errors
def run_command(
    model,
    inputs,
    use_samples,
    topk,
    as_json,
    no_progress,
    labels,
    arch,
    device,
    precision,
    openvino_mode,
    batch_size,
    workers,
    server,
    server_model,
    use_ray,
    ray_address,
    cpus_per_worker,
    output,
    resume,
):
    """Classify images (files, folders, globs, URIs, list files) with an ONNX model or TensorRT engine.

    Preprocessing and labels are read from the model. Exit code 1 when any image could not be
    used (each is reported on stderr, or with --ray in --output), 2 when the model cannot be used.
    """
    check_ray_options(use_ray, ray_address=ray_address, cpus_per_worker=cpus_per_worker, output=output, resume=resume)
    if server is not None:
        inputs = (model,) + inputs
    elif server_model is not None:
        raise click.UsageError("--model names a pipeline on a server: it needs --server")
    if not inputs and not use_samples:
        raise click.UsageError("give images to classify (files, folders, globs), or --samples")

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # such images are refused, one line each
    if use_ray:
        if server is not None or as_json:
            raise click.UsageError("--ray writes its rows to --output: it cannot go with --server or --json")
        if output is None:
            raise click.UsageError("--ray needs --output FILE (.jsonl or .parquet)")
        _classify_on_ray(
            model,
            inputs + tuple(str(p) for p in sample_photos()) * use_samples,
            output,
            RayOptions(ray_address, workers or 2, cpus_per_worker or 1.0),
            dict(
                topk=topk,
                resume=resume,
                batch_size=batch_size,
                device=device,
                arch=arch,
                labels=labels,
                precision=precision,
                openvino_mode=openvino_mode,
            ),
            show_bar=not no_progress,
        )
        return
    if server is not None:
        local = {
            "--labels": labels,
            "--arch": arch,
            "--device": device != "auto" or None,
            "--precision": precision,
            "--batch-size": batch_size,
        }
        if any(v is not None for v in local.values()):
            raise click.UsageError(
                f"{', '.join(k for k, v in local.items() if v is not None)}: for local models; "
                f"the server's pipeline carries its own preprocessing, labels and batching"
            )
        predictor = TritonClient(server, server_model, concurrency=workers or 8)
        click.echo(f"{printable(server)}: Triton {predictor.protocol}, model {printable(predictor.model)}", err=True)
        show_bar = not no_progress
        _classify(
            predictor,
            expand_inputs(inputs) + ([str(p) for p in sample_photos()] if use_samples else []),
            topk,
            as_json,
            show_bar,
        )
        return
    predictor = Predictor(
        model,
        device=device,
        arch=arch,
        labels=labels,
        batch_size=batch_size,
        workers=workers,
        precision=precision,
        openvino_mode=openvino_mode,
    )
    click.echo(f"{printable(model)}: {predictor.backend.describe()}", err=True)
    for line in caveats(predictor.backend, model, arch):
        click.echo(line, err=True)
    sources = expand_inputs(inputs) + ([str(p) for p in sample_photos()] if use_samples else [])
    _classify(predictor, sources, topk, as_json, show_bar=not no_progress and len(sources) > predictor.batch_size)


def _classify_on_ray(model, inputs, output, ray_options, options, show_bar) -> None:
    """Run the Ray job with a progress bar; one summary line; exit 1 when any row is an error."""
    from ..batch import check_output, classify_on_ray

    check_output(output, options["resume"])  # before anything is printed or started
    where, workers = ray_options.address or "local", ray_options.workers
    click.echo(f"{printable(model)}: on Ray ({printable(where)}), {workers} worker{'s' * (workers > 1)}", err=True)
    try:
        with images_bar(disable=not show_bar) as progress:
            report = classify_on_ray(model, inputs, output, ray_options=ray_options, progress=progress, **options)
    except KeyboardInterrupt:
        if Path(output).exists():
            click.echo(f"note: {printable(output)} keeps the whole rows written so far; --resume goes on", err=True)
        raise
    if report.dropped_partial_row:
        click.echo(f"note: {printable(output)}: removed an incomplete last row left by an interrupted run", err=True)
    if report.resumed:
        click.echo(f"{report.resumed} inputs already had a row in {printable(output)}", err=True)
    click.echo(
        f"wrote {counted(report.written, 'row')} to {printable(output)} ({counted(report.failed, 'error')}), "
        f"{report.images_per_s:.1f} images/s",
        err=True,
    )
    failed = report.failed + report.resumed_failed
    if failed:
        click.echo(
            f'{failed} of {report.total} inputs failed: the rows with an "error" in {printable(output)}', err=True
        )
        sys.exit(EXIT_PARTLY_FAILED)


def _classify(predictor, sources, topk, as_json, show_bar) -> None:
    """Print a Predictor's or TritonClient's predictions: a table, or JSON lines; exit 1 when any failed."""
    failed, rows = 0, []
    with bar(total=len(sources), unit="img", disable=not show_bar, leave=False) as images:
        for p in predictor.iter_predict(sources, topk=topk):
            images.update(1)
            if p.error is not None:
                failed += 1
                write_line(f"error: {printable(p.file)}: {p.error}")
            if as_json:
                click.echo(json.dumps(p.to_dict()))
            elif p.error is None:
                rows += [
                    (printable(p.file) if rank == 0 else "", rank + 1, printable(label), f"{prob:.2%}", index)
                    for rank, (label, prob, index) in enumerate(zip(p.labels, p.probabilities, p.indices))
                ]
    if rows:
        from tabulate import tabulate

        click.echo(tabulate(rows, headers=("file", "#", "label", "probability", "index"), disable_numparse=True))
    if failed:
        click.echo(f"{failed} of {len(sources)} inputs failed", err=True)
        sys.exit(EXIT_PARTLY_FAILED)
