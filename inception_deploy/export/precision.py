"""FP16 and INT8 ONNX models derived from an exported FP32 ONNX.

TensorRT 11 takes precision from the ONNX graph (strongly typed networks), so precision is
decided here, once, and checked on the CPU with ONNX Runtime like every other artifact.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from ..calibration import CalibrationCache, CalibrationImages, calibrate, write_qdq
from ..calibration.cache import graph_digest, preprocess_digest
from ..calibration.images import FEW_IMAGES
from ..calibration.qdq import WEIGHT_BITS, prepare
from ..errors import InceptionDeployError
from ..fileio import atomic_path, sha256_file
from ..metadata import onnx_metadata, preprocess_of, set_onnx_metadata
from ..parity import check_backend
from ..progress import Progress, silent
from .onnx import ExportResult, load_onnx, value_shape

log = logging.getLogger(__name__)

# Kept in FP32: the classifier (Gemm/MatMul producing the logits). It is a fraction of a
# percent of the FLOPs, and rounding logits to FP16's 11-bit mantissa alone costs up to 5e-4
# relative error on every output. ONNX Runtime's converter also keeps the ops it has no FP16
# kernels for (its DEFAULT_OP_BLOCK_LIST). Everything else (Conv, pooling, Concat, Add, Relu)
# runs in FP16; BN is already folded into Conv by the exporter.
FP16_KEEP_FP32 = ("Gemm", "MatMul")
REMAINDERS = ("fp32", "fp16")  # precision of what an INT8 graph leaves unquantized


def convert_fp16(src: str | os.PathLike, output: str | os.PathLike, *, fp16_io: bool = False,
                 reference_model=None, judge_parity: bool = True, progress=None) -> ExportResult:
    """``src`` FP32 ONNX -> FP16 ONNX (float32 input/output unless ``fp16_io``); with
    ``reference_model`` (the eager model), parity against it with FP16 thresholds (measured
    only, when not ``judge_parity``: see parity.check_backend)."""
    say = progress or silent
    say(f"converting {src} to FP16...")
    start = time.perf_counter()
    proto = load_onnx(src)
    metadata = fp32_metadata(proto, src)
    converted = _to_fp16(proto, fp16_io)
    metadata.update(precision="fp16", io_dtype="float16" if fp16_io else "float32",
                    fp32_ops=list(FP16_KEEP_FP32), source_sha256=sha256_file(src))
    metadata.pop("parity", None)
    return _finish(converted, metadata, output, reference_model, "fp16", start, judge_parity, say)


def _to_fp16(proto, fp16_io: bool = False):
    """The float ops of ``proto`` in FP16 but those in FP16_KEEP_FP32; Q/DQ scales become FP16 too,
    so a DequantizeLinear feeds its Conv in FP16 (TensorRT strongly typed: INT8 in, FP16 out)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    return convert_float_to_float16(proto, keep_io_types=not fp16_io,
                                    op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(FP16_KEEP_FP32))


def quantize_int8(src: str | os.PathLike, output: str | os.PathLike, *, target: str,
                  calib_dir: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
                  replace_stale_cache: bool = False, method: str = "entropy", images: int = 512, batch: int = 8,
                  percentile: float = 99.99, remainder: str = "fp32", reference_model=None,
                  judge_parity: bool = True, progress=None) -> ExportResult:
    """``src`` FP32 ONNX -> Q/DQ INT8 ONNX for ``target`` ("tensorrt" or "cpu").

    ``remainder``: the precision of what is not quantized (see calibration.qdq.tensorrt_placement:
    the head, residual sums, pooling outputs); "fp16" for the tensorrt target only.

    Ranges come from ``cache`` when it exists and matches this graph and preprocessing;
    otherwise they are calibrated on ``calib_dir`` (and written to ``cache`` when given). A
    stale cache is refused, or recalibrated over when ``replace_stale_cache`` (the default
    cache beside the output is the toolkit's own; a cache the user named is not). ``progress``:
    called with one line as each slow step starts; with it, calibration also shows a bar.
    """
    import onnx

    say = progress or silent

    start = time.perf_counter()
    proto = load_onnx(src)
    metadata = fp32_metadata(proto, src)
    check_remainder(remainder, target, src, metadata["opset"])
    config = preprocess_of(metadata)
    graph_sha, pre_sha = graph_digest(proto), preprocess_digest(config)
    request = None
    if calib_dir is not None:  # images named now: the cache must have been made the way asked now
        request = {"method": method, "percentile": percentile, "images": None}
        if replace_stale_cache and cache is not None and Path(cache).exists():
            # the image count only decides for our own default cache (a folder with unreadable
            # files yields fewer than it holds, so a cache the user named is never refused for it)
            from ..calibration import find_images

            request["images"] = min(images, len(find_images(calib_dir)[0]))
    calibration = cached_calibration(cache, graph_sha, pre_sha, replace_stale_cache and calib_dir is not None,
                                     request)
    if calibration is not None:
        say(f"reusing calibration cache {cache} ({calibration.images} images, {calibration.method})")
    if calibration is None and calib_dir is None:
        raise InceptionDeployError("INT8 needs calibration images (--calib-dir DIR) or an existing "
                                   "calibration cache (--calib-cache FILE)")
    with tempfile.TemporaryDirectory(prefix="inception-int8-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        say(f"preparing {src} for quantization (shape inference, graph optimization)...")
        prepare(src, prepared)
        if calibration is None:
            say(f"calibrating on up to {images} images of {calib_dir} ({method})...")
            calibration = run_calibration(prepared, calib_dir, config, graph_sha, pre_sha, method=method,
                                          images=images, batch=batch, percentile=percentile,
                                          progress=progress)
            if cache is not None:
                calibration.save(cache)
        quantized = Path(folder) / "quantized.onnx"
        say(f"writing INT8 Q/DQ nodes for the {target} target...")
        write_qdq(prepared, calibration, target, quantized)
        proto = onnx.load(str(quantized))
    if remainder == "fp16":
        say("converting the unquantized remainder to FP16...")
        proto = _to_fp16(proto)
        metadata.update(int8_remainder="fp16", fp32_ops=list(FP16_KEEP_FP32))
    metadata.update(precision="int8", int8_target=target, int8_weight_bits=WEIGHT_BITS[target],
                    source_sha256=sha256_file(src),
                    calibration={"method": calibration.method, "percentile": calibration.percentile,
                                 "images": calibration.images, "cache_sha256": calibration.digest})
    metadata.pop("parity", None)
    return _finish(proto, metadata, output, reference_model, "int8", start, judge_parity, say)


def check_remainder(remainder: str, target: str, src=None, opset: int | None = None) -> None:
    """FP16 for the unquantized remainder is TensorRT's (ONNX Runtime's CPU has no FP16
    arithmetic) and needs FP16 Q/DQ scales, which ONNX allows from opset 19."""
    if remainder not in REMAINDERS:
        raise InceptionDeployError(f"unknown INT8 remainder precision {remainder!r}; choose one of: "
                                   f"{', '.join(REMAINDERS)}")
    if remainder == "fp16" and target != "tensorrt":
        raise InceptionDeployError(f"--int8-remainder fp16 is for --int8-target tensorrt, not {target} "
                                   f"(ONNX Runtime's CPU kernels have no FP16 arithmetic)")
    if remainder == "fp16" and opset is not None and opset < 19:
        raise InceptionDeployError(f"{src}: --int8-remainder fp16 needs opset 19 or newer (FP16 Q/DQ scales), "
                                   f"this model has opset {opset}: export it with the default opset")


def cached_calibration(cache, graph_sha: str, pre_sha: str, replace_stale: bool,
                       request: dict | None = None) -> CalibrationCache | None:
    """The ranges in ``cache`` when it exists and was made for this graph and preprocessing;
    None when there is none (or it is stale and ``replace_stale``); otherwise an error.

    ``request`` (method, percentile, images available or None) is given when the caller also
    named calibration images: a cache made another way (another method, or fewer images than
    asked for and available, e.g. after a ``--calib-samples`` demonstration) is then stale too,
    so what the user asks for now is never silently replaced by an older calibration."""
    if cache is None or not Path(cache).exists():
        return None
    calibration = CalibrationCache.load(cache)
    try:
        calibration.check(cache, graph_sha, pre_sha)
        if request is not None:
            _check_request(cache, calibration, **request)
    except InceptionDeployError as e:
        if not replace_stale:
            raise
        log.info("recalibrating: %s", e)
        return None
    if calibration.images < FEW_IMAGES:  # e.g. left by a --calib-samples demonstration
        log.warning("%s: reusing a calibration made from only %d images (%d or more recommended); recalibrate "
                    "with --calib-dir on your own images", cache, calibration.images, FEW_IMAGES)
    return calibration


def _check_request(cache, calibration: CalibrationCache, method: str, percentile: float, images: int | None) -> None:
    made = f"{calibration.method}{f' {calibration.percentile}' if calibration.percentile else ''}"
    asked = f"{method}{f' {percentile}' if method == 'percentile' else ''}"
    if made != asked:
        raise InceptionDeployError(f"{cache}: stale calibration cache: made with {made}, {asked} asked for "
                                   f"(delete it or name another --calib-cache)")
    if images is not None and calibration.images < images:
        raise InceptionDeployError(f"{cache}: stale calibration cache: made from {calibration.images} images, "
                                   f"{images} asked for and available (delete it or name another --calib-cache)")


def check_calibration_source(calib_dir, cache) -> None:
    """Fail before a slow export when INT8 could not be calibrated anyway: no images and no
    cache, an image folder without images, a corrupt cache, a cache that cannot be written."""
    from ..calibration import find_images
    from ..fileio import check_writable

    cache_exists = cache is not None and Path(cache).exists()
    if calib_dir is None and not cache_exists:
        raise InceptionDeployError("INT8 needs calibration images: pass --calib-dir DIR, an existing "
                                   "--calib-cache, or --calib-samples for a demonstration")
    if cache_exists:
        CalibrationCache.load(cache)
    if calib_dir is not None:
        find_images(calib_dir)
        if cache is not None:
            check_writable(cache)


def run_calibration(prepared, calib_dir, config, graph_sha: str, pre_sha: str, *, method: str, images: int,
                    batch: int, percentile: float, progress: Progress | None) -> CalibrationCache:
    """Calibrate the prepared graph on a folder of images into a CalibrationCache; with
    ``progress``, a bar over the images and a line when the threshold search starts."""
    data = CalibrationImages(calib_dir, config, count=images, batch=batch)
    tensors = calibrate(prepared, data.batches(progress is not None), method, percentile, progress)
    return CalibrationCache(method, percentile if method == "percentile" else None, data.used, graph_sha, pre_sha,
                            tensors)


def fp32_metadata(proto, src) -> dict:
    metadata = onnx_metadata(proto, src)
    if metadata is None:
        raise InceptionDeployError(f"{src}: no inception_deploy metadata; export it with inception-export first")
    if metadata.get("precision", "fp32") != "fp32":
        raise InceptionDeployError(f"{src}: is already {metadata['precision']}; start from the FP32 export")
    return metadata


def _finish(proto, metadata: dict, output, reference_model, precision: str, start: float, judge: bool,
            say) -> ExportResult:
    """Write atomically with metadata; verify against the eager model when one is given."""
    import onnx

    from ..runtime.onnxruntime_backend import OnnxRuntimeBackend
    from .onnx import parity_announcement

    output = Path(output)
    report = None
    with atomic_path(output) as tmp:
        set_onnx_metadata(proto, metadata)
        onnx.save(proto, str(tmp))
        if reference_model is not None:
            backend = OnnxRuntimeBackend(tmp, device="cpu", max_batch=metadata.get("max_batch"))
            sizes = (metadata["batch"],) if metadata.get("batch") else (1, 8)
            say(parity_announcement(sizes))
            report = check_backend(reference_model, backend, preprocess_of(metadata), sizes, precision,
                                   "onnxruntime-cpu", judged=judge)
            metadata["parity"] = report.to_dict()
            set_onnx_metadata(proto, metadata)
            onnx.save(proto, str(tmp))
    graph = proto.graph
    return ExportResult(output, metadata["arch"], metadata["opset"], metadata["exporter"], graph.input[0].name,
                        value_shape(graph.input[0]), graph.output[0].name, value_shape(graph.output[0]), metadata,
                        report, time.perf_counter() - start, reference_model)
