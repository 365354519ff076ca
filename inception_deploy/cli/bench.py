"""inception-bench: latency and throughput of artifacts and eager baselines, side by side."""

from __future__ import annotations

import os

import click

from ..errors import ConfigError, InceptionDeployError
from ..fileio import write_json
from ..verify.bench import (
    BENCH_RESULTS,
    plot_latency,
    run_benchmarks,
    table,
    unstable_warning,
)
from .guard import one_line_errors
from .options import command, openvino_mode_option, option, precision_option
from .output import announce, check_outputs, opens_with


@command("bench")
@click.argument("models", nargs=-1, help="Exported .onnx files and TensorRT engines to time.")
@option("--batch-sizes", default="1,8,32", group="Benchmark", help="Comma-separated batch sizes.")
@option("--iterations", type=click.IntRange(min=1), default=20, group="Benchmark", help="Timed runs per point.")
@option("--warmup", type=click.IntRange(min=0), default=3, group="Benchmark", help="Untimed runs first.")
@option(
    "--rounds",
    type=click.IntRange(1, 100),
    default=3,
    group="Benchmark",
    help="Interleaved rounds the timed runs are split into (their spread flags unstable figures); 1 is quickest.",
)
@option(
    "--torch-arch",
    metavar="NAME",
    group="Benchmark",
    help="Also time eager torch: CPU fp32 and bf16 autocast + channels_last; GPU fp16 channels_last.",
)
@option(
    "--torch-compile",
    is_flag=True,
    group="Benchmark",
    help="With --torch-arch: also torch.compile (bf16 + channels_last); compile time reported apart.",
)
@option(
    "--device",
    default="auto",
    metavar="DEVICE[,DEVICE...]",
    group="Benchmark",
    help="Where ONNX models run: auto, cpu, cuda, tensorrt (ONNX Runtime providers) or openvino; several, "
    "comma-separated, time each model on each side by side (e.g. cpu,openvino).",
)
@precision_option("Benchmark")
@openvino_mode_option("Benchmark")
@option("--json", "json_out", type=click.Path(dir_okay=False), group="Output", help="Write results as JSON.")
@option(
    "--plot",
    type=click.Path(dir_okay=False),
    group="Output",
    help="Throughput, latency and speed-up vs batch size per model (PNG).",
)
@one_line_errors
@opens_with("starting the benchmark: each point is timed in a process of its own...")
def bench_command(
    models,
    batch_sizes,
    iterations,
    warmup,
    rounds,
    torch_arch,
    torch_compile,
    device,
    precision,
    openvino_mode,
    json_out,
    plot,
):
    """Latency (p50/p90/p99) and throughput per model and batch size, each point in its own process,
    with eager torch baselines in the same run so every figure is also a ratio."""
    sizes = _integers(batch_sizes, "--batch-sizes")
    if not models and not torch_arch:
        raise ConfigError("nothing to benchmark: pass model files and/or --torch-arch")
    if torch_compile and not torch_arch:
        raise ConfigError("--torch-compile needs --torch-arch")
    check_outputs(models, json_out, BENCH_RESULTS, plot)
    devices = tuple(dict.fromkeys(d.strip() for d in device.split(",") if d.strip()))
    for model in models:
        if not os.path.isfile(model):
            raise InceptionDeployError(f"{model}: no such model file")
    results = run_benchmarks(
        models,
        sizes,
        iterations,
        warmup,
        torch_arch,
        devices,
        progress=lambda line: click.echo(line, err=True),
        precision=precision,
        torch_compile=torch_compile,
        openvino_mode=openvino_mode,
        rounds=rounds,
    )
    click.echo(table(results))
    if unstable_warning(results):
        click.echo(f"warning: {unstable_warning(results)}", err=True)
    for r in results:
        if r.compile_s is not None:
            click.echo(f"torch.compile at batch {r.batch}: {r.compile_s:.1f} s to compile (not in the latency)")
    if json_out:
        write_json(json_out, [r.to_dict() for r in results], BENCH_RESULTS)
        announce(f"wrote {json_out}")
    if plot:
        plot_latency(results, plot)
        announce(f"wrote {plot}")


def _integers(text: str, flag: str) -> list[int]:
    """``1,8,32`` as sorted integers (their range is the API's to check)."""
    try:
        return sorted({int(b) for b in text.split(",") if b.strip()})
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated integers, not {text!r}") from None
