"""The OpenVINO backend on this toolkit's own ONNX files (skips where OpenVINO is not installed)."""

import numpy as np
import pytest
import trained_classifier as tc
from click.testing import CliRunner

from inception_deploy.cli import main
from inception_deploy.errors import InceptionDeployError
from inception_deploy.export.precision import quantize_int8
from inception_deploy.inputs import sample_folder
from inception_deploy.preprocess import normalize
from inception_deploy.runtime import OnnxRuntimeBackend, open_backend
from inception_deploy.runtime.torch_runner import eager_logits
from inception_deploy.verify.comparator import check_backend
from inception_deploy.verify.metrics import compare

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'inception-deploy[openvino]')")
from inception_deploy.runtime.openvino_backend import OpenVINOBackend  # noqa: E402


@pytest.fixture(scope="module")
def classifier(trained, tmp_path_factory):
    test, labels = tc.learnable_images(400, seed=999)
    return dict(trained, folder=tmp_path_factory.mktemp("openvino"), test=(normalize(test, trained["config"]), labels))


def test_fp32_file_runs_in_f32_and_passes_fp32_parity(classifier):
    backend = open_backend(classifier["fp32"], device="openvino")
    assert isinstance(backend, OpenVINOBackend)
    assert backend.precision == "fp32" and "float ops in f32" in backend.describe()
    report = check_backend(classifier["model"], backend, classifier["config"], (1, 7), "fp32", "openvino")
    assert report.passed, report.table()


def test_openvino_takes_its_thread_count_from_omp_num_threads(classifier, monkeypatch):
    """OpenVINO does not read $OMP_NUM_THREADS either; an explicit count wins over it."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert open_backend(classifier["fp32"], device="openvino").compiled.get_property("INFERENCE_NUM_THREADS") == 1
    threads = open_backend(classifier["fp32"], device="openvino", threads=2).compiled
    assert threads.get_property("INFERENCE_NUM_THREADS") == 2


def _cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no bfloat16 arithmetic (no AVX512_BF16 / AMX)")
def test_bf16_is_set_explicitly_reported_and_judged_by_its_own_thresholds(classifier):
    backend = open_backend(classifier["fp32"], precision="bf16")  # auto + bf16 -> OpenVINO
    assert backend.precision == "bf16" and "float ops in bf16" in backend.describe()
    images, labels = classifier["test"]
    reference = eager_logits(classifier["model"], images)
    got = backend.infer(images)
    row = compare("labelled", reference, got, "bf16", "openvino", labels)
    assert row.passed, row
    assert not compare("labelled", reference, got, "fp32", "openvino", labels).passed  # really bf16
    assert row.accuracy >= row.reference_accuracy - 0.01


@pytest.mark.skipif(_cpu_has_bf16(), reason="this CPU has bfloat16 arithmetic: bf16 runs")
def test_bf16_on_a_cpu_without_it_is_one_line_not_a_silent_fp32_run(classifier):
    with pytest.raises(
        InceptionDeployError,
        match=r"small.onnx: bf16 was asked for, but this CPU has no bfloat16 "
        r"arithmetic \(OpenVINO runs f32; its CPU capabilities: FP32",
    ):
        open_backend(classifier["fp32"], precision="bf16")
    result = CliRunner().invoke(main, ["run", str(classifier["fp32"]), "--precision", "bf16", "--samples"])
    assert result.exit_code == 2 and result.output.count("error:") == 1, result.output


def test_our_int8_file_runs_unchanged_and_agrees_with_onnx_runtime(classifier):
    int8 = quantize_int8(
        classifier["fp32"],
        classifier["folder"] / "small_int8_cpu.onnx",
        target="cpu",
        calib_dir=tc.write_images(classifier["folder"] / "calib", 64, seed=200),
        method="minmax",
    ).path
    images = classifier["test"][0][:32]
    ours, theirs = OpenVINOBackend(int8, cache_dir=None).infer(images), OnnxRuntimeBackend(int8).infer(images)
    cosine = np.sum(ours * theirs, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() > 0.99 and np.mean(ours.argmax(1) == theirs.argmax(1)) >= 0.95


def test_compiled_model_cache_is_written_and_reused(classifier, tmp_path):
    first = OpenVINOBackend(classifier["fp32"], cache_dir=tmp_path / "cache")
    cached = list((tmp_path / "cache").iterdir())
    assert cached  # OpenVINO's CACHE_DIR holds the compiled blob
    second = OpenVINOBackend(classifier["fp32"], cache_dir=tmp_path / "cache")
    assert sorted((tmp_path / "cache").iterdir()) == sorted(cached)
    x = classifier["test"][0][:3]
    np.testing.assert_array_equal(first.infer(x), second.infer(x))


def test_bad_input_is_one_line(classifier, tmp_path):
    notonnx = tmp_path / "m.onnx"
    notonnx.write_bytes(b"this is not a model")
    result = CliRunner().invoke(main, ["run", str(notonnx), "--samples", "--device", "openvino"])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {notonnx}: not a readable ONNX file")
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(InceptionDeployError, match="^precision bf16 runs on OpenVINO: use device openvino, not cpu$"):
        open_backend(classifier["fp32"], device="cpu", precision="bf16")
    with pytest.raises(InceptionDeployError, match="unknown OpenVINO precision 'fp8'"):
        OpenVINOBackend(classifier["fp32"], precision="fp8")


def test_cli_run_and_parity_on_openvino(exported):
    path = exported("v1").path
    bf16 = ["--precision", "bf16"] if _cpu_has_bf16() else []
    result = CliRunner().invoke(main, ["run", str(path), "--samples", "--device", "openvino", *bf16])
    assert result.exit_code == 0, result.output
    assert f"openvino cpu (latency), precision fp32, float ops in {'bf16' if bf16 else 'f32'}" in result.stderr
    result = CliRunner().invoke(main, ["parity", "--arch", "v1", "--onnx", str(path), "--device", "openvino"])
    assert result.exit_code == 0, result.output
    assert "openvino cpu (latency)" in result.stdout and "| fp32 " in result.stdout
    assert sample_folder().is_dir()


def test_bench_times_each_model_on_each_device_side_by_side(exported):
    path = str(exported("v1").path)
    bf16 = ["--precision", "bf16"] if _cpu_has_bf16() else []
    result = CliRunner().invoke(
        main,
        ["bench", path, "--device", "cpu,openvino", *bf16, "--batch-sizes", "1", "--iterations", "2", "--warmup", "0"],
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith(f"| {path}")]
    assert len(rows) == 2
    assert "onnxruntime cpu" in rows[0] and "| fp32 " in rows[0]
    assert "openvino cpu (latency)" in rows[1] and ("| bf16 " if bf16 else "| fp32 ") in rows[1]
    for device, message in [
        ("cpu,gpu", "unknown device 'gpu'"),
        ("cpu", "--precision bf16 runs on OpenVINO: use --device openvino, not cpu"),
    ]:
        result = CliRunner().invoke(main, ["bench", path, "--device", device, "--precision", "bf16"])
        assert result.exit_code == 2 and message in result.stderr


def test_throughput_mode_splits_batches_over_streams_and_computes_the_same(classifier, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # one thread (a test worker's share) makes one stream
    latency = OpenVINOBackend(classifier["fp32"], cache_dir=None)
    throughput = open_backend(classifier["fp32"], device="openvino", openvino_mode="throughput")
    assert throughput.streams >= 2 and f"(throughput, {throughput.streams} streams)" in throughput.describe()
    for n in (1, 7):  # fewer images than streams, and an uneven split
        x = classifier["test"][0][:n]
        np.testing.assert_allclose(throughput.infer(x), latency.infer(x), rtol=1e-4, atol=1e-4)
    result = CliRunner().invoke(
        main,
        [
            "bench",
            str(classifier["fp32"]),
            "--device",
            "openvino",
            "--openvino-mode",
            "throughput",
            "--batch-sizes",
            "4",
            "--iterations",
            "2",
            "--warmup",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"openvino cpu (throughput, {throughput.streams} streams)" in result.stdout


def test_an_onnx_openvino_cannot_read_is_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("NoSuchOp", ["input"], ["logits"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
    )
    path = tmp_path / "custom.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]),
        str(path),
    )
    result = CliRunner().invoke(main, ["run", str(path), "--samples", "--device", "openvino", "--arch", "v1"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith(
        f"error: {path}: OpenVINO cannot load this model (No conversion rule found for "
        f"operations: com.example.NoSuchOp)"
    )
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("vnni", [False, True])
def test_run_warns_where_8_bit_int8_weights_can_saturate(classifier, monkeypatch, vnni):
    """8-bit weights (the tensorrt target) on a CPU without VNNI: OpenVINO's int8 sums can saturate
    (measured on AVX2: the trained test classifier 23% top-1 against 92% on ONNX Runtime, whose s8 x s8
    path does not saturate)."""
    from inception_deploy import cpu

    int8 = classifier["folder"] / "small_int8_tensorrt.onnx"
    if not int8.exists():
        quantize_int8(
            classifier["fp32"],
            int8,
            target="tensorrt",
            method="minmax",
            calib_dir=tc.write_images(classifier["folder"] / "calib_trt", 32, seed=201),
        )
    monkeypatch.setattr(cpu, "has_vnni", lambda: vnni)
    warning = "has 8-bit INT8 weights and this CPU has no VNNI: openvino cpu (latency)'s int8 sums can saturate"
    for device, warns in (("openvino", not vnni), ("cpu", False)):
        result = CliRunner().invoke(main, ["run", str(int8), "--samples", "--device", device])
        assert result.exit_code == 0, result.output
        assert (warning in result.stderr) == warns, (device, result.stderr)
