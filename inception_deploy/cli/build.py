"""inception-calibrate and inception-build: a reusable calibration cache, and a TensorRT engine
from any exported ONNX file."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ..calibration.images import calibration_folder
from ..calibration.policy import CalibrationRequest, calibrate_onnx
from ..errors import printable
from ..metadata import MAX_BATCH
from .guard import EXIT_NO_ENGINE, one_line_errors
from .options import FiniteRange, calibration_options, command, option
from .output import announce, opens_with


@command("calibrate")
@click.argument("model", type=click.Path(dir_okay=False), help="The FP32 .onnx file written by inception-export.")
@option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    group="Calibration",
    help="Cache file to write.  [default: <model>.calib.json]",
)
@calibration_options("Calibration")
@one_line_errors
@opens_with("loading the model and ONNX Runtime...")
def calibrate_command(model, output, calib_dir, calib_samples, calib_images, calib_batch, calib_method, percentile):
    """Calibrate an FP32 ONNX export on a folder of images into a reusable cache (per-tensor
    ranges, method, and digests of the model and its preprocessing)."""
    calib_dir = calibration_folder(calib_dir, calib_samples)
    if calib_dir is None:
        raise click.UsageError("give calibration images with --calib-dir DIR (or --calib-samples for a demonstration)")
    start = time.perf_counter()
    output = Path(output) if output else Path(model).with_suffix(".calib.json")
    request = CalibrationRequest(calib_dir, calib_images, calib_batch, calib_method, percentile, output)
    cache = calibrate_onnx(model, request, progress=announce)
    click.echo(
        f"wrote {printable(output)}: {len(cache.tensors)} tensor ranges ({calib_method}) from {cache.images} "
        f"images in {time.perf_counter() - start:.1f} s"
    )


@command("build")
@click.argument(
    "model",
    type=click.Path(dir_okay=False),
    help="An exported .onnx file (FP32, FP16 or INT8 Q/DQ) with inception-deploy metadata.",
)
@option(
    "-o", "--output", type=click.Path(dir_okay=False), group="Engine", help="Engine file.  [default: MODEL with .plan]"
)
@option("--min-batch", type=click.IntRange(1, MAX_BATCH), default=1, group="Profile", help="Smallest batch.")
@option(
    "--opt-batch",
    type=click.IntRange(1, MAX_BATCH),
    group="Profile",
    help="Batch tuned for.  [default: 8, within min..max]",
)
@option("--max-batch", type=click.IntRange(1, MAX_BATCH), default=32, group="Profile", help="Largest batch.")
@option(
    "--workspace-gib",
    type=FiniteRange(min=0, min_open=True),
    default=4.0,
    group="Builder",
    help="Workspace memory limit.",
)
@option(
    "--timing-cache",
    type=click.Path(dir_okay=False),
    group="Builder",
    help="Timing cache file, loaded when present and saved back.",
)
@option("--opt-level", type=click.IntRange(0, 5), default=3, group="Builder", help="Builder optimization level.")
@option(
    "--version-compatible",
    is_flag=True,
    group="Portability",
    help="Engine loadable by later TensorRT versions (lean runtime).",
)
@option(
    "--hardware-compatibility",
    metavar="LEVEL",
    group="Portability",
    help="e.g. ampere_plus: engine runs on other GPUs of that level and newer.",
)
@one_line_errors
@opens_with("loading the model and TensorRT...")
def build_command(
    model,
    output,
    min_batch,
    opt_batch,
    max_batch,
    workspace_gib,
    timing_cache,
    opt_level,
    version_compatible,
    hardware_compatibility,
):
    """Build a TensorRT engine from an exported ONNX (FP32, FP16 or INT8 Q/DQ); precision comes
    from the ONNX. Writes ENGINE and ENGINE.json (metadata, TensorRT version, GPU, profile)."""
    from ..export.engine import EngineNotBuilt, build_engine, describe_layers  # tensorrt where present

    try:
        built = build_engine(
            model,
            output,
            min_batch=min_batch,
            opt_batch=opt_batch,
            max_batch=max_batch,
            workspace_gib=workspace_gib,
            timing_cache=timing_cache,
            opt_level=opt_level,
            version_compatible=version_compatible,
            hardware_compatibility=hardware_compatibility,
            progress=announce,
        )
    except EngineNotBuilt as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_NO_ENGINE)
    click.echo(
        f"wrote {built.path} (+ {built.sidecar.name}, TensorRT {built.metadata.tensorrt['version']}, "
        f"{built.metadata.precision}, GPU {built.metadata.gpu['name']}) in {built.seconds:.1f} s"
    )
    click.echo(f"engine precision: {describe_layers(built.metadata.layers)}")
