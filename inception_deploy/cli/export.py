"""inception-export, inception-calibrate and inception-build: parse, call the API, print."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from ..calibration.images import calibration_folder
from ..calibration.policy import CalibrationRequest, calibrate_onnx
from ..errors import ConfigError, printable
from ..metadata import INT8_REMAINDERS, INT8_TARGETS, MAX_BATCH, MAX_CLASSES, MAX_INPUT_SIZE, MAX_RESIZE_SIZE
from ..models.registry import get_arch, list_archs
from ..pipeline import ENGINE_CHOICES
from ..preprocess import INTERPOLATIONS
from ..progress import counted
from .guard import EXIT_NO_ENGINE, EXIT_PARTLY_FAILED, one_line_errors
from .options import FiniteRange, calibration_options, command, floats3, list_archs_table, option
from .output import announce, opens_with, print_evaluation, report_artifact, safe_lines


@command("export")
@option(
    "--arch",
    required=True,
    metavar="NAME",
    group="Model",
    help=f"Architecture: {', '.join(list_archs())} (--list-archs: aliases, layouts, inputs).",
)
@option(
    "--list-archs",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=list_archs_table,
    group="Model",
    help="Print every architecture with its aliases, checkpoint layout, input and published weights, and exit.",
)
@option(
    "--weights",
    metavar="FILE|pretrained",
    group="Model",
    help="Checkpoint (.pth/.pt/.bin/.safetensors; a Keras .keras/.h5/.weights.h5 for v3, inception-resnet-v2 "
    "and xception) or 'pretrained' to download the reference's. "
    "Default: random init with data-driven batch-norm statistics.",
)
@option("--num-classes", type=click.IntRange(1, MAX_CLASSES), default=1000, group="Model", help="Classifier outputs.")
@option(
    "--labels",
    type=click.Path(dir_okay=False),
    group="Model",
    help="Class names, one per line. Default: ImageNet-1k names for 1000 classes.",
)
@option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    group="Output",
    help="ONNX file to write.  [default: the reference model's name: googlenet.onnx for v1, inception_v3.onnx "
    "for v3 (--list-archs: the layout each follows)]",
)
@option(
    "--opset",
    type=int,
    group="Output",
    help="ONNX opset. Default: the dynamo exporter's own (18+); below 18 uses the TorchScript exporter.",
)
@option("--batch", type=click.IntRange(1, MAX_BATCH), group="Output", help="Static batch size. Default: dynamic batch.")
@option(
    "--max-batch",
    type=click.IntRange(1, MAX_BATCH),
    default=64,
    group="Output",
    help="Largest batch of the dynamic batch dimension.",
)
@option(
    "--input-size",
    type=click.IntRange(1, MAX_INPUT_SIZE),
    group="Output",
    help="Square input size. Default: the architecture's (224 or 299).",
)
@option("--no-simplify", is_flag=True, group="Output", help="Skip graph optimization (constant folding).")
@option(
    "--mean",
    callback=floats3,
    metavar="R,G,B",
    group="Preprocessing overrides",
    help="Per-channel mean, in the network's channel order and pixel scale.",
)
@option("--std", callback=floats3, metavar="R,G,B", group="Preprocessing overrides", help="Per-channel std.")
@option(
    "--resize",
    type=click.IntRange(1, MAX_RESIZE_SIZE),
    group="Preprocessing overrides",
    help="Resize the shorter side to this before the center crop.",
)
@option(
    "--crop-pct",
    type=FiniteRange(0, 1, min_open=True),
    group="Preprocessing overrides",
    help="Crop fraction: resize = floor(input size / crop pct) (timm's rule).",
)
@option("--interpolation", type=click.Choice(INTERPOLATIONS), group="Preprocessing overrides", help="Resize filter.")
@option(
    "--keep-aspect/--stretch",
    default=None,
    group="Preprocessing overrides",
    help="Resize the shorter side (keep the aspect ratio), or both sides to the resize size (Keras's "
    "load_img).  [default: the weights' own: --stretch for Keras checkpoints]",
)
@option(
    "--fp16",
    is_flag=True,
    group="Precision",
    help="Also write <output>_fp16.onnx (float32 input/output) and check its parity.",
)
@option("--fp16-io", is_flag=True, group="Precision", help="With --fp16: half-precision input and output too.")
@option(
    "--int8",
    is_flag=True,
    group="Precision",
    help="Also write <output>_int8_<target>.onnx with Q/DQ nodes calibrated on --calib-dir.",
)
@option(
    "--int8-target",
    type=click.Choice(INT8_TARGETS),
    group="Precision",
    help="tensorrt: symmetric int8 for TensorRT; cpu: u8/s8 for ONNX Runtime.  "
    "[default: tensorrt where TensorRT is installed, else cpu]",
)
@option(
    "--int8-remainder",
    type=click.Choice(INT8_REMAINDERS),
    default="fp32",
    group="Precision",
    help="Precision of the ops INT8 leaves unquantized (head, residual sums). fp16: "
    "TensorRT runs them in FP16 (tensorrt target, opset 19+); writes <output>_int8_tensorrt_fp16.onnx.",
)
@option(
    "--int8-keep-float",
    multiple=True,
    metavar="PATTERN|FILE",
    group="Precision",
    help="Leave these Conv layers unquantized: a glob over PyTorch module paths (e.g. 'Mixed_7*', "
    "'Mixed_6b.branch7x7dbl_2.conv') or the <stem>.precision.json of an earlier INT8 export (repeatable).",
)
@option(
    "--int8-max-drop",
    type=FiniteRange(),  # its bounds: Budget.check, for Python callers too
    metavar="POINTS",
    group="Precision",
    help="Keep Conv layers float, most sensitive first, until top-1 agreement with FP32 on held-out images "
    "drops at most POINTS percentage points (with --eval-data: top-1 accuracy against its labels). "
    "Writes the placement to <INT8 file stem>.precision.json; exit 1 when even all-float misses it.",
)
@option(
    "--int8-holdout",
    type=FiniteRange(),
    default=0.2,
    metavar="SHARE",
    group="Precision",
    help="With --int8-max-drop: the share of --calib-dir held out of calibration to judge on (at least 20 images).",
)
@option(
    "--int8-weight-bits",
    type=click.Choice(["7", "8"]),
    group="Precision",
    help="cpu target: 7-bit weights run correctly on every x86 CPU; 8 is more exact on CPUs with VNNI or "
    "AMX (AVX2 without VNNI can saturate).  [default: 7; the tensorrt target is always 8]",
)
@calibration_options("Precision")
@option(
    "--calib-cache",
    type=click.Path(dir_okay=False),
    group="Precision",
    help="Calibration cache: reused when it matches the model, written otherwise.  [default: <output>.calib.json]",
)
@option(
    "--engine",
    type=click.Choice(ENGINE_CHOICES),
    default="auto",
    group="TensorRT engine",
    help="Build a TensorRT engine (.plan + .plan.json) of the most reduced precision written. auto: where "
    "TensorRT and a GPU are present (else one line says why not); yes: exit 3 when impossible.",
)
@option(
    "--max-engine-batch",
    type=click.IntRange(1, MAX_BATCH),
    default=32,
    group="TensorRT engine",
    help="Largest batch of the engine's profile (opt: 8 or less).",
)
@option(
    "--timing-cache",
    type=click.Path(dir_okay=False),
    group="TensorRT engine",
    help="TensorRT timing cache, loaded and saved back (faster rebuilds).",
)
@option("--no-parity", is_flag=True, group="Verification", help="Skip the ONNX Runtime vs eager PyTorch parity checks.")
@option(
    "--recheck-parity",
    is_flag=True,
    group="Verification",
    help="Measure the parity of a reused FP32 export again (by default the parity recorded when it was written "
    "stands: the same arch, weights and options made the same file).",
)
@option(
    "--eval-data",
    type=click.Path(),
    group="Verification",
    help="Also evaluate eager and every artifact written on this labelled set (as inception-eval --data).",
)
@option(
    "--eval-limit",
    type=click.IntRange(min=1),
    group="Verification",
    help="With --eval-data: at most this many images, spread over the set.",
)
@option(
    "--triton-repo",
    type=click.Path(file_okay=False),
    group="Serving",
    help="Also write a Triton model repository (new or empty folder) serving everything written: "
    "inception-triton's defaults; serve it with inception-serve.",
)
@option("-q", "--quiet", is_flag=True, group="Output", help="No stage announcements or progress bars on stderr.")
@one_line_errors
@opens_with("loading PyTorch...", loading="torch")
def export_command(
    arch,
    weights,
    num_classes,
    labels,
    output,
    opset,
    batch,
    max_batch,
    input_size,
    no_simplify,
    mean,
    std,
    resize,
    crop_pct,
    interpolation,
    keep_aspect,
    fp16,
    fp16_io,
    int8,
    int8_target,
    int8_remainder,
    int8_keep_float,
    int8_max_drop,
    int8_holdout,
    int8_weight_bits,
    calib_dir,
    calib_samples,
    calib_images,
    calib_batch,
    calib_method,
    percentile,
    calib_cache,
    engine,
    max_engine_batch,
    timing_cache,
    no_parity,
    recheck_parity,
    eval_data,
    eval_limit,
    triton_repo,
    quiet,
):
    """Export a classifier to ONNX (aux heads stripped), check it and verify parity;
    optionally FP16 and INT8 models and a TensorRT engine beside it."""
    from ..checkpoints.zoo import default_preprocess  # torch: only when the command runs
    from ..export.engine import describe_layers
    from ..pipeline import deploy

    if quiet:
        logging.getLogger("inception_deploy").setLevel(logging.WARNING)
    if batch is not None and click.get_current_context().get_parameter_source("max_batch").name != "DEFAULT":
        raise ConfigError(
            f"--batch {batch} fixes the batch size and --max-batch {max_batch} bounds a dynamic one: give one of them"
        )
    spec = get_arch(arch)
    config = default_preprocess(spec, weights).with_overrides(
        input_size, mean, std, resize, crop_pct, interpolation, keep_aspect
    )
    result = deploy(
        spec.name,
        output,
        weights=weights,
        num_classes=num_classes,
        labels=labels,
        preprocess=config,
        opset=opset,
        batch=batch,
        max_batch=max_batch,
        simplify=not no_simplify,
        fp16=fp16,
        fp16_io=fp16_io,
        int8=int8,
        int8_target=int8_target,
        int8_remainder=int8_remainder,
        int8_keep_float=int8_keep_float,
        int8_weight_bits=int(int8_weight_bits) if int8_weight_bits else None,
        int8_max_drop=int8_max_drop,
        int8_holdout=int8_holdout,
        calib_dir=calib_dir,
        calib_samples=calib_samples,
        calib_cache=calib_cache,
        calib_images=calib_images,
        calib_batch=calib_batch,
        calib_method=calib_method,
        percentile=percentile,
        engine=engine,
        max_engine_batch=max_engine_batch,
        timing_cache=timing_cache,
        parity=not no_parity,
        recheck_parity=recheck_parity,
        eval_data=eval_data,
        eval_limit=eval_limit,
        triton_repository=triton_repo,
        progress=None if quiet else announce,
    )
    for artifact in result.artifacts:
        report_artifact(artifact)
    if result.engine is not None:
        meta = result.engine.metadata
        click.echo(
            f"wrote {printable(result.engine.path)} (+ {result.engine.sidecar.name}, TensorRT "
            f"{meta['tensorrt']['version']}, {meta['precision']}) in {result.engine.seconds:.1f} s"
        )
        click.echo(f"engine precision: {describe_layers(meta.get('layers'))}")
        if result.engine_parity is not None:
            click.echo(safe_lines(result.engine_parity.table()))
    if result.engine_skipped:
        click.echo(f"note: {printable(result.engine_skipped)}", err=True)
    if result.evaluation is not None:
        print_evaluation(result.evaluation)
    if result.triton:
        click.echo(
            printable(
                f"wrote Triton repository {triton_repo} (models {', '.join(m.name for m in result.triton)}"
                f", each with a _pipeline ensemble); serve it with: inception-serve {triton_repo}"
            )
        )
    if weights is None and any(r.judged is False for a in result.artifacts if a.parity for r in a.parity.rows):
        click.echo(
            "note: FP16/INT8 parity is measured but not judged for randomly initialised weights (no "
            "decision margins, so reduced precision flips near-ties); pass --weights to judge it",
            err=True,
        )
    if result.budget_missed:
        click.echo(
            f"error: the INT8 accuracy budget of {counted(int8_max_drop, 'point')} cannot be met, even with every Conv "
            f"layer float; the best placement found is kept: {', '.join(map(printable, result.budget_missed))}",
            err=True,
        )
    if result.failed:
        click.echo(
            f"warning: parity FAILED against eager PyTorch for {', '.join(map(printable, result.failed))}; "
            f"kept for inspection",
            err=True,
        )
    if result.failed or result.budget_missed:
        sys.exit(EXIT_PARTLY_FAILED)
    if result.engine_skipped and engine == "yes":
        sys.exit(EXIT_NO_ENGINE)


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
        f"wrote {built.path} (+ {built.sidecar.name}, TensorRT {built.metadata['tensorrt']['version']}, "
        f"{built.metadata['precision']}, GPU {built.metadata['gpu']['name']}) in {built.seconds:.1f} s"
    )
    click.echo(f"engine precision: {describe_layers(built.metadata.get('layers'))}")
