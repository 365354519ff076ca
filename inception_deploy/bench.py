"""Latency and throughput of artifacts and of eager torch baselines, each in its own process.

These machines are noisy, so every (model, batch size) runs in a fresh interpreter: no memory,
thread pool or allocator state carries over from the previous measurement. The child runs
``python -m inception_deploy.bench '<json spec>'`` and prints one JSON result line.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from .errors import InceptionDeployError

TORCH_CPU_MODES = ("fp32", "bf16-channels-last")
TORCH_GPU_MODES = ("fp16-channels-last",)


@dataclass
class BenchResult:
    model: str  # file, or "torch <arch> <mode>"
    backend: str
    precision: str
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def _summarize(model, backend, precision, batch, times_ms) -> BenchResult:
    p50, p90, p99 = (float(np.percentile(times_ms, q)) for q in (50, 90, 99))
    return BenchResult(model, backend, precision, batch, p50, p90, p99, batch * 1000 / p50)


def _timed(run, iterations: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def measure_artifact(path: str, batch: int, iterations: int, warmup: int, device: str = "auto") -> BenchResult:
    from .runtime import open_backend

    backend = open_backend(path, device=device)
    size = backend.input_shape[-1]
    x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
    times = _timed(lambda: backend.infer(x), iterations, warmup)
    return _summarize(path, backend.describe().split(",")[0], backend.metadata.get("precision", "?"), batch, times)


def measure_torch(arch: str, mode: str, batch: int, iterations: int, warmup: int) -> BenchResult:
    """Eager torch baselines: CPU fp32, CPU bf16 autocast + channels_last, GPU fp16 channels_last."""
    import torch

    from .zoo import create_model

    model = create_model(arch)
    size = model_input_size(arch)
    x = torch.randn(batch, 3, size, size)
    device = "cuda" if mode in TORCH_GPU_MODES else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InceptionDeployError("torch fp16 baseline needs a CUDA GPU")
    if mode != "fp32":
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    model, x = model.to(device), x.to(device)
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run():
        with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=mode != "fp32"):
            model(x)
        sync()

    times = _timed(run, iterations, warmup)
    return _summarize(f"torch {arch}", f"torch {device}", mode, batch, times)


def model_input_size(arch: str) -> int:
    from .models.registry import get_arch

    return get_arch(arch).preprocess.input_size


def isolated(spec: dict) -> BenchResult:
    """Run one measurement in a fresh interpreter and return its result."""
    proc = subprocess.run([sys.executable, "-m", "inception_deploy.bench", json.dumps(spec)],
                          capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InceptionDeployError(f"benchmark of {spec.get('model') or spec.get('arch')} at batch "
                                   f"{spec['batch']} failed: {reason}")
    return BenchResult(**json.loads(lines[-1]))


def _child(spec: dict) -> BenchResult:
    if spec["kind"] == "artifact":
        return measure_artifact(spec["model"], spec["batch"], spec["iterations"], spec["warmup"], spec["device"])
    return measure_torch(spec["arch"], spec["mode"], spec["batch"], spec["iterations"], spec["warmup"])


if __name__ == "__main__":
    try:
        print(json.dumps(_child(json.loads(sys.argv[1])).to_dict()))
    except InceptionDeployError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def run_benchmarks(models, batch_sizes, iterations: int, warmup: int, torch_arch: str | None = None,
                   device: str = "auto", progress=print) -> list[BenchResult]:
    """Every model and torch baseline at every batch size, each in its own process."""
    specs = [{"kind": "artifact", "model": str(m), "device": device} for m in models]
    if torch_arch:
        specs += [{"kind": "torch", "arch": torch_arch, "mode": mode} for mode in _torch_modes()]
    results = []
    for spec in specs:
        for batch in batch_sizes:
            result = isolated({**spec, "batch": batch, "iterations": iterations, "warmup": warmup})
            progress(f"{result.model} [{result.precision}] b{batch}: p50 {result.p50_ms:.1f} ms, "
                     f"{result.images_per_s:.1f} images/s")
            results.append(result)
    return results


def _torch_modes() -> tuple[str, ...]:
    """CPU baselines always; the GPU one where torch sees a GPU (checked without importing
    torch into this process when torch is absent)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise InceptionDeployError("--torch-arch needs torch: pip install 'inception-deploy[export]'")
    import torch

    return TORCH_CPU_MODES + (TORCH_GPU_MODES if torch.cuda.is_available() else ())


def table(results: list[BenchResult]) -> str:
    """One row per (model, batch), with throughput relative to torch fp32 at the same batch."""
    from tabulate import tabulate

    baseline = {r.batch: r.images_per_s for r in results if r.model.startswith("torch ") and r.precision == "fp32"}
    rows = []
    for r in results:
        ratio = f"{r.images_per_s / baseline[r.batch]:.2f}x" if r.batch in baseline else ""
        rows.append((r.model, r.backend, r.precision, r.batch, f"{r.p50_ms:.1f}", f"{r.p90_ms:.1f}",
                     f"{r.p99_ms:.1f}", f"{r.images_per_s:.1f}", ratio))
    return tabulate(rows, headers=("model", "backend", "precision", "batch", "p50 ms", "p90 ms", "p99 ms",
                                   "images/s", "vs torch fp32"), tablefmt="github", disable_numparse=True)


def plot_latency(results: list[BenchResult], path) -> None:
    """Median latency against batch size, one line per model and precision."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InceptionDeployError("--plot needs matplotlib: pip install 'inception-deploy[bench]'") from None
    from .fileio import atomic_path

    figure, axes = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[BenchResult]] = {}
    for r in results:
        series.setdefault(f"{r.model} [{r.precision}]", []).append(r)
    for name, points in series.items():
        points.sort(key=lambda r: r.batch)
        axes.plot([p.batch for p in points], [p.p50_ms for p in points], marker="o", label=name)
    axes.set_xlabel("batch size")
    axes.set_ylabel("median latency (ms)")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
