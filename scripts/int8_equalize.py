"""Cross-layer equalization (calibration.equalize) on and off, the same graph, calibration folder
and judged images: for each target, full INT8 against FP32 on 200 judged images (flipped top-1
answers, logits MSE) and, for the Convs equalization may change, their own output error (each fed
FP32's input through its Q/DQ pair, as calibration.bias measures), summed over those Convs.

    python scripts/int8_equalize.py --arch inception_next_tiny --size 64
    python scripts/int8_equalize.py --digits digits     # the GoogLeNet of scripts/train_digits.py
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # trained_classifier

JUDGED = 200


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="v1")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", type=int, default=400, help="folder size (200 of them judged)")
    parser.add_argument("--method", default="entropy")
    parser.add_argument("--digits", type=Path, help="the folder of scripts/train_digits.py instead of a stand-in")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="int8-equalize-") as folder:
        compare(args, Path(folder))


def compare(args, folder: Path):
    import onnx
    import trained_classifier as tc

    from inception_deploy import create_model
    from inception_deploy.calibration import CalibrationRequest, write_qdq
    from inception_deploy.calibration.bias import conv_outputs, correction_images
    from inception_deploy.calibration.equalize import equalization_pairs, equalize
    from inception_deploy.calibration.qdq import prepare
    from inception_deploy.export import export_onnx
    from inception_deploy.inputs import find_images
    from inception_deploy.preprocess import preprocess
    from inception_deploy.runtime import OnnxRuntimeBackend

    if args.digits:
        model = create_model("v1", num_classes=10, weights=args.digits / "v1_digits.pth")
        config, files, what = model.preprocess.with_input_size(64), find_images(args.digits / "images")[0], "digits v1"
    else:
        model, config = tc.build(arch=args.arch, size=args.size, train=300)
        calib = tc.write_images(folder / "calib", args.images, seed=200, size=args.size)
        files, what = find_images(calib)[0], f"{args.arch} at {args.size} px"
    files = [files[i] for i in np.random.default_rng(0).permutation(len(files))]
    judged, calibration = files[:JUDGED], folder / "calibration"
    calibration.mkdir()
    for file in files[JUDGED:]:
        (calibration / file.name).symlink_to(file)
    fp32 = export_onnx(model, folder / "fp32.onnx", opset=17, preprocess=config, check_parity=False).path
    held = preprocess(judged, config)
    reference = OnnxRuntimeBackend(fp32).infer(held)
    prepare(fp32, folder / "prepared.onnx")
    images = correction_images(calibration, config)
    pairs = equalization_pairs(onnx.load(str(folder / "prepared.onnx")).graph)
    seconds = {pair.second for pair in pairs}
    print(f"{what}: {len(pairs)} pairs; {len(files) - JUDGED} calibration images, {JUDGED} judged, {args.method}")
    print("| target | equalized tensors | flips (plain / equalized) | logits MSE | the pairs' Convs' error, summed |")
    print("|---|---|---|---|---|")
    for target, bits in (("cpu", 7), ("cpu", 8), ("tensorrt", 8)):
        proto = onnx.load(str(folder / "prepared.onnx"))
        start = time.perf_counter()
        divisors = equalize(proto, images, target, bits)
        seconds_taken = time.perf_counter() - start
        onnx.save(proto, str(folder / "equalized.onnx"))
        flips, mse, errors = [], [], []
        for graph in (folder / "prepared.onnx", folder / "equalized.onnx"):
            ranges = CalibrationRequest(calibration, images=len(files), method=args.method).calibrate(
                graph, config, "-", "-", None
            )
            write_qdq(graph, ranges, target, folder / "int8.onnx", frozenset(), bits)
            logits = OnnxRuntimeBackend(folder / "int8.onnx").infer(held)
            flips.append(int((logits.argmax(1) != reference.argmax(1)).sum()))
            mse.append(float(((logits - reference) ** 2).mean()))
            errors.append(
                sum(
                    float(((expected - got) ** 2).mean() / (expected**2).mean())
                    for name, expected, got in conv_outputs(graph, folder / "int8.onnx", images)
                    if name in seconds
                )
            )
        print(
            f"| {target} {bits}-bit | {len(divisors)} ({seconds_taken:.1f} s) | {flips[0]} / {flips[1]} | "
            f"{mse[0]:.4f} / {mse[1]:.4f} | {errors[1] / max(errors[0], 1e-30):.3f} of plain |"
        )


if __name__ == "__main__":
    main()
