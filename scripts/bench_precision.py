"""ONNX Runtime CPU latency of FP32 vs INT8 (cpu target) vs FP16, and calibration time per method.

    python scripts/bench_precision.py [--arch v3] [--runs 20] [--calib-images 512] [--skip-calibration-times]

Each (model, batch size) is timed in a process of its own (inception_deploy.verify.bench: median of
--runs after 3 warm-ups), so one measurement's memory and threads do not disturb the next.
Calibration images: --calib-dir, or 512 JPEGs of 640x480 to 1280x960 made from the shipped photos.
"""

import argparse
import tempfile
import time
from pathlib import Path

from bench_run import calibration_images

from inception_deploy.verify.bench import isolated


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="v3")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--calib-dir")
    parser.add_argument("--calib-images", type=int, default=512)
    parser.add_argument("--skip-calibration-times", action="store_true")
    args = parser.parse_args()

    from tabulate import tabulate

    from inception_deploy.calibration.cache import preprocess_digest
    from inception_deploy.calibration.policy import CalibrationRequest
    from inception_deploy.calibration.qdq import prepare
    from inception_deploy.export import export_onnx
    from inception_deploy.export.precision import convert_fp16, quantize_int8
    from inception_deploy.fileio import sha256_file

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        calib_dir = calibration_images(args.calib_dir, tmp, args.calib_images)
        fp32 = export_onnx(args.arch, tmp / "fp32.onnx", check_parity=False)
        config = fp32.metadata.preprocess
        rows = []
        if not args.skip_calibration_times:
            prepared = tmp / "prepared.onnx"
            prepare(fp32.path, prepared)
            for method in ("entropy", "minmax", "percentile"):
                start = time.perf_counter()
                request = CalibrationRequest(calib_dir, args.calib_images, 8, method)
                cache = request.calibrate(prepared, config, sha256_file(fp32.path), preprocess_digest(config))
                rows.append((method, cache.images, f"{time.perf_counter() - start:.1f}"))
                print(*rows[-1], flush=True)
            print(
                tabulate(rows, headers=("calibration", "images", "seconds"), tablefmt="github", disable_numparse=True)
            )
        models = {
            "fp32": fp32.path,
            "fp16": convert_fp16(fp32.path, tmp / "fp16.onnx").path,
            "int8 (cpu target)": quantize_int8(
                fp32.path,
                tmp / "int8.onnx",
                target="cpu",
                calib_dir=calib_dir,
                images=min(args.calib_images, 128),
                progress=False,
            ).path,
        }
        table, base = [], {}
        for name, path in models.items():
            b1, b8 = (
                isolated(
                    {
                        "kind": "artifact",
                        "model": str(path),
                        "device": "cpu",
                        "batch": b,
                        "iterations": args.runs,
                        "warmup": 3,
                    }
                )
                for b in (1, 8)
            )
            base.setdefault(8, b8.p50_ms)
            table.append(
                (name, f"{b1.p50_ms:.1f}", f"{b8.p50_ms:.1f}", f"{b8.images_per_s:.1f}", f"{base[8] / b8.p50_ms:.2f}x")
            )
            print(*table[-1], flush=True)
    print(
        tabulate(
            table,
            headers=("ORT CPU, " + args.arch, "b1 ms (median)", "b8 ms (median)", "b8 images/s", "b8 vs fp32"),
            tablefmt="github",
            disable_numparse=True,
        )
    )


if __name__ == "__main__":
    main()
