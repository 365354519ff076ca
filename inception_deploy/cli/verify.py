"""inception-parity, inception-eval and inception-bench: runners on the same inputs, compared."""

from __future__ import annotations

import os
import sys

import click

from ..bench import (
    BENCH_RESULTS,
    parse_batch_sizes,
    parse_devices,
    plot_latency,
    run_benchmarks,
    table,
    unstable_warning,
)
from ..errors import ConfigError, InceptionDeployError, printable
from ..fileio import PLOT, POLYGRAPHY_OUTPUTS, check_writable, write_json
from ..metadata import MAX_BATCH
from ..plotting import figure_class
from ..progress import stage
from ..runtime.base import DEVICES
from .guard import EXIT_NO_ENGINE, EXIT_PARTLY_FAILED, one_line_errors
from .options import check_ray_options, command, openvino_mode_option, option, precision_option, ray_options
from .output import announce, images_bar, opens_with, print_evaluation, safe_lines


def check_outputs(inputs, json_out=None, report=None, plot=None, save_outputs=None) -> None:
    """Before the work: each output file can be written without replacing one of the command's
    ``inputs`` or a file the toolkit did not write (``report``: the kind of the --json file), and
    --plot has matplotlib."""
    for path, kind in ((json_out, report), (plot, PLOT), (save_outputs, POLYGRAPHY_OUTPUTS)):
        if path:
            check_writable(path, kind, inputs)
    if plot:
        figure_class()


@command("parity")
@option("--arch", required=True, metavar="NAME", group="Reference", help="Architecture of the eager reference.")
@option(
    "--weights",
    metavar="FILE|pretrained",
    group="Reference",
    help="Checkpoint of the reference; must be the one the artifacts were exported from.",
)
@option(
    "--onnx",
    "onnx_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    group="Artifacts",
    help="ONNX file to check (repeatable).",
)
@option(
    "--engine",
    "engines",
    multiple=True,
    type=click.Path(dir_okay=False),
    group="Artifacts",
    help="TensorRT engine to check (repeatable).",
)
@option(
    "--device",
    type=click.Choice(DEVICES),
    default="cpu",
    group="Artifacts",
    help="ONNX Runtime provider for the ONNX files, or OpenVINO.",
)
@precision_option("Artifacts")
@option(
    "--images",
    type=click.Path(),
    group="Inputs",
    help="Folder of real photos.  [default: the photos shipped with the package]",
)
@option(
    "--samples",
    type=click.IntRange(min=1),
    default=32,
    group="Inputs",
    help="Photos taken from --images (spread evenly over the folder).",
)
@option("--synthetic", type=click.IntRange(0, 1024), default=8, group="Inputs", help="Synthetic images added.")
@option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=8, group="Inputs", help="Artifact batch size.")
@option(
    "--layerwise",
    is_flag=True,
    group="Layer by layer",
    help="Also compare each FP16/INT8 ONNX with the FP32 ONNX it was made from (give both with --onnx), "
    "tensor by tensor in graph order, each row naming the PyTorch module; says where the cosine first "
    "falls below the precision's bar.",
)
@option(
    "--save-outputs",
    type=click.Path(dir_okay=False),
    group="Layer by layer",
    help="With --layerwise: write every compared tensor of every image in Polygraphy's JSON format "
    "(polygraphy run --load-outputs reads it); tens of MB per image.",
)
@option(
    "--sensitivity",
    is_flag=True,
    group="Layer by layer",
    help="Also rank the layers of each INT8 file (tensorrt target; give the FP32 ONNX it was made from with "
    "--onnx too) by how much the logits move when that layer alone is INT8: the layers to keep float first "
    "(--int8-keep-float).",
)
@option("--json", "json_out", type=click.Path(dir_okay=False), group="Output", help="Write the report as JSON.")
@one_line_errors
@opens_with("loading PyTorch...", loading="torch")
def parity_command(
    arch,
    weights,
    onnx_files,
    engines,
    device,
    precision,
    images,
    samples,
    synthetic,
    batch_size,
    layerwise,
    save_outputs,
    sensitivity,
    json_out,
):
    """Compare exported artifacts with eager PyTorch on the same images, one row per artifact,
    PASS/FAIL against the thresholds of each artifact's precision. Exit 1 if any fails."""
    from ..calibration.sensitivity import file_sensitivity, ranked_files
    from ..verify.comparator import check_artifacts  # torch: only when the command runs
    from ..verify.layerwise import compare_layers, layer_images, layerwise_files
    from ..verify.metrics import PARITY_REPORT

    artifacts = list(onnx_files) + list(engines)
    if not artifacts:
        raise ConfigError("nothing to check: pass --onnx FILE and/or --engine FILE")
    if save_outputs and not layerwise:
        raise ConfigError("--save-outputs needs --layerwise")
    if layerwise or sensitivity:
        reference, candidates = layerwise_files(onnx_files, engines, "--layerwise" if layerwise else "--sensitivity")
    if sensitivity:
        int8_files = ranked_files(candidates)
    check_outputs([*artifacts, weights, images], json_out, PARITY_REPORT, save_outputs=save_outputs)
    report = check_artifacts(
        arch,
        artifacts,
        weights=weights,
        device=device,
        precision=precision,
        images=images,
        samples=samples,
        synthetic=synthetic,
        batch_size=batch_size,
        progress=announce,
    )
    if report.skipped_inputs:
        name, reason = report.skipped_inputs[0]
        click.echo(
            f"note: skipped {len(report.skipped_inputs)} unusable photo(s), e.g. {printable(name)}: {reason}", err=True
        )
    click.echo(safe_lines(report.table(first_column="artifact")))
    layers = []
    if layerwise or sensitivity:  # the same images for both, decoded once
        batch = layer_images(reference, images, samples, synthetic)
    if layerwise:
        with stage(announce, f"comparing {', '.join(map(str, candidates))} with {reference} layer by layer"):
            layers = compare_layers(reference, candidates, batch, save_outputs)
        for layer_report in layers:
            click.echo(safe_lines(layer_report.table()))
            click.echo(printable(layer_report.summary()))
        if save_outputs:
            click.echo(printable(f"wrote {save_outputs} (Polygraphy RunResults: polygraphy run --load-outputs)"))
    ranked = []
    if sensitivity:
        for candidate in int8_files:
            with stage(announce, f"ranking the layers of {candidate} by the logits error of each alone in INT8"):
                ranked.append(file_sensitivity(reference, candidate, batch))
            click.echo(safe_lines(ranked[-1].table()))
            click.echo(printable(ranked[-1].summary()))
    if json_out:
        extra = {"layerwise": [r.to_dict() for r in layers]} if layerwise else {}
        if sensitivity:
            extra["sensitivity"] = [r.to_dict() for r in ranked]
        write_json(json_out, {**report.to_dict(), **extra}, PARITY_REPORT)
    if report.failed:
        sys.exit(EXIT_PARTLY_FAILED)
    if report.skipped:
        sys.exit(EXIT_NO_ENGINE)


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
    sizes = parse_batch_sizes(batch_sizes)
    if not models and not torch_arch:
        raise ConfigError("nothing to benchmark: pass model files and/or --torch-arch")
    if torch_compile and not torch_arch:
        raise ConfigError("--torch-compile needs --torch-arch")
    check_outputs(models, json_out, BENCH_RESULTS, plot)
    devices = parse_devices(device, precision)
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


@command("eval")
@option(
    "--data",
    required=True,
    type=click.Path(),
    group="Data",
    help="Labelled images: a folder of class subfolders, a CSV/TSV of path,label, or a folder of images "
    "with --ground-truth. Classes are the model's labels, ImageNet WNIDs, or (CSV) indices.",
)
@option(
    "--ground-truth",
    type=click.Path(dir_okay=False),
    group="Data",
    help="For a folder of images: name,label rows (ImageNet: Caffe's val.txt or Kaggle's LOC_val_solution.csv).",
)
@option(
    "--class-map",
    type=click.Path(dir_okay=False),
    group="Data",
    help="Rows 'data set class,model class' for classes named otherwise than the model's labels.",
)
@option("--limit", type=click.IntRange(min=1), group="Data", help="At most this many images, spread over the set.")
@option("--arch", metavar="NAME", group="Models", help="Evaluate eager PyTorch too, as the reference.")
@option("--weights", metavar="FILE|pretrained", group="Models", help="With --arch: its checkpoint.")
@option(
    "--onnx", multiple=True, type=click.Path(dir_okay=False), group="Models", help="An .onnx to evaluate (repeatable)."
)
@option(
    "--engine",
    multiple=True,
    type=click.Path(dir_okay=False),
    group="Models",
    help="A TensorRT engine to evaluate (repeatable).",
)
@option("--device", type=click.Choice(DEVICES), default="auto", group="Backend", help="Where .onnx files run.")
@option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=8, group="Backend", help="Images per call.")
@option(
    "--workers",
    type=click.IntRange(1, 1024),
    group="Backend",
    help="Decoding threads; with --ray, actors.  [default: min(4, CPUs); ray: 2]",
)
@option("--json", "json_out", type=click.Path(dir_okay=False), group="Output", help="Write the report as JSON.")
@option(
    "--plot",
    type=click.Path(dir_okay=False),
    group="Output",
    help="Accuracy against throughput per model (PNG; needs the bench extra).",
)
@option("--no-progress", is_flag=True, group="Output", help="No progress bar on stderr.")
@ray_options("Decode and classify")
@one_line_errors
@opens_with("loading PyTorch and the models...", loading="torch")
def eval_command(
    data,
    ground_truth,
    class_map,
    limit,
    arch,
    weights,
    onnx,
    engine,
    device,
    batch_size,
    workers,
    json_out,
    plot,
    no_progress,
    use_ray,
    ray_address,
    cpus_per_worker,
):
    """Accuracy of eager PyTorch and each artifact on a labelled image set, on exactly the same images:
    top-1/top-5 with 95% intervals, the difference to the reference with McNemar's test, agreement,
    images/s and the classes that lose most. Exit 1 when an image could not be used (as inception-run), 3 when
    an engine cannot run here."""
    from ..evaluation import EVAL_REPORT, evaluate, plot_accuracy  # torch: only when the command runs

    if arch is None and not onnx and not engine:
        raise click.UsageError("give --arch (eager PyTorch) and/or --onnx / --engine artifacts to evaluate")
    if weights is not None and arch is None:
        raise click.UsageError("--weights needs --arch")
    check_ray_options(use_ray, ray_address=ray_address, cpus_per_worker=cpus_per_worker)
    check_outputs([data, ground_truth, class_map, weights, *onnx, *engine], json_out, EVAL_REPORT, plot)
    classify = None
    if use_ray:  # --workers: actors; each decodes and classifies its batches itself
        from ..serving.batch import RayOptions, on_ray

        classify = on_ray(RayOptions(ray_address, workers or 2, cpus_per_worker or 1.0))
    with images_bar(disable=no_progress) as progress:
        report = evaluate(
            data,
            artifacts=list(onnx) + list(engine),
            arch=arch,
            weights=weights,
            device=device,
            limit=limit,
            batch_size=batch_size,
            class_map=class_map,
            ground_truth=ground_truth,
            workers=workers,
            progress=progress,
            classify=classify,
        )
    print_evaluation(report)
    if json_out:
        write_json(json_out, report.to_dict(), EVAL_REPORT)
        announce(f"wrote {json_out}")
    if plot:
        plot_accuracy(report, plot)
        announce(f"wrote {plot}")
    if report.skipped:
        sys.exit(EXIT_PARTLY_FAILED)
    if report.not_run:
        sys.exit(EXIT_NO_ENGINE)
