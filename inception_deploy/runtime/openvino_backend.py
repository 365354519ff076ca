"""OpenVINO: this toolkit's own ONNX files (FP32, FP16, INT8 Q/DQ) at the CPU's real speed.

OpenVINO reads the .onnx directly (Q/DQ pairs become int8 FakeQuantize). On CPUs with bf16
arithmetic it silently executes FP32 models in bf16 unless told otherwise, so the precision is
always set explicitly and read back for ``describe`` (docs/REFERENCE.md, OpenVINO).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..cpu import thread_cap
from ..errors import InceptionDeployError, first_line
from ..graph import load_onnx
from ..metadata import check_graph_shape
from .base import resolve_metadata, split_batches

log = logging.getLogger(__name__)

# CPU execution precisions: f32 computes what the graph says; bf16 runs an FP32 artifact in
# bfloat16 (8-bit mantissa), judged by its own parity thresholds (parity.THRESHOLDS["bf16"]).
PRECISIONS = ("f32", "bf16")
MODES = ("latency", "throughput")
DEFAULT_CACHE = Path.home() / ".cache" / "inception-deploy" / "openvino"


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise InceptionDeployError("OpenVINO is not installed: pip install 'inception-deploy[openvino]'") from None
    return openvino


class OpenVINOBackend:
    """Runs an ONNX classifier with OpenVINO on the CPU. ``precision``: "f32" (default) or "bf16";
    ``mode``: OpenVINO's performance hint. "latency" runs each batch as one request on all cores;
    "throughput" makes several streams (a few cores each) and splits each batch over them as
    asynchronous requests (one request at a time would leave all but one stream idle: 2x slower
    here). Compiled models are cached in ``cache_dir`` (OpenVINO's CACHE_DIR), so a second start
    skips compilation."""

    def __init__(
        self,
        path: str | os.PathLike,
        arch: str | None = None,
        precision: str = "f32",
        mode: str = "latency",
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = DEFAULT_CACHE,
        max_batch: int | None = None,
    ):
        if precision not in PRECISIONS:
            raise InceptionDeployError(
                f"unknown OpenVINO precision {precision!r}; choose one of: {', '.join(PRECISIONS)}"
            )
        if mode not in MODES:
            raise InceptionDeployError(f"unknown OpenVINO mode {mode!r}; choose one of: {', '.join(MODES)}")
        self.path = Path(path)
        proto = load_onnx(self.path)  # our metadata, and a one-line error for what is not ONNX
        ov = import_openvino()
        import openvino.properties as props
        import openvino.properties.hint as hints

        core = ov.Core()
        config = {
            hints.inference_precision: precision,
            hints.performance_mode: getattr(hints.PerformanceMode, mode.upper()),
        }
        threads = threads or thread_cap()
        if threads:
            config[props.inference_num_threads] = threads
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            config[props.cache_dir] = str(cache_dir)
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:  # OpenVINO raises RuntimeError with its own multi-line text
            raise InceptionDeployError(f"{self.path}: OpenVINO cannot load this model ({_reason(e)})") from None
        if len(model.inputs) != 1 or model.inputs[0].get_partial_shape().rank.get_length() != 4:
            raise InceptionDeployError(f"{self.path}: not an image classifier (expected one N x 3 x H x W input)")
        shape = model.inputs[0].get_partial_shape()
        self.input_shape = tuple(d.get_length() if d.is_static else None for d in shape)
        out = model.outputs[0].get_partial_shape()
        num_classes = out[out.rank.get_length() - 1].get_length() if out[out.rank.get_length() - 1].is_static else 0
        props_map = {p.key: p.value for p in proto.metadata_props}
        self.metadata = resolve_metadata(props_map, self.path, arch, num_classes)
        check_graph_shape(self.metadata, self.path, self.input_shape, num_classes)
        self.input_dtype = np.float16 if model.inputs[0].get_element_type() == ov.Type.f16 else np.float32
        self.min_batch = self.input_shape[0] or 1
        self.max_batch = self.input_shape[0] or max_batch or self.metadata.max_batch
        self.executes = _type_name(str(self.compiled.get_property(hints.inference_precision)))  # read back
        if precision == "bf16" and self.executes != "bf16":
            raise InceptionDeployError(
                f"{self.path}: bf16 was asked for, but this CPU has no bfloat16 arithmetic (OpenVINO runs "
                f"{self.executes}; its CPU capabilities: "
                f"{', '.join(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))})"
            )
        recorded = self.metadata.precision
        self.precision = "bf16" if self.executes == "bf16" and recorded in ("fp32", "unknown") else recorded
        self.mode = mode
        self.streams = self.compiled.get_property(props.optimal_number_of_infer_requests) if mode == "throughput" else 1
        self._request = self.compiled.create_infer_request()
        self._queue = ov.AsyncInferQueue(self.compiled, self.streams) if self.streams > 1 else None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        run = self._run_streams if self._queue is not None and self.input_shape[0] is None else self._run_one
        return split_batches(batch, self.min_batch, self.max_batch, run).astype(np.float32, copy=False)

    def _run_one(self, chunk: np.ndarray) -> np.ndarray:
        return self._request.infer({0: chunk})[self.compiled.outputs[0]]

    def _run_streams(self, chunk: np.ndarray) -> np.ndarray:
        """One asynchronous request per stream, each on a slice of ``chunk``, gathered in order."""
        parts = [p for p in np.array_split(chunk, self.streams) if len(p)]
        outputs: dict[int, np.ndarray] = {}
        self._queue.set_callback(lambda request, i: outputs.__setitem__(i, request.get_output_tensor(0).data.copy()))
        for i, part in enumerate(parts):
            self._queue.start_async({0: part}, i)
        self._queue.wait_all()
        return np.concatenate([outputs[i] for i in range(len(parts))])

    @property
    def name(self) -> str:
        return f"openvino cpu ({self.mode}" + (f", {self.streams} streams)" if self.streams > 1 else ")")

    def describe(self) -> str:
        return f"{self.name}, precision {self.metadata.precision}, float ops in {self.executes}"


def _reason(error: Exception) -> str:
    """OpenVINO's multi-line message without its source locations: its last line says what failed
    (e.g. "No conversion rule found for operations: com.example.NoSuchOp")."""
    lines = [
        line.strip(" -")
        for line in str(error).splitlines()
        if line.strip() and not line.startswith(("Exception from ", "Check '"))
    ]
    return lines[-1][:300] if lines else first_line(error)


def _type_name(text: str) -> str:
    """OpenVINO's "<Type: 'bfloat16'>" -> "bf16"."""
    for name, short in (("bfloat16", "bf16"), ("float32", "f32"), ("float16", "f16")):
        if name in text:
            return short
    return text
