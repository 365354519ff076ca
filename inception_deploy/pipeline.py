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

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .calibration.float_layers import (
    PRECISION_FILE,
    match_modules,
    maybe_quantized,
    precision_file,
)
from .calibration.int8 import Int8Request
from .errors import ConfigError, setting
from .fileio import check_writable
from .labelled import ClassNames, read_labelled
from .labels import resolve_labels
from .metadata import ONNX_MODEL
from .models.registry import get_arch
from .preprocess import PreprocessConfig
from .progress import Progress, silent, stage
from .runtime.torch_runner import TorchRunner
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
        """INT8 files whose accuracy budget no placement tried showed, even with every layer float
        (each is the best placement found, kept with its figures)."""
        return [r.path for r in self.artifacts if r.budget is not None and not r.budget.met]

    @property
    def budget_unproven(self) -> list[Path]:
        """INT8 files within their budget at the point estimate only, accepted as unproven (their
        metadata says so)."""
        return [r.path for r in self.artifacts if r.budget is not None and r.budget.met and not r.budget.proven]


def default_output(arch: str) -> Path:
    """``<file stem of the arch>.onnx`` in the current folder, e.g. ``inception_v3.onnx`` for v3
    and ``googlenet.onnx`` for v1 (the reference's own name)."""
    return Path(f"{get_arch(arch).file_stem}.onnx")


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
    from .export import export_onnx  # torch: only now
    from .export.engine import TIMING_CACHE
    from .export.precision import check_remainder_opset, convert_fp16, quantize

    say = progress or silent
    export = ExportRequest(export) if isinstance(export, str) else export
    output = export.output
    fp16_path = export.beside("_fp16")
    int8_path = export.beside(int8.suffix) if int8 else None
    if int8:
        if int8.calibration.cache is None:  # the default cache beside the output is ours to replace when stale
            default = replace(int8.calibration, cache=output.with_suffix(".calib.json"), replace_stale=True)
            int8 = replace(int8, calibration=default)
        check_remainder_opset(
            int8.remainder, export.opset, f"{setting('ExportRequest.opset')} {export.opset}"
        )  # before the export
        if int8.keep_float:  # a pattern naming no layer, a precision file of another arch
            spec = get_arch(export.arch)
            match_modules(int8.float_patterns(spec.name)[0], maybe_quantized(spec, int8.target), spec.name)
    inputs = [export.weights, export.labels, verify.eval_data, *(int8.keep_float if int8 else ())]  # never written over
    if int8:
        _check_replay_destination(int8, int8_path)
    for path in [output] + [fp16_path] * bool(fp16) + [int8_path] * bool(int8):
        check_writable(path, ONNX_MODEL, inputs)
    if int8:
        check_writable(precision_file(int8_path), PRECISION_FILE, inputs)
    if engine.timing_cache:
        check_writable(engine.timing_cache, TIMING_CACHE, inputs)
    labelled = None
    if verify.eval_data is not None:  # a bad labelled set is refused before the slow export
        labelled = read_labelled(verify.eval_data, ClassNames(resolve_labels(export.labels, export.num_classes)[0]))
    judged = (labelled.files, labelled.targets) if labelled else None
    budget = int8.budget(judged) if int8 else None
    if budget is not None:
        calibration = int8.calibration
        if not calibration.replace_stale and Path(calibration.cache).exists():
            raise ConfigError(
                f"{calibration.cache}: {setting('Int8Request.max_drop')} calibrates on the images it does not "
                f"hold out; "
                f"this cache was made from images it cannot tell apart: name a new "
                f"{setting('CalibrationRequest.cache')}, or none"
            )
        budget.check(calibration.folder)
    if int8:
        int8.calibration.check()
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
    # one eager runner for every later check: it keeps its outputs per input set, so the FP16, INT8
    # and engine checks run the slow eager model once, not once each
    reference = TorchRunner(fp32.model) if verify.parity else None
    judge = export.weights is not None
    if fp16:
        result.artifacts.append(
            convert_fp16(
                fp32, fp16_path, fp16_io=fp16.io, reference_model=reference, judge_parity=judge, progress=progress
            )
        )
    if int8:
        result.artifacts.append(
            quantize(
                fp32,
                int8_path,
                int8,
                labelled=judged,
                reference_model=reference,
                judge_parity=judge,
                progress=progress,
            )
        )
    if engine.build != "no":  # from the most reduced precision TensorRT can take (not the cpu INT8 target)
        source = next(r for r in reversed(result.artifacts) if r.metadata.int8_target in (None, "tensorrt"))
        _build_engine(result, source, reference, engine, judge, say)
    written = [a.path for a in result.artifacts] + ([result.engine.path] if result.engine is not None else [])
    if verify.eval_data is not None:
        from .verify.evaluation import evaluate

        with stage(say, f"evaluating eager and {len(written)} artifacts on {verify.eval_data}"):
            result.evaluation = evaluate(
                verify.eval_data,
                artifacts=written,
                model=fp32.model,
                preprocess=fp32.metadata.preprocess,
                labels=fp32.metadata.labels,
                limit=verify.eval_limit,
            )
    if triton_repository is not None:
        result.triton = write_repository(written, triton_repository, progress=progress)
    return result


def _check_replay_destination(int8: Int8Request, int8_path: Path) -> None:
    """A precision file replayed to the output it came from would be replaced by its own replay:
    refused, with what to do instead."""
    written = precision_file(int8_path)
    for value in int8.keep_float:
        if Path(value).exists() and written.exists() and os.path.samefile(value, written):
            raise ConfigError(
                f"{value}: is the precision file this export writes beside {int8_path.name}; replaying it "
                f"there would replace it: give the replay another output name ({setting('ExportRequest.output')})"
            )


def _build_engine(
    result: DeployResult, source: ExportResult, reference, options: EngineOptions, judge: bool, say: Progress
) -> None:
    from .export.engine import EngineNotBuilt, build_engine, engine_unavailable_reason
    from .verify.comparator import check_backend, verification_batches
    from .verify.metrics import RANDOM_WEIGHTS

    reason = engine_unavailable_reason()
    if reason:
        result.engine_skipped = f"{source.path.with_suffix('.plan')} not built: {reason}"
        return
    batch, max_batch = source.metadata.batch, options.max_batch
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
    precision = built.metadata.precision
    with stage(say, f"checking the engine's parity against eager PyTorch at batch sizes {', '.join(map(str, sizes))}"):
        result.engine_parity = check_backend(
            reference,
            backend,
            source.metadata.preprocess,
            sizes,
            precision,
            "tensorrt",
            unjudged=None if judge or precision == "fp32" else RANDOM_WEIGHTS,
        )
