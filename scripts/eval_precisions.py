"""Accuracy of FP32 / FP16 / INT8 (both targets) against eager, on the trained test classifier.

    python scripts/eval_precisions.py [--images 1000] [--calib 200]

The classifier of tests/trained_classifier.py (GoogLeNet features at 96x96, a ridge-fitted
10-class head) is exported to a temporary folder with an FP16 and two INT8 models (calibrated on
--calib other images of the same distribution), and a labelled folder of --images images is
written (class_0 ... class_9 subfolders); then `inception-eval` does the rest:

    inception-eval --data DATA --onnx small.onnx --onnx small_fp16.onnx \\
        --onnx small_int8_tensorrt.onnx --onnx small_int8_cpu.onnx   (eager added here)
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # trained_classifier
import trained_classifier as tc  # noqa: E402

from inception_deploy.export import export_onnx  # noqa: E402
from inception_deploy.export.precision import convert_fp16, quantize_int8  # noqa: E402
from inception_deploy.verify.evaluation import evaluate  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--calib", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the report names the models by their (short) relative paths
        tmp = Path()
        model, config = tc.build()
        fp32 = export_onnx(model, tmp / "small.onnx", opset=17, preprocess=config, check_parity=False).path
        artifacts = [fp32, convert_fp16(fp32, tmp / "small_fp16.onnx").path]
        calib = tc.write_images(tmp / "calib", args.calib, seed=5)
        for target in ("tensorrt", "cpu"):
            artifacts.append(
                quantize_int8(
                    fp32, tmp / f"small_int8_{target}.onnx", target=target, calib_dir=calib, cache=tmp / "calib.json"
                ).path
            )
        images, labels = tc.learnable_images(args.images, seed=2024)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = tmp / "data" / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / f"{i:04d}.png")
        report = evaluate(
            tmp / "data",
            artifacts=artifacts,
            model=model,
            preprocess=config,
            labels=[f"class_{i}" for i in range(tc.CLASSES)],
        )
        print(report.table())
        print(report.losing_table())


if __name__ == "__main__":
    main()
