"""Options shared by the commands, help grouped into sections; choices from the library's constants."""

from __future__ import annotations

import math

import click

from .. import __version__
from ..calibration.ranges import METHODS
from ..metadata import INT8_REMAINDERS, INT8_TARGETS, MAX_BATCH
from ..models.registry import ARCHS
from ..runtime.openvino_backend import MODES as OPENVINO_MODES


class FiniteRange(click.FloatRange):
    """click's FloatRange, which lets nan (and inf past a missing bound) through: counts are finite."""

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if not math.isfinite(value):
            self.fail(f"{value} is not a finite number", param, ctx)
        return value

    def _describe_range(self) -> str:  # click writes "x<=None" into --help for a range without bounds
        return super()._describe_range() if (self.min, self.max) != (None, None) else ""


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
            if isinstance(param, click.Argument):  # click lists these under "Positional arguments"
                continue
            record = param.get_help_record(ctx)
            if record:
                sections.setdefault(getattr(param, "group", "Options"), []).append(record)
        for name, rows in sections.items():
            with formatter.section(name):
                formatter.write_dl(rows)


def command(name: str):
    """A command with grouped help, -h, and --version."""

    def decorate(fn):
        fn = click.version_option(__version__, "--version", prog_name="inception-deploy")(fn)
        settings = {"help_option_names": ["-h", "--help"]}
        return click.command(name, cls=_GroupedCommand, context_settings=settings)(fn)

    return decorate


def stacked(decorators: list):
    """One decorator applying ``decorators`` as if written one above another, in that order (the
    first is the outermost, so the help lists the options in the order given)."""

    def apply(fn):
        for decorate in reversed(decorators):
            fn = decorate(fn)
        return fn

    return apply


def option(*decls, group: str, **kwargs):
    return click.option(*decls, cls=_Option, group=group, show_default=True, **kwargs)


def list_archs_table(ctx, param, value):
    """--list-archs: the registry as a table (before --arch is required)."""
    if not value or ctx.resilient_parsing:
        return
    from tabulate import tabulate

    rows = [
        (s.name, ", ".join(s.aliases), s.family, s.reference, s.preprocess.input_size, "yes" if s.pretrained else "-")
        for s in ARCHS
    ]
    click.echo(
        tabulate(
            rows,
            headers=("arch", "aliases", "family", "state_dict layout", "input", "pretrained"),
            disable_numparse=True,
        )
    )
    ctx.exit(0)


def precision_option(group: str):
    return option(
        "--precision",
        type=click.Choice(["bf16"]),
        group=group,
        help="Run FP32 .onnx files in bfloat16 on OpenVINO (judged by bf16 parity thresholds).  "
        "[default: the precision each artifact was built with]",
    )


def openvino_mode_option(group: str):
    return option(
        "--openvino-mode",
        type=click.Choice(OPENVINO_MODES),
        default="latency",
        group=group,
        help="OpenVINO's performance hint: throughput splits each batch over several streams.",
    )


def ray_options(what: str):
    """--ray, --ray-address, --cpus-per-worker: shared by run and eval; ``what`` the actors do."""
    decorators = [
        option(
            "--ray",
            "use_ray",
            is_flag=True,
            group="Ray",
            help=f"{what} on a Ray cluster (the ray extra): a pool of --workers actors, each holding the models.",
        ),
        option(
            "--ray-address",
            metavar="ADDRESS",
            group="Ray",
            help="A running Ray head (HOST:6379, ray://HOST:10001, auto).  [default: start a local Ray here]",
        ),
        option(
            "--cpus-per-worker",
            type=FiniteRange(min=0.1),
            group="Ray",
            help="CPU cores Ray reserves for each actor (its inference threads).  [default: 1]",
        ),
    ]

    return stacked(decorators)


def check_ray_options(use_ray: bool, **given) -> None:
    """Options that only mean something with --ray (``given``: their values, None when absent)."""
    named = [f"--{name.replace('_', '-')}" for name, value in given.items() if value not in (None, False)]
    if named and not use_ray:
        raise click.UsageError(f"{', '.join(named)}: need --ray")


def calibration_options(group: str):
    """--calib-dir / --calib-samples, --calib-images, --calib-batch, --calib-method, --percentile:
    shared by export and calibrate."""
    options = [
        option("--calib-dir", type=click.Path(), group=group, help="Calibration images (searched recursively)."),
        option(
            "--calib-samples",
            is_flag=True,
            group=group,
            help="Calibrate on the five photos shipped with the package instead: a demonstration only "
            "(real deployments calibrate on 300+ images of their own data).",
        ),
        option(
            "--calib-images",
            type=click.IntRange(min=1),
            default=512,
            group=group,
            help="Calibration images to use (spread evenly over the folder).",
        ),
        option(
            "--calib-batch", type=click.IntRange(1, MAX_BATCH), default=8, group=group, help="Calibration batch size."
        ),
        option(
            "--calib-method",
            type=click.Choice(METHODS),
            default="entropy",
            group=group,
            help="How activation ranges are clipped.",
        ),
        option(
            "--percentile",
            type=FiniteRange(50, 100, min_open=True),
            default=99.99,
            group=group,
            help="With --calib-method percentile.",
        ),
    ]

    return stacked(options)


def precision_export_options(fn):
    """--fp16, --int8 and what controls INT8: inception-export's Precision section."""
    options = [
        option(
            "--fp16",
            is_flag=True,
            group="Precision",
            help="Also write <output>_fp16.onnx (float32 input/output) and check its parity.",
        ),
        option("--fp16-io", is_flag=True, group="Precision", help="With --fp16: half-precision input and output too."),
        option(
            "--int8",
            is_flag=True,
            group="Precision",
            help="Also write <output>_int8_<target>.onnx with Q/DQ nodes calibrated on --calib-dir.",
        ),
        option(
            "--int8-target",
            type=click.Choice(INT8_TARGETS),
            group="Precision",
            help="tensorrt: symmetric int8 for TensorRT; cpu: u8/s8 for ONNX Runtime.  "
            "[default: tensorrt where TensorRT is installed, else cpu]",
        ),
        option(
            "--int8-remainder",
            type=click.Choice(INT8_REMAINDERS),
            default="fp32",
            group="Precision",
            help="Precision of the ops INT8 leaves unquantized (head, residual sums). fp16: "
            "TensorRT runs them in FP16 (tensorrt target, opset 19+); writes <output>_int8_tensorrt_fp16.onnx.",
        ),
        option(
            "--int8-keep-float",
            multiple=True,
            metavar="PATTERN|FILE",
            group="Precision",
            help="Leave these Conv layers unquantized: a glob over PyTorch module paths (e.g. 'Mixed_7*', "
            "'Mixed_6b.branch7x7dbl_2.conv') or the <stem>.precision.json of an earlier INT8 export (repeatable).",
        ),
        option(
            "--int8-max-drop",
            type=FiniteRange(),  # its bounds: Budget.check, for Python callers too
            metavar="POINTS",
            group="Precision",
            help="Keep Conv layers float, most sensitive first, until the 95% upper bound of top-1's drop on held-out "
            "images (agreement with FP32; with --eval-data: accuracy) is within POINTS; cpu target: on ONNX Runtime "
            "and OpenVINO. Writes <INT8 file stem>.precision.json; exit 1 when even all-float misses it.",
        ),
        option(
            "--int8-holdout",
            type=FiniteRange(),
            default=0.2,
            metavar="SHARE",
            group="Precision",
            help="With --int8-max-drop: the share of --calib-dir held out to judge on (1 point needs 381, 2: 189).",
        ),
        option(
            "--int8-bias-correction/--no-int8-bias-correction",
            default=None,
            group="Precision",
            help="Correct each quantized Conv's bias by the mean shift of its own rounding.  [default: cpu target]",
        ),
        option(
            "--int8-adaround",
            is_flag=True,
            group="Precision",
            help="Round each quantized Conv's weights up or down as its output on calibration images needs "
            "(AdaRound; a fit per Conv, slower).",
        ),
        option(
            "--int8-equalize",
            is_flag=True,
            group="Precision",
            help="Bring the channels each Conv reads to similar ranges where that lowers its error (cross-layer "
            "equalization; for networks whose channel ranges differ widely).",
        ),
        option(
            "--int8-accept-unproven",
            is_flag=True,
            group="Precision",
            help="With --int8-max-drop, too few judged images: use the point estimate, recorded as unproven.",
        ),
        option(
            "--int8-weight-bits",
            type=click.Choice(["7", "8"]),
            group="Precision",
            help="cpu target: 7-bit weights run correctly on every x86 CPU; 8 is more exact on CPUs with VNNI or "
            "AMX (AVX2 without VNNI can saturate).  [default: 7; the tensorrt target is always 8]",
        ),
        calibration_options("Precision"),
        option(
            "--calib-cache",
            type=click.Path(dir_okay=False),
            group="Precision",
            help="Calibration cache: reused when it matches the model, written otherwise.  "
            "[default: <output>.calib.json]",
        ),
    ]
    return stacked(options)(fn)


def floats3(ctx, param, value):
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
