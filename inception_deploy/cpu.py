"""What this CPU is and which int8 / bf16 arithmetic it has: speed figures and INT8 accuracy
depend on it (README "FP16 and INT8"), so bench, doctor and the runtimes say it."""

from __future__ import annotations

import functools
import os
import platform


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (read once: has_vnni and machine_name both
    ask); {} where there is none (not Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def has_vnni() -> bool | None:
    """Whether this x86 CPU has int8 dot products with 32-bit sums (AVX-512 VNNI, AVX-VNNI or AMX).
    Without them, ONNX Runtime's and OpenVINO's u8 x s8 kernels add pairs of products in 16 bits,
    which 8-bit weights can saturate. None where unknown (no /proc/cpuinfo) or not x86."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    flags = _cpuinfo().get("flags")
    if flags is None:
        return None
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags.split()))


def machine_name() -> str:
    """CPU model, core count and int8 arithmetic, e.g. "AMD EPYC, 2 cores, no VNNI": speeds mean
    nothing without the machine."""
    cpu = _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    cores = os.cpu_count()
    name = f"{cpu}, {cores} core{'s' if cores != 1 else ''}" if cores else cpu
    vnni = has_vnni()
    return name if vnni is None else f"{name}, {'VNNI' if vnni else 'no VNNI'}"


def thread_cap() -> int | None:
    """$OMP_NUM_THREADS as a positive count, else None. PyTorch honours it; ONNX Runtime and
    OpenVINO do not, so the runtimes pass it on: one variable caps a container's (or a test
    worker's) threads everywhere."""
    try:
        count = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return count if count > 0 else None


def int8_may_saturate(metadata, backend_name: str) -> bool:
    """Whether running this artifact here can saturate int8 sums: 8-bit weights (the tensorrt
    target, or a cpu-target file made before its weights took 7 bits) on an x86 CPU without
    VNNI, on OpenVINO or on ONNX Runtime's u8 x s8 kernels (its s8 x s8 path for the tensorrt
    target measured exact here)."""
    if metadata.precision != "int8" or metadata.int8_weight_bits != 8 or has_vnni() is not False:
        return False
    return backend_name.startswith("openvino") or (
        backend_name.startswith("onnxruntime cpu") and metadata.int8_target == "cpu"
    )
