"""The whole deploy as one call: FP32 ONNX -> FP16 / INT8 ONNX -> TensorRT engine, each checked
against eager PyTorch.

``deploy("v3", fp16=True)`` runs every stage the options ask for and returns what it wrote
with the parity reports; the CLI (``inception-export``) only parses options and prints what
this reports. Stages announce themselves through ``progress`` (a callable taking one line), so
a command line can show them while the API stays silent. Everything that would make a later
stage fail (unwritable outputs, no calibration source, a corrupt calibration cache) is refused
before the slow export starts.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .calibration.float_layers import (
    PRECISION_FILE,
    keep_float_patterns,
    match_modules,
    maybe_quantized,
    precision_file,
)
from .calibration.images import calibration_folder
from .calibration.policy import CalibrationRequest
from .calibration.qdq import check_weight_bits
from .errors import ConfigError
from .fileio import check_writable
from .labelled import ClassNames, read_labelled
from .labels import resolve_labels
from .metadata import ONNX_MODEL, preprocess_of
from .models.registry import get_arch
from .preprocess import PreprocessConfig
from .progress import Progress, silent, stage
from .serving.repository import check_destination, write_repository

if TYPE_CHECKING:  # the export stages import torch: only when deploy runs
    from .export.onnx import ExportResult
    from .verify.metrics import ParityReport

ENGINE_CHOICES = ("auto", "yes", "no")


@dataclass(frozen=True)
class EngineOptions:
    """Whether to build a TensorRT engine (auto: where TensorRT and a GPU are; yes: the same, and
    the caller exits 3 when impossible; no), its largest batch, and the timing cache to reuse."""

    build: str = "auto"
    max_batch: int = 32
    timing_cache: str | os.PathLike | None = None


@dataclass
class DeployResult:
    """What ``deploy`` wrote: ONNX artifacts (FP32 first), the engine if one was built, and why
    not otherwise."""

    artifacts: list[ExportResult] = field(default_factory=list)
    engine: object | None = None  # export.engine.EngineResult
    engine_parity: ParityReport | None = None
    engine_skipped: str | None = None  # why no engine was built (TensorRT or a GPU missing)
    triton: list = field(default_factory=list)  # serving.repository.WrittenModel, with triton_repository
    evaluation: object | None = None  # evaluation.EvalReport, with eval_data

    @property
    def failed(self) -> list[Path]:
        """Artifacts whose judged parity failed (they are kept for inspection)."""
        failed = [r.path for r in self.artifacts if r.parity is not None and r.parity.failed]
        if self.engine_parity is not None and self.engine_parity.failed:
            failed.append(self.engine.path)
        return failed

    @property
    def budget_missed(self) -> list[Path]:
        """INT8 files whose accuracy budget could not be met even with every layer float (each is
        the best placement found, kept with its figures)."""
        return [r.path for r in self.artifacts if r.budget is not None and not r.budget.met]


def default_output(arch: str) -> Path:
    """``<file stem of the arch>.onnx`` in the current folder, e.g. ``inception_v3.onnx`` for v3
    and ``googlenet.onnx`` for v1 (the reference's own name)."""
    return Path(f"{get_arch(arch).file_stem}.onnx")


def default_int8_target() -> str:
    """TensorRT's symmetric Q/DQ where TensorRT is installed, ONNX Runtime CPU's otherwise."""
    return "tensorrt" if importlib.util.find_spec("tensorrt") else "cpu"


def deploy(
    arch: str,
    output: str | os.PathLike | None = None,
    *,
    weights=None,
    num_classes: int = 1000,
    labels=None,
    preprocess: PreprocessConfig | None = None,
    opset: int | None = None,
    batch: int | None = None,
    max_batch: int = 64,
    simplify: bool = True,
    fp16: bool = False,
    fp16_io: bool = False,
    int8: bool = False,
    int8_target: str | None = None,
    int8_remainder: str = "fp32",
    int8_keep_float=(),
    int8_weight_bits: int | None = None,
    int8_max_drop: float | None = None,
    int8_holdout: float = 0.2,
    calib_dir=None,
    calib_samples: bool = False,
    calib_cache=None,
    calib_images: int = 512,
    calib_batch: int = 8,
    calib_method: str = "entropy",
    percentile: float = 99.99,
    engine: str = "auto",
    max_engine_batch: int = 32,
    timing_cache=None,
    parity: bool = True,
    recheck_parity: bool = False,
    eval_data=None,
    eval_limit: int | None = None,
    triton_repository=None,
    progress: Progress | None = None,
) -> DeployResult:
    """Export ``arch`` to ``output`` (default ``default_output(arch)``) and derive what is asked.

    - ``fp16``: ``<output>_fp16.onnx``; ``int8``: ``<output>_int8_<target>.onnx`` (``..._fp16.onnx``
      with ``int8_remainder="fp16"``: the unquantized ops in FP16, tensorrt target) calibrated on
      ``calib_dir`` (or, with ``calib_samples``, the shipped photos: a demonstration) or from
      ``calib_cache`` (default ``<output>.calib.json``, recalibrated when
      stale; an explicitly named stale cache is refused instead). ``int8_keep_float``: Conv layers
      left float, as module-path globs or precision files (``export.precision.quantize_int8``);
      ``int8_weight_bits``: 7 or 8 for the cpu target. ``int8_max_drop``: keep Conv layers float,
      most sensitive first, until top-1 is within that many points of FP32 on images calibration
      did not see (an ``int8_holdout`` share of ``calib_dir``, or ``eval_data``, then judged by
      accuracy against its labels); ``DeployResult.budget_missed`` when it cannot be met.
    - ``engine``: "auto" builds a TensorRT engine of the most reduced precision TensorRT can
      take where TensorRT and a GPU are present, "yes" the same (``engine_skipped`` says why
      not), "no" never.
    - ``eval_data``: a labelled image set (``evaluation.read_labelled``): eager and every artifact
      written (the engine too) are evaluated on it (at most ``eval_limit`` images).
    - ``triton_repository``: a Triton model repository (a new or empty folder) serving every
      artifact written, each with its preprocessing model and ``<name>_pipeline`` ensemble.
    - ``parity``: every artifact is checked against the eager model. Randomly initialised
      weights (``weights=None``) have no decision margins, so their FP16/INT8 rows are measured
      but not judged; FP32 is always judged. An FP32 export reused for FP16/INT8 keeps the parity
      recorded in it unless ``recheck_parity``.
    """
    from .export import export_onnx  # torch: only now
    from .export.budget import Budget
    from .export.engine import TIMING_CACHE
    from .export.precision import check_remainder, convert_fp16, quantize

    say = progress or silent
    if fp16_io and not fp16:
        raise ConfigError("--fp16-io (fp16_io) needs --fp16 (fp16)")
    if not int8 and (calib_dir is not None or calib_samples or calib_cache is not None):
        raise ConfigError("--calib-dir, --calib-samples and --calib-cache need --int8")
    if engine not in ENGINE_CHOICES:
        raise ConfigError(f"engine must be {', '.join(ENGINE_CHOICES)}, not {engine!r}")
    for value, name in (
        (int8_remainder != "fp32", "--int8-remainder"),
        (int8_keep_float, "--int8-keep-float"),
        (int8_weight_bits, "--int8-weight-bits"),
        (int8_max_drop is not None, "--int8-max-drop"),
    ):
        if value and not int8:
            raise ConfigError(f"{name} needs --int8")
    output = Path(output) if output is not None else default_output(arch)
    engine_options = EngineOptions(engine, max_engine_batch, timing_cache)
    calibration = CalibrationRequest(
        calibration_folder(calib_dir, calib_samples),
        calib_images,
        calib_batch,
        calib_method,
        percentile,
        Path(calib_cache) if calib_cache is not None else output.with_suffix(".calib.json"),
        replace_stale=calib_cache is None,
    )  # the default cache beside the output is ours to replace when stale
    fp16_path = _beside(output, "_fp16")
    if int8:  # an FP16 remainder is TensorRT's: it picks the target when none is named
        int8_target = int8_target or ("tensorrt" if int8_remainder == "fp16" else default_int8_target())
        check_remainder(int8_remainder, int8_target, f"--opset {opset}", opset)  # before the slow export
        check_weight_bits(int8_target, int8_weight_bits)
        if int8_keep_float:  # a pattern naming no layer, a precision file of another arch
            spec = get_arch(arch)
            match_modules(keep_float_patterns(int8_keep_float, spec.name), maybe_quantized(spec), spec.name)
    int8_path = _beside(output, f"_int8_{int8_target}" + ("_fp16" if int8_remainder == "fp16" else ""))
    inputs = [weights, labels, eval_data, *(int8_keep_float or ())]  # never written over
    for path in [output] + [fp16_path] * fp16 + [int8_path] * int8:
        check_writable(path, ONNX_MODEL, inputs)
    if int8:
        check_writable(precision_file(int8_path), PRECISION_FILE, inputs)
    if timing_cache:
        check_writable(timing_cache, TIMING_CACHE, inputs)
    labelled = None
    if eval_data is not None:  # a bad labelled set is refused before the slow export
        labelled = read_labelled(eval_data, ClassNames(resolve_labels(labels, num_classes)[0]))
    budget = None
    if int8 and int8_max_drop is not None:
        budget = Budget(int8_max_drop, int8_holdout, (labelled.files, labelled.targets) if labelled else None)
        if calibration.folder is None:
            raise ConfigError("--int8-max-drop calibrates anew and judges on held-out images: it needs --calib-dir")
        if calib_cache is not None and Path(calib_cache).exists():
            raise ConfigError(
                f"{calib_cache}: --int8-max-drop calibrates on the images it does not hold out; this cache was "
                f"made from images it cannot tell apart: name a new --calib-cache, or none"
            )
        budget.check(calibration.folder)
    if int8:
        calibration.check()
    if triton_repository is not None:
        check_destination(triton_repository)

    result = DeployResult()
    fp32 = export_onnx(
        arch,
        output,
        weights=weights,
        num_classes=num_classes,
        opset=opset,
        batch=batch,
        max_batch=max_batch,
        simplify=simplify,
        check_parity=parity,
        labels=labels,
        preprocess=preprocess,
        reuse=fp16 or int8,
        recheck_parity=recheck_parity,
        progress=progress,
    )
    result.artifacts.append(fp32)
    reference = fp32.model if parity else None
    judge = weights is not None
    if fp16:
        result.artifacts.append(
            convert_fp16(
                output, fp16_path, fp16_io=fp16_io, reference_model=reference, judge_parity=judge, progress=progress
            )
        )
    if int8:
        result.artifacts.append(
            quantize(
                output,
                int8_path,
                int8_target,
                calibration,
                remainder=int8_remainder,
                keep_float=int8_keep_float,
                weight_bits=int8_weight_bits,
                budget=budget,
                reference_model=reference,
                judge_parity=judge,
                progress=progress,
            )
        )
    if engine_options.build != "no":  # from the most reduced precision TensorRT can take (not the cpu INT8 target)
        source = next(r for r in reversed(result.artifacts) if r.metadata.get("int8_target", "tensorrt") == "tensorrt")
        _build_engine(result, source, reference, engine_options, judge, say)
    written = [a.path for a in result.artifacts] + ([result.engine.path] if result.engine is not None else [])
    if eval_data is not None:
        from .evaluation import evaluate

        with stage(say, f"evaluating eager and {len(written)} artifacts on {eval_data}"):
            result.evaluation = evaluate(
                eval_data,
                artifacts=written,
                model=fp32.model,
                preprocess=preprocess_of(fp32.metadata),
                labels=fp32.metadata["labels"]["names"],
                limit=eval_limit,
            )
    if triton_repository is not None:
        result.triton = write_repository(written, triton_repository, progress=progress)
    return result


def _build_engine(
    result: DeployResult, source: ExportResult, reference, options: EngineOptions, judge: bool, say: Progress
) -> None:
    from .export.engine import EngineNotBuilt, build_engine, engine_unavailable_reason
    from .verify.comparator import check_backend, verification_batches

    reason = engine_unavailable_reason()
    if reason:
        result.engine_skipped = f"{source.path.with_suffix('.plan')} not built: {reason}"
        return
    batch, max_batch = source.metadata.get("batch"), options.max_batch
    try:
        built = build_engine(
            source.path,
            min_batch=batch or 1,
            opt_batch=batch or min(8, max_batch),
            max_batch=batch or max_batch,
            timing_cache=options.timing_cache,
            progress=say,
        )
    except EngineNotBuilt as e:
        result.engine_skipped = str(e)
        return
    result.engine = built
    if reference is None:
        return
    from .runtime.tensorrt_backend import TensorRTBackend

    backend = TensorRTBackend(built.path)
    sizes = verification_batches(batch, max_batch)
    precision = built.metadata["precision"]
    with stage(say, f"checking the engine's parity against eager PyTorch at batch sizes {', '.join(map(str, sizes))}"):
        result.engine_parity = check_backend(
            reference,
            backend,
            preprocess_of(source.metadata),
            sizes,
            precision,
            "tensorrt",
            judged=judge or precision == "fp32",
        )


def _beside(output: Path, suffix: str) -> Path:
    return output.with_name(f"{output.stem}{suffix}{output.suffix}")
