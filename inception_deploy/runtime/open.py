"""Opening an artifact: which backend runs a model file on which device, and, for commands that
run several artifacts side by side, which ones this machine cannot run and why (one place)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InceptionDeployError, setting
from .base import DEVICES, ENGINE_SUFFIXES, ONNX_SUFFIXES, Backend


def check_execution(devices: tuple[str, ...], precision: str | None) -> None:
    """Known devices, and bf16 only where one of ``devices`` is OpenVINO's (the only CPU backend
    with bfloat16 kernels; "auto" picks it for bf16)."""
    unknown = [d for d in devices if d not in DEVICES]
    if not devices or unknown:
        raise InceptionDeployError(f"unknown device {(unknown or [''])[0]!r}; choose from {', '.join(DEVICES)}")
    if precision not in (None, "bf16"):
        raise InceptionDeployError(f"unknown execution precision {precision!r}; choose bf16 or leave it out")
    if precision == "bf16" and not {"auto", "openvino"} & set(devices):
        raise InceptionDeployError(
            f"{setting('precision')} bf16 runs on OpenVINO: use {setting('device')} openvino, not {', '.join(devices)}"
        )


def open_backend(
    path: str | os.PathLike,
    device: str = "auto",
    arch: str | None = None,
    precision: str | None = None,
    openvino_mode: str = "latency",
    threads: int | None = None,
) -> Backend:
    """The backend for ``path`` chosen by its suffix: .onnx -> ONNX Runtime (OpenVINO with
    ``device="openvino"``), .plan/.engine/.trt -> TensorRT. ``arch`` supplies preprocessing and
    labels for artifacts without metadata. ``precision="bf16"`` runs an ONNX file in bfloat16 on
    OpenVINO (the only CPU backend that can); ``auto`` then means OpenVINO. ``openvino_mode``:
    OpenVINO's "latency" or "throughput" performance hint. ``threads``: CPU threads for ONNX
    Runtime or OpenVINO (default: all cores; several processes on one machine each want fewer)."""
    path = Path(path)
    check_execution((device,), precision)
    if not path.is_file():
        raise InceptionDeployError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        if device == "openvino" or precision == "bf16":
            from .openvino_backend import OpenVINOBackend

            return OpenVINOBackend(
                path, arch=arch, precision="bf16" if precision == "bf16" else "f32", mode=openvino_mode, threads=threads
            )
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, device=device, arch=arch, threads=threads)
    if suffix in ENGINE_SUFFIXES:
        if device not in ("auto", "tensorrt") or precision is not None:
            asked = f"{setting('device')} {device}" + (f" {setting('precision')} {precision}" if precision else "")
            raise InceptionDeployError(
                f"{path}: TensorRT engines run on the GPU in the precision they were built with; {asked} needs an .onnx"
            )
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, arch=arch)
    raise InceptionDeployError(
        f"{path}: unknown model type {suffix or '(no suffix)'}; expected .onnx, "
        f"or a TensorRT engine (.plan, .engine, .trt)"
    )


def open_artifact(
    path: str | os.PathLike, device: str = "auto", arch: str | None = None, precision: str | None = None
) -> tuple[Backend | None, str | None]:
    """``(backend, None)``, or ``(None, why)`` where this machine cannot run ``path`` (an engine
    without TensorRT or a GPU): parity, evaluation and benchmarks list it as skipped and go on.
    ONNX files run on ``device`` (and ``precision``); engines always on TensorRT."""
    from .tensorrt_backend import TensorRTUnavailable

    engine = Path(path).suffix.lower() in ENGINE_SUFFIXES
    try:
        return open_backend(
            path, device="auto" if engine else device, arch=arch, precision=None if engine else precision
        ), None
    except TensorRTUnavailable as e:
        return None, str(e)
