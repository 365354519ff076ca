"""The GPU acceptance run, for whoever has an NVIDIA GPU with TensorRT (none is lent to this project):

    python scripts/gpu_acceptance.py [--arch v3] [--weights FILE|pretrained] [--calib-dir DIR] \
                                     [--iterations 50] [--report gpu_acceptance.md]

For the arch: FP32, FP16 and INT8 (tensorrt target, with an FP32 and with an FP16 remainder)
ONNX, an engine of each (build time cold and with the timing cache), each engine's precision
report, parity of each engine against eager PyTorch (judged for FP16/INT8 only with real
--weights), then latency and throughput at batch 1/8/32 next to torch FP16 eager on the same
GPU, launched eagerly and replayed as a CUDA graph: INT8 against FP16 is the comparison that
shows whether the INT8 placement pays off.
Everything goes to one Markdown report (and the same as JSON beside it). Without --calib-dir,
512 JPEGs made from the shipped photos calibrate the INT8 model. Exits 3 with one line where
TensorRT or a GPU is missing.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench_run import calibration_images
from tabulate import tabulate

from inception_deploy.export import export_onnx
from inception_deploy.export.engine import build_engine, describe_layers, engine_unavailable_reason
from inception_deploy.export.precision import convert_fp16, quantize_int8
from inception_deploy.runtime.tensorrt_backend import TensorRTBackend
from inception_deploy.verify.bench import run_benchmarks, table
from inception_deploy.verify.comparator import check_backend
from inception_deploy.verify.metrics import RANDOM_WEIGHTS


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="v3")
    parser.add_argument("--weights")
    parser.add_argument("--calib-dir")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--report", default="gpu_acceptance.md")
    args = parser.parse_args()
    reason = engine_unavailable_reason()
    if reason:
        print(f"error: no GPU acceptance run here: {reason}", file=sys.stderr)
        sys.exit(3)
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    sections, facts = [], {"arch": args.arch, "weights": args.weights}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        calib = calibration_images(args.calib_dir, tmp, 512)
        fp32 = export_onnx(args.arch, tmp / "fp32.onnx", weights=args.weights, progress=say)
        model = fp32.model
        int8 = dict(target="tensorrt", calib_dir=calib, cache=tmp / "calib.json", progress=say)
        onnx_files = {
            "fp32": fp32.path,
            "fp16": convert_fp16(fp32.path, tmp / "fp16.onnx", progress=say).path,
            "int8": quantize_int8(fp32.path, tmp / "int8.onnx", **int8).path,
            "int8_fp16": quantize_int8(fp32.path, tmp / "int8_fp16.onnx", remainder="fp16", **int8).path,
        }
        builds, parity_tables, engines = [], [], []
        for name, path in onnx_files.items():
            cache = tmp / f"{name}.timing"
            start = time.perf_counter()
            build_engine(path, tmp / f"{name}.plan", max_batch=32, timing_cache=cache, progress=say)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            built = build_engine(path, tmp / f"{name}.plan", max_batch=32, timing_cache=cache)
            warm = time.perf_counter() - start
            builds.append((name, f"{cold:.1f}", f"{warm:.1f}", describe_layers(built.metadata.get("layers"))))
            facts[f"{name}_engine"] = {
                "build_s_cold": cold,
                "build_s_cached": warm,
                "layers": built.metadata.get("layers"),
                "gpu": built.metadata["gpu"],
                "tensorrt": built.metadata["tensorrt"]["version"],
            }
            precision = built.metadata["precision"]
            backend = TensorRTBackend(built.path)
            try:
                unjudged = None if precision == "fp32" or args.weights is not None else RANDOM_WEIGHTS
                report = check_backend(
                    model, backend, built.metadata.preprocess, (1, 8), precision, "tensorrt", unjudged=unjudged
                )
            finally:
                backend.close()
            parity_tables.append(f"### {name} engine\n\n{report.table()}")
            facts[f"{name}_parity"] = report.to_dict()
            engines.append(built.path)
        sections.append(
            "## Engines\n\n"
            + tabulate(
                builds,
                headers=("engine", "build s (cold)", "build s (timing cache)", "precision report"),
                tablefmt="github",
            )
        )
        sections.append("## Parity against eager PyTorch\n\n" + "\n\n".join(parity_tables))
        results = run_benchmarks(engines, [1, 8, 32], args.iterations, 10, torch_arch=args.arch, progress=say)
        sections.append("## Latency and throughput\n\n" + table(results))
        facts["bench"] = [r.to_dict() for r in results]
    gpu = facts["fp32_engine"]["gpu"]
    title = (
        f"# GPU acceptance: {args.arch} on {gpu['name']} (compute capability {gpu['compute_capability']}), "
        f"TensorRT {facts['fp32_engine']['tensorrt']}\n\n"
        f"weights: {args.weights or 'random (FP16/INT8 parity measured, not judged)'}"
    )
    report_path = Path(args.report)
    report_path.write_text(title + "\n\n" + "\n\n".join(sections) + "\n")
    report_path.with_suffix(".json").write_text(json.dumps(facts, indent=1))
    print(f"wrote {report_path} and {report_path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
