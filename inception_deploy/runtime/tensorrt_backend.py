"""TensorRT backend for engines built by ``inception-build`` (TensorRT 10.x and 11.x API).

Checks the engine's sidecar against the installed TensorRT and GPU before deserializing (a
mismatch otherwise fails deep inside TensorRT), addresses I/O by tensor name, and runs with
pinned host buffers, device buffers and async copies on a stream of its own, the pattern of
NVIDIA's samples. tensorrt and cuda-python are imported only when an engine is opened.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

import numpy as np

from ..errors import InceptionDeployError, first_line, setting
from ..metadata import check_graph_shape, read_sidecar, sidecar_path
from .base import resolve_metadata, split_batches

log = logging.getLogger(__name__)


class TensorRTUnavailable(InceptionDeployError):
    """This machine cannot run TensorRT (not installed, no cuda-python, no GPU or driver): the
    engine may be fine, it just cannot be used here."""


def import_tensorrt(what: str):
    """The tensorrt module; TensorRTUnavailable says whether it is missing or installed but broken
    (e.g. libnvinfer not found), which need different fixes."""
    try:
        import tensorrt as trt
    except ModuleNotFoundError as e:
        if e.name not in ("tensorrt", "tensorrt_bindings"):
            raise TensorRTUnavailable(f"{what}: TensorRT is installed but cannot be imported ({e})") from None
        raise TensorRTUnavailable(
            f"{what} needs TensorRT: pip install 'inception-deploy[tensorrt-cu13]' (or "
            f"[tensorrt-cu12] for a CUDA 12 driver) on a machine with an NVIDIA GPU"
        ) from None
    except (ImportError, OSError) as e:
        raise TensorRTUnavailable(f"{what}: TensorRT is installed but cannot be imported ({first_line(e)})") from None
    return trt


def import_cudart(what: str):
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise TensorRTUnavailable(
                f"{what} needs cuda-python for GPU buffers: pip install "
                f"'inception-deploy[tensorrt-cu13]' (or [tensorrt-cu12])"
            ) from None
    return cudart


def create(factory, what: str, logger, *args):
    """``factory(*args, logger)`` (trt.Builder, trt.Runtime, trt.OnnxParser). When TensorRT cannot
    initialise (no usable GPU, CUDA or driver mismatch) pybind11 raises "factory function
    returned nullptr": say that, with what TensorRT logged, instead of a traceback."""
    try:
        return factory(*args, logger)
    except TypeError as e:
        if "nullptr" not in str(e):
            raise
        logged = f": {logger.errors[-1]}" if logger.errors else ""
        raise TensorRTUnavailable(
            f"{what}: TensorRT could not create its {factory.__name__} (it failed to "
            f"initialise: no usable GPU, or a CUDA driver too old for this TensorRT){logged}"
        ) from None


def deserialize(trt, logger, plan: bytes, what: str, version_compatible: bool):
    """The ICudaEngine of ``plan``, or None when TensorRT refuses it (the logger says why).
    Version-compatible plans carry the lean runtime's host code, which the runtime must be
    allowed to load; any other plan is loaded without that permission."""
    runtime = create(trt.Runtime, what, logger)
    runtime.engine_host_code_allowed = version_compatible
    return runtime.deserialize_cuda_engine(plan)


def cuda_check(cudart, result):
    """cuda-python calls return (error, *values): raise on error, return the values."""
    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        raise InceptionDeployError(f"CUDA error: {cuda_error_text(cudart, err)}")
    return values[0] if len(values) == 1 else values


def cuda_error_text(cudart, err) -> str:
    text = cudart.cudaGetErrorString(err)[1]
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


def current_gpu(cudart) -> dict:
    try:
        count = cuda_check(cudart, cudart.cudaGetDeviceCount())
    except InceptionDeployError as e:  # e.g. cudaErrorInsufficientDriver on a machine without a driver
        raise TensorRTUnavailable(f"no usable CUDA GPU ({e}){_driver_advice(cudart)}") from None
    if count < 1:
        raise TensorRTUnavailable("no CUDA GPU is visible")
    props = cuda_check(cudart, cudart.cudaGetDeviceProperties(0))
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"name": name.split("\x00")[0], "compute_capability": f"{props.major}.{props.minor}"}


def cuda_version(number: int) -> str:
    """CUDA's integer version (12080) as people write it (12.8); "none" for 0 (no driver)."""
    return f"{number // 1000}.{number % 1000 // 10}" if number else "none"


def _driver_advice(cudart) -> str:
    """Which extra fits the installed driver, when cuda-python's CUDA is newer than it supports."""
    err, driver = cudart.cudaDriverGetVersion()
    _, runtime = cudart.cudaRuntimeGetVersion()
    if err != cudart.cudaError_t.cudaSuccess or not driver:
        return "; no NVIDIA driver found"
    if runtime and driver < runtime:
        return (
            f"; the driver supports CUDA {cuda_version(driver)} but this cuda-python needs "
            f"{cuda_version(runtime)}: pip install 'inception-deploy[tensorrt-cu{driver // 1000}]'"
        )
    return ""


def check_compatible(path: Path, built: dict, built_gpu: dict, trt_version: str, gpu: dict) -> None:
    """Refuse an engine built (``built``: its sidecar's TensorRT build, ``built_gpu`` its GPU) for
    another TensorRT or GPU, unless built to be portable."""
    where = (
        f"built with TensorRT {built.get('version', '?')} on {built_gpu.get('name', '?')} "
        f"(compute capability {built_gpu.get('compute_capability', '?')})"
    )
    if built.get("version") != trt_version and not built.get("version_compatible"):
        raise InceptionDeployError(
            f"{path}: {where}, but this machine has TensorRT {trt_version}; rebuild it here "
            f"(or build it with {setting('version_compatible')})"
        )
    portable = str(built.get("hardware_compatibility") or "none").lower() not in ("none", "same_compute_capability")
    if built_gpu.get("compute_capability") != gpu["compute_capability"] and not portable:
        raise InceptionDeployError(
            f"{path}: {where}, but this GPU is {gpu['name']} (compute capability "
            f"{gpu['compute_capability']}); rebuild it here with inception-build"
        )
    if built_gpu.get("name") != gpu["name"]:
        log.warning("%s: %s; running on %s", path, where, gpu["name"])


def make_logger(trt):
    """A TensorRT logger that keeps errors so failures can be reported in one line."""

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.debug("TensorRT: %s", msg)

    return _Logger()


class _Buffer:
    """A pinned host array and a device allocation of the same size."""

    def __init__(self, cudart, shape, dtype):
        self.cudart = cudart
        self.nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.host_ptr = cuda_check(cudart, cudart.cudaMallocHost(self.nbytes))
        raw = (ctypes.c_byte * self.nbytes).from_address(int(self.host_ptr))
        self.host = np.frombuffer(raw, dtype=dtype).reshape(shape)
        self.device = cuda_check(cudart, cudart.cudaMalloc(self.nbytes))

    def free(self):
        self.cudart.cudaFree(self.device)
        self.cudart.cudaFreeHost(self.host_ptr)


class TensorRTBackend:
    def __init__(self, path: str | os.PathLike, arch: str | None = None):
        self.path = Path(path)
        sidecar = read_sidecar(self.path)
        if sidecar is None and arch is None:
            raise InceptionDeployError(
                f"{self.path}: no sidecar {sidecar_path(self.path).name} beside the engine (inception-build writes "
                f"it: preprocessing, labels, TensorRT version); rebuild the engine, or pass {setting('arch')}"
            )
        trt = self.trt = import_tensorrt(str(self.path))
        cudart = self.cudart = import_cudart(str(self.path))
        gpu = current_gpu(cudart)
        if sidecar is not None:
            check_compatible(self.path, sidecar.tensorrt, sidecar.gpu, trt.__version__, gpu)
        self.logger = make_logger(trt)
        version_compatible = bool(sidecar and sidecar.tensorrt.get("version_compatible"))
        self.engine = deserialize(trt, self.logger, self.path.read_bytes(), str(self.path), version_compatible)
        if self.engine is None:
            reason = self.logger.errors[-1] if self.logger.errors else "unknown reason"
            raise InceptionDeployError(f"{self.path}: TensorRT cannot deserialize this engine ({reason})")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise InceptionDeployError(
                f"{self.path}: not an image classifier engine (inputs {inputs}, outputs {outputs})"
            )
        self.input_name = inputs[0]
        self.output_name = "logits" if "logits" in outputs else outputs[0]
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        if shape[0] == -1:
            low, _, high = self.engine.get_tensor_profile_shape(self.input_name, 0)
            self.min_batch, self.max_batch = int(low[0]), int(high[0])
        else:
            self.min_batch = self.max_batch = int(shape[0])
        self.input_shape = (None if shape[0] == -1 else shape[0],) + tuple(int(d) for d in shape[1:])
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        num_classes = int(self.engine.get_tensor_shape(self.output_name)[-1])
        self.metadata = sidecar if sidecar is not None else resolve_metadata(None, self.path, arch, num_classes)
        check_graph_shape(self.metadata, self.path, self.input_shape, num_classes)
        self.precision = self.metadata.precision
        self.context = self.engine.create_execution_context()
        self.stream = cuda_check(cudart, cudart.cudaStreamCreate())  # non-default: no implicit device syncs
        self.gpu = gpu
        self.inp = _Buffer(cudart, (self.max_batch,) + self.input_shape[1:], self.input_dtype)
        self.out = _Buffer(cudart, (self.max_batch, num_classes), self.output_dtype)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        cudart, n = self.cudart, len(chunk)
        self.inp.host[:n] = chunk
        nbytes_in = self.inp.nbytes // self.max_batch * n
        nbytes_out = self.out.nbytes // self.max_batch * n
        stream = self.stream
        cuda_check(
            cudart,
            cudart.cudaMemcpyAsync(
                self.inp.device, self.inp.host_ptr, nbytes_in, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream
            ),
        )
        if not self.context.set_input_shape(self.input_name, (n,) + self.input_shape[1:]):
            raise InceptionDeployError(
                f"{self.path}: TensorRT refused input shape {(n,) + self.input_shape[1:]} "
                f"({'; '.join(self.logger.errors[-1:]) or 'outside the profile'})"
            )
        for name, buffer in ((self.input_name, self.inp), (self.output_name, self.out)):
            if not self.context.set_tensor_address(name, int(buffer.device)):
                raise InceptionDeployError(f"{self.path}: TensorRT refused the address of {name}")
        if not self.context.execute_async_v3(int(stream)):
            raise InceptionDeployError(f"{self.path}: TensorRT execution failed ({'; '.join(self.logger.errors[-1:])})")
        cuda_check(
            cudart,
            cudart.cudaMemcpyAsync(
                self.out.host_ptr, self.out.device, nbytes_out, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream
            ),
        )
        cuda_check(cudart, cudart.cudaStreamSynchronize(stream))
        return self.out.host[:n].astype(np.float32)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        return split_batches(batch, self.min_batch, self.max_batch, self._run)

    @property
    def name(self) -> str:
        return f"tensorrt {self.trt.__version__} on {self.gpu['name']}"

    def describe(self) -> str:
        return f"{self.name}, precision {self.metadata.precision}, batch {self.min_batch}-{self.max_batch}"

    def close(self):
        self.inp.free()
        self.out.free()
        self.cudart.cudaStreamDestroy(self.stream)
