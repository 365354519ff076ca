"""Bias correction of INT8 Convs, measured: the full INT8 of a classifier with real decision margins
(an architecture's random-init features with a ridge-fitted 10-class head on the learnable images
of the tests, tests/trained_classifier.py), with and without each quantized Conv's bias corrected
(calibration.bias), against FP32 on 600 images neither calibration nor the correction saw: logits
mean squared error, mean KL of the softmax, and top-1 flips.

    python scripts/bias_correction.py --arch v1 --size 96
    python scripts/bias_correction.py --arch resnet18 --size 96
    python scripts/bias_correction.py --arch inception_next_tiny --size 64
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # trained_classifier


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="v1")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", type=int, default=200, help="calibration folder size")
    args = parser.parse_args()

    import numpy as np
    import trained_classifier as tc

    from inception_deploy.export import export_onnx
    from inception_deploy.export.precision import quantize_int8
    from inception_deploy.preprocess import normalize
    from inception_deploy.runtime import OnnxRuntimeBackend
    from inception_deploy.statistics import mean_kl

    folder = Path(tempfile.mkdtemp(prefix="bias-correction-"))
    model, config = tc.build(arch=args.arch, size=args.size, train=300)
    fp32 = export_onnx(model, folder / "fp32.onnx", opset=17, preprocess=config, check_parity=False).path
    calib = tc.write_images(folder / "calib", args.images, seed=200, size=args.size)
    images, _ = tc.learnable_images(600, seed=999, size=args.size)
    held = normalize(images, config)
    reference = OnnxRuntimeBackend(fp32).infer(held)

    def measured(path) -> str:
        logits = OnnxRuntimeBackend(path).infer(held)
        flips = int(np.sum(logits.argmax(1) != reference.argmax(1)))
        mse = float(np.mean((logits - reference) ** 2))
        return f"{mse:.4f} | {mean_kl(reference, logits):.4f} | {flips}"

    print(f"| {args.arch}, {args.size} px | calibration | target | without: MSE / KL / flips of 600 | with |")
    print("|---|---|---|---|---|")
    for method in ("minmax", "entropy"):
        for target in ("tensorrt", "cpu"):
            row = []
            for corrected in (False, True):
                result = quantize_int8(
                    fp32, folder / f"{method}_{target}_{corrected}.onnx", target=target, calib_dir=calib,
                    method=method, cache=folder / f"{method}_{target}.json", bias_correction=corrected,
                )  # fmt: skip
                row.append(measured(result.path))
            print(f"| | {method} | {target} | {row[0]} | {row[1]} |")


if __name__ == "__main__":
    main()
