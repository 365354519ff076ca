"""Per architecture, in one run: parameters, export time and size, FP32 / FP16 / INT8 parity, and
CPU throughput on ONNX Runtime and OpenVINO (the table of docs/architectures.md for new archs).

    python scripts/arch_table.py [--archs v3,resnet50,inception_next_tiny,skresnet18] [--runs 10]

Random-init weights (batch-norm statistics from images): parity is the cosine against eager
PyTorch over the shipped photos and synthetic images (FP32: the largest relative error; FP16: the
minimum cosine; INT8: cpu target, minmax ranges from the five photos, the photos' minimum cosine).
Random weights have near-ties, so top-1 is not shown; the trained classifiers of the test suite
judge accuracy. Throughput: batch 8, median of --runs after 3 warm-ups, each model timed in a
process of its own (inception_deploy.verify.bench.isolated); OpenVINO with its throughput hint.
"""

import argparse
import tempfile
import time
from pathlib import Path

from inception_deploy import create_model
from inception_deploy.export import export_onnx
from inception_deploy.export.precision import convert_fp16, quantize_int8
from inception_deploy.inputs import sample_folder
from inception_deploy.runtime.torch_runner import TorchRunner
from inception_deploy.verify.bench import isolated

DEFAULT_ARCHS = (
    "v3,resnet50,inception_next_atto,inception_next_tiny,inception_next_small,inception_next_base,"
    "skresnet18,skresnet34,skresnext50_32x4d"
)


def _images_per_s(path: Path, device: str, runs: int) -> float:
    spec = {"kind": "artifact", "model": str(path), "device": device, "batch": 8, "iterations": runs, "warmup": 3}
    if device == "openvino":
        spec["openvino_mode"] = "throughput"
    return isolated(spec).images_per_s


def _min_cosine(rows, photos_only=False) -> float:
    return min(r.cosine for r in rows if not photos_only or r.inputs.startswith("photos"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default=DEFAULT_ARCHS)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    from tabulate import tabulate

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.archs.split(","):
            model = create_model(arch)
            reference = TorchRunner(model)
            start = time.perf_counter()
            fp32 = export_onnx(model, Path(folder) / f"{arch}.onnx")
            export_s = time.perf_counter() - start
            fp16 = convert_fp16(
                fp32.path, Path(folder) / f"{arch}_fp16.onnx", reference_model=reference, judge_parity=False
            )
            int8 = quantize_int8(
                fp32.path,
                Path(folder) / f"{arch}_int8_cpu.onnx",
                target="cpu",
                calib_dir=sample_folder(),
                method="minmax",
                reference_model=reference,
                judge_parity=False,
            )
            rows.append(
                (
                    arch,
                    f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}",
                    f"{export_s:.1f}",
                    f"{fp32.path.stat().st_size / 1e6:.1f}",
                    f"{max(r.max_rel for r in fp32.parity.rows):.1e}",
                    f"{_min_cosine(fp16.parity.rows):.6f}",
                    f"{_min_cosine(int8.parity.rows, photos_only=True):.4f}",
                    f"{_images_per_s(fp32.path, 'cpu', args.runs):.1f}",
                    f"{_images_per_s(int8.path, 'cpu', args.runs):.1f}",
                    f"{_images_per_s(fp32.path, 'openvino', args.runs):.1f}",
                )
            )
            print(f"{arch}: done", flush=True)
    headers = (
        "arch",
        "params M",
        "export s",
        "ONNX MB",
        "FP32 max rel",
        "FP16 min cos",
        "INT8 cpu min cos",
        "ORT FP32 img/s",
        "ORT INT8 img/s",
        "OpenVINO FP32 img/s",
    )
    print(tabulate(rows, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    main()
