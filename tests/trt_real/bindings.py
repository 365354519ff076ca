"""The REAL TensorRT and cuda-python bindings, importable on a machine without a GPU.

``tensorrt-cuXX-bindings`` wheels hold only ``tensorrt_bindings/tensorrt.so`` (about 1.3 MB). It
links against libnvinfer / libnvonnxparser / libnvinfer_plugin but needs just nine factory symbols
from them; ``stubs.c`` defines those, compiled with the system C compiler into libraries loaded
before the import. Every class, enum, property and signature is then the real release's; only
objects made by a factory (Builder, Runtime, OnnxParser) cannot be created.

``cuda-bindings`` (cuda-python's runtime module) imports without a driver: its calls return
cudaErrorInsufficientDriver. Wheels are downloaded once into a cache folder
(``$INCEPTION_DEPLOY_TEST_CACHE`` or ``~/.cache/inception-deploy``); the download is the only
network step.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import zipfile
from pathlib import Path

# (TensorRT bindings, CUDA major): the oldest and newest 10.x and the newest 11.x
MATRIX = [("10.0.1", 12), ("10.16.1.11", 12), ("11.4.0.106", 13)]
CUDA_BINDINGS = {12: "cuda-bindings>=12.9,<13", 13: "cuda-bindings>=13,<14"}
ENV = "INCEPTION_DEPLOY_TRT_BINDINGS"  # "<tensorrt version>": set in the per-version test processes


class Unavailable(Exception):
    """The wheels could not be fetched or the stubs not built here (the reason says which)."""


def cache_root() -> Path:
    root = os.environ.get("INCEPTION_DEPLOY_TEST_CACHE") or Path.home() / ".cache" / "inception-deploy"
    return Path(root) / "bindings"


def _download(requirement: str, folder: Path) -> Path:
    """One wheel (no dependencies) for this interpreter, unpacked into ``folder``; cached."""
    done = folder / ".complete"
    if done.exists():
        return folder
    wheels = folder.with_name(folder.name + ".wheels")
    wheels.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(wheels),
            requirement,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    found = sorted(wheels.glob("*.whl"))
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise Unavailable(f"cannot download {requirement}: {last}")
    for wheel in found:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(folder)
    done.touch()
    return folder


def _stub_libraries(major: int) -> Path:
    """libnvinfer.so.N, libnvonnxparser.so.N, libnvinfer_plugin.so.N built from stubs.c."""
    folder = cache_root() / f"stubs-{major}"
    names = [f"lib{name}.so.{major}" for name in ("nvinfer", "nvonnxparser", "nvinfer_plugin")]
    if not all((folder / n).exists() for n in names):
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            proc = subprocess.run(
                [
                    "cc",
                    "-shared",
                    "-fPIC",
                    f"-Wl,-soname,{name}",
                    "-o",
                    str(folder / name),
                    str(Path(__file__).with_name("stubs.c")),
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise Unavailable(f"cannot build the TensorRT stub libraries with cc: {proc.stderr.strip()[:200]}")
    return folder


def fetch(version: str, cuda_major: int) -> dict:
    """Download (once) and prepare everything the ``version`` tests import: folders to put on
    sys.path and the stub libraries. Raises Unavailable with the reason."""
    trt_major = int(version.split(".")[0])
    package = "tensorrt-cu13-bindings" if trt_major >= 11 else "tensorrt-cu12-bindings"
    root = cache_root()
    return {
        "tensorrt": str(_download(f"{package}=={version}", root / f"tensorrt-{version}")),
        "cuda": str(_download(CUDA_BINDINGS[cuda_major], root / f"cuda-bindings-{cuda_major}")),
        "pathfinder": str(_download("cuda-pathfinder", root / "cuda-pathfinder")),
        "stubs": str(_stub_libraries(trt_major)),
        "trt_major": trt_major,
    }


def import_real(paths: dict):
    """(real tensorrt module, real cuda.bindings.runtime module) of one fetched version. Once per
    process: a process holds one TensorRT release."""
    for name in ("nvinfer", "nvonnxparser", "nvinfer_plugin"):  # found by soname when tensorrt.so loads
        ctypes.CDLL(str(Path(paths["stubs"]) / f"lib{name}.so.{paths['trt_major']}"), mode=ctypes.RTLD_GLOBAL)
    sys.path[:0] = [paths["tensorrt"], paths["cuda"], paths["pathfinder"]]
    import tensorrt_bindings
    from cuda.bindings import runtime

    return tensorrt_bindings, runtime
