"""inception-export, inception-calibrate and inception-build: parse, call the API, print."""

from __future__ import annotations

import logging
import sys

import click

from ..calibration.images import calibration_folder
from ..calibration.policy import CalibrationRequest
from ..errors import ConfigError, printable
from ..metadata import MAX_BATCH, MAX_CLASSES, MAX_INPUT_SIZE, MAX_RESIZE_SIZE
from ..models.registry import get_arch, list_archs
from ..pipeline import (
    ENGINE_CHOICES,
    EngineOptions,
    ExportRequest,
    Fp16Request,
    Int8Request,
    VerifyRequest,
    deploy,
)
from ..plotting import save_panels
from ..preprocess import INTERPOLATIONS
from ..progress import counted
from ..verify.metrics import RANDOM_WEIGHTS
from .guard import EXIT_NO_ENGINE, EXIT_PARTLY_FAILED, one_line_errors
from .options import FiniteRange, command, floats3, list_archs_table, option, precision_export_options
from .output import announce, check_outputs, opens_with, print_evaluation, report_artifact, safe_lines


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
@precision_export_options
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
@option(
    "--plot",
    type=click.Path(dir_okay=False),
    group="Output",
    help="With --int8-max-drop: draw the search as a PNG (each placement's drop with its 95% interval against "
    "the layers kept float, the budget and the placement kept).",
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
    int8_accept_unproven,
    int8_bias_correction,
    int8_adaround,
    int8_equalize,
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
    plot,
    quiet,
):
    """Export a classifier to ONNX (aux heads stripped), check it and verify parity;
    optionally FP16 and INT8 models and a TensorRT engine beside it."""
    from ..checkpoints.zoo import default_preprocess  # torch: only when the command runs
    from ..export.engine import describe_layers

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
    if fp16_io and not fp16:
        raise ConfigError("--fp16-io (fp16_io) needs --fp16 (fp16)")
    if not int8 and (calib_dir is not None or calib_samples or calib_cache is not None):
        raise ConfigError("--calib-dir, --calib-samples and --calib-cache need --int8")
    for flag, given in (
        ("--int8-remainder", int8_remainder != "fp32"),
        ("--int8-keep-float", int8_keep_float),
        ("--int8-weight-bits", int8_weight_bits),
        ("--int8-max-drop", int8_max_drop is not None),
        ("--int8-accept-unproven", int8_accept_unproven),
        ("--int8-adaround", int8_adaround),
        ("--int8-equalize", int8_equalize),
    ):
        if given and not int8:
            raise ConfigError(f"{flag} needs --int8")
    if int8_max_drop is None and click.get_current_context().get_parameter_source("int8_holdout").name != "DEFAULT":
        raise ConfigError("--int8-holdout needs --int8-max-drop (it is the share held out to judge the budget on)")
    if plot:
        if int8_max_drop is None:
            raise ConfigError("--plot draws the INT8 budget search: it needs --int8-max-drop")
        check_outputs([weights, labels, calib_dir, eval_data, calib_cache, output], plot=plot)
    export = ExportRequest(
        spec.name, output, weights, num_classes, labels, config, opset, batch, max_batch, not no_simplify
    )
    int8_request = None
    if int8:
        calibration = CalibrationRequest(
            calibration_folder(calib_dir, calib_samples),
            calib_images,
            calib_batch,
            calib_method,
            percentile,
            calib_cache,
        )
        int8_request = Int8Request(
            calibration, int8_target, int8_remainder, int8_keep_float,
            int(int8_weight_bits) if int8_weight_bits else None, int8_max_drop, int8_holdout,
            int8_accept_unproven, int8_bias_correction, int8_adaround, int8_equalize,
        )  # fmt: skip
    result = deploy(
        export,
        fp16=Fp16Request(fp16_io) if fp16 else None,
        int8=int8_request,
        engine=EngineOptions(engine, max_engine_batch, timing_cache),
        verify=VerifyRequest(not no_parity, recheck_parity, eval_data, eval_limit),
        triton_repository=triton_repo,
        progress=None if quiet else announce,
    )
    for artifact in result.artifacts:
        report_artifact(artifact)
        if plot and artifact.budget is not None:
            save_panels(plot, [artifact.budget.draw], height=4.5)
            announce(f"wrote {plot}")
    if result.engine is not None:
        meta = result.engine.metadata
        click.echo(
            f"wrote {printable(result.engine.path)} (+ {result.engine.sidecar.name}, TensorRT "
            f"{meta.tensorrt['version']}, {meta.precision}) in {result.engine.seconds:.1f} s"
        )
        click.echo(f"engine precision: {describe_layers(meta.layers)}")
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
    rows = [r for a in result.artifacts if a.parity for r in a.parity.rows]
    if weights is None and any(r.why_unjudged == RANDOM_WEIGHTS for r in rows):
        click.echo(
            "note: FP16/INT8 parity is measured but not judged for randomly initialised weights (no "
            "decision margins, so reduced precision flips near-ties); pass --weights to judge it",
            err=True,
        )
    if result.budget_missed:
        click.echo(
            f"error: the INT8 accuracy budget of {counted(int8_max_drop, 'point')} is not shown by any placement "
            f"tried, even with every layer float; the best found is kept: "
            f"{', '.join(map(printable, result.budget_missed))}",
            err=True,
        )
    if result.budget_unproven:
        click.echo(
            f"warning: the INT8 budget is NOT established for {', '.join(map(printable, result.budget_unproven))}: "
            f"within it at the point estimate only, too few judged images to show it (accepted by "
            f"--int8-accept-unproven; recorded as unproven in the file's metadata)",
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
