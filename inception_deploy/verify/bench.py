"""Latency and throughput of artifacts and of eager torch baselines, each in its own process.

These machines are noisy, so every (model, batch size) runs in a fresh interpreter: no memory,
thread pool or allocator state carries over from the previous measurement. The child runs
``python -m inception_deploy.verify.bench '<json spec>'`` and prints one JSON result line.

The configurations are interleaved in rounds (each round times every configuration once, a share
of the iterations), so a load that comes and goes hits them alike instead of whichever ran at
that moment; the spread of the rounds' medians says how far a figure can be trusted, and a
figure whose rounds disagree (or whose p99 is far above its p50) is flagged unstable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from ..cpu import machine_name
from ..errors import InceptionDeployError, setting
from ..fileio import json_kind
from ..metadata import MAX_BATCH
from ..models.registry import get_arch
from ..plotting import figure_class, save_png
from ..progress import heartbeat
from ..runtime import open_backend
from ..runtime.base import ENGINE_SUFFIXES
from ..runtime.open import check_execution
from .timing import timed, timed_runs

TORCH_CPU_MODES = ("fp32", "bf16-channels-last")
TORCH_GPU_MODES = ("fp16-channels-last", "fp16-cuda-graph")
TORCH_COMPILE_MODE = "compile-bf16-channels-last"  # opt-in (--torch-compile): compiling takes minutes
ROUNDS = 3
UNSTABLE_SPREAD = 0.10  # the rounds' medians differ by more than this share of the overall median
UNSTABLE_TAIL = 3.0  # or p99 is more than this many times p50


BENCH_RESULTS = json_kind(
    "a result list of inception-bench", ("model", "backend", "batch", "p50_ms"), list_of_objects=True
)


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
    compile_s: float | None = None  # torch.compile's first call, kept out of the latency figures
    times_ms: list[float] = field(default_factory=list)  # every timed run
    spread: float = 0.0  # (largest - smallest median of a round) / median of all runs
    rounds: int = 1

    @property
    def unstable(self) -> bool:
        return self.spread > UNSTABLE_SPREAD or self.p99_ms > UNSTABLE_TAIL * self.p50_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "unstable": self.unstable}


def _summarize(model, backend, precision, batch, times_ms, round_medians=()) -> BenchResult:
    p50, p90, p99 = (float(np.percentile(times_ms, q)) for q in (50, 90, 99))
    spread = (max(round_medians) - min(round_medians)) / p50 if len(round_medians) > 1 else 0.0
    return BenchResult(
        model,
        backend,
        precision,
        batch,
        p50,
        p90,
        p99,
        batch * 1000 / p50,
        times_ms=list(times_ms),
        spread=spread,
        rounds=max(1, len(round_medians)),
    )


def measure_artifact(
    path: str,
    batch: int,
    iterations: int,
    warmup: int,
    device: str = "auto",
    precision: str | None = None,
    openvino_mode: str = "latency",
) -> BenchResult:
    backend = open_backend(path, device=device, precision=precision, openvino_mode=openvino_mode)
    if backend.max_batch is not None and batch > backend.max_batch:  # refused before allocating the input
        raise InceptionDeployError(
            f"{path}: takes batches up to {backend.max_batch}, not {batch}; give {setting('batch_sizes')} "
            f"within its limit"
        )
    size = backend.input_shape[-1]
    x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
    times = timed_runs(lambda: backend.infer(x), iterations, warmup)
    return _summarize(path, backend.name, backend.precision, batch, times)


def measure_torch(arch: str, mode: str, batch: int, iterations: int, warmup: int) -> BenchResult:
    """Torch baselines: eager CPU fp32, CPU bf16 autocast + channels_last (also through
    torch.compile, its compile time reported apart), GPU fp16 channels_last (launched eagerly,
    and replayed as a CUDA graph)."""
    import torch

    from ..checkpoints.zoo import create_model

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

    if mode == "fp16-cuda-graph":
        run = _cuda_graph(model, x)
    compile_s = None
    if mode == TORCH_COMPILE_MODE:
        model = torch.compile(model)
        _, compile_s = timed(run)  # the first call compiles
    times = timed_runs(run, iterations, warmup)
    result = _summarize(f"torch {arch}", f"torch {device}", mode, batch, times)
    result.compile_s = compile_s
    return result


def _cuda_graph(model, x):
    """The eager FP16 forward captured once as a CUDA graph and replayed: what launch overhead
    costs eager PyTorch, the fairest GPU baseline for an engine."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16), torch.cuda.stream(stream):
        for _ in range(3):  # warm up on a side stream before capture, as PyTorch's docs require
            model(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16), torch.cuda.graph(graph):
        model(x)

    def replay():
        graph.replay()
        torch.cuda.synchronize()

    return replay


def model_input_size(arch: str) -> int:
    return get_arch(arch).preprocess.input_size


def isolated(spec: dict) -> BenchResult:
    """Run one measurement in a fresh interpreter and return its result."""
    proc = subprocess.run(
        [sys.executable, "-m", "inception_deploy.verify.bench", json.dumps(spec)], capture_output=True, text=True
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InceptionDeployError(
            f"benchmark of {spec.get('model') or spec.get('arch')} at batch {spec['batch']} failed: {reason}"
        )
    fields = json.loads(lines[-1])
    fields.pop("unstable", None)  # derived
    return BenchResult(**fields)


def _child(spec: dict) -> BenchResult:
    if spec["kind"] == "artifact":
        return measure_artifact(
            spec["model"],
            spec["batch"],
            spec["iterations"],
            spec["warmup"],
            spec["device"],
            spec.get("precision"),
            spec.get("openvino_mode", "latency"),
        )
    return measure_torch(spec["arch"], spec["mode"], spec["batch"], spec["iterations"], spec["warmup"])


if __name__ == "__main__":
    try:
        print(json.dumps(_child(json.loads(sys.argv[1])).to_dict()))
    except InceptionDeployError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def run_benchmarks(
    models,
    batch_sizes,
    iterations: int,
    warmup: int,
    torch_arch: str | None = None,
    device: str | tuple[str, ...] = "auto",
    progress=print,
    precision: str | None = None,
    torch_compile: bool = False,
    openvino_mode: str = "latency",
    rounds: int = ROUNDS,
) -> list[BenchResult]:
    """Every model and torch baseline at every batch size, each in its own process, ``rounds``
    times interleaved (at most one per iteration). ``device``: one device or several (each ONNX
    model runs on each, side by side; engines once, on TensorRT); ``precision="bf16"`` applies
    where OpenVINO runs."""
    devices = (device,) if isinstance(device, str) else tuple(device)
    check_execution(devices, precision)
    if not batch_sizes or min(batch_sizes) < 1 or max(batch_sizes) > MAX_BATCH:
        raise InceptionDeployError(
            f"{setting('batch_sizes')} needs sizes from 1 to {MAX_BATCH}, not {', '.join(map(str, batch_sizes))}"
        )
    specs = []
    for model in map(str, models):
        if model.lower().endswith(ENGINE_SUFFIXES):
            specs.append({"kind": "artifact", "model": model, "device": "auto", "precision": None})
            continue
        specs += [
            {
                "kind": "artifact",
                "model": model,
                "device": d,
                "openvino_mode": openvino_mode,
                "precision": precision if d in ("auto", "openvino") else None,
            }
            for d in devices
        ]
    if torch_arch:
        modes = _torch_modes() + ((TORCH_COMPILE_MODE,) if torch_compile else ())
        specs += [{"kind": "torch", "arch": torch_arch, "mode": mode} for mode in modes]
    configurations = [(spec, batch) for spec in specs for batch in batch_sizes]
    rounds = max(1, min(rounds, iterations))
    runs: list[list[BenchResult]] = [[] for _ in configurations]
    for round_index in range(rounds):
        share = iterations // rounds + (round_index < iterations % rounds)
        for (spec, batch), done in zip(configurations, runs):
            if spec.get("mode") == TORCH_COMPILE_MODE and done:  # compiling takes minutes: one round only
                continue
            what = spec.get("model") or f"torch {spec['arch']} {spec['mode']}"
            with heartbeat(progress, f"timing {what} at batch {batch}"):
                done.append(isolated({**spec, "batch": batch, "iterations": share, "warmup": warmup}))
            last = done[-1]
            compiled = f" (compiled in {last.compile_s:.1f} s, not timed)" if last.compile_s else ""
            progress(
                f"round {round_index + 1}/{rounds}: {last.model} [{last.precision}] b{batch}: p50 "
                f"{last.p50_ms:.1f} ms, {last.images_per_s:.1f} images/s{compiled}"
            )
    return [_merge(done) for done in runs]


def _merge(rounds: list[BenchResult]) -> BenchResult:
    """One configuration's rounds as one result: percentiles over every run, the rounds' spread."""
    first = rounds[0]
    merged = _summarize(
        first.model,
        first.backend,
        first.precision,
        first.batch,
        [t for r in rounds for t in r.times_ms],
        [r.p50_ms for r in rounds],
    )
    merged.compile_s = first.compile_s
    return merged


def _torch_modes() -> tuple[str, ...]:
    """CPU baselines always; the GPU one where torch sees a GPU (checked without importing
    torch into this process when torch is absent)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise InceptionDeployError(f"{setting('torch_arch')} needs torch: pip install 'inception-deploy[export]'")
    import torch

    return TORCH_CPU_MODES + (TORCH_GPU_MODES if torch.cuda.is_available() else ())


def _torch_fp32(results: list[BenchResult]) -> dict[int, float]:
    """Throughput of eager torch FP32 per batch size: the baseline every ratio is taken against."""
    return {r.batch: r.images_per_s for r in results if r.model.startswith("torch ") and r.precision == "fp32"}


def table(results: list[BenchResult]) -> str:
    """One row per (model, batch), with throughput relative to torch fp32 at the same batch."""
    from tabulate import tabulate

    baseline = _torch_fp32(results)
    rows = []
    for r in results:
        ratio = f"{r.images_per_s / baseline[r.batch]:.2f}x" if r.batch in baseline else ""
        spread = f"±{50 * r.spread:.0f}%" + (" UNSTABLE" if r.unstable else "")
        rows.append(
            (
                r.model,
                r.backend,
                r.precision,
                r.batch,
                f"{r.p50_ms:.1f}",
                f"{r.p90_ms:.1f}",
                f"{r.p99_ms:.1f}",
                f"{r.images_per_s:.1f}",
                ratio,
                spread,
            )
        )
    return tabulate(
        rows,
        headers=(
            "model",
            "backend",
            "precision",
            "batch",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "images/s",
            "vs torch fp32",
            "rounds' spread",
        ),
        tablefmt="github",
        disable_numparse=True,
    )


def unstable_warning(results: list[BenchResult]) -> str | None:
    """One line when some figures cannot be trusted, else None."""
    unstable = [r for r in results if r.unstable]
    if not unstable:
        return None
    return (
        f"{len(unstable)} of {len(results)} figures are UNSTABLE (their rounds' medians differ by more than "
        f"{UNSTABLE_SPREAD:.0%}, or p99 is over {UNSTABLE_TAIL:g}x p50): something else is loading this "
        f"machine; compare them only with care, or run again"
    )


def _series_name(r: BenchResult) -> str:
    """Short legend name: the file's basename (or "torch <arch>"), the precision, and "openvino"
    where OpenVINO ran it (the same file may also run on ONNX Runtime in the same run)."""
    return f"{_model_name(r)} {r.precision}" + (" openvino" if r.backend.startswith("openvino") else "")


def _model_name(r: BenchResult) -> str:
    """The file's basename, or "torch <arch>" for every eager mode of that arch."""
    import os

    return " ".join(r.model.split()[:2]) if r.model.startswith("torch ") else os.path.basename(r.model)


def bench_figure(results: list[BenchResult], machine: str | None = None, day: str | None = None):
    """The figure ``plot_latency`` saves, returned so it can be inspected (see that function)."""
    import datetime
    from textwrap import fill

    Figure = figure_class()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    series: dict[str, list[BenchResult]] = {}
    for r in results:
        series.setdefault(_series_name(r), []).append(r)
    for points in series.values():
        points.sort(key=lambda r: r.batch)
    sizes = sorted({r.batch for r in results})
    baseline = _torch_fp32(results)

    panels = 3 if baseline else 2
    figure = Figure(figsize=(4.6 * panels, 4.8), dpi=100, layout="constrained")
    axes = figure.subplots(1, panels)
    throughput, latency = axes[0], axes[1]
    style = {name: dict(color=f"C{i % 10}", label=name) for i, name in enumerate(series)}
    for name, points in series.items():
        line = dict(marker="o", markersize=4, linestyle="--" if name.startswith("torch ") else "-")
        batches = [p.batch for p in points]
        throughput.plot(batches, [p.images_per_s for p in points], **style[name], **line)
        latency.plot(batches, [p.p50_ms for p in points], **style[name], **line)
        for p in points:  # an unstable figure is circled in red on both panels
            if p.unstable:
                for ax, y in ((throughput, p.images_per_s), (latency, p.p50_ms)):
                    ax.plot([p.batch], [y], marker="o", markersize=11, fillstyle="none", color="red", linestyle="none")
    throughput.set(ylabel="throughput (images/s)", title="Throughput (higher is better)")
    throughput.set_ylim(bottom=0)
    latency.set(ylabel="median latency (ms)", title="Median latency (lower is better)")
    latency.set_yscale("log")
    latency.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    latency.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    latency.yaxis.set_minor_locator(NullLocator())
    for ax in (throughput, latency):
        # measured batch sizes as plain labels, log-2 spaced: "1 8 32", never "2^0" or "2x10^1"
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        if len(sizes) > 1:
            ax.set_xlim(sizes[0] / 1.25, sizes[-1] * 1.25)
    if baseline:
        _speedup_bars(axes[2], series, style, sizes, baseline)
    for ax in axes:
        ax.set_xlabel("batch size")
        ax.title.set_fontsize(10.5)
        ax.grid(True, alpha=0.3)
    models = list(dict.fromkeys(_model_name(r) for r in results))  # each once, whatever ran it how
    title = fill("Inception benchmark: " + ", ".join(models), 110)
    warning = ""
    if any(r.unstable for r in results):
        warning = f"\nred circles: UNSTABLE figures (rounds disagree, or p99 > {UNSTABLE_TAIL:g}x p50)"
    figure.suptitle(
        f"{title}\n{machine or machine_name()}, {day or datetime.date.today().isoformat()}{warning}", fontsize=12
    )
    figure.legend(
        *throughput.get_legend_handles_labels(),
        loc="outside lower center",
        ncols=min(len(series), 4),
        fontsize=8,
        frameon=False,
    )
    return figure


def _speedup_bars(ax, series, style, sizes, baseline) -> None:
    """Throughput over torch eager FP32 at the same batch: one group of labelled bars per batch size
    (bars, so the labels never sit on each other as they would on crossing lines)."""
    compared = {
        name: {p.batch: p.images_per_s / baseline[p.batch] for p in points if p.batch in baseline}
        for name, points in series.items()
        if not (name.startswith("torch ") and name.endswith(" fp32"))
    }
    width = 0.8 / max(len(compared), 1)
    for i, (name, ratios) in enumerate(compared.items()):
        slots = [k for k, b in enumerate(sizes) if b in ratios]
        bars = ax.bar(
            [k - 0.4 + width * (i + 0.5) for k in slots], [ratios[sizes[k]] for k in slots], width, **style[name]
        )
        ax.bar_label(
            bars,
            [f"{ratios[sizes[k]]:.2f}x" for k in slots],
            fontsize=8 if len(compared) <= 3 else 7,
            padding=2,
            rotation=0 if len(compared) * len(sizes) <= 12 else 90,
        )
    reference = next(
        (style[name]["color"] for name in series if name.startswith("torch ") and name.endswith(" fp32")), "0.3"
    )
    ax.axhline(1.0, color=reference, linestyle="--", linewidth=1.2)  # torch eager FP32 itself
    ax.text(
        0.98,
        0.97,
        "dashed: torch eager FP32 = 1.00x",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        color=reference,
    )
    ax.set_xticks(range(len(sizes)), [str(b) for b in sizes])
    ax.set_ylim(0, max([1.0] + [x for r in compared.values() for x in r.values()]) * 1.25)  # room for the note
    ax.set(ylabel="throughput / torch eager FP32", title="Speed-up vs torch eager FP32")


def plot_latency(results: list[BenchResult], path) -> None:
    """Throughput, median latency and (with a torch FP32 baseline) speed-up against batch size,
    one line per model and precision, saved as a PNG (atomically).

    A benchmark is read by comparison, so the figure carries what a bare latency curve hides:
    throughput next to latency (batching trades one for the other), the ratio to eager torch FP32
    measured in the same run (absolute speeds differ between these machines and days, ratios
    from one run do not), plain tick labels at the batch sizes actually measured, and a title
    naming the models, the CPU, its core count and the date.
    """
    save_png(bench_figure(results), path)
