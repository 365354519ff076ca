"""Command line: a thin layer over the Python API.

Exit codes: 0 success; 1 partly failed: an exported artifact failed its parity check (it is
kept for inspection) or some images could not be classified (each reported); 2 bad input
(unknown arch, unreadable weights or model, bad option values, unwritable output), reported on
one line; 3 a TensorRT engine was asked for (--engine yes, inception-build) but this machine has
no TensorRT or no GPU: everything else was written.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sys
from dataclasses import replace

import click

from .errors import ConfigError, InceptionDeployError

EXIT_PARTLY_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NO_ENGINE = 3


class _Option(click.Option):
    """An option that knows which help section it belongs to."""

    def __init__(self, *args, group: str = "Options", **kwargs):
        super().__init__(*args, **kwargs)
        self.group = group


class _GroupedCommand(click.Command):
    """Help grouped into sections, like trtexec's and polygraphy's."""

    def format_options(self, ctx, formatter):
        sections: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record:
                sections.setdefault(getattr(param, "group", "Options"), []).append(record)
        for name, rows in sections.items():
            with formatter.section(name):
                formatter.write_dl(rows)


def option(*decls, group: str, **kwargs):
    return click.option(*decls, cls=_Option, group=group, show_default=True, **kwargs)


def _calibration_options(group: str):
    """--calib-images, --calib-batch, --calib-method, --percentile: shared by export and calibrate."""
    options = [
        option("--calib-images", type=click.IntRange(min=1), default=512, group=group,
               help="Calibration images to use (spread evenly over the folder)."),
        option("--calib-batch", type=click.IntRange(min=1), default=8, group=group, help="Calibration batch size."),
        option("--calib-method", type=click.Choice(["entropy", "minmax", "percentile"]), default="entropy",
               group=group, help="How activation ranges are clipped."),
        option("--percentile", type=click.FloatRange(50, 100, min_open=True), default=99.99, group=group,
               help="With --calib-method percentile."),
    ]

    def apply(fn):
        for decorate in reversed(options):
            fn = decorate(fn)
        return fn

    return apply


def _one_line_errors(fn):
    """Our errors become one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InceptionDeployError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return wrapper


def _floats3(ctx, param, value):
    if value is None:
        return None
    try:
        parts = tuple(float(v) for v in value.replace(" ", "").split(","))
    except ValueError:
        parts = ()
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise click.BadParameter(f"expected one or three comma-separated numbers, got {value!r}")
    return parts


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """inception-deploy: export, verify and run Inception classifiers."""


@click.command("export", cls=_GroupedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@option("--arch", required=True, metavar="NAME", group="Model",
        help="Architecture: v1 (googlenet), v2 (bn-inception), v3, v4, resnet-v1, resnet-v2, xception.")
@option("--weights", metavar="FILE|pretrained", group="Model",
        help="Checkpoint (.pth/.pt/.bin/.safetensors) or 'pretrained' to download the reference's. "
             "Default: random init with data-driven batch-norm statistics.")
@option("--num-classes", type=click.IntRange(min=1), default=1000, group="Model", help="Classifier outputs.")
@option("--labels", type=click.Path(dir_okay=False), group="Model",
        help="Class names, one per line. Default: ImageNet-1k names for 1000 classes.")
@option("-o", "--output", type=click.Path(dir_okay=False), group="Output",
        help="ONNX file to write.  [default: <arch name>.onnx, e.g. inception_v3.onnx]")
@option("--opset", type=int, group="Output",
        help="ONNX opset. Default: the dynamo exporter's own (18+); below 18 uses the TorchScript exporter.")
@option("--batch", type=click.IntRange(min=1), group="Output", help="Static batch size. Default: dynamic batch.")
@option("--max-batch", type=click.IntRange(min=1), default=64, group="Output",
        help="Largest batch of the dynamic batch dimension.")
@option("--input-size", type=click.IntRange(min=1), group="Output",
        help="Square input size. Default: the architecture's (224 or 299).")
@option("--no-simplify", is_flag=True, group="Output", help="Skip graph optimization (constant folding).")
@option("--mean", callback=_floats3, metavar="R,G,B", group="Preprocessing overrides",
        help="Per-channel mean, in the network's channel order and pixel scale.")
@option("--std", callback=_floats3, metavar="R,G,B", group="Preprocessing overrides", help="Per-channel std.")
@option("--resize", type=click.IntRange(min=1), group="Preprocessing overrides",
        help="Resize the shorter side to this before the center crop.")
@option("--crop-pct", type=click.FloatRange(0, 1, min_open=True), group="Preprocessing overrides",
        help="Crop fraction: resize = floor(input size / crop pct) (timm's rule).")
@option("--interpolation", type=click.Choice(["nearest", "bilinear", "bicubic", "lanczos"]),
        group="Preprocessing overrides", help="Resize filter.")
@option("--fp16", is_flag=True, group="Precision",
        help="Also write <output>_fp16.onnx (float32 input/output) and check its parity.")
@option("--fp16-io", is_flag=True, group="Precision", help="With --fp16: half-precision input and output too.")
@option("--int8", is_flag=True, group="Precision",
        help="Also write <output>_int8_<target>.onnx with Q/DQ nodes calibrated on --calib-dir.")
@option("--int8-target", type=click.Choice(["tensorrt", "cpu"]), group="Precision",
        help="tensorrt: symmetric int8 for TensorRT; cpu: u8/s8 for ONNX Runtime.  "
             "[default: tensorrt where TensorRT is installed, else cpu]")
@option("--calib-dir", type=click.Path(), group="Precision", help="Calibration images (searched recursively).")
@_calibration_options("Precision")
@option("--calib-cache", type=click.Path(dir_okay=False), group="Precision",
        help="Calibration cache: reused when it matches the model, written otherwise.  "
             "[default: <output>.calib.json]")
@option("--engine", type=click.Choice(["auto", "yes", "no"]), default="auto", group="TensorRT engine",
        help="Build a TensorRT engine (.plan + .plan.json) of the most reduced precision written. auto: where "
             "TensorRT and a GPU are present (else one line says why not); yes: exit 3 when impossible.")
@option("--max-engine-batch", type=click.IntRange(min=1), default=32, group="TensorRT engine",
        help="Largest batch of the engine's profile (opt: 8 or less).")
@option("--timing-cache", type=click.Path(dir_okay=False), group="TensorRT engine",
        help="TensorRT timing cache, loaded and saved back (faster rebuilds).")
@option("--no-parity", is_flag=True, group="Verification",
        help="Skip the ONNX Runtime vs eager PyTorch parity checks.")
@_one_line_errors
def export_command(arch, weights, num_classes, labels, output, opset, batch, max_batch, input_size,
                   no_simplify, mean, std, resize, crop_pct, interpolation, fp16, fp16_io, int8, int8_target,
                   calib_dir, calib_images, calib_batch, calib_method, percentile, calib_cache, engine,
                   max_engine_batch, timing_cache, no_parity):
    """Export an Inception model to ONNX (aux heads stripped), check it and verify parity;
    optionally FP16 and INT8 models beside it."""
    from pathlib import Path

    from .export import export_onnx
    from .models.registry import get_arch

    spec = get_arch(arch)
    if fp16_io and not fp16:
        raise ConfigError("--fp16-io needs --fp16")
    output = Path(output or f"{spec.file_stem}.onnx")
    own_cache = calib_cache is None  # the default cache beside the output is ours to replace when stale
    calib_cache = Path(calib_cache) if calib_cache else output.with_suffix(".calib.json")
    if int8:
        _check_calibration_source(calib_dir, calib_cache)
        int8_target = int8_target or _default_int8_target()
    config = _preprocess_config(spec.preprocess, input_size, mean, std, resize, crop_pct, interpolation)
    result = export_onnx(spec.name, output, weights=weights, num_classes=num_classes, opset=opset, batch=batch,
                         max_batch=max_batch, simplify=not no_simplify, check_parity=not no_parity,
                         labels=labels, preprocess=config)
    results = [result]
    _report(result)
    reference = None if no_parity else result.model
    if fp16:
        from .export.precision import convert_fp16

        results.append(convert_fp16(output, _beside(output, "_fp16"), fp16_io=fp16_io, reference_model=reference))
        _report(results[-1])
    if int8:
        from .export.precision import quantize_int8

        if own_cache and calib_dir is not None:
            _drop_stale_cache(calib_cache, output)
        results.append(quantize_int8(output, _beside(output, f"_int8_{int8_target}"), target=int8_target,
                                     calib_dir=calib_dir, cache=calib_cache, method=calib_method,
                                     images=calib_images, batch=calib_batch, percentile=percentile,
                                     reference_model=reference))
        _report(results[-1])
    engine_missing, engine_report = False, None
    if engine != "no":  # from the most reduced precision TensorRT can take (not the cpu INT8 target)
        source = next(r for r in reversed(results) if r.metadata.get("int8_target", "tensorrt") == "tensorrt")
        engine_missing, engine_report = _build_engine_for(source, reference, engine == "yes", max_engine_batch,
                                                          timing_cache)
    failed = [r.path for r in results if r.parity is not None and not r.parity.passed]
    if engine_report is not None and not engine_report.passed:
        failed.append(source.path.with_suffix(".plan"))
    if failed:
        click.echo(f"warning: parity FAILED against eager PyTorch for {', '.join(map(str, failed))}; "
                   f"kept for inspection", err=True)
        if result.metadata["weights"]["file"] is None:
            click.echo("note: randomly initialised weights have no decision margins, so reduced precision "
                       "flips near-ties; judge FP16/INT8 with real weights", err=True)
        sys.exit(EXIT_PARTLY_FAILED)
    if engine_missing:
        sys.exit(EXIT_NO_ENGINE)


def _build_engine_for(result, reference, required: bool, max_batch: int, timing_cache):
    """Engine beside ``result``'s ONNX -> (missing and required?, engine parity report or None)."""
    from .export.engine import EngineNotBuilt, build_engine, engine_unavailable_reason

    reason = engine_unavailable_reason()
    if reason:
        click.echo(f"note: {result.path.with_suffix('.plan')} not built: {reason}", err=True)
        return required, None
    batch = result.metadata.get("batch")
    try:
        built = build_engine(result.path, min_batch=batch or 1, opt_batch=batch or min(8, max_batch),
                             max_batch=batch or max_batch, timing_cache=timing_cache)
    except EngineNotBuilt as e:
        click.echo(f"note: {e}", err=True)
        return required, None
    click.echo(f"wrote {built.path} (+ {built.sidecar.name}, TensorRT {built.metadata['tensorrt']['version']}, "
               f"{built.metadata['precision']}) in {built.seconds:.1f} s")
    if reference is None:
        return False, None
    from .metadata import preprocess_of
    from .parity import check_backend
    from .runtime.tensorrt_backend import TensorRTBackend

    backend = TensorRTBackend(built.path)
    sizes = (batch,) if batch else (1, min(8, max_batch))
    report = check_backend(reference, backend, preprocess_of(result.metadata), sizes,
                           built.metadata["precision"], "tensorrt")
    click.echo(report.table())
    return False, report


def _report(result):
    shape = lambda dims: "x".join(str(d) for d in dims)  # noqa: E731
    click.echo(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, {result.metadata['precision']}, "
               f"opset {result.opset}, {result.exporter} exporter, {result.input_name}[{shape(result.input_shape)}] "
               f"-> {result.output_name}[{shape(result.output_shape)}]) in {result.seconds:.1f} s")
    if result.parity is not None:
        click.echo(result.parity.table())


def _beside(output, suffix: str):
    return output.with_name(f"{output.stem}{suffix}{output.suffix}")


def _check_calibration_source(calib_dir, calib_cache):
    """Fail before the (slow) export when INT8 could not be calibrated anyway."""
    from .calibration import find_images

    if calib_dir is None and not calib_cache.exists():
        raise ConfigError("--int8 needs calibration images: pass --calib-dir DIR (or an existing --calib-cache)")
    if calib_dir is not None:
        find_images(calib_dir)


def _drop_stale_cache(cache, model) -> None:
    """Delete the default cache when it was made for another model or preprocessing (an explicit
    --calib-cache is never replaced: it is refused with a message instead)."""
    from .calibration import CalibrationCache
    from .calibration.cache import preprocess_digest
    from .fileio import sha256_file
    from .metadata import preprocess_of

    if not cache.exists():
        return
    try:
        import onnx

        from .export.precision import fp32_metadata

        config = preprocess_of(fp32_metadata(onnx.load(str(model), load_external_data=False), model))
        CalibrationCache.load(cache).check(cache, sha256_file(model), preprocess_digest(config))
    except InceptionDeployError as e:
        click.echo(f"note: recalibrating: {e}", err=True)
        cache.unlink()


def _default_int8_target() -> str:
    import importlib.util

    return "tensorrt" if importlib.util.find_spec("tensorrt") else "cpu"


def _preprocess_config(base, input_size, mean, std, resize, crop_pct, interpolation):
    if resize is not None and crop_pct is not None:
        raise ConfigError("--resize and --crop-pct both set the resize size: give one")
    config = base.with_input_size(input_size) if input_size else base
    changes = {k: v for k, v in {"mean": mean, "std": std, "interpolation": interpolation}.items() if v is not None}
    if resize is not None:
        changes["resize_size"] = resize
    if crop_pct is not None:
        changes["resize_size"] = math.floor(config.input_size / crop_pct)
    return replace(config, **changes) if changes else config


@click.command("run", cls=_GroupedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, required=True)
@option("--topk", type=click.IntRange(min=1), default=5, group="Output", help="Classes to show per image.")
@option("--json", "as_json", is_flag=True, group="Output",
        help="One JSON object per image and line: file, labels, indices, probabilities (or error).")
@option("--no-progress", is_flag=True, group="Output", help="No progress bar on stderr.")
@option("--labels", type=click.Path(dir_okay=False), group="Model", help="Class names, one per line, "
        "instead of those stored in the model.")
@option("--arch", metavar="NAME", group="Model",
        help="Preprocessing and labels for a model exported without inception-deploy metadata.")
@option("--device", type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]), default="auto", group="Backend",
        help="ONNX Runtime provider (auto: TensorRT, CUDA, CPU, whichever is available). Engines run on TensorRT.")
@option("--batch-size", type=click.IntRange(min=1), group="Backend",
        help="Images per inference call.  [default: 8, or the model's limit]")
@option("--workers", type=click.IntRange(min=1), group="Backend",
        help="Decoding threads.  [default: min(4, CPU count)]")
@_one_line_errors
def run_command(model, inputs, topk, as_json, no_progress, labels, arch, device, batch_size, workers):
    """Classify images (files, folders, globs) with an ONNX model or TensorRT engine.

    Preprocessing and labels are read from the model. Exit code 1 when any image could not be
    used (each is reported on stderr), 2 when the model cannot be used.
    """
    import warnings

    from PIL import Image
    from tqdm import tqdm

    from .runtime.predictor import Predictor, expand_inputs

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # such images are refused, one line each
    files = expand_inputs(inputs)
    if not files:
        raise InceptionDeployError(f"no images found in {' '.join(inputs)}")
    predictor = Predictor(model, device=device, arch=arch, labels=labels, batch_size=batch_size, workers=workers)
    click.echo(f"{model}: {predictor.backend.describe()}", err=True)
    failed, rows = 0, []
    show_bar = not no_progress and len(files) > predictor.batch_size
    with tqdm(total=len(files), unit="img", file=sys.stderr, disable=not show_bar, leave=False) as bar:
        for p in predictor.iter_predict(files, topk=topk):
            bar.update(1)
            if p.error is not None:
                failed += 1
                bar.write(f"error: {p.file}: {p.error}", file=sys.stderr)
            if as_json:
                click.echo(json.dumps(p.to_dict()))
            elif p.error is None:
                rows += [(p.file if rank == 0 else "", rank + 1, label, f"{prob:.2%}", index)
                         for rank, (label, prob, index) in enumerate(zip(p.labels, p.probabilities, p.indices))]
    if rows:
        from tabulate import tabulate

        click.echo(tabulate(rows, headers=("file", "#", "label", "probability", "index"), disable_numparse=True))
    if failed:
        click.echo(f"{failed} of {len(files)} images failed", err=True)
        sys.exit(EXIT_PARTLY_FAILED)


@click.command("calibrate", cls=_GroupedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(dir_okay=False))
@option("--calib-dir", type=click.Path(), required=True, group="Calibration",
        help="Calibration images (searched recursively).")
@option("-o", "--output", type=click.Path(dir_okay=False), group="Calibration",
        help="Cache file to write.  [default: <model>.calib.json]")
@_calibration_options("Calibration")
@_one_line_errors
def calibrate_command(model, calib_dir, output, calib_images, calib_batch, calib_method, percentile):
    """Calibrate an FP32 ONNX export on a folder of images into a reusable cache (per-tensor
    ranges, method, and digests of the model and its preprocessing)."""
    import tempfile
    import time
    from pathlib import Path

    import onnx

    from .calibration.cache import preprocess_digest
    from .calibration.qdq import prepare
    from .export.precision import fp32_metadata, run_calibration
    from .fileio import sha256_file
    from .metadata import preprocess_of

    model = Path(model)
    if not model.is_file():
        raise InceptionDeployError(f"{model}: no such model file")
    start = time.perf_counter()
    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception as e:
        raise InceptionDeployError(f"{model}: not a readable ONNX file ({str(e).splitlines()[0]})") from None
    config = preprocess_of(fp32_metadata(proto, model))
    output = Path(output) if output else model.with_suffix(".calib.json")
    with tempfile.TemporaryDirectory(prefix="inception-calib-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        prepare(model, prepared)
        cache = run_calibration(prepared, calib_dir, config, sha256_file(model), preprocess_digest(config),
                                method=calib_method, images=calib_images, batch=calib_batch, percentile=percentile,
                                progress=True)
    cache.save(output)
    click.echo(f"wrote {output}: {len(cache.tensors)} tensor ranges ({calib_method}) from {cache.images} images "
               f"in {time.perf_counter() - start:.1f} s")


@click.command("parity", cls=_GroupedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@option("--arch", required=True, metavar="NAME", group="Reference", help="Architecture of the eager reference.")
@option("--weights", metavar="FILE|pretrained", group="Reference",
        help="Checkpoint of the reference; must be the one the artifacts were exported from.")
@option("--onnx", "onnx_files", multiple=True, type=click.Path(dir_okay=False), group="Artifacts",
        help="ONNX file to check (repeatable).")
@option("--engine", "engines", multiple=True, type=click.Path(dir_okay=False), group="Artifacts",
        help="TensorRT engine to check (repeatable).")
@option("--device", type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]), default="cpu", group="Artifacts",
        help="ONNX Runtime provider for the ONNX files.")
@option("--images", type=click.Path(), group="Inputs",
        help="Folder of real photos.  [default: the photos shipped with the package]")
@option("--samples", type=click.IntRange(min=1), default=32, group="Inputs",
        help="Photos taken from --images (spread evenly over the folder).")
@option("--synthetic", type=click.IntRange(min=0), default=8, group="Inputs", help="Synthetic images added.")
@option("--batch-size", type=click.IntRange(min=1), default=8, group="Inputs", help="Artifact batch size.")
@option("--json", "json_out", type=click.Path(dir_okay=False), group="Output", help="Write the report as JSON.")
@_one_line_errors
def parity_command(arch, weights, onnx_files, engines, device, images, samples, synthetic, batch_size, json_out):
    """Compare exported artifacts with eager PyTorch on the same images, one row per artifact,
    PASS/FAIL against the thresholds of each artifact's precision. Exit 1 if any fails."""
    from .parity import check_artifacts

    artifacts = list(onnx_files) + list(engines)
    if not artifacts:
        raise ConfigError("nothing to check: pass --onnx FILE and/or --engine FILE")
    report = check_artifacts(arch, artifacts, weights=weights, device=device, images=images, samples=samples,
                             synthetic=synthetic, batch_size=batch_size)
    click.echo(report.table(first_column="artifact"))
    if json_out:
        from .fileio import atomic_path

        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=1))
    if not report.passed:
        sys.exit(EXIT_PARTLY_FAILED)


@click.command("bench", cls=_GroupedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("models", nargs=-1)
@option("--batch-sizes", default="1,8,32", group="Benchmark", help="Comma-separated batch sizes.")
@option("--iterations", type=click.IntRange(min=1), default=20, group="Benchmark", help="Timed runs per point.")
@option("--warmup", type=click.IntRange(min=0), default=3, group="Benchmark", help="Untimed runs first.")
@option("--torch-arch", metavar="NAME", group="Benchmark",
        help="Also time eager torch: CPU fp32 and bf16 autocast + channels_last; GPU fp16 channels_last.")
@option("--device", type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]), default="auto", group="Benchmark",
        help="ONNX Runtime provider for ONNX models.")
@option("--json", "json_out", type=click.Path(dir_okay=False), group="Output", help="Write results as JSON.")
@option("--plot", type=click.Path(dir_okay=False), group="Output", help="Latency vs batch size per model (PNG).")
@_one_line_errors
def bench_command(models, batch_sizes, iterations, warmup, torch_arch, device, json_out, plot):
    """Latency (p50/p90/p99) and throughput per model and batch size, each point in its own process,
    with eager torch baselines in the same run so every figure is also a ratio."""
    from .bench import run_benchmarks, table

    try:
        sizes = sorted({int(b) for b in batch_sizes.split(",") if b.strip()})
    except ValueError:
        raise ConfigError(f"--batch-sizes must be comma-separated integers, not {batch_sizes!r}") from None
    if not sizes or min(sizes) < 1:
        raise ConfigError("--batch-sizes needs at least one size >= 1")
    if not models and not torch_arch:
        raise ConfigError("nothing to benchmark: pass model files and/or --torch-arch")
    for model in models:
        if not os.path.isfile(model):
            raise InceptionDeployError(f"{model}: no such model file")
    results = run_benchmarks(models, sizes, iterations, warmup, torch_arch, device,
                             progress=lambda line: click.echo(line, err=True))
    click.echo(table(results))
    if json_out:
        from .fileio import atomic_path

        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps([r.to_dict() for r in results], indent=1))
    if plot:
        from .bench import plot_latency

        plot_latency(results, plot)


@click.command("build", cls=_GroupedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(dir_okay=False))
@option("-o", "--output", type=click.Path(dir_okay=False), group="Engine",
        help="Engine file.  [default: MODEL with .plan]")
@option("--min-batch", type=click.IntRange(min=1), default=1, group="Profile", help="Smallest batch.")
@option("--opt-batch", type=click.IntRange(min=1), default=8, group="Profile", help="Batch tuned for.")
@option("--max-batch", type=click.IntRange(min=1), default=32, group="Profile", help="Largest batch.")
@option("--workspace-gib", type=click.FloatRange(min=0, min_open=True), default=4.0, group="Builder",
        help="Workspace memory limit.")
@option("--timing-cache", type=click.Path(dir_okay=False), group="Builder",
        help="Timing cache file, loaded when present and saved back.")
@option("--opt-level", type=click.IntRange(0, 5), default=3, group="Builder", help="Builder optimization level.")
@option("--version-compatible", is_flag=True, group="Portability",
        help="Engine loadable by later TensorRT versions (lean runtime).")
@option("--hardware-compatibility", metavar="LEVEL", group="Portability",
        help="e.g. ampere_plus: engine runs on other GPUs of that level and newer.")
@_one_line_errors
def build_command(model, output, min_batch, opt_batch, max_batch, workspace_gib, timing_cache, opt_level,
                  version_compatible, hardware_compatibility):
    """Build a TensorRT engine from an exported ONNX (FP32, FP16 or INT8 Q/DQ); precision comes
    from the ONNX. Writes ENGINE and ENGINE.json (metadata, TensorRT version, GPU, profile)."""
    from .export.engine import EngineNotBuilt, build_engine

    try:
        built = build_engine(model, output, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                             workspace_gib=workspace_gib, timing_cache=timing_cache, opt_level=opt_level,
                             version_compatible=version_compatible, hardware_compatibility=hardware_compatibility)
    except EngineNotBuilt as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_NO_ENGINE)
    click.echo(f"wrote {built.path} (+ {built.sidecar.name}, TensorRT {built.metadata['tensorrt']['version']}, "
               f"{built.metadata['precision']}, GPU {built.metadata['gpu']['name']}) in {built.seconds:.1f} s")


main.add_command(export_command)
main.add_command(build_command)
main.add_command(run_command)
main.add_command(calibrate_command)
main.add_command(parity_command)
main.add_command(bench_command)


def _console_script(command):
    """The entry point of console script ``inception-<command>`` (same command as ``inception <command>``)."""
    return lambda: command(prog_name=f"inception-{command.name}")


export_main = _console_script(export_command)
build_main = _console_script(build_command)
run_main = _console_script(run_command)
calibrate_main = _console_script(calibrate_command)
parity_main = _console_script(parity_command)
bench_main = _console_script(bench_command)
