"""Cross-check for maintainers: our tensorrt-target Q/DQ placement against NVIDIA Model Optimizer's.

    python scripts/modelopt_compare.py MODEL.onnx [--calib-dir DIR] [--calib-images 80]
        [--remainder fp32] [--venv ~/.cache/inception-deploy/modelopt] [--modelopt "nvidia-modelopt[onnx]==0.47.*"]

MODEL.onnx is an FP32 export of this toolkit (its metadata says how images are preprocessed).
ModelOpt needs torch and about 1.4 GB of dependencies pinned to versions of its choosing
(onnxruntime-gpu, cupy, onnx-graphsurgeon...), so it runs in a virtual environment of its own,
made on first use (torch==2.13.0 first: any other torch request downloads the CUDA wheels);
nothing of ours is pinned to its versions. It rewrites its input file in place, so it gets a copy.

Both quantize for TensorRT from the same images (--calib-dir, default the shipped photos made
into --calib-images JPEGs) with entropy calibration: ModelOpt reads them preprocessed as a .npy,
we calibrate with our own code. --remainder is the precision of the unquantized ops on both
sides (ModelOpt's --high_precision_dtype, which defaults to fp16; our --int8-remainder).

Printed: Q/DQ pairs and quantized activation tensors of each (common, only ours, only ModelOpt's,
by the op types that read them), how far the scales of the common tensors differ, and each
graph's cosine / top-1 agreement with the FP32 model on those images (ONNX Runtime CPU).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DEFAULT_VENV = Path.home() / ".cache" / "inception-deploy" / "modelopt"


def modelopt_python(venv: Path, requirement: str) -> Path:
    """The virtual environment's interpreter, made with ModelOpt installed on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {requirement} (about 1.4 GB, once)...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for packages in (["torch==2.13.0"], [requirement]):
            subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return python


def quantized_activations(path) -> dict[str, float]:
    """Activation tensor -> its int8 scale, for every QuantizeLinear of a float tensor."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}

    def value(name):
        if name in init:
            return numpy_helper.to_array(init[name])
        return numpy_helper.to_array(constants[name].attribute[0].t)

    return {
        n.input[0]: float(value(n.input[1]))
        for n in graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in init and n.input[0] not in constants
    }


def readers(path, tensors) -> dict[str, str]:
    """Tensor -> the op types that read it in the FP32 graph (e.g. 'Conv+MaxPool')."""
    import onnx

    graph = onnx.load(str(path)).graph
    added = "a tensor not in the FP32 graph (e.g. a Cast the tool added)"
    return {t: "+".join(sorted({n.op_type for n in graph.node if t in n.input})) or added for t in tensors}


def logits(path, images: np.ndarray) -> np.ndarray:
    """ONNX Runtime CPU, as our backend runs it (without the rewrites that change what a graph computes)."""
    import onnxruntime as ort

    from inception_deploy.runtime.onnxruntime_backend import UNFAITHFUL_OPTIMIZERS

    session = ort.InferenceSession(
        str(path), providers=["CPUExecutionProvider"], disabled_optimizers=UNFAITHFUL_OPTIMIZERS
    )
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[i : i + 1]})[0] for i in range(len(images))])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--calib-dir")
    parser.add_argument("--calib-images", type=int, default=80)
    parser.add_argument("--remainder", choices=["fp32", "fp16"], default="fp32")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--modelopt", default="nvidia-modelopt[onnx]==0.47.*")
    args = parser.parse_args()

    from bench_run import calibration_images

    from inception_deploy.calibration import CalibrationImages
    from inception_deploy.export.precision import quantize_int8
    from inception_deploy.graph import load_onnx
    from inception_deploy.metadata import fp32_metadata

    python = modelopt_python(args.venv, args.modelopt)
    with tempfile.TemporaryDirectory(prefix="modelopt-compare-") as tmp:
        tmp = Path(tmp)
        calib_dir = calibration_images(args.calib_dir, tmp, args.calib_images)
        config = fp32_metadata(load_onnx(args.model), args.model).preprocess
        data = CalibrationImages(calib_dir, config, count=args.calib_images, batch=8)
        images = np.concatenate(list(data.batches(False))).astype(np.float32)
        np.save(tmp / "calib.npy", images)

        ours = quantize_int8(
            args.model,
            tmp / "ours.onnx",
            target="tensorrt",
            calib_dir=calib_dir,
            images=args.calib_images,
            remainder=args.remainder,
        ).path
        copy = tmp / "input.onnx"  # ModelOpt rewrites its input in place
        shutil.copy(args.model, copy)
        theirs = tmp / "modelopt.onnx"
        subprocess.run(
            [
                str(python),
                "-m",
                "modelopt.onnx.quantization",
                "--onnx_path",
                str(copy),
                "--quantize_mode",
                "int8",
                "--calibration_method",
                "entropy",
                "--calibration_data_path",
                str(tmp / "calib.npy"),
                "--calibration_eps",
                "cpu",
                "--high_precision_dtype",
                args.remainder,
                "--output_path",
                str(theirs),
            ],
            check=True,
            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
            stdout=sys.stderr,
        )

        ours_q, theirs_q = quantized_activations(ours), quantized_activations(theirs)
        common = ours_q.keys() & theirs_q.keys()
        only = {"ours": sorted(ours_q.keys() - common), "ModelOpt": sorted(theirs_q.keys() - common)}
        import onnx

        pairs = {
            name: sum(n.op_type == "DequantizeLinear" for n in onnx.load(str(p)).graph.node)
            for name, p in (("ours", ours), ("ModelOpt", theirs))
        }
        print(f"Q/DQ pairs: ours {pairs['ours']}, ModelOpt {pairs['ModelOpt']}")
        print(f"quantized activation tensors: ours {len(ours_q)}, ModelOpt {len(theirs_q)}, common {len(common)}")
        for who, names in only.items():
            kinds = readers(args.model, names)
            for kind in sorted(set(kinds.values())):
                print(f"  only {who}: {sum(k == kind for k in kinds.values())} read by {kind}")
        if common:
            ratio = np.array([ours_q[n] / theirs_q[n] for n in sorted(common)])
            print(
                f"scale ours / ModelOpt on common tensors: median {np.median(ratio):.3f}, "
                f"range {ratio.min():.3f} .. {ratio.max():.3f}"
            )
        reference = logits(args.model, images)
        for who, path in (("ours", ours), ("ModelOpt", theirs)):
            got = logits(path, images)
            cosine = np.sum(reference * got, 1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(got, axis=1))
            agree = np.mean(reference.argmax(1) == got.argmax(1))
            print(
                f"{who}: cosine to FP32 mean {cosine.mean():.4f} min {cosine.min():.4f}, top-1 agreement "
                f"{agree:.1%} on {len(images)} calibration images"
            )


if __name__ == "__main__":
    main()
