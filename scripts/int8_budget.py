"""INT8 under an accuracy budget on a classifier with real decision margins: an architecture's
random-init features at its own input size with a ridge-fitted 10-class head on the learnable
synthetic images of the tests (tests/trained_classifier.py), calibrated on a folder of them, the
search judged on its held-out share. Prints the search's report: layers kept float, share of the
Convs and of their multiply-adds still INT8, the drop with its interval, and the search time.

    python scripts/int8_budget.py --arch v3 --images 500 --max-drop 1
    python scripts/int8_budget.py --arch v1 --size 96 --images 400 --max-drop 1 --method minmax
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # trained_classifier


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="v3")
    parser.add_argument("--size", type=int, help="input size (default: the arch's)")
    parser.add_argument("--images", type=int, default=500, help="calibration folder size (20%% held out)")
    parser.add_argument("--train", type=int, default=300, help="images the head is fitted on")
    parser.add_argument("--max-drop", type=float, default=1.0)
    parser.add_argument("--accept-unproven", action="store_true", help="search on the point estimate (Budget)")
    parser.add_argument("--no-bias-correction", action="store_true", help="Int8Request.bias_correction off")
    parser.add_argument("--adaround", action="store_true", help="Int8Request.adaround on")
    parser.add_argument("--equalize", action="store_true", help="Int8Request.equalize on")
    parser.add_argument("--weight-bits", type=int, choices=(7, 8), help="cpu target (default 7)")
    parser.add_argument("--target", default="tensorrt", choices=["tensorrt", "cpu"])
    parser.add_argument("--method", default="entropy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="int8-budget-") as folder:  # removed after
        run(args, Path(folder))


def run(args, folder: Path):
    """Build the stand-in in ``folder``, search its INT8 budget, print the report."""
    import trained_classifier as tc

    from inception_deploy.calibration.budget import Budget
    from inception_deploy.export import export_onnx
    from inception_deploy.export.precision import quantize_int8
    from inception_deploy.models.registry import get_arch

    size = args.size or get_arch(args.arch).preprocess.input_size
    start = time.perf_counter()
    model, config = tc.build(arch=args.arch, size=size, train=args.train)
    fp32 = export_onnx(model, folder / "fp32.onnx", opset=17, preprocess=config, check_parity=False).path
    calib = tc.write_images(folder / "calib", args.images, seed=200, size=size)
    print(f"{args.arch} at {size} px, head fitted, exported, {args.images} images: {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    result = quantize_int8(
        fp32, folder / "int8.onnx", target=args.target, calib_dir=calib, method=args.method,
        budget=Budget(args.max_drop, accept_unproven=args.accept_unproven),
        bias_correction=not args.no_bias_correction, adaround=args.adaround, weight_bits=args.weight_bits,
        equalize=args.equalize,
        progress=print,
    )  # fmt: skip
    print(f"calibration, search and writing: {time.perf_counter() - start:.0f} s")
    print(result.budget.summary())


if __name__ == "__main__":
    main()
