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
from ..calibration.budget import Budget, search
from ..calibration.cache import graph_digest, preprocess_digest
from ..calibration.float_layers import (
    keep_float_patterns,
    match_modules,
    precision_file,
    quantizable_layers,
    write_precision_file,
)
from ..calibration.policy import CalibrationRequest
from ..calibration.qdq import WEIGHT_BITS, check_weight_bits, prepare
from ..errors import InceptionDeployError
from ..fileio import atomic_path, sha256_file
from ..metadata import INT8_REMAINDERS, ONNX_MODEL, fp32_metadata, load_onnx, preprocess_of, set_onnx_metadata
from ..progress import counted, silent, stage
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
    src: str | os.PathLike,
    output: str | os.PathLike,
    *,
    fp16_io: bool = False,
    reference_model=None,
    judge_parity: bool = True,
    progress=None,
) -> ExportResult:
    """``src`` FP32 ONNX -> FP16 ONNX (float32 input/output unless ``fp16_io``); with
    ``reference_model`` (the eager model), parity against it with FP16 thresholds (measured
    only, when not ``judge_parity``: see parity.check_backend)."""
    say = progress or silent
    say(f"converting {src} to FP16...")
    start = time.perf_counter()
    proto = load_onnx(src)
    metadata = fp32_metadata(proto, src)
    converted = _to_fp16(proto, fp16_io)
    metadata.update(
        precision="fp16",
        io_dtype="float16" if fp16_io else "float32",
        fp32_ops=list(FP16_KEEP_FP32),
        source_sha256=sha256_file(src),
    )
    metadata.pop("parity", None)
    return _finish(converted, metadata, output, reference_model, "fp16", start, judge_parity, say)


def _to_fp16(proto, fp16_io: bool = False):
    """The float ops of ``proto`` in FP16 but those in FP16_KEEP_FP32; Q/DQ scales become FP16 too,
    so a DequantizeLinear feeds its Conv in FP16 (TensorRT strongly typed: INT8 in, FP16 out)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    return convert_float_to_float16(
        proto, keep_io_types=not fp16_io, op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(FP16_KEEP_FP32)
    )


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
    reference_model=None,
    judge_parity: bool = True,
    progress=None,
) -> ExportResult:
    """``src`` FP32 ONNX -> Q/DQ INT8 ONNX for ``target`` ("tensorrt" or "cpu").

    ``remainder``: the precision of what is not quantized (see calibration.qdq.tensorrt_placement:
    the head, residual sums, pooling outputs); "fp16" for the tensorrt target only.
    ``keep_float``: Conv and pooling layers left unquantized, as module-path globs (``Mixed_7*``) or precision
    files of an earlier export (``calibration.float_layers``). The placement (the layers kept float,
    and why) is written beside the output as ``<stem>.precision.json``. ``weight_bits``: 7 or 8 for
    the cpu target (default 7). ``budget``: keep more layers float until top-1 on held-out images
    is within ``budget.max_drop`` points of FP32 (``calibration.budget``; ``result.budget`` reports).

    Ranges come from ``cache`` when it exists and matches this graph and preprocessing;
    otherwise they are calibrated on ``calib_dir`` (and written to ``cache`` when given). A
    stale cache is refused, or recalibrated over when ``replace_stale_cache`` (the default
    cache beside the output is the toolkit's own; a cache the user named is not). ``progress``:
    called with one line as each slow step starts; with it, calibration also shows a bar.
    """
    request = CalibrationRequest(calib_dir, images, batch, method, percentile, cache, replace_stale_cache)
    return quantize(
        src,
        output,
        target,
        request,
        remainder=remainder,
        keep_float=keep_float,
        weight_bits=weight_bits,
        budget=budget,
        reference_model=reference_model,
        judge_parity=judge_parity,
        progress=progress,
    )


def quantize(
    src: str | os.PathLike,
    output: str | os.PathLike,
    target: str,
    request: CalibrationRequest,
    *,
    remainder: str = "fp32",
    keep_float=(),
    weight_bits: int | None = None,
    budget: Budget | None = None,
    reference_model=None,
    judge_parity: bool = True,
    progress=None,
) -> ExportResult:
    """``quantize_int8`` over a CalibrationRequest (the pipeline's form). With a ``budget``
    (``calibration.budget``), more layers stay float, most sensitive first, until it holds; the
    calibration leaves the held-out images aside and is always made anew."""
    import onnx

    say = progress or silent

    start = time.perf_counter()
    proto = load_onnx(src)
    metadata = fp32_metadata(proto, src)
    check_remainder(remainder, target, src, metadata["opset"])
    check_weight_bits(target, weight_bits)
    patterns = keep_float_patterns(keep_float, metadata["arch"])
    config = preprocess_of(metadata)
    graph_sha, pre_sha = graph_digest(proto), preprocess_digest(config)
    if budget is not None:
        budget.check(request.folder)
        request = replace(request, exclude=tuple(budget.held_out(request.folder)))
    calibration = None if budget is not None else request.cached(graph_sha, pre_sha, say)
    with tempfile.TemporaryDirectory(prefix="inception-int8-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        with stage(say, f"preparing {src} for quantization (shape inference, graph optimization)"):
            prepare(src, prepared)
        graph = onnx.load(str(prepared)).graph
        layers = quantizable_layers(graph)
        kept = match_modules(patterns, list(layers), metadata["arch"]) if patterns else {}
        if calibration is None:
            calibration = request.calibrate(prepared, config, graph_sha, pre_sha, progress)
        report = None
        if budget is not None:
            convert = _to_fp16 if remainder == "fp16" else None
            kept, report = search(
                src, prepared, calibration, target, budget, request.folder, config,
                layers, kept, convert, weight_bits, progress,
            )  # fmt: skip
        quantized = Path(folder) / "quantized.onnx"
        float_nodes = frozenset(node for module in kept for node in layers[module])
        floats = f", {counted(len(kept), 'layer')} float" if kept else ""
        with stage(say, f"writing INT8 Q/DQ nodes for the {target} target{floats}"):
            write_qdq(prepared, calibration, target, quantized, float_nodes, weight_bits)
        proto = onnx.load(str(quantized))
    if remainder == "fp16":
        say("converting the unquantized remainder to FP16...")
        proto = _to_fp16(proto)
        metadata.update(int8_remainder="fp16", fp32_ops=list(FP16_KEEP_FP32))
    metadata.update(
        precision="int8",
        int8_target=target,
        int8_weight_bits=weight_bits or WEIGHT_BITS[target],
        int8_float_modules=list(kept),
        source_sha256=sha256_file(src),
        calibration={
            "method": calibration.method,
            "percentile": calibration.percentile,
            "images": calibration.images,
            "cache_sha256": calibration.digest,
        },
    )
    if report is not None:
        metadata["int8_budget"] = report.to_dict()
    metadata.pop("parity", None)
    result = _finish(proto, metadata, output, reference_model, "int8", start, judge_parity, say)
    write_precision_file(precision_file(output), metadata["arch"], target, calibration.digest, kept)
    result.budget = report
    return result


def check_remainder(remainder: str, target: str, src=None, opset: int | None = None) -> None:
    """FP16 for the unquantized remainder is TensorRT's (ONNX Runtime's CPU has no FP16
    arithmetic) and needs FP16 Q/DQ scales, which ONNX allows from opset 19."""
    if remainder not in INT8_REMAINDERS:
        raise InceptionDeployError(
            f"unknown INT8 remainder precision {remainder!r}; choose one of: {', '.join(INT8_REMAINDERS)}"
        )
    if remainder == "fp16" and target != "tensorrt":
        raise InceptionDeployError(
            f"--int8-remainder fp16 is for --int8-target tensorrt, not {target} "
            f"(ONNX Runtime's CPU kernels have no FP16 arithmetic)"
        )
    if remainder == "fp16" and opset is not None and opset < 19:
        raise InceptionDeployError(
            f"{src}: --int8-remainder fp16 needs opset 19 or newer (FP16 Q/DQ scales), "
            f"this model has opset {opset}: export it with the default opset"
        )


def _finish(
    proto, metadata: dict, output, reference_model, precision: str, start: float, judge: bool, say
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
                preprocess_of(metadata),
                metadata.get("batch"),
                metadata.get("max_batch"),
                precision,
                judge,
                say,
            )
            metadata["parity"] = report.to_dict()
            set_onnx_metadata(proto, metadata)
            onnx.save(proto, str(tmp))
    return ExportResult.of(output, proto, metadata, report, start, reference_model)
