"""inception-parity: eager PyTorch against exported artifacts on the same images, PASS/FAIL per
precision; layer by layer and the INT8 sensitivity ranking on request."""

from __future__ import annotations

import sys

import click

from ..errors import ConfigError, printable
from ..fileio import write_json
from ..metadata import MAX_BATCH
from ..plotting import save_panels
from ..progress import stage
from ..runtime.base import DEVICES
from .guard import EXIT_NO_ENGINE, EXIT_PARTLY_FAILED, one_line_errors
from .options import FiniteRange, command, option, precision_option
from .output import announce, check_outputs, opens_with, safe_lines


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
@option(
    "--synthetic",
    type=click.IntRange(0, 1024),
    default=8,
    group="Inputs",
    help="Synthetic images added (not to INT8 files' rows: their ranges are calibrated on images).",
)
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
    "--save-outputs-limit",
    type=FiniteRange(min=0),
    default=1.0,
    metavar="GB",
    group="Layer by layer",
    help="Refuse --save-outputs when its size, estimated before anything runs, passes this.",
)
@option(
    "--sensitivity",
    is_flag=True,
    group="Layer by layer",
    help="Also rank the layers of each INT8 file (give the FP32 ONNX it was made from with --onnx too) by how "
    "much the logits move when that layer alone is INT8 (cpu target: its input's rounding, weights as stored): "
    "the layers to keep float first (--int8-keep-float).",
)
@option(
    "--plot",
    type=click.Path(dir_okay=False),
    group="Layer by layer",
    help="With --layerwise and/or --sensitivity: draw them as a PNG (each file's cosine along the network, "
    "the first layer below the bar marked; the most sensitive layers as bars).",
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
    save_outputs_limit,
    sensitivity,
    plot,
    json_out,
):
    """Compare exported artifacts with eager PyTorch on the same images, one row per artifact,
    PASS/FAIL against the thresholds of each artifact's precision. Exit 1 if any fails."""
    from ..calibration.sensitivity import file_sensitivity, ranked_files
    from ..verify.comparator import check_artifacts  # torch: only when the command runs
    from ..verify.layerwise import compare_layers, layer_images, layerwise_files, saved_size
    from ..verify.metrics import PARITY_REPORT

    artifacts = list(onnx_files) + list(engines)
    if not artifacts:
        raise ConfigError("nothing to check: pass --onnx FILE and/or --engine FILE")
    if save_outputs and not layerwise:
        raise ConfigError("--save-outputs needs --layerwise")
    if plot and not (layerwise or sensitivity):
        raise ConfigError("--plot draws the --layerwise and --sensitivity views: give one of them")
    if layerwise or sensitivity:
        reference, candidates = layerwise_files(onnx_files, engines, "layerwise" if layerwise else "sensitivity")
    if sensitivity:
        int8_files = ranked_files(candidates)
    check_outputs([*artifacts, weights, images], json_out, PARITY_REPORT, plot, save_outputs)
    if layerwise or sensitivity:  # the same images for both, decoded once
        batch = layer_images(reference, images, samples, synthetic)
    limit = int(save_outputs_limit * 1e9)
    if save_outputs:  # its size said, or refused, before the slow work
        size = saved_size(reference, candidates, len(batch), save_outputs, limit)
        announce(f"{save_outputs} will hold about {size / 1e6:.0f} MB")
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
    if layerwise:
        with stage(announce, f"comparing {', '.join(map(str, candidates))} with {reference} layer by layer"):
            # its size was checked above, before the slow work: not estimated again
            layers = compare_layers(reference, candidates, batch, save_outputs, save_limit=None)
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
    if plot:
        save_panels(plot, [r.draw for r in layers] + [r.draw for r in ranked])
        announce(f"wrote {plot}")
    if json_out:
        extra = {"layerwise": [r.to_dict() for r in layers]} if layerwise else {}
        if sensitivity:
            extra["sensitivity"] = [r.to_dict() for r in ranked]
        write_json(json_out, {**report.to_dict(), **extra}, PARITY_REPORT)
    if report.failed:
        sys.exit(EXIT_PARTLY_FAILED)
    if report.skipped:
        sys.exit(EXIT_NO_ENGINE)
