"""TensorRT engine building.

Without TensorRT (these machines), a small fake of its Python API (tests/fake_tensorrt.py)
checks the wiring for both API generations: which calls are made, which flags are set, profile
shapes, the timing-cache round trip and the sidecar. That is no evidence a real build works;
the tests marked ``tensorrt`` do a real build + run + parity where TensorRT and a GPU exist.
"""
import importlib.machinery
import importlib.util
import json
import sys

import pytest
from click.testing import CliRunner

import fake_tensorrt
from inception_deploy.cli import main
from inception_deploy.errors import InceptionDeployError
from inception_deploy.export.engine import EngineNotBuilt, build_engine, network_flags
from inception_deploy.export.precision import convert_fp16
from inception_deploy.metadata import read_sidecar
from inception_deploy.runtime import tensorrt_backend

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory, exported):
    fp32 = exported("v1").path
    fp16 = convert_fp16(fp32, tmp_path_factory.mktemp("engine") / "googlenet_fp16.onnx").path
    return {"fp32": fp32, "fp16": fp16}


@pytest.fixture(params=["10", "11"])
def fake(request, monkeypatch):
    if HAVE_TENSORRT:
        pytest.skip("real TensorRT installed: the fake would shadow it")
    calls = []
    trt = fake_tensorrt.make(request.param, calls)
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(tensorrt_backend, "import_cudart", lambda what: fake_tensorrt.make_cudart())
    trt.OnnxParser.fail = trt.Builder.fail = False
    return request.param, trt, calls


def test_flags_by_name_for_each_generation(fake):
    generation, trt, _ = fake
    flags, strongly_typed = network_flags(trt)
    assert strongly_typed
    assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == (1 << 5 if generation == "10"
                                                                                    else 1 << 1)


def test_build_wiring_profile_cache_and_sidecar(fake, onnx_files, tmp_path):
    generation, trt, calls = fake
    cache = tmp_path / "timing.cache"
    plan = tmp_path / "g.plan"
    result = build_engine(onnx_files["fp16"], plan, min_batch=1, opt_batch=4, max_batch=16, workspace_gib=2,
                          timing_cache=cache, opt_level=5)
    strongly = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert ("create_network", strongly) in calls
    assert ("set_memory_pool_limit", "WORKSPACE", 2 << 30) in calls
    assert ("set_shape", "input", (1, 3, 224, 224), (4, 3, 224, 224), (16, 3, 224, 224)) in calls
    build = next(c for c in calls if c[0] == "build")
    assert build == ("build", [], 5, None)  # strongly typed: no FP16/INT8 builder flags, on 10 as on 11
    assert plan.read_bytes() == b"PLAN" + bytes([strongly])
    assert cache.read_bytes() == b"+timings"
    assert ("create_timing_cache", b"") in calls

    sidecar = read_sidecar(plan)
    assert sidecar == result.metadata and result.sidecar == tmp_path / "g.plan.json"
    assert sidecar["precision"] == "fp16" and sidecar["arch"] == "v1"
    assert sidecar["tensorrt"] == {"version": trt.__version__, "strongly_typed": True, "version_compatible": False,
                                   "hardware_compatibility": None, "opt_level": 5, "workspace_gib": 2}
    assert sidecar["gpu"] == {"name": "NVIDIA H200", "compute_capability": "9.0"}
    assert sidecar["profile"] == {"input": "input", "min": [1, 3, 224, 224], "opt": [4, 3, 224, 224],
                                  "max": [16, 3, 224, 224]}
    assert sidecar["max_batch"] == 16 and len(sidecar["onnx_sha256"]) == 64 and "parity" not in sidecar

    calls.clear()
    build_engine(onnx_files["fp16"], plan, timing_cache=cache)  # rebuild starts from the saved timings
    assert ("create_timing_cache", b"+timings") in calls
    assert cache.read_bytes() == b"+timings+timings"


def test_portability_options(fake, onnx_files, tmp_path):
    generation, trt, calls = fake
    build_engine(onnx_files["fp32"], tmp_path / "p.plan", version_compatible=True, hardware_compatibility="ampere_plus")
    assert next(c for c in calls if c[0] == "build")[1:] == (["VERSION_COMPATIBLE"], 3,
                                                             trt.HardwareCompatibilityLevel.AMPERE_PLUS)
    assert read_sidecar(tmp_path / "p.plan")["tensorrt"]["version_compatible"] is True
    with pytest.raises(InceptionDeployError, match="unknown hardware compatibility 'volta'; this TensorRT offers"):
        build_engine(onnx_files["fp32"], tmp_path / "q.plan", hardware_compatibility="volta")


def test_parser_errors_are_listed(fake, onnx_files, tmp_path):
    _, trt, _ = fake
    trt.OnnxParser.fail = True
    with pytest.raises(InceptionDeployError, match=r"parser failed: node 7 \(FancyOp /features/fancy\): "
                                                   r"unsupported operator"):
        build_engine(onnx_files["fp32"], tmp_path / "x.plan")
    assert not (tmp_path / "x.plan").exists()


def test_failed_build_reports_logger_errors(fake, onnx_files, tmp_path):
    _, trt, _ = fake
    trt.Builder.fail = True
    with pytest.raises(InceptionDeployError, match="could not build the engine: out of memory while building"):
        build_engine(onnx_files["fp32"], tmp_path / "x.plan")
    assert list(tmp_path.iterdir()) == []


def test_bad_profile(onnx_files, tmp_path):
    with pytest.raises(InceptionDeployError, match="1 <= min <= opt <= max, got 8/4/16"):
        build_engine(onnx_files["fp32"], tmp_path / "x.plan", min_batch=8, opt_batch=4, max_batch=16)


def test_cli_build_with_fake(fake, onnx_files, tmp_path):
    plan = tmp_path / "cli.plan"
    result = CliRunner().invoke(main, ["build", str(onnx_files["fp16"]), "-o", str(plan), "--max-batch", "64"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {plan} (+ cli.plan.json, TensorRT ")
    assert json.loads((tmp_path / "cli.plan.json").read_text())["profile"]["max"][0] == 64


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_the_onnx_is_written_and_exit_code_is_3(tmp_path):
    with pytest.raises(EngineNotBuilt, match="not built: TensorRT is not installed"):
        build_engine(_tiny_onnx(tmp_path), tmp_path / "x.plan")
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(main, ["export", "--arch", "v1", "-o", str(out), "--opset", "17", "--batch", "1",
                                       "--no-parity", "--engine", "yes"])
    assert result.exit_code == 3 and out.is_file()
    assert f"note: {tmp_path / 'm.plan'} not built: TensorRT is not installed" in result.stderr
    result = CliRunner().invoke(main, ["export", "--arch", "v1", "-o", str(out), "--opset", "17", "--batch", "1",
                                       "--no-parity"])
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
    from inception_deploy.parity import check_backend, sample_photos
    from inception_deploy.runtime.tensorrt_backend import TensorRTBackend

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
    from inception_deploy.metadata import preprocess_of

    return preprocess_of(built.metadata)
