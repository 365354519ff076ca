"""FP16 and INT8 ONNX models derived from an exported FP32 ONNX.

TensorRT 11 takes precision from the ONNX graph (strongly typed networks), so precision is
decided here, once, and checked on the CPU with ONNX Runtime like every other artifact.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ..calibration import write_qdq
from ..calibration.adaround import adaptive_rounding
from ..calibration.bias import bias_shifts, correction_images
from ..calibration.budget import Budget, search
from ..calibration.cache import graph_digest, preprocess_digest
from ..calibration.equalize import IMAGES as EQUALIZE_IMAGES
from ..calibration.equalize import equalize, equalized_digest
from ..calibration.float_layers import (
    match_modules,
    precision_file,
    quantizable_layers,
    stored_ranking,
    write_precision_file,
)
from ..calibration.int8 import Int8Request
from ..calibration.policy import CalibrationRequest
from ..calibration.qdq import WEIGHT_BITS, Corrections, prepare
from ..cpu import has_vnni
from ..errors import InceptionDeployError, setting
from ..fileio import atomic_path, sha256_file
from ..graph import load_onnx
from ..metadata import ONNX_MODEL, Metadata, fp32_metadata, set_onnx_metadata
from ..progress import counted, silent, stage
from ..runtime.torch_runner import TorchRunner
from ..verify.metrics import BY_BUDGET, RANDOM_WEIGHTS
from .onnx import ExportResult, check_onnx_parity

log = logging.getLogger(__name__)

# Kept in FP32: the classifier (Gemm/MatMul producing the logits). It is a fraction of a
# percent of the FLOPs, and rounding logits to FP16's 11-bit mantissa alone costs up to 5e-4
# relative error on every output. LayerNorm (InceptionNeXt's head): its variance is a sum of
# squares, which overflows FP16 once features pass ~256 (TensorRT warns "Detected layernorm nodes
# in FP16" and advises FP32; NVIDIA/TensorRT#2564); one op on a 1-D vector, so free. ONNX Runtime's
# converter also keeps the ops it has no FP16 kernels for (its DEFAULT_OP_BLOCK_LIST). Everything
# else (Conv, depthwise Conv, pooling, Concat, Add, Relu, GELU) runs in FP16; BN is folded into Conv
# by the exporter where a Conv precedes it (InceptionNeXt's, after a Concat, runs in FP16).
FP16_KEEP_FP32 = ("Gemm", "MatMul", "LayerNormalization")


def convert_fp16(
    src: str | os.PathLike | ExportResult,
    output: str | os.PathLike,
    *,
    fp16_io: bool = False,
    reference_model=None,
    judge_parity: bool = True,
    progress=None,
) -> ExportResult:
    """``src`` FP32 ONNX (a path, or the ExportResult that wrote it) -> FP16 ONNX (float32
    input/output unless ``fp16_io``); with ``reference_model`` (the eager model, or a TorchRunner
    of it shared by several checks), parity against it with FP16 thresholds (measured only, when
    not ``judge_parity``: see verify.comparator.check_backend)."""
    say = progress or silent
    start = time.perf_counter()
    src, proto, metadata = _source(src)
    say(f"converting {src} to FP16...")
    converted = _to_fp16(proto, fp16_io)
    metadata = metadata.updated(
        output,
        drop=("parity",),
        precision="fp16",
        io_dtype="float16" if fp16_io else "float32",
        fp32_ops=list(FP16_KEEP_FP32),
        source_sha256=sha256_file(src),
    )
    return _finish(
        converted, metadata, output, reference_model, "fp16", start, None if judge_parity else RANDOM_WEIGHTS, say
    )


def _to_fp16(proto, fp16_io: bool = False):
    """The float ops of ``proto`` in FP16 but those in FP16_KEEP_FP32; Q/DQ scales become FP16 too,
    so a DequantizeLinear feeds its Conv in FP16 (TensorRT strongly typed: INT8 in, FP16 out)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    return convert_float_to_float16(
        proto, keep_io_types=not fp16_io, op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(FP16_KEEP_FP32)
    )


def quantize(
    src: str | os.PathLike | ExportResult,
    output: str | os.PathLike,
    int8: Int8Request,
    *,
    labelled: tuple | None = None,
    reference_model=None,
    judge_parity: bool = True,
    progress=None,
) -> ExportResult:
    """``src`` FP32 ONNX (a path, or the ExportResult that wrote it) -> Q/DQ INT8 ONNX as ``int8``
    asks (calibration.int8.Int8Request).

    What is not quantized keeps ``int8.remainder``'s precision (see calibration.qdq.tensorrt_placement:
    the head, residual sums, pooling outputs). Layers ``int8.keep_float`` names stay float, and
    with ``int8.max_drop`` more of them, most sensitive first, until top-1 on held-out images
    (``labelled``: files and class indices, else a share of the calibration folder) is within the
    budget (``calibration.budget``; ``result.budget`` reports); that calibration leaves the held-out
    images aside and is always made anew. The placement (the layers kept float, and why) is written
    beside the output as ``<stem>.precision.json``.

    Ranges come from ``int8.calibration.cache`` when it exists and matches this graph and
    preprocessing; otherwise they are calibrated on its folder (and written to the cache when one
    is named; see calibration.policy). ``reference_model``: the eager model to check parity
    against (measured only, when not ``judge_parity``). ``progress``: called with one line as each
    slow step starts; with it, calibration also shows a bar.
    """
    import onnx

    say = progress or silent
    start = time.perf_counter()
    src, proto, metadata = _source(src)
    check_remainder_opset(int8.remainder, metadata.opset, src)
    patterns, replayed = int8.float_patterns(metadata.arch)
    config = metadata.preprocess
    graph_sha, pre_sha = graph_digest(proto), preprocess_digest(config)
    request, budget = int8.calibration, int8.budget(labelled)
    if budget is not None:
        budget.check(request.folder)
        request = replace(request, exclude=tuple(budget.held_out(request.folder)))
    weight_bits = int8.weight_bits or WEIGHT_BITS[int8.target]
    with tempfile.TemporaryDirectory(prefix="inception-int8-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        with stage(say, f"preparing {src} for quantization (shape inference, graph optimization)"):
            prepare(src, prepared)
        images, divisors = [], {}
        if (int8.bias_correction or int8.adaround or int8.equalize) and request.folder is not None:
            images = correction_images(request.folder, config, request.exclude)  # a cache alone has none
        if int8.equalize and len(images):
            with stage(say, f"equalizing the channels each Conv reads on {min(len(images), EQUALIZE_IMAGES)} images"):
                divisors = _equalize(prepared, images, int8.target, weight_bits)
            graph_sha = equalized_digest(graph_sha, divisors)  # ranges of another graph: their own cache key
        graph = onnx.load(str(prepared)).graph
        layers = quantizable_layers(graph, int8.target)
        float_layers = match_modules(patterns, list(layers), metadata.arch) if patterns else {}
        calibration = None if budget is not None else request.cached(graph_sha, pre_sha, say)
        if calibration is None:
            calibration = request.calibrate(prepared, config, graph_sha, pre_sha, progress)
        corrections, full = Corrections(), Path(folder) / "full.onnx"
        if len(images) and (int8.bias_correction or int8.adaround):
            corrections = _corrections(prepared, calibration, int8, weight_bits, images, full, say)
        for earlier in replayed:
            if earlier.calibration_sha256 not in (None, calibration.digest):
                log.warning(
                    "%s: its float layers were chosen on another calibration (%s...; this one %s...): they "
                    "may not be the layers this calibration needs",
                    earlier.path,
                    earlier.calibration_sha256[:12],
                    calibration.digest[:12],
                )
        report = None
        if budget is not None:
            convert = _to_fp16 if int8.remainder == "fp16" else None
            earlier_ranking = stored_ranking(precision_file(output))  # of a search to the same output
            float_layers, report = search(
                src, prepared, calibration, int8.target, budget, request.folder, metadata,
                layers, float_layers, convert, int8.weight_bits, corrections, progress, earlier_ranking,
            )  # fmt: skip
        if int8.target == "cpu" and int8.weight_bits is None and has_vnni():
            log.info(
                "this CPU has VNNI: %s 8 rounds the weights half as coarsely as the default 7 bits (fewer "
                "flipped images and float layers: docs/precision.md), for a file that runs on CPUs with VNNI "
                "or AMX only (without them its int8 sums saturate)",
                setting("Int8Request.weight_bits"),
            )
        quantized = Path(folder) / "quantized.onnx"
        float_nodes = frozenset(node for module in float_layers for node in layers[module])
        floats = f", {counted(len(float_layers), 'layer')} float" if float_layers else ""
        with stage(say, f"writing INT8 Q/DQ nodes for the {int8.target} target{floats}"):
            if float_nodes or not full.exists():
                write_qdq(prepared, calibration, int8.target, quantized, float_nodes, int8.weight_bits, corrections)
                proto = onnx.load(str(quantized))
            else:  # the corrections were measured on this very placement: only they are left to write
                proto = onnx.load(str(full))
                corrections.apply(proto.graph)
    changes = {}
    if int8.remainder == "fp16":
        say("converting the unquantized remainder to FP16...")
        proto = _to_fp16(proto)
        changes.update(int8_remainder="fp16", fp32_ops=list(FP16_KEEP_FP32))
    if report is not None:
        changes["int8_budget"] = report.to_dict()
    if divisors:
        changes["int8_equalization"] = {tensor: [float(v) for v in s] for tensor, s in divisors.items()}
    metadata = metadata.updated(
        output,
        drop=("parity",),
        **changes,
        precision="int8",
        int8_target=int8.target,
        int8_weight_bits=weight_bits,
        int8_float_modules=list(float_layers),
        source_sha256=sha256_file(src),
        calibration={
            "method": calibration.method,
            "percentile": calibration.percentile,
            "images": calibration.images,
            "cache_sha256": calibration.digest,
            "bias_correction": {"images": len(images), "convs": len(corrections.shifts)}
            if corrections.shifts
            else None,
            "adaround": {"images": len(images), "convs": len(corrections.rounding)} if int8.adaround else None,
        },
    )
    unjudged = BY_BUDGET if report is not None else None if judge_parity else RANDOM_WEIGHTS
    result = _finish(proto, metadata, output, reference_model, "int8", start, unjudged, say)
    write_precision_file(
        precision_file(output), metadata.arch, int8.target, calibration.digest, float_layers, replayed, report
    )
    result.budget = report
    return result


def _corrections(prepared, calibration, int8: Int8Request, weight_bits: int, images, full: Path, say) -> Corrections:
    """What is measured on the full INT8 placement (weights of ``weight_bits``), written once to
    ``full``: adaptive rounding of each quantized Conv's weights (opt-in), then the bias shifts that
    rounding leaves."""
    import onnx

    write_qdq(prepared, calibration, int8.target, full, frozenset(), weight_bits)
    rounding, shifts = {}, {}
    if int8.adaround:
        with stage(say, f"fitting each quantized Conv's weight rounding on {len(images)} calibration images"):
            rounding = adaptive_rounding(prepared, full, images, weight_bits)
        proto = onnx.load(str(full))
        Corrections(rounding=rounding).apply(proto.graph)
        onnx.save(proto, str(full))
    if int8.bias_correction:
        with stage(say, f"measuring each quantized Conv's bias shift on {len(images)} calibration images"):
            shifts = bias_shifts(prepared, full, images)
    return Corrections(shifts, rounding)


def _equalize(prepared: Path, images, target: str, weight_bits: int) -> dict:
    """calibration.equalize on the prepared graph, rewritten in place; the divisors it records."""
    import onnx

    proto = onnx.load(str(prepared))
    divisors = equalize(proto, images, target, weight_bits)
    onnx.save(proto, str(prepared))
    return divisors


def quantize_int8(
    src: str | os.PathLike,
    output: str | os.PathLike,
    *,
    target: str,
    calib_dir: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    replace_stale_cache: bool = False,
    method: str = "entropy",
    images: int = 512,
    batch: int = 8,
    percentile: float = 99.99,
    remainder: str = "fp32",
    keep_float=(),
    weight_bits: int | None = None,
    budget: Budget | None = None,
    bias_correction: bool | None = None,
    adaround: bool = False,
    equalize: bool = False,
    reference_model=None,
    judge_parity: bool = True,
    progress=None,
) -> ExportResult:
    """A thin alias of ``quantize`` taking its settings as keywords (the form before Int8Request;
    kept for callers of 0.x): the same file, the same checks."""
    calibration = CalibrationRequest(calib_dir, images, batch, method, percentile, cache, replace_stale_cache)
    int8 = Int8Request(
        calibration,
        target,
        remainder,
        keep_float,
        weight_bits,
        budget.max_drop if budget else None,
        budget.holdout if budget else Int8Request.holdout,
        budget.accept_unproven if budget else False,
        bias_correction,
        adaround,
        equalize,
    )
    return quantize(
        src,
        output,
        int8,
        labelled=budget.labelled if budget else None,
        reference_model=reference_model,
        judge_parity=judge_parity,
        progress=progress,
    )


def check_remainder_opset(remainder: str, opset: int | None, where) -> None:
    """An FP16 remainder needs FP16 Q/DQ scales, which ONNX allows from opset 19 (``where``: the
    file or the setting that decides the opset)."""
    if remainder == "fp16" and opset is not None and opset < 19:
        raise InceptionDeployError(
            f"{where}: {setting('Int8Request.remainder')} fp16 needs opset 19 or newer (FP16 Q/DQ scales), "
            f"this model has opset {opset}: export it with the default opset"
        )


def _source(src) -> tuple:
    """(path, ModelProto, Metadata) of the FP32 file ``src``; of an FP32 ExportResult, its metadata
    as written (the file is not parsed again)."""
    path = Path(src)
    proto = load_onnx(path)
    if isinstance(src, ExportResult) and src.metadata.precision == "fp32":
        return path, proto, src.metadata
    return path, proto, fp32_metadata(proto, path)


def _finish(
    proto, metadata: Metadata, output, reference_model, precision: str, start: float, unjudged: str | None, say
) -> ExportResult:
    """Write atomically with metadata; verify against the eager model when one is given."""
    import onnx

    output = Path(output)
    report = None
    with atomic_path(output, ONNX_MODEL) as tmp:
        set_onnx_metadata(proto, metadata)
        onnx.save(proto, str(tmp))
        if reference_model is not None:
            report = check_onnx_parity(
                reference_model,
                tmp,
                metadata.preprocess,
                metadata.batch,
                metadata.max_batch,
                precision,
                unjudged,
                say,
            )
            metadata = metadata.updated(output, parity=report.to_dict())
            set_onnx_metadata(proto, metadata)
            onnx.save(proto, str(tmp))
    model = reference_model.model if isinstance(reference_model, TorchRunner) else reference_model
    return ExportResult.of(output, proto, metadata, report, start, model)
