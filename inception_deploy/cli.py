"""Command line: a thin layer over the Python API.

Exit codes: 0 success; 1 partly failed: an exported artifact failed its parity check (it is
kept for inspection) or some images could not be classified (each reported); 2 bad input
(unknown arch, unreadable weights or model, bad option values, unwritable output), reported on
one line.
"""
from __future__ import annotations

import functools
import math
import sys
from dataclasses import replace

import click

from .errors import ConfigError, InceptionDeployError

EXIT_PARTLY_FAILED = 1
EXIT_BAD_INPUT = 2


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
@option("--no-parity", is_flag=True, group="Verification",
        help="Skip the ONNX Runtime vs eager PyTorch parity check.")
@_one_line_errors
def export_command(arch, weights, num_classes, labels, output, opset, batch, max_batch, input_size,
                   no_simplify, mean, std, resize, crop_pct, interpolation, no_parity):
    """Export an Inception model to ONNX (aux heads stripped), check it and verify parity."""
    from .export import export_onnx
    from .models.registry import get_arch

    spec = get_arch(arch)
    config = _preprocess_config(spec.preprocess, input_size, mean, std, resize, crop_pct, interpolation)
    result = export_onnx(spec.name, output, weights=weights, num_classes=num_classes, opset=opset, batch=batch,
                         max_batch=max_batch, simplify=not no_simplify, check_parity=not no_parity,
                         labels=labels, preprocess=config)
    shape = lambda dims: "x".join(str(d) for d in dims)  # noqa: E731
    click.echo(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, opset {result.opset}, {result.exporter} "
               f"exporter, {result.input_name}[{shape(result.input_shape)}] -> "
               f"{result.output_name}[{shape(result.output_shape)}]) in {result.seconds:.1f} s")
    if result.parity is not None:
        click.echo(result.parity.table())
        if not result.parity.passed:
            click.echo(f"warning: parity FAILED against eager PyTorch; {result.path} is kept for inspection",
                       err=True)
            sys.exit(EXIT_PARTLY_FAILED)


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
    import json
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


main.add_command(export_command)
main.add_command(run_command)


def export_main():
    """Console script ``inception-export``."""
    export_command(prog_name="inception-export")


def run_main():
    """Console script ``inception-run``."""
    run_command(prog_name="inception-run")
