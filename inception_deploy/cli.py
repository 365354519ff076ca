"""Command line: a thin layer over the Python API.

Exit codes: 0 success; 1 partly failed: an exported artifact failed its parity check (it is
kept for inspection) or some images could not be classified (each reported); 2 bad input
(unknown arch, unreadable weights or model, bad option values, unwritable output), reported on
one line; 3 a TensorRT engine was asked for (--engine yes, inception-build) but this machine has
no TensorRT or no GPU: everything else was written.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
import signal
import sys
import threading
from dataclasses import replace

import click

from . import __version__
from .errors import ConfigError, InceptionDeployError, printable
from .metadata import MAX_BATCH, MAX_CLASSES, MAX_INPUT_SIZE, MAX_RESIZE_SIZE
from .models.registry import ARCHS, list_archs
from .runtime.base import DEVICES

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
            if isinstance(param, click.Argument):  # click lists these under "Positional arguments"
                continue
            record = param.get_help_record(ctx)
            if record:
                sections.setdefault(getattr(param, "group", "Options"), []).append(record)
        for name, rows in sections.items():
            with formatter.section(name):
                formatter.write_dl(rows)


def _command(name: str):
    """A command with grouped help, -h, and --version."""

    def decorate(fn):
        fn = click.version_option(__version__, "--version", prog_name="inception-deploy")(fn)
        settings = {"help_option_names": ["-h", "--help"]}
        return click.command(name, cls=_GroupedCommand, context_settings=settings)(fn)

    return decorate


def option(*decls, group: str, **kwargs):
    return click.option(*decls, cls=_Option, group=group, show_default=True, **kwargs)


def _list_archs(ctx, param, value):
    """--list-archs: the registry as a table (before --arch is required)."""
    if not value or ctx.resilient_parsing:
        return
    from tabulate import tabulate

    rows = [(s.name, ", ".join(s.aliases), s.family, s.reference, s.preprocess.input_size,
             "yes" if s.pretrained else "-") for s in ARCHS]
    click.echo(tabulate(rows, headers=("arch", "aliases", "family", "state_dict layout", "input", "pretrained"),
                        disable_numparse=True))
    ctx.exit(0)


def _precision_option(group: str):
    return option("--precision", type=click.Choice(["bf16"]), group=group,
                  help="Run FP32 .onnx files in bfloat16 on OpenVINO (judged by bf16 parity thresholds).  "
                       "[default: the precision each artifact was built with]")


def _openvino_mode_option(group: str):
    return option("--openvino-mode", type=click.Choice(["latency", "throughput"]), default="latency", group=group,
                  help="OpenVINO's performance hint: throughput splits each batch over several streams.")


def _calibration_options(group: str):
    """--calib-dir / --calib-samples, --calib-images, --calib-batch, --calib-method, --percentile:
    shared by export and calibrate."""
    options = [
        option("--calib-dir", type=click.Path(), group=group, help="Calibration images (searched recursively)."),
        option("--calib-samples", is_flag=True, group=group,
               help="Calibrate on the five photos shipped with the package instead: a demonstration only "
                    "(real deployments calibrate on 300+ images of their own data)."),
        option("--calib-images", type=click.IntRange(min=1), default=512, group=group,
               help="Calibration images to use (spread evenly over the folder)."),
        option("--calib-batch", type=click.IntRange(1, MAX_BATCH), default=8, group=group,
               help="Calibration batch size."),
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
    """Our errors become one line on stderr and exit code 2, never a traceback; so do a missing
    optional dependency (with the extra that installs it) and a standard output that cannot be
    written (a full disk, a closed pipe). SIGTERM, SIGHUP and Ctrl-C unwind the work (temporary
    files and folders are removed, no destination is touched) and exit 128 + the signal number."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        interrupts = _Interrupts()
        try:
            interrupts.install()
            _log_to_stderr()
            try:
                return fn(*args, **kwargs)
            except InceptionDeployError as e:
                interrupts.hold()
                _fail(printable(e))
            except ModuleNotFoundError as e:
                extra = _EXTRAS.get((e.name or "").partition(".")[0])
                if extra is None:
                    raise
                interrupts.hold()
                command = click.get_current_context().command_path
                _fail(f"{command} needs {e.name.partition('.')[0]}: pip install 'inception-deploy[{extra}]'")
            except OSError as e:
                if not _stdout_broken(e):
                    raise
                interrupts.hold()
                _fail(f"standard output: cannot write ({e.strerror}); the output is incomplete")
        except KeyboardInterrupt:
            interrupts.hold()
            signum = interrupts.signum or signal.SIGINT
            click.echo(f"error: interrupted by {signal.Signals(signum).name}; nothing was left half-written",
                       err=True)
            sys.exit(128 + signum)
        finally:
            interrupts.restore()

    return wrapper


# the extra that installs each optional dependency a command may import
_EXTRAS = {"torch": "export", "onnx": "export", "onnxscript": "export", "safetensors": "export", "h5py": "export",
           "polygraphy": "export", "matplotlib": "bench", "openvino": "openvino", "tritonclient": "triton"}


def _fail(message: str):
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _stdout_broken(e: OSError) -> bool:
    """Whether ``e`` came from click.echo writing standard output (every result line goes through
    it). Its unwritten bytes are then sent to /dev/null, so the interpreter's exit does not fail
    on them too."""
    tb, from_echo = e.__traceback__, False
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code is click.echo.__code__ and not frame.f_locals.get("err") and frame.f_locals.get("file") in (
                None, sys.stdout):
            from_echo = True
        tb = tb.tb_next
    if not from_echo or e.filename is not None:
        return False
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # not a real file (a test runner's buffer)
        pass
    return True


class _Interrupts:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt once, so the work unwinds through its
    cleanups; later signals are ignored while it does (hold), and the previous handlers come back
    at the end. A KeyboardInterrupt that lands in a finalizer (``__del__``, a weakref callback) is
    swallowed by Python with a traceback printed: it is caught here instead and delivered again."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.signum = None
        self.raised = False
        self.previous: dict = {}
        self.previous_hook = None

    def install(self) -> None:
        self.previous_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        for sig in self.SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.raised:
            return
        self.signum = self.signum or signum
        self.raised = True
        raise KeyboardInterrupt

    def _unraisable(self, info) -> None:
        if isinstance(info.exc_value, KeyboardInterrupt) and self.signum is not None:
            self.raised = False  # swallowed in a finalizer: signal again, outside it
            threading.Timer(0.01, os.kill, (os.getpid(), self.signum)).start()
            return
        self.previous_hook(info)

    def hold(self) -> None:
        self.raised = True

    def restore(self) -> None:
        self.hold()
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.previous_hook is not None:
            sys.unraisablehook = self.previous_hook


class _PrefixedFormatter(logging.Formatter):
    """``note:`` / ``warning:`` / ``error:`` lines, escaped so each record stays one line."""

    PREFIXES = {logging.DEBUG: "debug", logging.INFO: "note", logging.WARNING: "warning"}

    def format(self, record):
        return f"{self.PREFIXES.get(record.levelno, 'error')}: {printable(record.getMessage())}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at each record (click's test runner swaps it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _log_to_stderr() -> None:
    """The package's log records (notes and warnings) on stderr, once per process."""
    logger = logging.getLogger("inception_deploy")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_PrefixedFormatter())
        logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)


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
@click.version_option(__version__, "--version", prog_name="inception-deploy")
def main():
    """inception-deploy: export, verify and run image classifiers (the Inception family, ResNet, ResNeXt,
    SE-ResNet, DenseNet, Res2Net, ResNeSt) on ONNX Runtime, OpenVINO, TensorRT and Triton."""


@_command("export")
@option("--arch", required=True, metavar="NAME", group="Model",
        help=f"Architecture: {', '.join(list_archs())} (--list-archs: aliases, layouts, inputs).")
@option("--list-archs", is_flag=True, is_eager=True, expose_value=False, callback=_list_archs, group="Model",
        help="Print every architecture with its aliases, checkpoint layout, input and published weights, and exit.")
@option("--weights", metavar="FILE|pretrained", group="Model",
        help="Checkpoint (.pth/.pt/.bin/.safetensors; a Keras .keras/.h5/.weights.h5 for v3, inception-resnet-v2 "
             "and xception) or 'pretrained' to download the reference's. "
             "Default: random init with data-driven batch-norm statistics.")
@option("--num-classes", type=click.IntRange(1, MAX_CLASSES), default=1000, group="Model", help="Classifier outputs.")
@option("--labels", type=click.Path(dir_okay=False), group="Model",
        help="Class names, one per line. Default: ImageNet-1k names for 1000 classes.")
@option("-o", "--output", type=click.Path(dir_okay=False), group="Output",
        help="ONNX file to write.  [default: <arch name>.onnx, e.g. inception_v3.onnx]")
@option("--opset", type=int, group="Output",
        help="ONNX opset. Default: the dynamo exporter's own (18+); below 18 uses the TorchScript exporter.")
@option("--batch", type=click.IntRange(1, MAX_BATCH), group="Output", help="Static batch size. Default: dynamic batch.")
@option("--max-batch", type=click.IntRange(1, MAX_BATCH), default=64, group="Output",
        help="Largest batch of the dynamic batch dimension.")
@option("--input-size", type=click.IntRange(1, MAX_INPUT_SIZE), group="Output",
        help="Square input size. Default: the architecture's (224 or 299).")
@option("--no-simplify", is_flag=True, group="Output", help="Skip graph optimization (constant folding).")
@option("--mean", callback=_floats3, metavar="R,G,B", group="Preprocessing overrides",
        help="Per-channel mean, in the network's channel order and pixel scale.")
@option("--std", callback=_floats3, metavar="R,G,B", group="Preprocessing overrides", help="Per-channel std.")
@option("--resize", type=click.IntRange(1, MAX_RESIZE_SIZE), group="Preprocessing overrides",
        help="Resize the shorter side to this before the center crop.")
@option("--crop-pct", type=click.FloatRange(0, 1, min_open=True), group="Preprocessing overrides",
        help="Crop fraction: resize = floor(input size / crop pct) (timm's rule).")
@option("--interpolation", type=click.Choice(["nearest", "bilinear", "bicubic", "lanczos"]),
        group="Preprocessing overrides", help="Resize filter.")
@option("--keep-aspect/--stretch", default=None, group="Preprocessing overrides",
        help="Resize the shorter side (keep the aspect ratio), or both sides to the resize size (Keras's "
             "load_img).  [default: the weights' own: --stretch for Keras checkpoints]")
@option("--fp16", is_flag=True, group="Precision",
        help="Also write <output>_fp16.onnx (float32 input/output) and check its parity.")
@option("--fp16-io", is_flag=True, group="Precision", help="With --fp16: half-precision input and output too.")
@option("--int8", is_flag=True, group="Precision",
        help="Also write <output>_int8_<target>.onnx with Q/DQ nodes calibrated on --calib-dir.")
@option("--int8-target", type=click.Choice(["tensorrt", "cpu"]), group="Precision",
        help="tensorrt: symmetric int8 for TensorRT; cpu: u8/s8 for ONNX Runtime.  "
             "[default: tensorrt where TensorRT is installed, else cpu]")
@option("--int8-remainder", type=click.Choice(["fp32", "fp16"]), default="fp32",
        group="Precision", help="Precision of the ops INT8 leaves unquantized (head, residual sums). fp16: "
        "TensorRT runs them in FP16 (tensorrt target, opset 19+); writes <output>_int8_tensorrt_fp16.onnx.")
@_calibration_options("Precision")
@option("--calib-cache", type=click.Path(dir_okay=False), group="Precision",
        help="Calibration cache: reused when it matches the model, written otherwise.  "
             "[default: <output>.calib.json]")
@option("--engine", type=click.Choice(["auto", "yes", "no"]), default="auto", group="TensorRT engine",
        help="Build a TensorRT engine (.plan + .plan.json) of the most reduced precision written. auto: where "
             "TensorRT and a GPU are present (else one line says why not); yes: exit 3 when impossible.")
@option("--max-engine-batch", type=click.IntRange(1, MAX_BATCH), default=32, group="TensorRT engine",
        help="Largest batch of the engine's profile (opt: 8 or less).")
@option("--timing-cache", type=click.Path(dir_okay=False), group="TensorRT engine",
        help="TensorRT timing cache, loaded and saved back (faster rebuilds).")
@option("--no-parity", is_flag=True, group="Verification",
        help="Skip the ONNX Runtime vs eager PyTorch parity checks.")
@option("--eval-data", type=click.Path(), group="Verification",
        help="Also evaluate eager and every artifact written on this labelled set (as inception-eval --data).")
@option("--eval-limit", type=click.IntRange(min=1), group="Verification",
        help="With --eval-data: at most this many images, spread over the set.")
@option("--triton-repo", type=click.Path(file_okay=False), group="Serving",
        help="Also write a Triton model repository (new or empty folder) serving everything written: "
             "inception-triton's defaults; serve it with inception-serve.")
@option("-q", "--quiet", is_flag=True, group="Output", help="No stage announcements or progress bars on stderr.")
@_one_line_errors
def export_command(arch, weights, num_classes, labels, output, opset, batch, max_batch, input_size,
                   no_simplify, mean, std, resize, crop_pct, interpolation, keep_aspect, fp16, fp16_io, int8,
                   int8_target, int8_remainder, calib_dir, calib_samples, calib_images, calib_batch, calib_method,
                   percentile, calib_cache, engine, max_engine_batch, timing_cache, no_parity, eval_data, eval_limit,
                   triton_repo, quiet):
    """Export a classifier to ONNX (aux heads stripped), check it and verify parity;
    optionally FP16 and INT8 models and a TensorRT engine beside it."""
    from .export.engine import describe_layers
    from .models.registry import get_arch
    from .pipeline import deploy
    from .zoo import default_preprocess

    if quiet:
        logging.getLogger("inception_deploy").setLevel(logging.WARNING)
    if batch is not None and click.get_current_context().get_parameter_source("max_batch").name != "DEFAULT":
        raise ConfigError(f"--batch {batch} fixes the batch size and --max-batch {max_batch} bounds a dynamic "
                          f"one: give one of them")
    spec = get_arch(arch)
    config = _preprocess_config(default_preprocess(spec, weights), input_size, mean, std, resize, crop_pct,
                                interpolation, keep_aspect)
    result = deploy(spec.name, output, weights=weights, num_classes=num_classes, labels=labels, preprocess=config,
                    opset=opset, batch=batch, max_batch=max_batch, simplify=not no_simplify, fp16=fp16,
                    fp16_io=fp16_io, int8=int8, int8_target=int8_target, int8_remainder=int8_remainder,
                    calib_dir=calib_dir,
                    calib_samples=calib_samples,
                    calib_cache=calib_cache, calib_images=calib_images, calib_batch=calib_batch,
                    calib_method=calib_method, percentile=percentile, engine=engine,
                    max_engine_batch=max_engine_batch, timing_cache=timing_cache, parity=not no_parity,
                    eval_data=eval_data, eval_limit=eval_limit, triton_repository=triton_repo,
                    progress=None if quiet else _announce)
    for artifact in result.artifacts:
        _report(artifact)
    if result.engine is not None:
        meta = result.engine.metadata
        click.echo(f"wrote {printable(result.engine.path)} (+ {result.engine.sidecar.name}, TensorRT "
                   f"{meta['tensorrt']['version']}, {meta['precision']}) in {result.engine.seconds:.1f} s")
        click.echo(f"engine precision: {describe_layers(meta.get('layers'))}")
        if result.engine_parity is not None:
            click.echo(_safe_lines(result.engine_parity.table()))
    if result.engine_skipped:
        click.echo(f"note: {printable(result.engine_skipped)}", err=True)
    if result.evaluation is not None:
        _print_evaluation(result.evaluation)
    if result.triton:
        click.echo(printable(f"wrote Triton repository {triton_repo} (models {', '.join(m.name for m in result.triton)}"
                             f", each with a _pipeline ensemble); serve it with: inception-serve {triton_repo}"))
    if weights is None and any(r.judged is False for a in result.artifacts if a.parity for r in a.parity.rows):
        click.echo("note: FP16/INT8 parity is measured but not judged for randomly initialised weights (no "
                   "decision margins, so reduced precision flips near-ties); pass --weights to judge it", err=True)
    if result.failed:
        click.echo(f"warning: parity FAILED against eager PyTorch for {', '.join(map(printable, result.failed))}; "
                   f"kept for inspection", err=True)
        sys.exit(EXIT_PARTLY_FAILED)
    if result.engine_skipped and engine == "yes":
        sys.exit(EXIT_NO_ENGINE)


def _announce(line: str) -> None:
    """A pipeline stage starting, on stderr (stdout keeps the results)."""
    click.echo(printable(line), err=True)


def _report(result):
    shape = lambda dims: "x".join(str(d) for d in dims)  # noqa: E731
    verb = "kept" if result.reused else "wrote"
    click.echo(f"{verb} {printable(result.path)} ({result.size_bytes / 1e6:.1f} MB, {result.metadata['precision']}, "
               f"opset {result.opset}, {result.exporter} exporter, {result.input_name}[{shape(result.input_shape)}] "
               f"-> {result.output_name}[{shape(result.output_shape)}]) in {result.seconds:.1f} s")
    if result.parity is not None:
        click.echo(_safe_lines(result.parity.table()))


def _safe_lines(text: str) -> str:
    """Multi-line output with each line escaped (file names and labels come from users)."""
    return "\n".join(printable(line) for line in text.splitlines())


def _preprocess_config(base, input_size, mean, std, resize, crop_pct, interpolation, keep_aspect):
    if resize is not None and crop_pct is not None:
        raise ConfigError("--resize and --crop-pct both set the resize size: give one")
    config = base.with_input_size(input_size) if input_size else base
    changes = {k: v for k, v in {"mean": mean, "std": std, "interpolation": interpolation,
                                 "keep_aspect": keep_aspect}.items() if v is not None}
    if resize is not None:
        changes["resize_size"] = resize
    if crop_pct is not None:
        changes["resize_size"] = math.floor(config.input_size / crop_pct)
    return replace(config, **changes) if changes else config


@_command("run")
@click.argument("model", type=click.Path(),
          help="An exported .onnx file, or a TensorRT engine (.plan, .engine, .trt) with its .json sidecar. "
               "With --server: the first image.")
@click.argument("inputs", nargs=-1, help="Image files, folders (searched recursively) and glob patterns.")
@option("--samples", "use_samples", is_flag=True, group="Output",
        help="Also classify the photos shipped with the package (a quick check that needs no images).")
@option("--topk", type=click.IntRange(min=1), default=5, group="Output", help="Classes to show per image.")
@option("--json", "as_json", is_flag=True, group="Output",
        help="One JSON object per image and line: file, labels, indices, probabilities (or error).")
@option("--no-progress", is_flag=True, group="Output", help="No progress bar on stderr.")
@option("--labels", type=click.Path(dir_okay=False), group="Model", help="Class names, one per line, "
        "instead of those stored in the model.")
@option("--arch", metavar="NAME", group="Model",
        help="Preprocessing and labels for a model exported without inception-deploy metadata.")
@option("--device", type=click.Choice(DEVICES), default="auto",
        group="Backend", help="ONNX Runtime provider (auto: TensorRT, CUDA, CPU, whichever is available), or "
                              "OpenVINO on the CPU. Engines run on TensorRT.")
@_precision_option("Backend")
@_openvino_mode_option("Backend")
@option("--batch-size", type=click.IntRange(1, MAX_BATCH), group="Backend",
        help="Images per inference call.  [default: 8, or the model's limit]")
@option("--workers", type=click.IntRange(1, 64), group="Backend",
        help="Decoding threads; with --server, requests in flight.  [default: min(4, CPU count); server: 8]")
@option("--server", metavar="URL", group="Server",
        help="Classify on a Triton server instead (http://HOST:8000 or grpc://HOST:8001), through a "
             "pipeline written by inception-triton; MODEL is then the first image.")
@option("--model", "server_model", metavar="NAME", group="Server",
        help="With --server: the pipeline to use.  [default: the server's only *_pipeline model]")
@_one_line_errors
def run_command(model, inputs, use_samples, topk, as_json, no_progress, labels, arch, device, precision,
                openvino_mode, batch_size, workers, server, server_model):
    """Classify images (files, folders, globs) with an ONNX model or TensorRT engine.

    Preprocessing and labels are read from the model. Exit code 1 when any image could not be
    used (each is reported on stderr), 2 when the model cannot be used.
    """
    import warnings

    from PIL import Image

    from .inputs import expand_inputs
    from .cpu import int8_may_saturate
    from .models.registry import canonical_arch, get_arch
    from .parity import sample_photos
    from .runtime.predictor import Predictor

    if server is not None:
        inputs = (model,) + inputs
    elif server_model is not None:
        raise click.UsageError("--model names a pipeline on a server: it needs --server")
    if not inputs and not use_samples:
        raise click.UsageError("give images to classify (files, folders, globs), or --samples")

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # such images are refused, one line each
    if server is not None:
        local = {"--labels": labels, "--arch": arch, "--device": device != "auto" or None, "--precision": precision,
                 "--batch-size": batch_size}
        if any(v is not None for v in local.values()):
            raise click.UsageError(f"{', '.join(k for k, v in local.items() if v is not None)}: for local models; "
                                   f"the server's pipeline carries its own preprocessing, labels and batching")
        from .serving.client import TritonClient

        predictor = TritonClient(server, server_model, concurrency=workers or 8)
        click.echo(f"{printable(server)}: Triton {predictor.protocol}, model {printable(predictor.model)}", err=True)
        show_bar = not no_progress
        _classify(predictor, expand_inputs(inputs) + ([str(p) for p in sample_photos()] if use_samples else []),
                  topk, as_json, show_bar)
        return
    predictor = Predictor(model, device=device, arch=arch, labels=labels, batch_size=batch_size, workers=workers,
                          precision=precision, openvino_mode=openvino_mode)
    click.echo(f"{printable(model)}: {predictor.backend.describe()}", err=True)
    recorded = predictor.backend.metadata.get("arch")
    if arch is not None and canonical_arch(recorded) != get_arch(arch).name:
        click.echo(f"warning: {printable(model)} was exported from {recorded} and carries its preprocessing and "
                   f"labels; --arch {printable(arch)} ignored", err=True)
    if "init_seed" in (predictor.backend.metadata.get("weights") or {}):
        click.echo(f"note: {printable(model)} was exported with randomly initialised weights: its labels mean "
                   f"nothing", err=True)
    backend = predictor.backend
    if backend.metadata.get("int8_target") == "tensorrt" and backend.name.startswith("onnxruntime cpu"):
        click.echo(f"warning: {printable(model)} places INT8 for TensorRT; ONNX Runtime's CPU runs it slower than "
                   f"FP32 (export --int8-target cpu for CPU serving)", err=True)
    if int8_may_saturate(backend.metadata, backend.name):
        click.echo(f"warning: {printable(model)} has 8-bit INT8 weights and this CPU has no VNNI: {backend.name}'s "
                   f"int8 sums can saturate (check it with inception-parity; --int8-target cpu writes 7-bit "
                   f"weights, which cannot)", err=True)
    sources = expand_inputs(inputs) + ([str(p) for p in sample_photos()] if use_samples else [])
    _classify(predictor, sources, topk, as_json, show_bar=not no_progress and len(sources) > predictor.batch_size)


def _classify(predictor, sources, topk, as_json, show_bar) -> None:
    """Print a Predictor's or TritonClient's predictions: a table, or JSON lines; exit 1 when any failed."""
    from tqdm import tqdm

    failed, rows = 0, []
    with tqdm(total=len(sources), unit="img", file=sys.stderr, disable=not show_bar, leave=False) as bar:
        for p in predictor.iter_predict(sources, topk=topk):
            bar.update(1)
            if p.error is not None:
                failed += 1
                bar.write(f"error: {printable(p.file)}: {p.error}", file=sys.stderr)
            if as_json:
                click.echo(json.dumps(p.to_dict()))
            elif p.error is None:
                rows += [(printable(p.file) if rank == 0 else "", rank + 1, printable(label), f"{prob:.2%}", index)
                         for rank, (label, prob, index) in enumerate(zip(p.labels, p.probabilities, p.indices))]
    if rows:
        from tabulate import tabulate

        click.echo(tabulate(rows, headers=("file", "#", "label", "probability", "index"), disable_numparse=True))
    if failed:
        click.echo(f"{failed} of {len(sources)} inputs failed", err=True)
        sys.exit(EXIT_PARTLY_FAILED)


def _repository_options(fn):
    """How inception-triton and inception-serve lay out a Triton model repository."""
    options = [
        option("--arch", metavar="NAME", group="Repository",
               help="Preprocessing and labels for an .onnx exported without inception-deploy metadata."),
        option("--onnx-backend", type=click.Choice(["onnxruntime", "openvino"]), default="onnxruntime",
               group="Repository", help="Triton backend that runs .onnx files (engines run on tensorrt_plan)."),
        option("--kind", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", group="Repository",
               help="Where ONNX model instances run; auto: the GPU when the server has one. Engines: GPU."),
        option("--instances", type=click.IntRange(1, 64), default=1, group="Repository",
               help="Model instances per GPU (or on the CPU): Triton's instance_group count."),
        option("--max-batch", type=click.IntRange(1, MAX_BATCH), group="Repository",
               help="Largest batch the server forms.  [default: the model's limit; an engine's profile max]"),
        option("--preferred-batch", type=click.IntRange(1, MAX_BATCH), multiple=True, group="Repository",
               help="Batch sizes the dynamic batcher aims for (repeatable).  [default: an engine's profile "
                    "opt and max; ONNX: none, i.e. the largest batch that forms]"),
        option("--queue-delay-us", type=click.IntRange(0, 10_000_000), default=1000, group="Repository",
               help="How long a request may wait for others to fill a batch (microseconds)."),
    ]
    for decorate in reversed(options):
        fn = decorate(fn)
    return fn


def _write_repository(models, output, arch, onnx_backend, kind, instances, max_batch, preferred_batch,
                      queue_delay_us, replace=False):
    from .serving.repository import write_repository

    return write_repository(models, output, arch=arch, onnx_backend=onnx_backend, kind=kind, instances=instances,
                            max_batch=max_batch, preferred_batch=preferred_batch, queue_delay_us=queue_delay_us,
                            replace=replace, progress=_announce)


@_command("triton")
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False),
                help=".onnx files and TensorRT engines (with their .json sidecars); plans with the same file "
                     "name built on different GPUs become one model.")
@option("-o", "--output", required=True, type=click.Path(file_okay=False), group="Output",
        help="The model repository folder to write (new or empty).")
@option("--force", is_flag=True, group="Output", help="Replace an existing repository folder.")
@_repository_options
@_one_line_errors
def triton_command(models, output, force, arch, onnx_backend, kind, instances, max_batch, preferred_batch,
                   queue_delay_us):
    """Write an NVIDIA Triton model repository: per model, the classifier (config.pbtxt, labels for
    the classification extension, warmup, dynamic batching), a preprocessing model (image bytes in)
    and an ensemble NAME_pipeline that answers image bytes with the top-k labels."""
    from tabulate import tabulate

    written = _write_repository(models, output, arch, onnx_backend, kind, instances, max_batch, preferred_batch,
                                queue_delay_us, replace=force)
    rows = [(m.name, m.platform, m.max_batch, ", ".join(m.plans) or "any") for m in written]
    click.echo(_safe_lines(tabulate(rows, headers=("model", "platform", "max batch", "GPUs (compute capability)"))))
    click.echo(printable(f"wrote {output}: each model X also has X_preprocess, X_softmax and X_pipeline "
                         f"(send image bytes to X_pipeline); serve it with: inception-serve {output}"))


@_command("serve")
@click.argument("source", type=click.Path(exists=False),
                help="A model repository (inception-triton), or an .onnx file or engine to serve on its own.")
@option("--host", default="127.0.0.1", group="Server",
        help="Address to listen on (0.0.0.0: every interface; the server has no authentication).")
@option("--http-port", type=click.IntRange(0, 65535), default=8000, group="Server", help="0: any free port.")
@option("--grpc-port", type=click.IntRange(0, 65535), default=8001, group="Server", help="0: any free port.")
@option("--metrics-port", type=click.IntRange(0, 65535), default=8002, group="Server", help="0: any free port.")
@option("--ready-timeout", type=click.FloatRange(1, 3600), default=300, group="Server",
        help="Seconds to wait for the server to load the models.")
@option("--log", type=click.Path(dir_okay=False), group="Server",
        help="Write the server's own log here.  [default: a temporary file, shown when it fails]")
@_repository_options
@_one_line_errors
def serve_command(source, host, http_port, grpc_port, metrics_port, ready_timeout, log, arch, onnx_backend, kind,
                  instances, max_batch, preferred_batch, queue_delay_us):
    """Serve a model repository (or one model file) with a real NVIDIA Triton server until Ctrl-C or
    SIGTERM. Uses the tritonserver bundled with the serve extra (a CPU build), else one on PATH."""
    import tempfile
    from pathlib import Path

    from .serving.server import TritonServer

    source_path = Path(source)
    if not source_path.exists():
        raise InceptionDeployError(f"{source}: no such model repository or model file")
    with tempfile.TemporaryDirectory(prefix="inception-serve-repo-") as scratch:
        repository = source_path
        if source_path.is_file():  # one model: a repository of its own for this session
            repository = Path(scratch) / "repository"
            _write_repository([source_path], repository, arch, onnx_backend, kind, instances, max_batch,
                              preferred_batch, queue_delay_us)
        server = TritonServer(repository, host=host, http_port=http_port, grpc_port=grpc_port,
                              metrics_port=metrics_port, ready_timeout=ready_timeout, log_path=log)
        try:
            _announce(f"starting {server.binary.executable} on {repository}...")
            server.start()
            _serve_until_stopped(server)
        except KeyboardInterrupt:
            _announce("stopping the server...")
        finally:
            server.stop()
    _announce("server stopped")


def _serve_until_stopped(server) -> None:
    states = server.models()
    for name in server.stand_ins_used():
        _announce(f"note: this tritonserver has no {name} backend: models using it run on inception_deploy's own "
                  f"runtime in a Python-based backend (production servers use Triton's own backend)")
    for state in states:
        if state.state != "READY":
            _announce(f"warning: model {state.name} not loaded: {state.reason or state.state}")
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
    raise InceptionDeployError(f"tritonserver exited on its own with code {server.process.returncode}: "
                               f"{server.last_error()}")


@_command("eval")
@option("--data", required=True, type=click.Path(), group="Data",
        help="Labelled images: a folder of class subfolders, a CSV/TSV of path,label, or a folder of images "
             "with --ground-truth. Classes are the model's labels, ImageNet WNIDs, or (CSV) indices.")
@option("--ground-truth", type=click.Path(dir_okay=False), group="Data",
        help="For a folder of images: name,label rows (ImageNet: Caffe's val.txt or Kaggle's LOC_val_solution.csv).")
@option("--class-map", type=click.Path(dir_okay=False), group="Data",
        help="Rows 'data set class,model class' for classes named otherwise than the model's labels.")
@option("--limit", type=click.IntRange(min=1), group="Data", help="At most this many images, spread over the set.")
@option("--arch", metavar="NAME", group="Models", help="Evaluate eager PyTorch too, as the reference.")
@option("--weights", metavar="FILE|pretrained", group="Models", help="With --arch: its checkpoint.")
@option("--onnx", multiple=True, type=click.Path(dir_okay=False), group="Models", help="An .onnx to evaluate "
        "(repeatable).")
@option("--engine", multiple=True, type=click.Path(dir_okay=False), group="Models",
        help="A TensorRT engine to evaluate (repeatable).")
@option("--device", type=click.Choice(DEVICES), default="auto", group="Backend", help="Where .onnx files run.")
@option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=8, group="Backend", help="Images per call.")
@option("--workers", type=click.IntRange(1, 64), group="Backend", help="Decoding threads.  [default: min(4, CPUs)]")
@option("--json", "json_out", type=click.Path(dir_okay=False), group="Output", help="Write the report as JSON.")
@option("--plot", type=click.Path(dir_okay=False), group="Output",
        help="Accuracy against throughput per model (PNG; needs the bench extra).")
@option("--no-progress", is_flag=True, group="Output", help="No progress bar on stderr.")
@_one_line_errors
def eval_command(data, ground_truth, class_map, limit, arch, weights, onnx, engine, device, batch_size, workers,
                 json_out, plot, no_progress):
    """Accuracy of eager PyTorch and each artifact on a labelled image set, on exactly the same images:
    top-1/top-5 with 95% intervals, the difference to the reference with McNemar's test, agreement,
    images/s and the classes that lose most. Exit 1 when an image could not be used (as inception-run), 3 when
    an engine cannot run here."""
    from tqdm import tqdm

    from .evaluation import evaluate
    from .fileio import atomic_path, check_writable

    if arch is None and not onnx and not engine:
        raise click.UsageError("give --arch (eager PyTorch) and/or --onnx / --engine artifacts to evaluate")
    if weights is not None and arch is None:
        raise click.UsageError("--weights needs --arch")
    for path in (json_out, plot):
        if path:
            check_writable(path)
    if plot:
        from .bench import figure_class

        figure_class()
    with tqdm(unit="img", file=sys.stderr, disable=no_progress, leave=False) as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        report = evaluate(data, artifacts=list(onnx) + list(engine), arch=arch, weights=weights, device=device,
                          limit=limit, batch_size=batch_size, class_map=class_map, ground_truth=ground_truth,
                          workers=workers, progress=progress)
    _print_evaluation(report)
    if json_out:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=1))
        _announce(f"wrote {json_out}")
    if plot:
        from .evaluation import plot_accuracy

        plot_accuracy(report, plot)
        _announce(f"wrote {plot}")
    if report.skipped:
        sys.exit(EXIT_PARTLY_FAILED)
    if report.not_run:
        sys.exit(EXIT_NO_ENGINE)


def _print_evaluation(report) -> None:
    click.echo(f"{printable(report.data)}: {report.images} images, reference {printable(report.reference)}")
    click.echo(_safe_lines(report.table()))
    if report.losing_table():
        click.echo("classes losing most top-1 accuracy against the reference:")
        click.echo(_safe_lines(report.losing_table()))
    if report.skipped:
        file, reason = report.skipped[0]
        click.echo(f"note: {len(report.skipped)} unreadable images skipped (first: {printable(file)}: "
                   f"{printable(reason)})", err=True)
    for path, reason in report.not_run:
        click.echo(f"warning: {printable(path)} not evaluated: {printable(reason)}", err=True)


@_command("calibrate")
@click.argument("model", type=click.Path(dir_okay=False), help="The FP32 .onnx file written by inception-export.")
@option("-o", "--output", type=click.Path(dir_okay=False), group="Calibration",
        help="Cache file to write.  [default: <model>.calib.json]")
@_calibration_options("Calibration")
@_one_line_errors
def calibrate_command(model, output, calib_dir, calib_samples, calib_images, calib_batch, calib_method, percentile):
    """Calibrate an FP32 ONNX export on a folder of images into a reusable cache (per-tensor
    ranges, method, and digests of the model and its preprocessing)."""
    import tempfile
    import time
    from pathlib import Path

    from .calibration import calibration_folder, find_images
    from .calibration.cache import graph_digest, preprocess_digest
    from .calibration.qdq import prepare
    from .export.onnx import load_onnx
    from .export.precision import fp32_metadata, run_calibration
    from .fileio import check_writable
    from .metadata import preprocess_of

    calib_dir = calibration_folder(calib_dir, calib_samples)
    if calib_dir is None:
        raise click.UsageError("give calibration images with --calib-dir DIR (or --calib-samples for a demonstration)")
    model = Path(model)
    start = time.perf_counter()
    proto = load_onnx(model)
    config = preprocess_of(fp32_metadata(proto, model))
    output = Path(output) if output else model.with_suffix(".calib.json")
    check_writable(output)
    find_images(calib_dir)
    with tempfile.TemporaryDirectory(prefix="inception-calib-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        _announce(f"preparing {model} for calibration (shape inference, graph optimization)...")
        prepare(model, prepared)
        _announce(f"calibrating on up to {calib_images} images of {calib_dir} ({calib_method})...")
        cache = run_calibration(prepared, calib_dir, config, graph_digest(proto), preprocess_digest(config),
                                method=calib_method, images=calib_images, batch=calib_batch, percentile=percentile,
                                progress=_announce)
    cache.save(output)
    click.echo(f"wrote {printable(output)}: {len(cache.tensors)} tensor ranges ({calib_method}) from {cache.images} "
               f"images in {time.perf_counter() - start:.1f} s")


@_command("parity")
@option("--arch", required=True, metavar="NAME", group="Reference", help="Architecture of the eager reference.")
@option("--weights", metavar="FILE|pretrained", group="Reference",
        help="Checkpoint of the reference; must be the one the artifacts were exported from.")
@option("--onnx", "onnx_files", multiple=True, type=click.Path(dir_okay=False), group="Artifacts",
        help="ONNX file to check (repeatable).")
@option("--engine", "engines", multiple=True, type=click.Path(dir_okay=False), group="Artifacts",
        help="TensorRT engine to check (repeatable).")
@option("--device", type=click.Choice(DEVICES), default="cpu",
        group="Artifacts", help="ONNX Runtime provider for the ONNX files, or OpenVINO.")
@_precision_option("Artifacts")
@option("--images", type=click.Path(), group="Inputs",
        help="Folder of real photos.  [default: the photos shipped with the package]")
@option("--samples", type=click.IntRange(min=1), default=32, group="Inputs",
        help="Photos taken from --images (spread evenly over the folder).")
@option("--synthetic", type=click.IntRange(0, 1024), default=8, group="Inputs", help="Synthetic images added.")
@option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=8, group="Inputs", help="Artifact batch size.")
@option("--json", "json_out", type=click.Path(dir_okay=False), group="Output", help="Write the report as JSON.")
@_one_line_errors
def parity_command(arch, weights, onnx_files, engines, device, precision, images, samples, synthetic, batch_size,
                   json_out):
    """Compare exported artifacts with eager PyTorch on the same images, one row per artifact,
    PASS/FAIL against the thresholds of each artifact's precision. Exit 1 if any fails."""
    from .parity import check_artifacts

    artifacts = list(onnx_files) + list(engines)
    if not artifacts:
        raise ConfigError("nothing to check: pass --onnx FILE and/or --engine FILE")
    if json_out:
        from .fileio import check_writable

        check_writable(json_out)
    report = check_artifacts(arch, artifacts, weights=weights, device=device, precision=precision, images=images,
                             samples=samples, synthetic=synthetic, batch_size=batch_size, progress=_announce)
    if report.skipped_inputs:
        name, reason = report.skipped_inputs[0]
        click.echo(f"note: skipped {len(report.skipped_inputs)} unusable photo(s), e.g. {printable(name)}: {reason}",
                   err=True)
    click.echo(_safe_lines(report.table(first_column="artifact")))
    if json_out:
        from .fileio import atomic_path

        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=1))
    if report.failed:
        sys.exit(EXIT_PARTLY_FAILED)
    if report.skipped:
        sys.exit(EXIT_NO_ENGINE)


@_command("bench")
@click.argument("models", nargs=-1, help="Exported .onnx files and TensorRT engines to time.")
@option("--batch-sizes", default="1,8,32", group="Benchmark", help="Comma-separated batch sizes.")
@option("--iterations", type=click.IntRange(min=1), default=20, group="Benchmark", help="Timed runs per point.")
@option("--warmup", type=click.IntRange(min=0), default=3, group="Benchmark", help="Untimed runs first.")
@option("--torch-arch", metavar="NAME", group="Benchmark",
        help="Also time eager torch: CPU fp32 and bf16 autocast + channels_last; GPU fp16 channels_last.")
@option("--torch-compile", is_flag=True, group="Benchmark",
        help="With --torch-arch: also torch.compile (bf16 + channels_last); compile time reported apart.")
@option("--device", default="auto", metavar="DEVICE[,DEVICE...]", group="Benchmark",
        help="Where ONNX models run: auto, cpu, cuda, tensorrt (ONNX Runtime providers) or openvino; several, "
             "comma-separated, time each model on each side by side (e.g. cpu,openvino).")
@_precision_option("Benchmark")
@_openvino_mode_option("Benchmark")
@option("--json", "json_out", type=click.Path(dir_okay=False), group="Output", help="Write results as JSON.")
@option("--plot", type=click.Path(dir_okay=False), group="Output", help="Throughput, latency and speed-up vs batch size per model (PNG).")
@_one_line_errors
def bench_command(models, batch_sizes, iterations, warmup, torch_arch, torch_compile, device, precision,
                  openvino_mode, json_out, plot):
    """Latency (p50/p90/p99) and throughput per model and batch size, each point in its own process,
    with eager torch baselines in the same run so every figure is also a ratio."""
    from .bench import figure_class, run_benchmarks, table, unstable_warning
    from .fileio import check_writable

    try:
        sizes = sorted({int(b) for b in batch_sizes.split(",") if b.strip()})
    except ValueError:
        raise ConfigError(f"--batch-sizes must be comma-separated integers, not {batch_sizes!r}") from None
    if not sizes or min(sizes) < 1 or max(sizes) > MAX_BATCH:
        raise ConfigError(f"--batch-sizes needs sizes from 1 to {MAX_BATCH}, not {batch_sizes!r}")
    if not models and not torch_arch:
        raise ConfigError("nothing to benchmark: pass model files and/or --torch-arch")
    if torch_compile and not torch_arch:
        raise ConfigError("--torch-compile needs --torch-arch")
    for path in (json_out, plot):
        if path:
            check_writable(path)
    devices = tuple(dict.fromkeys(d.strip() for d in device.split(",") if d.strip()))
    unknown = [d for d in devices if d not in DEVICES]
    if not devices or unknown:
        raise ConfigError(f"--device: unknown device {(unknown or [device])[0]!r}; choose from {', '.join(DEVICES)}")
    if precision == "bf16" and not {"auto", "openvino"} & set(devices):
        raise ConfigError("--precision bf16 runs on OpenVINO: add openvino to --device")
    for model in models:
        if not os.path.isfile(model):
            raise InceptionDeployError(f"{model}: no such model file")
    if plot:
        figure_class()
    results = run_benchmarks(models, sizes, iterations, warmup, torch_arch, devices,
                             progress=lambda line: click.echo(line, err=True), precision=precision,
                             torch_compile=torch_compile, openvino_mode=openvino_mode)
    click.echo(table(results))
    if unstable_warning(results):
        click.echo(f"warning: {unstable_warning(results)}", err=True)
    for r in results:
        if r.compile_s is not None:
            click.echo(f"torch.compile at batch {r.batch}: {r.compile_s:.1f} s to compile (not in the latency)")
    if json_out:
        from .fileio import atomic_path

        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps([r.to_dict() for r in results], indent=1))
        _announce(f"wrote {json_out}")
    if plot:
        from .bench import plot_latency

        plot_latency(results, plot)
        _announce(f"wrote {plot}")


@_command("build")
@click.argument("model", type=click.Path(dir_okay=False),
          help="An exported .onnx file (FP32, FP16 or INT8 Q/DQ) with inception-deploy metadata.")
@option("-o", "--output", type=click.Path(dir_okay=False), group="Engine",
        help="Engine file.  [default: MODEL with .plan]")
@option("--min-batch", type=click.IntRange(1, MAX_BATCH), default=1, group="Profile", help="Smallest batch.")
@option("--opt-batch", type=click.IntRange(1, MAX_BATCH), group="Profile",
        help="Batch tuned for.  [default: 8, within min..max]")
@option("--max-batch", type=click.IntRange(1, MAX_BATCH), default=32, group="Profile", help="Largest batch.")
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
    from .export.engine import EngineNotBuilt, build_engine, describe_layers

    try:
        built = build_engine(model, output, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                             workspace_gib=workspace_gib, timing_cache=timing_cache, opt_level=opt_level,
                             version_compatible=version_compatible, hardware_compatibility=hardware_compatibility,
                             progress=_announce)
    except EngineNotBuilt as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_NO_ENGINE)
    click.echo(f"wrote {built.path} (+ {built.sidecar.name}, TensorRT {built.metadata['tensorrt']['version']}, "
               f"{built.metadata['precision']}, GPU {built.metadata['gpu']['name']}) in {built.seconds:.1f} s")
    click.echo(f"engine precision: {describe_layers(built.metadata.get('layers'))}")


@_command("doctor")
@option("--json", "as_json", is_flag=True, group="Output", help="The facts as one JSON list on stdout.")
@_one_line_errors
def doctor_command(as_json):
    """Say what this machine can do: Python, torch, ONNX Runtime (providers that really load),
    TensorRT, cuda-python, GPU and driver, and which extra to install for what is missing."""
    from .doctor import as_json as facts_json
    from .doctor import diagnose

    facts = diagnose()
    if as_json:
        click.echo(json.dumps(facts_json(facts), indent=1))
    else:
        for fact in facts:
            click.echo(printable(fact.line()))


main.add_command(export_command)
main.add_command(build_command)
main.add_command(run_command)
main.add_command(calibrate_command)
main.add_command(parity_command)
main.add_command(bench_command)
main.add_command(doctor_command)
main.add_command(triton_command)
main.add_command(serve_command)
main.add_command(eval_command)


def _console_script(command):
    """The entry point of console script ``inception-<command>`` (same command as ``inception <command>``)."""
    return lambda: command(prog_name=f"inception-{command.name}")


export_main = _console_script(export_command)
build_main = _console_script(build_command)
run_main = _console_script(run_command)
calibrate_main = _console_script(calibrate_command)
parity_main = _console_script(parity_command)
bench_main = _console_script(bench_command)
doctor_main = _console_script(doctor_command)
triton_main = _console_script(triton_command)
serve_main = _console_script(serve_command)
eval_main = _console_script(eval_command)
