"""ONNX Runtime backend: the default, and the one CI checks every artifact with."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from ..cpu import thread_cap
from ..errors import InceptionDeployError, first_line
from ..metadata import Metadata, check_graph_shape
from .base import resolve_metadata, split_batches

log = logging.getLogger(__name__)

# ONNX Runtime's providers in the order ``auto`` prefers them
_PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


# ONNX Runtime graph rewrites that change what a graph computes. WeightBiasQuantization turns the
# float bias of a DequantizeLinear -> Conv into int32 with scale input scale x weight scale: with FP16
# Q/DQ scales (--int8-remainder fp16) that product falls into FP16's subnormal range and the bias is
# wrecked (trained-head classifier, 200 test images: 96.5% accuracy without it, 88.0% with it; 97.5%
# with no graph optimization at all, the rest being FP16 rounding in fused kernels); with
# FP32 scales it still moves the tensorrt target's logits by up to 0.36. Without it ONNX Runtime
# computes what the graph says (FP32 scales: difference 0.0 to the unoptimized graph);
# graphs whose bias is already int32 (the cpu target) run identically and as fast (docs/REFERENCE.md).
UNFAITHFUL_OPTIMIZERS = ["WeightBiasQuantization"]


def session_options(threads: int | None = None):
    """ONNX Runtime options as every session of the toolkit starts from: ORT's own warnings off (they
    would break the one-line error contract) and ``threads`` intra-op threads, else
    $OMP_NUM_THREADS (``cpu.thread_cap``), else ORT's default (one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads or thread_cap() or 0
    return options


class OnnxRuntimeBackend:
    """Runs an ONNX classifier. ``infer`` takes any batch size and splits or pads it to what the
    graph accepts (a static batch dimension, or the ``max_batch`` the export recorded).
    ``metadata``: the file's own, when the caller has already parsed it (not parsed again)."""

    def __init__(
        self,
        path: str | os.PathLike,
        device: str = "auto",
        arch: str | None = None,
        threads: int | None = None,
        max_batch: int | None = None,
        metadata: Metadata | None = None,
    ):
        import onnxruntime as ort

        self.path = Path(path)
        self.requested = _requested_providers(device, ort.get_available_providers(), self.path)
        options = session_options(threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        try:
            with warnings.catch_warnings():  # ORT warns when it drops a provider; detected below
                warnings.simplefilter("ignore", UserWarning)
                self.session = ort.InferenceSession(
                    str(path), options, providers=self.requested, disabled_optimizers=UNFAITHFUL_OPTIMIZERS
                )
        except Exception as e:  # ORT raises its own Fail / InvalidProtobuf / NoSuchFile types
            raise InceptionDeployError(f"{path}: ONNX Runtime cannot load this model ({first_line(e)})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1 or len(inputs[0].shape) != 4:
            raise InceptionDeployError(
                f"{path}: not an image classifier (expected one N x 3 x H x W input, "
                f"found {[(i.name, i.shape) for i in inputs]})"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        num_classes = outputs[0].shape[-1] if isinstance(outputs[0].shape[-1], int) else 0
        self.metadata = metadata or resolve_metadata(
            dict(self.session.get_modelmeta().custom_metadata_map), self.path, arch, num_classes
        )
        check_graph_shape(self.metadata, self.path, self.input_shape, num_classes)
        self.precision = self.metadata.precision
        fixed = self.input_shape[0]
        self.min_batch = fixed or 1
        self.max_batch = fixed or max_batch or self.metadata.max_batch
        self.providers = tuple(self.session.get_providers())
        self.fell_back = self.providers[0] != self.requested[0]
        if self.fell_back:
            log.warning(
                "%s: asked ONNX Runtime for %s but it runs on %s (missing CUDA 13 / cuDNN 9 or TensorRT libraries?)",
                self.path,
                self.requested[0],
                self.providers[0],
            )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        run = lambda chunk: self.session.run([self.output_name], {self.input_name: chunk})[0]  # noqa: E731
        return split_batches(batch, self.min_batch, self.max_batch, run).astype(np.float32, copy=False)

    @property
    def name(self) -> str:
        device = {
            "CPUExecutionProvider": "cpu",
            "CUDAExecutionProvider": "cuda",
            "TensorrtExecutionProvider": "tensorrt",
        }.get(self.providers[0], self.providers[0])
        return f"onnxruntime {device}" + (f" (fell back from {self.requested[0]})" if self.fell_back else "")

    def describe(self) -> str:
        return f"{self.name}, providers {', '.join(self.providers)}, precision {self.metadata.precision}"


def _requested_providers(device: str, available: list[str], path: Path) -> list[str]:
    if device == "auto":
        return [p for p in _PROVIDERS.values() if p in available]
    wanted = _PROVIDERS[device]
    if wanted not in available:
        hint = "pip install onnxruntime-gpu (after uninstalling onnxruntime)" if device != "cpu" else ""
        raise InceptionDeployError(
            f"{path}: this ONNX Runtime has no {wanted} (available: {', '.join(available)}); {hint}".rstrip("; ")
        )
    return [wanted] + ([_PROVIDERS["cpu"]] if device != "cpu" else [])
