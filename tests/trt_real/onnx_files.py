"""The ONNX files every release's engine tests build from, written once by the parent process
(tests/test_tensorrt_bindings.py) and shared through ``ONNX_FOLDER_ENV``: exporting and
quantizing them is the same work for every release."""

from pathlib import Path

ONNX_FOLDER_ENV = "INCEPTION_DEPLOY_TRT_ONNX"
SIZE = 64  # small inputs keep every build and run fast
_NAMES = {
    "fp32": "v1.onnx",
    "static": "v1_b2.onnx",
    "fp16": "v1_fp16.onnx",
    "int8": "v1_int8.onnx",
    "cpu": "v1_int8_cpu.onnx",
}


def onnx_paths(folder) -> dict:
    return {kind: Path(folder) / name for kind, name in _NAMES.items()}


def write_onnx_files(folder) -> dict:
    """GoogLeNet (random weights) at FP32 with dynamic and static batch, FP16, and INT8 for both targets."""
    from inception_deploy.export import export_onnx
    from inception_deploy.export.precision import convert_fp16, quantize_int8
    from inception_deploy.inputs import sample_folder
    from inception_deploy.models.registry import get_arch

    paths = onnx_paths(folder)
    config = get_arch("v1").preprocess.with_input_size(SIZE)
    export_onnx("v1", paths["fp32"], opset=17, preprocess=config, check_parity=False)
    export_onnx("v1", paths["static"], opset=17, batch=2, preprocess=config, check_parity=False)
    convert_fp16(paths["fp32"], paths["fp16"])
    cache = Path(folder) / "v1.calib.json"
    quantize_int8(
        paths["fp32"], paths["int8"], target="tensorrt", calib_dir=sample_folder(), cache=cache, method="minmax"
    )
    quantize_int8(paths["fp32"], paths["cpu"], target="cpu", cache=cache)
    return paths
