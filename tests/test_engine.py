"""TensorRT engine building where TensorRT is absent or present.

The builder and backend are checked against the real TensorRT bindings of several releases in
tests/trt_real (run by tests/test_tensorrt_bindings.py); here: what happens without TensorRT,
and, where TensorRT and a GPU exist, a real build + run + parity (marked ``tensorrt``).
"""

import importlib.machinery
import importlib.util

import pytest
from click.testing import CliRunner

from inception_deploy.cli import main
from inception_deploy.errors import InceptionDeployError
from inception_deploy.export.engine import EngineNotBuilt, build_engine
from inception_deploy.export.precision import convert_fp16

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory, exported):
    fp32 = exported("v1").path
    fp16 = convert_fp16(fp32, tmp_path_factory.mktemp("engine") / "googlenet_fp16.onnx").path
    return {"fp32": fp32, "fp16": fp16}


def test_bad_profile(onnx_files, tmp_path):
    with pytest.raises(InceptionDeployError, match="1 <= min <= opt <= max, got 8/4/16"):
        build_engine(onnx_files["fp32"], tmp_path / "x.plan", min_batch=8, opt_batch=4, max_batch=16)


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_the_onnx_is_written_and_exit_code_is_3(tmp_path):
    with pytest.raises(EngineNotBuilt, match="not built: TensorRT is not installed"):
        build_engine(_tiny_onnx(tmp_path), tmp_path / "x.plan")
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(
        main,
        ["export", "--arch", "v1", "-o", str(out), "--opset", "17", "--batch", "1", "--no-parity", "--engine", "yes"],
    )
    assert result.exit_code == 3 and out.is_file()
    assert f"note: {tmp_path / 'm.plan'} not built: TensorRT is not installed" in result.stderr
    result = CliRunner().invoke(
        main, ["export", "--arch", "v1", "-o", str(out), "--opset", "17", "--batch", "1", "--no-parity"]
    )
    assert result.exit_code == 0 and "not built" in result.stderr  # auto: a note, not a failure
    result = CliRunner().invoke(main, ["build", str(out)])
    assert result.exit_code == 3 and "TensorRT is not installed" in result.stderr


def _tiny_onnx(folder):
    from inception_deploy.export import export_onnx

    return export_onnx("v1", folder / "tiny.onnx", opset=17, batch=1, check_parity=False).path


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAVE_TENSORRT, reason="needs TensorRT and an NVIDIA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_real_build_run_and_parity(precision, tmp_path, built_models):
    """Real TensorRT: v3 engine per precision, run through the runtime, parity against eager."""
    from inception_deploy.export import export_onnx
    from inception_deploy.export.precision import quantize_int8
    from inception_deploy.inputs import sample_photos
    from inception_deploy.runtime.tensorrt_backend import TensorRTBackend
    from inception_deploy.verify.comparator import check_backend

    model = built_models("v3")
    onnx_path = export_onnx(model, tmp_path / "v3.onnx", check_parity=False).path
    if precision == "fp16":
        onnx_path = convert_fp16(onnx_path, tmp_path / "v3_fp16.onnx").path
    elif precision == "int8":
        calib = tmp_path / "calib"
        calib.mkdir()
        for photo in sample_photos():
            (calib / photo.name).write_bytes(photo.read_bytes())
        onnx_path = quantize_int8(onnx_path, tmp_path / "v3_int8.onnx", target="tensorrt", calib_dir=calib).path
    built = build_engine(onnx_path, max_batch=8)
    backend = TensorRTBackend(built.path)
    report = check_backend(model, backend, backend_config(built), (1, 8), precision, "tensorrt")
    assert precision == "int8" or report.passed, report.table()


def backend_config(built):

    return built.metadata.preprocess


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_gpu_acceptance_script_says_in_one_line_why_it_cannot_run(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "gpu_acceptance.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--report", str(tmp_path / "r.md")], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr.startswith("error: no GPU acceptance run here: TensorRT is not installed")
    assert len(proc.stderr.splitlines()) == 1 and list(tmp_path.iterdir()) == []
