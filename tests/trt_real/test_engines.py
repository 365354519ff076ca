"""The engine builder, the TensorRT backend and the CLI, every call bound against the real
bindings of this process's release (see tests/trt_real/double.py for what that proves)."""

import json
import os

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from inception_deploy.cli import main
from inception_deploy.errors import InceptionDeployError
from inception_deploy.export.engine import build_engine, engine_unavailable_reason
from inception_deploy.metadata import read_sidecar
from inception_deploy.models.registry import get_arch
from inception_deploy.runtime.tensorrt_backend import TensorRTBackend, TensorRTUnavailable
from trt_real.onnx_files import ONNX_FOLDER_ENV, SIZE, onnx_paths, write_onnx_files


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    """The ONNX files the parent process wrote once for every release, or written here when
    this folder runs on its own."""
    shared = os.environ.get(ONNX_FOLDER_ENV)
    return onnx_paths(shared) if shared else write_onnx_files(tmp_path_factory.mktemp("onnx"))


def _images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def _onnx_logits(path, images):
    """ONNX Runtime on the same file, one image at a time (pairs, zero-padded, for a static batch of 2)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    step = session.get_inputs()[0].shape[0] if isinstance(session.get_inputs()[0].shape[0], int) else 1
    padded = np.concatenate([images, np.zeros((-len(images) % step,) + images.shape[1:], images.dtype)])
    runs = [session.run(None, {"input": padded[i : i + step]})[0] for i in range(0, len(padded), step)]
    return np.concatenate(runs)[: len(images)]


@pytest.mark.parametrize("kind", ["fp32", "static", "fp16", "int8"])
def test_build_then_run_matches_the_onnx(kind, onnx_files, tmp_path):
    """Buffers, copies, shapes, batch splitting and padding of the backend, checked numerically."""
    plan = tmp_path / f"{kind}.plan"
    built = build_engine(onnx_files[kind], plan, min_batch=1, opt_batch=2, max_batch=4)
    assert plan.is_file() and built.sidecar.is_file()
    sidecar = read_sidecar(plan)
    assert sidecar["tensorrt"]["version"] == __import__("tensorrt").__version__
    assert sidecar["profile"] is None if kind == "static" else sidecar["profile"]["max"][0] == 4
    backend = TensorRTBackend(plan)
    try:
        images = _images(7)  # 4 + 3 on the dynamic engines; 2+2+2+1 (padded) on the static one
        logits = backend.infer(images)
        expected = _onnx_logits(onnx_files[kind], images)
        assert logits.shape == expected.shape == (7, 1000) and logits.dtype == np.float32
        np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
        assert backend.describe().startswith(f"tensorrt {backend.trt.__version__} on Stand-in GPU")
    finally:
        backend.close()


def test_build_options_reach_tensorrt(onnx_files, tmp_path, trt):
    """Strongly typed (no precision flags, on 10.x as on 11.x), workspace, level, profile, sidecar."""
    from trt_real.double import PLAN_MAGIC

    plan = tmp_path / "o.plan"
    built = build_engine(onnx_files["fp16"], plan, min_batch=1, opt_batch=4, max_batch=16, workspace_gib=2, opt_level=5)
    header = json.loads(plan.read_bytes()[len(PLAN_MAGIC) :].partition(b"\0")[0])
    assert header["strongly_typed"] is True and header["flags"] == []
    assert header["pools"] == {"WORKSPACE": 2 << 30} and header["opt_level"] == 5
    assert header["profiles"] == [{"input": [[1, 3, SIZE, SIZE], [4, 3, SIZE, SIZE], [16, 3, SIZE, SIZE]]}]
    sidecar = read_sidecar(plan)
    assert sidecar == built.metadata and sidecar["precision"] == "fp16" and sidecar["arch"] == "v1"
    assert sidecar["tensorrt"] == {
        "version": trt.__version__,
        "strongly_typed": True,
        "version_compatible": False,
        "hardware_compatibility": None,
        "opt_level": 5,
        "workspace_gib": 2,
    }
    assert sidecar["gpu"] == {"name": "Stand-in GPU (host memory)", "compute_capability": "9.0"}
    assert sidecar["profile"] == {
        "input": "input",
        "min": [1, 3, SIZE, SIZE],
        "opt": [4, 3, SIZE, SIZE],
        "max": [16, 3, SIZE, SIZE],
    }
    assert sidecar["max_batch"] == 16 and len(sidecar["onnx_sha256"]) == 64 and "parity" not in sidecar
    assert sidecar["io"] == {"input": "input", "output": "logits"}


def test_failed_build_reports_what_tensorrt_logged_and_writes_nothing(onnx_files, tmp_path, trt, monkeypatch):
    def out_of_memory(self, network, config):
        self._logger.log(trt.ILogger.Severity.ERROR, "out of memory while building")
        return None

    monkeypatch.setattr(trt.Builder, "build_serialized_network", out_of_memory)
    with pytest.raises(InceptionDeployError, match="could not build the engine: out of memory while building"):
        build_engine(onnx_files["fp32"], tmp_path / "x.plan")
    assert list(tmp_path.iterdir()) == []


def test_cpu_int8_target_is_refused_by_the_parser_in_one_line(onnx_files, tmp_path):
    with pytest.raises(
        InceptionDeployError,
        match=r"parser failed: node \d+ \((Quantize|Dequantize)Linear .*"
        r"zero points of 0",
    ):
        build_engine(onnx_files["cpu"], tmp_path / "cpu.plan")
    assert list(tmp_path.iterdir()) == []


def test_timing_cache_round_trip_and_foreign_or_corrupt_caches(onnx_files, tmp_path, cudart, caplog):
    cache = tmp_path / "timing.cache"
    build_engine(onnx_files["fp32"], tmp_path / "a.plan", timing_cache=cache)
    first = cache.read_bytes()
    build_engine(onnx_files["fp32"], tmp_path / "a.plan", timing_cache=cache)
    assert cache.read_bytes() != first and b'"entries": 2' in cache.read_bytes()  # loaded, extended, saved

    cudart._device["name"] = "Another GPU"  # the cache now comes from a foreign device
    caplog.clear()
    built = build_engine(onnx_files["fp32"], tmp_path / "b.plan", timing_cache=cache)
    assert "timing cache not usable here" in caplog.text and "different device" in caplog.text
    assert built.path.is_file() and built.sidecar.is_file()
    assert b'"entries": 1' in cache.read_bytes()  # a new cache for this device replaced it

    cache.write_bytes(b"garbage")
    caplog.clear()
    built = build_engine(onnx_files["fp32"], tmp_path / "c.plan", timing_cache=cache)
    assert "timing cache not usable here" in caplog.text and built.sidecar.is_file()


def test_version_compatible_plans_load(onnx_files, tmp_path):
    plan = tmp_path / "vc.plan"
    build_engine(onnx_files["fp32"], plan, version_compatible=True)
    assert read_sidecar(plan)["tensorrt"]["version_compatible"] is True
    backend = TensorRTBackend(plan)  # needs Runtime.engine_host_code_allowed
    try:
        assert backend.infer(_images(1)).shape == (1, 1000)
    finally:
        backend.close()


def test_every_hardware_compatibility_level_this_release_offers(onnx_files, tmp_path, cudart, trt):
    levels = [name.lower() for name in trt.HardwareCompatibilityLevel.__members__]
    for level in levels:
        build_engine(onnx_files["fp32"], tmp_path / f"{level}.plan", hardware_compatibility=level)
    with pytest.raises(
        InceptionDeployError, match=f"unknown hardware compatibility 'volta'; this TensorRT offers: {', '.join(levels)}"
    ):
        build_engine(onnx_files["fp32"], tmp_path / "x.plan", hardware_compatibility="volta")
    cudart._device["compute_capability"] = "8.6"  # the engines now meet another GPU generation
    for level in levels:
        portable = level not in ("none", "same_compute_capability")
        if portable:
            TensorRTBackend(tmp_path / f"{level}.plan").close()
        else:
            with pytest.raises(InceptionDeployError, match="compute capability 9.0.*rebuild it here"):
                TensorRTBackend(tmp_path / f"{level}.plan")


def test_tensorrt_that_cannot_initialise_is_one_line(onnx_files, tmp_path, trt, real_trt, monkeypatch):
    monkeypatch.setattr(trt, "Builder", real_trt.Builder)  # the real factory: "returned nullptr"
    with pytest.raises(TensorRTUnavailable, match="could not create its Builder .*failed to initialise"):
        build_engine(onnx_files["fp32"], tmp_path / "x.plan")
    assert list(tmp_path.iterdir()) == []


def test_refused_input_shape_is_an_error_not_garbage(onnx_files, tmp_path):
    plan = tmp_path / "p.plan"
    build_engine(onnx_files["fp32"], plan, min_batch=2, opt_batch=2, max_batch=4)
    backend = TensorRTBackend(plan)
    try:
        assert backend.infer(_images(1)).shape == (1, 1000)  # padded up to the profile's minimum
        backend.min_batch = 1  # as if the backend misread the profile: TensorRT's False must not be ignored
        with pytest.raises(InceptionDeployError, match=r"refused input shape \(1, 3, 64, 64\).*outside the profile"):
            backend._run(_images(1))
    finally:
        backend.close()


def test_real_cuda_bindings_without_a_driver_explain_themselves(monkeypatch):
    """The REAL cuda-python on this machine (no driver) answers cudaErrorInsufficientDriver."""
    import inception_deploy.runtime.tensorrt_backend as backend
    from trt_real.conftest import REAL_CUDART

    monkeypatch.setattr(backend, "import_cudart", lambda what: REAL_CUDART)
    reason = engine_unavailable_reason()
    assert reason.startswith("no usable CUDA GPU (CUDA error: CUDA driver version is insufficient")
    assert "b'" not in reason and "no NVIDIA driver found" in reason


def test_cli_build_run_and_parity(onnx_files, tmp_path):
    plan = tmp_path / "cli.plan"
    result = CliRunner().invoke(main, ["build", str(onnx_files["fp16"]), "-o", str(plan), "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {plan} (+ cli.plan.json, TensorRT ")
    assert "building the TensorRT engine" in result.stderr
    assert json.loads((tmp_path / "cli.plan.json").read_text())["profile"]["max"][0] == 4
    result = CliRunner().invoke(main, ["run", str(plan), "--samples", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 5 and all(len(r["indices"]) == 5 and r["probabilities"][0] > 0 for r in rows)
    result = CliRunner().invoke(main, ["parity", "--arch", "v1", "--engine", str(plan), "--batch-size", "2"])
    assert "| tensorrt" in result.stdout and result.exit_code in (0, 1), result.output


def test_deploy_builds_and_checks_the_engine(tmp_path):
    from inception_deploy import EngineOptions, ExportRequest, Fp16Request, deploy

    assert engine_unavailable_reason() is None
    lines = []
    small = get_arch("v1").preprocess.with_input_size(SIZE)  # the stages are checked here, not the pixels
    result = deploy(
        ExportRequest("v1", tmp_path / "g.onnx", opset=17, preprocess=small),
        fp16=Fp16Request(),
        engine=EngineOptions("yes", max_batch=4),
        progress=lines.append,
    )
    assert result.engine is not None and result.engine.path == tmp_path / "g_fp16.plan"
    assert result.engine_parity is not None and result.engine_parity.rows
    assert any(line.startswith("building the TensorRT engine") for line in lines)


def test_doctor_reports_tensorrt_cuda_python_and_the_gpu(trt, monkeypatch):
    from inception_deploy import doctor

    facts = {f.name: f for f in doctor.diagnose()}
    assert facts["tensorrt"] == doctor.Fact("tensorrt", trt.__version__, True)
    assert facts["cuda gpu"].value == "Stand-in GPU (host memory) (compute capability 9.0)"
    import inception_deploy.runtime.tensorrt_backend as backend
    from trt_real.conftest import REAL_CUDART

    monkeypatch.setattr(backend, "import_cudart", lambda what: REAL_CUDART)  # the real one: no driver here
    facts = {f.name: f for f in doctor.diagnose()}
    assert facts["cuda-python"].ok is False and "driver supports CUDA none" in facts["cuda-python"].value
    assert facts["cuda gpu"].ok is False and "no NVIDIA driver found" in facts["cuda gpu"].value


@pytest.mark.parametrize("kind,expected", [("fp32", "fp32"), ("fp16", "fp16"), ("int8", "int8")])
def test_precision_report_in_sidecar_and_cli(kind, expected, onnx_files, tmp_path, caplog):
    built = build_engine(onnx_files[kind], tmp_path / "e.plan", max_batch=2)
    layers = read_sidecar(tmp_path / "e.plan")["layers"]
    assert layers == built.metadata["layers"] and layers["layers"] > 10
    assert max(layers["precisions"], key=layers["precisions"].get) == expected
    assert "engine with no" not in caplog.text
    result = CliRunner().invoke(main, ["build", str(onnx_files[kind]), "-o", str(tmp_path / "c.plan")])
    assert f"engine precision: {layers['layers']} layers: {expected} " in result.stdout


def test_reduced_precision_engine_running_fp32_is_warned_about(onnx_files, tmp_path, caplog, monkeypatch):
    import inception_deploy.export.engine as engine

    real_report = engine.precision_report

    def as_if_fp32(*args):
        layers = real_report(*args)
        return {**layers, "precisions": {"fp32": layers["layers"]}}

    monkeypatch.setattr(engine, "precision_report", as_if_fp32)
    build_engine(onnx_files["fp16"], tmp_path / "e.plan", max_batch=2)
    assert "a fp16 engine with no fp16 layer" in caplog.text


def test_plan_becomes_a_triton_model(onnx_files, tmp_path, trt):
    """The sidecar of a plan built through these bindings is all inception-triton needs."""
    pytest.importorskip("tritonclient.grpc", reason="tritonclient (the triton extra) is not installed")
    from inception_deploy.serving.repository import write_repository

    plan = tmp_path / "o.plan"
    build_engine(onnx_files["fp16"], plan, min_batch=1, opt_batch=4, max_batch=16)
    (model,) = write_repository([plan], tmp_path / "repo")
    config = (tmp_path / "repo" / "o" / "config.pbtxt").read_text()
    assert model.platform == "tensorrt_plan" and model.max_batch == 16
    for line in (
        'platform: "tensorrt_plan"',
        "max_batch_size: 16",
        "preferred_batch_size: [4, 16]",
        "kind: KIND_GPU",
        'name: "input"',
        'name: "logits"',
        f"dims: [3, {SIZE}, {SIZE}]",
    ):
        assert line in config
    assert (tmp_path / "repo" / "o" / "1" / "model.plan").read_bytes() == plan.read_bytes()
