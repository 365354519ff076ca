"""Per-channel weight ranges chosen by error instead of min/max, measured before being built:
each quantized Conv's per-output-channel weight scale replaced by the one (0.5 to 1.0 times the
min/max scale, 51 steps) with the smallest squared rounding error of that channel's weights; on the
cpu target the int8 weights and the int32 bias are quantized again with it. The logits against
FP32 on images neither calibration nor the choice saw: mean squared error / mean KL of the
softmax / top-1 flips, with min/max weights and with these.

    python scripts/weight_ranges.py --arch v1 --size 96             # a stand-in (random features)
    python scripts/weight_ranges.py --digits digits                 # scripts/train_digits.py's network
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # trained_classifier

GRID = np.linspace(0.5, 1.0, 51)


def fitted_scales(weights: np.ndarray, scales: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """Per output channel, the scale of GRID x ``scales`` whose rounding of ``weights`` is closest."""
    w = weights.reshape(len(weights), -1).astype(np.float64)
    best, best_error = scales.astype(np.float64).copy(), np.full(len(w), np.inf)
    for alpha in GRID:
        s = scales.astype(np.float64) * alpha
        error = ((np.clip(np.round(w / s[:, None]), qmin, qmax) * s[:, None] - w) ** 2).sum(1)
        better = error < best_error
        best[better], best_error[better] = s[better], error[better]
    return best.astype(np.float32)


def refit(path, out, float_weights: dict) -> int:
    """``path`` with each quantized Conv's weight scales fitted (tensorrt target: float weights
    behind a Q/DQ pair; cpu target: int8 weights and an int32 bias, quantized again)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    initializers = {i.name: i for i in proto.graph.initializer}
    producers = {o: n for n in proto.graph.node for o in n.output}
    array = lambda name: numpy_helper.to_array(initializers[name])  # noqa: E731
    put = lambda name, values: initializers[name].CopyFrom(numpy_helper.from_array(values, name))  # noqa: E731
    fitted = 0
    for conv in proto.graph.node:
        dq = producers.get(conv.input[1]) if conv.op_type == "Conv" else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        quantize = producers.get(dq.input[0])
        if quantize is not None and quantize.op_type == "QuantizeLinear":  # tensorrt: one scale for the pair
            scales = array(quantize.input[1])
            put(quantize.input[1], fitted_scales(array(quantize.input[0]), scales, -128, 127))
        elif dq.input[0] in initializers and conv.name in float_weights:  # cpu: int8 weights
            stored, scales, w = array(dq.input[0]), array(dq.input[1]), float_weights[conv.name]
            qmax = int(np.abs(stored).max())  # 127, or 63 for 7-bit weights
            new = fitted_scales(w, scales, -qmax, qmax)
            q = np.clip(np.round(w.reshape(len(w), -1) / new[:, None]), -qmax, qmax).reshape(w.shape)
            put(dq.input[0], q.astype(stored.dtype))
            put(dq.input[1], new)
            if len(conv.input) > 2 and conv.input[2] in producers:  # int32 bias, scale input x weight scale
                bias_dq = producers[conv.input[2]]
                bias, bias_scale = array(bias_dq.input[0]).astype(np.float64), array(bias_dq.input[1])
                new_scale = bias_scale.astype(np.float64) * (new / scales)
                put(bias_dq.input[0], np.round(bias * bias_scale / new_scale).astype(np.int32))
                put(bias_dq.input[1], new_scale.astype(np.float32))
        else:
            continue
        fitted += 1
    onnx.save(proto, str(out))
    return fitted


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="v1")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--digits", type=Path, help="the folder scripts/train_digits.py wrote")
    args = parser.parse_args()

    import onnx
    import trained_classifier as tc
    from onnx import numpy_helper

    from inception_deploy import create_model
    from inception_deploy.calibration.qdq import prepare
    from inception_deploy.export import export_onnx
    from inception_deploy.export.precision import quantize_int8
    from inception_deploy.preprocess import normalize, preprocess
    from inception_deploy.runtime import OnnxRuntimeBackend
    from inception_deploy.statistics import mean_kl

    folder = Path(tempfile.mkdtemp(prefix="weight-ranges-"))
    if args.digits:  # 400 unseen digits calibrate, the other 397 judge
        model = create_model("v1", num_classes=10, weights=args.digits / "v1_digits.pth")
        config, what = model.preprocess.with_input_size(64), "v1, 64 px, trained on digits"
        files = sorted((args.digits / "images").iterdir())
        (folder / "calib").mkdir()
        for file in files[:400]:
            shutil.copy(file, folder / "calib")
        calib, judged = folder / "calib", preprocess(files[400:], config)
    else:
        model, config = tc.build(arch=args.arch, size=args.size, train=300)
        what = f"{args.arch}, {args.size} px, fitted head"
        calib = tc.write_images(folder / "calib", 200, seed=200, size=args.size)
        judged = normalize(tc.learnable_images(600, seed=999, size=args.size)[0], config)
    fp32 = export_onnx(model, folder / "fp32.onnx", opset=17, preprocess=config, check_parity=False).path
    reference = OnnxRuntimeBackend(fp32).infer(judged)
    prepare(fp32, folder / "prepared.onnx")
    graph = onnx.load(str(folder / "prepared.onnx")).graph
    initializers = {i.name: i for i in graph.initializer}
    float_weights = {
        n.name: numpy_helper.to_array(initializers[n.input[1]])
        for n in graph.node
        if n.op_type == "Conv" and n.input[1] in initializers
    }

    def measured(path) -> str:
        logits = OnnxRuntimeBackend(path).infer(judged)
        flips = int(np.sum(logits.argmax(1) != reference.argmax(1)))
        return f"{float(np.mean((logits - reference) ** 2)):.4f} / {mean_kl(reference, logits):.4f} / {flips}"

    print(f"| {what} | calibration | target | min/max weights: MSE / KL / flips of {len(judged)} | by error |")
    print("|---|---|---|---|---|")
    for method in ("minmax", "entropy"):
        for target, bits in (("tensorrt", 8), ("cpu", 8), ("cpu", 7)):
            name = f"{method}_{target}{bits}"
            result = quantize_int8(
                fp32, folder / f"{name}.onnx", target=target, calib_dir=calib, method=method,
                cache=folder / f"{method}_{target}.json", weight_bits=bits if target == "cpu" else None,
                bias_correction=False,
            )  # fmt: skip
            fitted = refit(result.path, folder / f"{name}_fitted.onnx", float_weights)
            row = f"| | {method} | {target}, {bits}-bit weights | {measured(result.path)} | "
            print(row + f"{measured(folder / f'{name}_fitted.onnx')} ({fitted} Convs) |", flush=True)


if __name__ == "__main__":
    main()
