"""What every backend offers, and how a model file picks its backend."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import InceptionDeployError
from ..metadata import METADATA_KEY, parse_metadata

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".plan", ".engine", ".trt")
DEVICES = ("auto", "cpu", "cuda", "tensorrt", "openvino")


class Backend(Protocol):
    path: Path
    metadata: dict  # the toolkit's metadata: preprocess, labels, precision, ...
    input_shape: tuple  # (batch or None, 3, H, W)
    min_batch: int
    max_batch: int | None  # None: no limit
    precision: str  # what parity judges it as: the artifact's precision, or "bf16" where bf16 executes
    name: str  # short: backend and device, e.g. "onnxruntime cpu" (tables name rows by it)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 N x 3 x H x W (any N) -> float32 N x num_classes logits."""

    def describe(self) -> str:
        """One line: backend, device, providers actually used, precision."""


def open_backend(path: str | os.PathLike, device: str = "auto", arch: str | None = None,
                 precision: str | None = None, openvino_mode: str = "latency") -> Backend:
    """The backend for ``path`` chosen by its suffix: .onnx -> ONNX Runtime (OpenVINO with
    ``device="openvino"``), .plan/.engine/.trt -> TensorRT. ``arch`` supplies preprocessing and
    labels for artifacts without metadata. ``precision="bf16"`` runs an ONNX file in bfloat16 on
    OpenVINO (the only CPU backend that can); ``auto`` then means OpenVINO. ``openvino_mode``:
    OpenVINO's "latency" or "throughput" performance hint."""
    path = Path(path)
    if device not in DEVICES:
        raise InceptionDeployError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    if precision not in (None, "bf16"):
        raise InceptionDeployError(f"unknown execution precision {precision!r}; choose bf16 or leave it out")
    if precision == "bf16" and device not in ("auto", "openvino"):
        raise InceptionDeployError(f"--precision bf16 runs on OpenVINO: use --device openvino, not {device}")
    if not path.is_file():
        raise InceptionDeployError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        if device == "openvino" or precision == "bf16":
            from .openvino_backend import OpenVINOBackend

            return OpenVINOBackend(path, arch=arch, precision="bf16" if precision == "bf16" else "f32",
                                   mode=openvino_mode)
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, device=device, arch=arch)
    if suffix in ENGINE_SUFFIXES:
        if device not in ("auto", "tensorrt") or precision is not None:
            raise InceptionDeployError(f"{path}: TensorRT engines run on the GPU in the precision they were built "
                                       f"with; --device {device}{' --precision ' + precision if precision else ''} "
                                       f"needs an .onnx")
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, arch=arch)
    raise InceptionDeployError(f"{path}: unknown model type {suffix or '(no suffix)'}; expected .onnx, "
                               f"or a TensorRT engine (.plan, .engine, .trt)")


def resolve_metadata(props: dict[str, str] | None, source: Path, arch: str | None, num_classes: int) -> dict:
    """The artifact's own metadata, or (given ``arch``) one built from the registry.

    The artifact wins when it has metadata: its preprocessing is what it was exported with.
    """
    if props is not None and (arch is None or METADATA_KEY in props):
        return parse_metadata(props, str(source))
    from ..labels import resolve_labels
    from ..models.registry import get_arch

    spec = get_arch(arch)
    if num_classes < 1:
        raise InceptionDeployError(f"{source}: the output's class count is not fixed in the graph; "
                                   f"cannot supply labels for it")
    names, label_source = resolve_labels(None, num_classes)
    return {"arch": spec.name, "num_classes": num_classes, "precision": "unknown",
            "preprocess": spec.preprocess.to_dict(), "labels": {"source": label_source, "names": names}}


def padded_chunks(batch: np.ndarray, step: int | None, min_batch: int = 1):
    """(chunk, real rows) pairs of at most ``step`` rows (None: all at once), each padded up to
    ``min_batch`` by repeating its last image; only the first ``real`` rows are genuine."""
    step = step or len(batch)
    for start in range(0, len(batch), step):
        chunk = batch[start:start + step]
        real = len(chunk)
        if real < min_batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], min_batch - real, axis=0)])
        yield chunk, real


def split_batches(batch: np.ndarray, min_batch: int, max_batch: int | None, run) -> np.ndarray:
    """Call ``run`` on chunks the model accepts (at most ``max_batch``, padded up to ``min_batch``)
    and keep the outputs of the real images only."""
    return np.concatenate([run(chunk)[:real] for chunk, real in padded_chunks(batch, max_batch, min_batch)])
