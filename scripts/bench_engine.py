"""On a GPU host with TensorRT: engine build time (cold, then with the timing cache) and engine
latency/throughput per precision at batch 1/8/32 next to eager PyTorch on the same GPU.

    python scripts/bench_engine.py [--arch v3] [--calib-dir DIR] [--iterations 50]

Without --calib-dir, 512 JPEGs made from the shipped photos calibrate the INT8 model.
Exits with code 3 and one line where TensorRT or a GPU is missing.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from bench_run import make_images
from inception_deploy.bench import run_benchmarks, table
from inception_deploy.export import export_onnx
from inception_deploy.export.engine import build_engine, engine_unavailable_reason
from inception_deploy.export.precision import convert_fp16, quantize_int8


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="v3")
    parser.add_argument("--calib-dir")
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    reason = engine_unavailable_reason()
    if reason:
        print(f"error: no engine benchmark here: {reason}", file=sys.stderr)
        sys.exit(3)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        calib = Path(args.calib_dir) if args.calib_dir else tmp / "calib"
        if not args.calib_dir:
            calib.mkdir()
            make_images(calib, 512)
        fp32 = export_onnx(args.arch, tmp / "fp32.onnx", check_parity=False).path
        onnx_files = {"fp32": fp32, "fp16": convert_fp16(fp32, tmp / "fp16.onnx").path,
                      "int8": quantize_int8(fp32, tmp / "int8.onnx", target="tensorrt", calib_dir=calib).path}
        rows, engines = [], []
        for precision, path in onnx_files.items():
            cache = tmp / f"{precision}.timing"
            start = time.perf_counter()
            build_engine(path, tmp / f"{precision}.plan", max_batch=32, timing_cache=cache)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            built = build_engine(path, tmp / f"{precision}.plan", max_batch=32, timing_cache=cache)
            warm = time.perf_counter() - start
            rows.append((precision, f"{cold:.1f}", f"{warm:.1f}"))
            engines.append(built.path)
        print(tabulate(rows, headers=("engine", "build s (cold)", "build s (timing cache)"), tablefmt="github"))
        results = run_benchmarks(engines, [1, 8, 32], args.iterations, 10, torch_arch=args.arch,
                                 progress=lambda line: print(line, file=sys.stderr))
        print(table(results))


if __name__ == "__main__":
    main()
