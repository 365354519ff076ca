"""INT8 Q/DQ placement per architecture: Q/DQ pairs, quantized tensors, and agreement with eager.

    python scripts/int8_placement.py [--arch v3 ...] [--classifier] [--remainder-fp16]
        [--calib-images 80] [--eval-images 40] [--json OUT.json] [--before OLD.json]

For each architecture (random weights with batch-norm statistics from images, as exported
without --weights): the FP32 ONNX is calibrated once (entropy) on --calib-images JPEGs made from
the shipped photos (scripts/bench_run.py), quantized for both INT8 targets from that one cache
(and, with --remainder-fp16, the tensorrt target with its unquantized ops in FP16),
and compared with eager PyTorch on --eval-images other views of those photos (random crops and
flips, not in the calibration set): cosine of the logits per image (mean, min) and top-1
agreement. --classifier adds the trained-head classifier of the precision tests
(tests/trained_classifier.py), whose 1000 labelled test images also give accuracy.

--json writes the rows; --before reads rows written by another checkout (e.g. the previous
placement) and prints them side by side with this run's.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # trained_classifier

ARCHS = ["v1", "v2", "v3", "v4", "inception-resnet-v1", "inception-resnet-v2", "xception"]


def eval_views(count: int, seed: int = 1) -> list[Image.Image]:
    """Random crops (30-100% of the side) and flips of the shipped photos."""
    from inception_deploy.inputs import sample_photos

    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in sample_photos()]
    views = []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(min(photo.size) * rng.uniform(0.3, 1.0))
        left, top = (int(rng.integers(0, photo.size[k] - side + 1)) for k in (0, 1))
        view = photo.crop((left, top, left + side, top + side))
        views.append(view.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else view)
    return views


def qdq_counts(path) -> dict:
    """Q/DQ pairs (DequantizeLinear nodes: weights and activations, each a rounding point) and the
    activation tensors quantized."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {i.name for i in graph.initializer}
    dequantizers = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    quantized = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in weights}
    return {"qdq_pairs": len(dequantizers), "activation_tensors": len(quantized)}


def agreement(reference: np.ndarray, logits: np.ndarray, labels=None) -> dict:
    cosine = np.sum(reference * logits, 1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(logits, axis=1))
    row = {
        "cosine_mean": float(cosine.mean()),
        "cosine_min": float(cosine.min()),
        "top1_agreement": float(np.mean(reference.argmax(1) == logits.argmax(1))),
    }
    if labels is not None:
        row.update(
            accuracy=float(np.mean(logits.argmax(1) == labels)),
            eager_accuracy=float(np.mean(reference.argmax(1) == labels)),
        )
    return row


def measure(
    name, fp32_path, model, calib_dir, images: np.ndarray, labels, folder: Path, calib_images: int, remainder_fp16: bool
) -> list:
    """Calibrate once, quantize for both targets (and the tensorrt target with an FP16 remainder),
    compare each with eager on ``images``."""
    from inception_deploy.export.precision import quantize_int8
    from inception_deploy.runtime import OnnxRuntimeBackend
    from inception_deploy.runtime.torch_runner import eager_logits

    cache = folder / f"{name}.calib.json"  # one calibration for every variant
    quantize_int8(
        fp32_path, folder / f"{name}.first.onnx", target="cpu", calib_dir=calib_dir, cache=cache, images=calib_images
    )
    reference = eager_logits(model, images)
    rows = []
    for target, remainder in [("tensorrt", "fp32"), ("cpu", "fp32")] + [("tensorrt", "fp16")] * remainder_fp16:
        path = folder / f"{name}.{target}.{remainder}.onnx"
        options = {"remainder": remainder} if remainder != "fp32" else {}  # older checkouts have no remainder
        quantize_int8(fp32_path, path, target=target, cache=cache, **options)
        backend = OnnxRuntimeBackend(path)
        logits = np.concatenate([backend.infer(images[i : i + 8]) for i in range(0, len(images), 8)])
        rows.append(
            {
                "model": name,
                "target": target + ("+fp16" if remainder == "fp16" else ""),
                **qdq_counts(path),
                **agreement(reference, logits, labels),
            }
        )
        print(f"  {name} {target}: {rows[-1]}", file=sys.stderr)
    return rows


def classifier_rows(folder: Path, remainder_fp16: bool) -> list:
    import trained_classifier as tc

    from inception_deploy.export import export_onnx
    from inception_deploy.preprocess import normalize

    model, config = tc.build()
    fp32 = export_onnx(model, folder / "classifier.onnx", preprocess=config, check_parity=False).path
    calib = tc.write_images(folder / "classifier-calib", 320, seed=200)  # as tests/test_precision.py
    test, labels = tc.learnable_images(1000, seed=999)
    return measure("classifier", fp32, model, calib, normalize(test, config), labels, folder, 320, remainder_fp16)


def arch_rows(arch: str, calib_dir: Path, views, folder: Path, calib_images: int, remainder_fp16: bool) -> list:
    from inception_deploy.export import export_onnx
    from inception_deploy.preprocess import preprocess

    result = export_onnx(arch, folder / f"{arch}.onnx", check_parity=False)
    config = result.metadata.preprocess
    images = preprocess(views, config)
    return measure(arch, result.path, result.model, calib_dir, images, None, folder, calib_images, remainder_fp16)


def table(rows: list, before: list | None) -> str:
    from tabulate import tabulate

    old = {(r["model"], r["target"]): r for r in before or []}
    headers = ["model", "target", "Q/DQ pairs", "quantized tensors", "cosine mean", "cosine min", "top-1 agreement"]
    if any("accuracy" in r for r in rows):
        headers.append("accuracy (eager)")
    lines = []
    for r in rows:
        b = old.get((r["model"], r["target"]))

        def cell(key, fmt):
            now = format(r[key], fmt)
            return f"{format(b[key], fmt)} -> {now}" if b and key in b else now

        line = [
            r["model"],
            r["target"],
            cell("qdq_pairs", "d"),
            cell("activation_tensors", "d"),
            cell("cosine_mean", ".4f"),
            cell("cosine_min", ".4f"),
            cell("top1_agreement", ".1%"),
        ]
        if "accuracy (eager)" in headers:
            line.append(f"{cell('accuracy', '.1%')} ({r['eager_accuracy']:.1%})" if "accuracy" in r else "")
        lines.append(line)
    return tabulate(lines, headers, tablefmt="github")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="*", default=ARCHS)
    parser.add_argument("--classifier", action="store_true")
    parser.add_argument("--calib-images", type=int, default=80)
    parser.add_argument("--eval-images", type=int, default=40)
    parser.add_argument("--remainder-fp16", action="store_true", help="also the tensorrt target with an FP16 remainder")
    parser.add_argument("--json")
    parser.add_argument("--before")
    args = parser.parse_args()

    from bench_run import calibration_images

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.classifier:
            rows += classifier_rows(folder, args.remainder_fp16)
        if args.arch:
            calib_dir = calibration_images(None, folder, args.calib_images)
            views = eval_views(args.eval_images)
            for arch in args.arch:
                rows += arch_rows(arch, calib_dir, views, folder, args.calib_images, args.remainder_fp16)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    before = json.loads(Path(args.before).read_text()) if args.before else None
    print(table(rows, before))


if __name__ == "__main__":
    main()
