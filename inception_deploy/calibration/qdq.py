"""Q/DQ ONNX from an FP32 ONNX and a calibration cache, for one of two targets.

- ``tensorrt``: what TensorRT's explicit quantization accepts (docs/REFERENCE.md): symmetric int8
  activations and weights, zero points 0, per-channel weights on axis 0, no bias Q/DQ.
- ``cpu``: what ONNX Runtime's CPU kernels run fastest: u8 activations (asymmetric), s8
  per-channel weights (all Conv become QLinearConv; symmetric s8s8 gave no speed-up).
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

from ..errors import InceptionDeployError
from .cache import CalibrationCache

TARGETS = ("tensorrt", "cpu")


def prepare(fp32_path, prepared_path) -> None:
    """ONNX Runtime's quantization pre-processing (shape inference, graph optimization); the
    calibrated and the quantized graph are both this one, so tensor names match."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with contextlib.redirect_stdout(io.StringIO()):
        quant_pre_process(str(fp32_path), str(prepared_path))


def target_ranges(cache: CalibrationCache, target: str) -> dict[str, tuple[float, float]]:
    """Each tensor's range for ``target``: the observed min/max clipped at the threshold,
    symmetric (-t, t) for TensorRT."""
    ranges = {}
    for name, t in cache.tensors.items():
        threshold = t["threshold"]
        if target == "tensorrt":
            ranges[name] = (-threshold, threshold)
        else:
            ranges[name] = (min(max(t["min"], -threshold), 0.0), max(min(t["max"], threshold), 0.0))
    return ranges


def write_qdq(prepared_path, cache: CalibrationCache, target: str, output: str | os.PathLike) -> None:
    """Quantize the prepared FP32 graph with the cached ranges into ``output``."""
    import numpy as np
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    if target not in TARGETS:
        raise InceptionDeployError(f"unknown INT8 target {target!r}; choose one of: {', '.join(TARGETS)}")
    ranges = {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in target_ranges(cache, target).items()}
    if target == "tensorrt":
        types = dict(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                 "AddQDQPairToWeight": True, "QDQOpTypePerChannelSupportToAxis": {"Conv": 0},
                 "ForceQuantizeNoInputCheck": True}
    else:
        types = dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        extra = {"WeightSymmetric": True}
    with tempfile.TemporaryDirectory(prefix="inception-qdq-") as folder:
        ranges_file = Path(folder) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), ranges_file)
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(prepared_path), str(output), None, quant_format=QuantFormat.QDQ, per_channel=True,
                            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(ranges_file),
                            extra_options=extra, **types)
