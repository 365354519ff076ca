"""The whole deploy as one call: FP32 ONNX -> FP16 / INT8 ONNX -> TensorRT engine, each checked
against eager PyTorch.

``deploy(ExportRequest("v3"), fp16=Fp16Request())`` runs every stage the settings objects ask for
(each validated when made) and returns what it wrote with the parity reports; the CLI
(``inception-export``) only turns its flags into those objects and prints what this reports.
Stages announce themselves through ``progress`` (a callable taking one line), so a command line
can show them while the API stays silent. Everything that would make a later stage fail
(unwritable outputs, no calibration source, a corrupt calibration cache) is refused before the
slow export starts.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .calibration.float_layers import (
    PRECISION_FILE,
    keep_float_patterns,
    match_modules,
    maybe_quantized,
    precision_file,
)
from .calibration.policy import CalibrationRequest
from .calibration.qdq import check_weight_bits
from .errors import ConfigError
from .fileio import check_writable
from .labelled import ClassNames, read_labelled
from .labels import resolve_labels
from .metadata import INT8_REMAINDERS, INT8_TARGETS, ONNX_MODEL, preprocess_of
from .models.registry import get_arch
from .preprocess import PreprocessConfig
from .progress import Progress, silent, stage
from .serving.repository import check_destination, write_repository

if TYPE_CHECKING:  # the export stages import torch: only when deploy runs
    from .export.onnx import ExportResult
    from .verify.metrics import ParityReport

ENGINE_CHOICES = ("auto", "yes", "no")


@dataclass(frozen=True)
class ExportRequest:
    """The FP32 export: ``arch`` built with ``weights`` (a checkpoint file, "pretrained", or None:
    random init with batch-norm statistics from data), ``num_classes`` outputs named by ``labels``,
    the weights' preprocessing or ``preprocess``; written to ``output`` (default
    ``default_output(arch)``) at ``opset`` with a static ``batch`` or a dynamic one up to
    ``max_batch``, its graph optimized unless not ``simplify``."""

    arch: str
    output: str | os.PathLike | None = None
    weights: str | os.PathLike | None = None
    num_classes: int = 1000
    labels: str | os.PathLike | None = None
    preprocess: PreprocessConfig | None = None
    opset: int | None = None
    batch: int | None = None
    max_batch: int = 64
    simplify: bool = True

    def __post_init__(self):
        output = Path(self.output) if self.output is not None else default_output(self.arch)
        object.__setattr__(self, "output", output)

    def beside(self, suffix: str) -> Path:
        """A file beside the output: ``v3.onnx`` -> ``v3<suffix>.onnx``."""
        return self.output.with_name(f"{self.output.stem}{suffix}{self.output.suffix}")


@dataclass(frozen=True)
class Fp16Request:
    """``<output>_fp16.onnx``, with half-precision input and output too when ``io`` (else float32)."""

    io: bool = False


@dataclass(frozen=True)
class Int8Request:
    """``<output>_int8_<target>.onnx`` (``..._fp16.onnx`` with an FP16 ``remainder``: the unquantized
    ops in FP16, tensorrt target), calibrated as ``calibration`` asks (its ``cache`` None: the
    default ``<output>.calib.json``, recalibrated when stale). ``target`` defaults to tensorrt where
    TensorRT is installed (or the remainder is FP16), else cpu. ``keep_float``: module-path globs
    or precision files of layers left float; ``weight_bits``: 7 or 8 for the cpu target.
    ``max_drop``: keep layers float, most sensitive first, until top-1 is within that many points
    of FP32 on images calibration did not see (a ``holdout`` share of its folder, or the
    verification's ``eval_data``). Validated when made."""

    calibration: CalibrationRequest = CalibrationRequest()
    target: str | None = None
    remainder: str = "fp32"
    keep_float: tuple = ()
    weight_bits: int | None = None
    max_drop: float | None = None
    holdout: float = 0.2

    def __post_init__(self):

        target = self.target or ("tensorrt" if self.remainder == "fp16" else default_int8_target())
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "keep_float", tuple(str(v) for v in self.keep_float))
        if target not in INT8_TARGETS or self.remainder not in INT8_REMAINDERS:
            raise ConfigError(
                f"INT8 target must be one of {', '.join(INT8_TARGETS)} and remainder one of "
                f"{', '.join(INT8_REMAINDERS)}, not {target!r} / {self.remainder!r}"
            )
        check_weight_bits(target, self.weight_bits)
        if self.max_drop is not None and self.calibration.folder is None:
            raise ConfigError(
                "--int8-max-drop (max_drop) calibrates anew and judges on held-out images: it needs calibration "
                "images, --calib-dir (calibration.folder)"
            )

    @property
    def suffix(self) -> str:
        return f"_int8_{self.target}" + ("_fp16" if self.remainder == "fp16" else "")


@dataclass(frozen=True)
class EngineOptions:
    """Whether to build a TensorRT engine (auto: where TensorRT and a GPU are; yes: the same, and
    the caller exits 3 when impossible; no), its largest batch, and the timing cache to reuse."""

    build: str = "auto"
    max_batch: int = 32
    timing_cache: str | os.PathLike | None = None

    def __post_init__(self):
        if self.build not in ENGINE_CHOICES:
            raise ConfigError(f"engine must be {', '.join(ENGINE_CHOICES)}, not {self.build!r}")


@dataclass(frozen=True)
class VerifyRequest:
    """What is checked: with ``parity``, every file against eager PyTorch (randomly initialised
    weights have no decision margins, so their FP16/INT8 rows are measured but not judged; FP32 is
    always judged; a reused FP32 export keeps its recorded parity unless ``recheck_parity``); with
    ``eval_data``, a labelled image set, eager and every file evaluated on it (at most
    ``eval_limit`` images)."""

    parity: bool = True
    recheck_parity: bool = False
    eval_data: str | os.PathLike | None = None
    eval_limit: int | None = None


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
    export: ExportRequest | str,
    *,
    fp16: Fp16Request | None = None,
    int8: Int8Request | None = None,
    engine: EngineOptions = EngineOptions(),
    verify: VerifyRequest = VerifyRequest(),
    triton_repository: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> DeployResult:
    """Export as ``export`` asks (an arch name alone: its defaults) and derive what is asked:
    ``fp16``, ``int8`` (each file beside the FP32 one), a TensorRT ``engine`` of the most reduced
    precision TensorRT can take ("auto": where TensorRT and a GPU are; ``engine_skipped`` says why
    not), a Triton model repository (``triton_repository``: a new or empty folder, each artifact
    with its preprocessing model and ``<name>_pipeline`` ensemble); every file checked as
    ``verify`` asks, here, in one place. What would fail later (unwritable outputs, no calibration
    source, a corrupt cache, a bad labelled set) is refused before the slow export starts."""
    from .calibration.budget import Budget
    from .export import export_onnx  # torch: only now
    from .export.engine import TIMING_CACHE
    from .export.precision import check_remainder, convert_fp16, quantize

    say = progress or silent
    export = ExportRequest(export) if isinstance(export, str) else export
    output = export.output
    fp16_path = export.beside("_fp16")
    int8_path = export.beside(int8.suffix) if int8 else None
    calibration = None
    if int8:  # the default cache beside the output is ours to replace when stale
        calibration = int8.calibration
        if calibration.cache is None:
            calibration = replace(calibration, cache=output.with_suffix(".calib.json"), replace_stale=True)
        check_remainder(int8.remainder, int8.target, f"--opset {export.opset}", export.opset)  # before the export
        if int8.keep_float:  # a pattern naming no layer, a precision file of another arch
            spec = get_arch(export.arch)
            match_modules(keep_float_patterns(int8.keep_float, spec.name), maybe_quantized(spec), spec.name)
    inputs = [export.weights, export.labels, verify.eval_data, *(int8.keep_float if int8 else ())]  # never written over
    for path in [output] + [fp16_path] * bool(fp16) + [int8_path] * bool(int8):
        check_writable(path, ONNX_MODEL, inputs)
    if int8:
        check_writable(precision_file(int8_path), PRECISION_FILE, inputs)
    if engine.timing_cache:
        check_writable(engine.timing_cache, TIMING_CACHE, inputs)
    labelled = None
    if verify.eval_data is not None:  # a bad labelled set is refused before the slow export
        labelled = read_labelled(verify.eval_data, ClassNames(resolve_labels(export.labels, export.num_classes)[0]))
    budget = None
    if int8 and int8.max_drop is not None:
        budget = Budget(int8.max_drop, int8.holdout, (labelled.files, labelled.targets) if labelled else None)
        if not calibration.replace_stale and Path(calibration.cache).exists():
            raise ConfigError(
                f"{calibration.cache}: --int8-max-drop calibrates on the images it does not hold out; this cache "
                f"was made from images it cannot tell apart: name a new --calib-cache, or none"
            )
        budget.check(calibration.folder)
    if int8:
        calibration.check()
    if triton_repository is not None:
        check_destination(triton_repository)

    result = DeployResult()
    fp32 = export_onnx(
        export.arch,
        output,
        weights=export.weights,
        num_classes=export.num_classes,
        opset=export.opset,
        batch=export.batch,
        max_batch=export.max_batch,
        simplify=export.simplify,
        check_parity=verify.parity,
        labels=export.labels,
        preprocess=export.preprocess,
        reuse=bool(fp16 or int8),
        recheck_parity=verify.recheck_parity,
        progress=progress,
    )
    result.artifacts.append(fp32)
    reference = fp32.model if verify.parity else None
    judge = export.weights is not None
    if fp16:
        result.artifacts.append(
            convert_fp16(
                output, fp16_path, fp16_io=fp16.io, reference_model=reference, judge_parity=judge, progress=progress
            )
        )
    if int8:
        result.artifacts.append(
            quantize(
                output,
                int8_path,
                int8.target,
                calibration,
                remainder=int8.remainder,
                keep_float=int8.keep_float,
                weight_bits=int8.weight_bits,
                budget=budget,
                reference_model=reference,
                judge_parity=judge,
                progress=progress,
            )
        )
    if engine.build != "no":  # from the most reduced precision TensorRT can take (not the cpu INT8 target)
        source = next(r for r in reversed(result.artifacts) if r.metadata.get("int8_target", "tensorrt") == "tensorrt")
        _build_engine(result, source, reference, engine, judge, say)
    written = [a.path for a in result.artifacts] + ([result.engine.path] if result.engine is not None else [])
    if verify.eval_data is not None:
        from .verify.evaluation import evaluate

        with stage(say, f"evaluating eager and {len(written)} artifacts on {verify.eval_data}"):
            result.evaluation = evaluate(
                verify.eval_data,
                artifacts=written,
                model=fp32.model,
                preprocess=preprocess_of(fp32.metadata),
                labels=fp32.metadata["labels"]["names"],
                limit=verify.eval_limit,
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
