"""inception-triton and inception-serve: a Triton model repository, and a real server on it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from ..errors import InceptionDeployError, printable
from ..metadata import MAX_BATCH
from ..serving.repository import KINDS, ONNX_BACKENDS, write_repository
from ..serving.server import TritonServer
from .guard import one_line_errors
from .options import FiniteRange, command, option, stacked
from .output import announce, safe_lines


def repository_options(fn):
    """How inception-triton and inception-serve lay out a Triton model repository."""
    options = [
        option(
            "--arch",
            metavar="NAME",
            group="Repository",
            help="Preprocessing and labels for an .onnx exported without inception-deploy metadata.",
        ),
        option(
            "--onnx-backend",
            type=click.Choice(ONNX_BACKENDS),
            default="onnxruntime",
            group="Repository",
            help="Triton backend that runs .onnx files (engines run on tensorrt_plan).",
        ),
        option(
            "--kind",
            type=click.Choice(KINDS),
            default="auto",
            group="Repository",
            help="Where ONNX model instances run; auto: the GPU when the server has one. Engines: GPU.",
        ),
        option(
            "--instances",
            type=click.IntRange(1, 64),
            default=1,
            group="Repository",
            help="Model instances per GPU (or on the CPU): Triton's instance_group count.",
        ),
        option(
            "--max-batch",
            type=click.IntRange(1, MAX_BATCH),
            group="Repository",
            help="Largest batch the server forms.  [default: the model's limit; an engine's profile max]",
        ),
        option(
            "--preferred-batch",
            type=click.IntRange(1, MAX_BATCH),
            multiple=True,
            group="Repository",
            help="Batch sizes the dynamic batcher aims for (repeatable).  [default: an engine's profile "
            "opt and max; ONNX: none, i.e. the largest batch that forms]",
        ),
        option(
            "--queue-delay-us",
            type=click.IntRange(0, 10_000_000),
            default=1000,
            group="Repository",
            help="How long a request may wait for others to fill a batch (microseconds).",
        ),
    ]
    return stacked(options)(fn)


def _write_repository(
    models, output, arch, onnx_backend, kind, instances, max_batch, preferred_batch, queue_delay_us, replace=False
):
    return write_repository(
        models,
        output,
        arch=arch,
        onnx_backend=onnx_backend,
        kind=kind,
        instances=instances,
        max_batch=max_batch,
        preferred_batch=preferred_batch,
        queue_delay_us=queue_delay_us,
        replace=replace,
        progress=announce,
    )


@command("triton")
@click.argument(
    "models",
    nargs=-1,
    required=True,
    type=click.Path(dir_okay=False),
    help=".onnx files and TensorRT engines (with their .json sidecars); plans with the same file "
    "name built on different GPUs become one model.",
)
@option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    group="Output",
    help="The model repository folder to write (new or empty).",
)
@option(
    "--force",
    is_flag=True,
    group="Output",
    help="Replace an existing model repository (a folder of model folders with config.pbtxt; nothing else).",
)
@repository_options
@one_line_errors
def triton_command(
    models, output, force, arch, onnx_backend, kind, instances, max_batch, preferred_batch, queue_delay_us
):
    """Write an NVIDIA Triton model repository: per model, the classifier (config.pbtxt, labels for
    the classification extension, warmup, dynamic batching), a preprocessing model (image bytes in)
    and an ensemble NAME_pipeline that answers image bytes with the top-k labels."""
    from tabulate import tabulate

    written = _write_repository(
        models, output, arch, onnx_backend, kind, instances, max_batch, preferred_batch, queue_delay_us, replace=force
    )
    rows = [(m.name, m.platform, m.max_batch, ", ".join(m.plans) or "any") for m in written]
    click.echo(safe_lines(tabulate(rows, headers=("model", "platform", "max batch", "GPUs (compute capability)"))))
    click.echo(
        printable(
            f"wrote {output}: each model X also has X_preprocess, X_softmax and X_pipeline "
            f"(send image bytes to X_pipeline); serve it with: inception-serve {output}"
        )
    )


@command("serve")
@click.argument(
    "source",
    type=click.Path(exists=False),
    help="A model repository (inception-triton), or an .onnx file or engine to serve on its own.",
)
@option(
    "--host",
    default="127.0.0.1",
    group="Server",
    help="Address to listen on (0.0.0.0: every interface; the server has no authentication).",
)
@option("--http-port", type=click.IntRange(0, 65535), default=8000, group="Server", help="0: any free port.")
@option("--grpc-port", type=click.IntRange(0, 65535), default=8001, group="Server", help="0: any free port.")
@option("--metrics-port", type=click.IntRange(0, 65535), default=8002, group="Server", help="0: any free port.")
@option(
    "--ready-timeout",
    type=FiniteRange(1, 3600),
    default=300,
    group="Server",
    help="Seconds to wait for the server to load the models.",
)
@option(
    "--log",
    type=click.Path(dir_okay=False),
    group="Server",
    help="Write the server's own log here.  [default: a temporary file, shown when it fails]",
)
@repository_options
@one_line_errors
def serve_command(
    source,
    host,
    http_port,
    grpc_port,
    metrics_port,
    ready_timeout,
    log,
    arch,
    onnx_backend,
    kind,
    instances,
    max_batch,
    preferred_batch,
    queue_delay_us,
):
    """Serve a model repository (or one model file) with a real NVIDIA Triton server until Ctrl-C or
    SIGTERM. Uses the tritonserver bundled with the serve extra (a CPU build), else one on PATH."""
    source_path = Path(source)
    if not source_path.exists():
        raise InceptionDeployError(f"{source}: no such model repository or model file")
    with tempfile.TemporaryDirectory(prefix="inception-serve-repo-") as scratch:
        repository = source_path
        if source_path.is_file():  # one model: a repository of its own for this session
            repository = Path(scratch) / "repository"
            _write_repository(
                [source_path],
                repository,
                arch,
                onnx_backend,
                kind,
                instances,
                max_batch,
                preferred_batch,
                queue_delay_us,
            )
        server = TritonServer(
            repository,
            host=host,
            http_port=http_port,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            ready_timeout=ready_timeout,
            log_path=log,
        )
        try:
            announce(f"starting {server.binary.executable} on {repository}...")
            server.start()
            _serve_until_stopped(server)
        except KeyboardInterrupt:
            announce("stopping the server...")
        finally:
            server.stop()
    announce("server stopped")


def _serve_until_stopped(server) -> None:
    states = server.models()
    for name in server.stand_ins_used():
        announce(
            f"note: this tritonserver has no {name} backend: models using it run on inception_deploy's own "
            f"runtime in a Python-based backend (production servers use Triton's own backend)"
        )
    for state in states:
        if state.state != "READY":
            announce(f"warning: model {state.name} not loaded: {state.reason or state.state}")
    ready = [s.name for s in states if s.state == "READY"]
    if not ready:
        raise InceptionDeployError(f"{server.repository}: no model could be loaded (reasons above)")
    click.echo(f"ready: {', '.join(ready)}")
    click.echo(f"HTTP    http://{server.url}\ngRPC    grpc://{server.grpc_url}\nmetrics {server.metrics_url}")
    pipelines = [name for name in ready if name.endswith("_pipeline")]
    if pipelines:
        click.echo(f"try:    inception-run --server http://{server.url} --model {pipelines[0]} IMAGE.jpg")
    click.echo(f"tritonserver pid {server.process.pid}; Ctrl-C stops it", err=True)
    while server.running():
        server.process.wait()  # a signal interrupts this with KeyboardInterrupt
    raise InceptionDeployError(
        f"tritonserver exited on its own with code {server.process.returncode}: {server.last_error()}"
    )
