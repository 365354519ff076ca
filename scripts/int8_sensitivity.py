"""How the INT8 search ranks layers (calibration.sensitivity: the logits error of each layer alone in
INT8, each a rewiring of one INT8 graph) against the opposite measurement, the gain in logits error
when that layer alone is kept float in the INT8 model (each a new placement written from the same
calibration). Prints both for every layer, Spearman's rank correlation and the time of each.
(The first ranking tried, each Conv's own rounding error in one pass, correlated 0.07 with the
logits error alone in INT8 on the trained classifier: this script at commit 8ebb30c.)

    python scripts/int8_sensitivity.py                  # the trained-head classifier of the tests
    python scripts/int8_sensitivity.py --arch resnet50  # random weights, on the shipped photos
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # trained_classifier


def spearman(a, b) -> float:
    ranks = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    return float(np.corrcoef(ranks(np.asarray(a)), ranks(np.asarray(b)))[0, 1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", help="a zoo architecture with random weights (default: the trained classifier)")
    parser.add_argument("--target", default="tensorrt", choices=["tensorrt", "cpu"])
    parser.add_argument("--method", default="entropy")
    args = parser.parse_args()

    import onnx

    from inception_deploy.calibration.policy import CalibrationRequest
    from inception_deploy.calibration.qdq import prepare, write_qdq
    from inception_deploy.calibration.sensitivity import layer_sensitivity
    from inception_deploy.export import export_onnx
    from inception_deploy.graph import node_modules
    from inception_deploy.inputs import sample_folder, sample_photos
    from inception_deploy.metadata import fp32_metadata
    from inception_deploy.preprocess import normalize, preprocess, synthetic_images
    from inception_deploy.runtime import OnnxRuntimeBackend

    folder = Path(tempfile.mkdtemp(prefix="int8-sensitivity-"))
    if args.arch:  # images like the calibration set: the shipped photos and smooth synthetic ones
        fp32 = export_onnx(args.arch, folder / "fp32.onnx", check_parity=False).path
        calib = sample_folder()
        config = fp32_metadata(onnx.load(str(fp32)), fp32).preprocess
        images = np.concatenate(
            [preprocess(sample_photos(), config), normalize(synthetic_images(27, config.input_size, seed=5), config)]
        )
    else:  # the classifier's own image distribution, images calibration did not see
        import trained_classifier as tc

        model, config = tc.build()
        fp32 = export_onnx(model, folder / "fp32.onnx", opset=17, preprocess=config, check_parity=False).path
        calib = tc.write_images(folder / "calib", 320, seed=200)
        images = normalize(tc.learnable_images(64, seed=300)[0], config)
    prepared = folder / "prepared.onnx"
    prepare(fp32, prepared)
    cache = CalibrationRequest(calib, 320, 8, args.method).calibrate(prepared, config, "0" * 64, "0" * 64)
    modules = node_modules(onnx.load(str(prepared)).graph)
    expected = OnnxRuntimeBackend(fp32).infer(images)
    every = folder / "every.onnx"
    write_qdq(prepared, cache, args.target, every)

    start = time.perf_counter()
    ranked = layer_sensitivity(every, expected, images, modules)
    ranking_time = time.perf_counter() - start

    def logits_error(float_nodes) -> float:
        path = folder / "variant.onnx"
        write_qdq(prepared, cache, args.target, path, frozenset(float_nodes))
        return float(np.mean((OnnxRuntimeBackend(path).infer(images) - expected) ** 2))

    start = time.perf_counter()
    full = logits_error(())
    gain = [full - logits_error({layer.node}) for layer in ranked]
    gain_time = time.perf_counter() - start

    alone = [layer.error for layer in ranked]
    print(f"{len(ranked)} quantized layers, {len(images)} images, {args.target} target, {args.method} calibration")
    print(f"logits MSE of the INT8 model: {full:.3e}")
    print(f"alone INT8 (the ranking): {ranking_time:.1f} s; gain alone float: {gain_time:.1f} s")
    print(f"Spearman (logits error alone INT8, gain when alone float): {spearman(alone, gain):.3f}")
    print("| rank | module | logits MSE alone INT8 | gain when alone float |")
    print("|---|---|---|---|")
    for rank, (layer, g) in enumerate(zip(ranked, gain), 1):
        print(f"| {rank} | {layer.module} | {layer.error:.3e} | {g:.3e} |")


if __name__ == "__main__":
    main()
