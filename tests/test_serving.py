"""Triton serving: the repository writer, and a REAL tritonserver (the CPU build bundled with
nvidia-pytriton) serving what it writes, over HTTP and gRPC, on loopback.

The bundled server has only the Python backend: ONNX models run in it on ONNX Runtime through
the package's Python-based stand-in backend (what inception-serve does on such a server), the
preprocessing and softmax models and the ensemble run on Triton's real Python backend and
ensemble scheduler. TensorRT plans cannot run here: their configs are checked by the server's
own parser, which may only report the missing backend.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tritonclient.grpc", reason="tritonclient (the triton extra) is not installed")

import trained_classifier as tc  # noqa: E402

from inception_deploy.cli import main  # noqa: E402
from inception_deploy.errors import InceptionDeployError  # noqa: E402
from inception_deploy.inputs import sample_photos  # noqa: E402
from inception_deploy.runtime.predictor import Predictor  # noqa: E402
from inception_deploy.serving import TritonClient, TritonServer, write_repository  # noqa: E402
from inception_deploy.serving.client import parse_url  # noqa: E402
from inception_deploy.serving.repository import RepositoryError  # noqa: E402


def _server_available() -> str | None:
    from inception_deploy.serving.server import ServerError, check_python_for_stub, find_server

    try:
        find_server()
        check_python_for_stub()
    except ServerError as e:
        return str(e)
    return None


needs_server = pytest.mark.skipif(_server_available() is not None, reason=f"{_server_available()}")


@pytest.fixture(scope="session")
def classifier_files(trained, tmp_path_factory):
    """The trained-head classifier as FP32 ONNX and FP16 ONNX with FP16 input/output, and images."""
    from inception_deploy.export.precision import convert_fp16

    folder = tmp_path_factory.mktemp("serving")
    fp32 = trained["fp32"]
    fp16 = convert_fp16(fp32, folder / "small_fp16.onnx", fp16_io=True).path
    images = tc.write_images(folder / "images", 64, seed=7)
    return {"fp32": fp32, "fp16": fp16, "images": sorted(images.iterdir()), "folder": folder}


@pytest.fixture(scope="session")
def server(classifier_files):
    """One real Triton server for the session on free loopback ports, stopped by its process group."""
    if _server_available() is not None:
        pytest.skip(_server_available())
    repo = classifier_files["folder"] / "repository"
    write_repository([classifier_files["fp32"], classifier_files["fp16"]], repo, max_batch=16)
    with TritonServer(repo, http_port=0, grpc_port=0, metrics_port=0, ready_timeout=180) as running:
        yield running
    assert not running.running()
    with pytest.raises(ProcessLookupError):  # nothing of the server's process group is left
        os.killpg(running.process.pid, 0)


def _photos(files):
    return [str(p) for p in sample_photos()] + [str(p) for p in files["images"][:6]]


def _assert_same(remote, local, atol):
    assert len(remote) == len(local)
    for r, loc in zip(remote, local):
        assert r.error is None and r.file == loc.file
        assert r.labels == loc.labels and r.indices == loc.indices
        np.testing.assert_allclose(r.probabilities, loc.probabilities, atol=atol)


# ---------------------------------------------------------------------------------------------
# the repository writer (no server)


def _config(repo, name):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _kind(group) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind)


def _type(tensor) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(tensor.data_type)


def test_repository_layout_and_configs(classifier_files, tmp_path):
    repo = tmp_path / "repo"
    written = write_repository(
        [classifier_files["fp32"], classifier_files["fp16"]],
        repo,
        instances=2,
        kind="cpu",
        preferred_batch=(4, 8),
        queue_delay_us=500,
    )
    assert [m.name for m in written] == ["small", "small_fp16"]
    assert sorted(p.name for p in repo.iterdir()) == sorted(
        f"{n}{s}" for n in ("small", "small_fp16") for s in ("", "_preprocess", "_softmax", "_pipeline")
    )
    assert (repo / "small" / "1" / "model.onnx").read_bytes() == classifier_files["fp32"].read_bytes()
    assert (repo / "small" / "labels.txt").read_text().splitlines() == [f"class_{i}" for i in range(tc.CLASSES)]

    small = _config(repo, "small")
    assert small.platform == "onnxruntime_onnx" and small.max_batch_size == 64  # the export's batch limit
    assert [(i.name, list(i.dims)) for i in small.input] == [("input", [3, tc.SIZE, tc.SIZE])]
    assert [(o.name, list(o.dims), o.label_filename) for o in small.output] == [("logits", [tc.CLASSES], "labels.txt")]
    assert list(small.dynamic_batching.preferred_batch_size) == [4, 8]
    assert small.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.count, _kind(g)) for g in small.instance_group] == [(2, "KIND_CPU")]
    assert [w.batch_size for w in small.model_warmup] == [1, 64]

    half = _config(repo, "small_fp16")
    assert _type(half.input[0]) == _type(half.output[0]) == "TYPE_FP16"
    pre = _config(repo, "small_fp16_preprocess")
    assert pre.backend == "python" and pre.parameters["dtype"].string_value == "float16"
    assert json.loads(pre.parameters["preprocess"].string_value)["input_size"] == tc.SIZE
    # the preprocessing code served is the package's own, byte for byte
    import inception_deploy.preprocess as ours

    copied = repo / "small_preprocess" / "1" / "inception_preprocess" / "preprocess.py"
    assert copied.read_text() == open(ours.__file__).read()

    pipe = _config(repo, "small_pipeline")
    assert pipe.platform == "ensemble" and pipe.output[0].label_filename == "labels.txt"
    assert [s.model_name for s in pipe.ensemble_scheduling.step] == ["small_preprocess", "small", "small_softmax"]


def test_openvino_backend_config(classifier_files, tmp_path):
    write_repository([classifier_files["fp32"]], tmp_path / "repo", onnx_backend="openvino")
    config = _config(tmp_path / "repo", "small")
    assert config.backend == "openvino" and not config.platform
    assert config.default_model_filename == "model.onnx"
    assert config.parameters["INFERENCE_PRECISION_HINT"].string_value == "f32"


def _fake_plan(onnx_path, dest, cc="8.9", trt_version="10.13.0", precision="fp16"):
    """A plan file (bytes no TensorRT will load) with the sidecar inception-build writes."""
    import onnx

    from inception_deploy.metadata import onnx_metadata, sidecar_path

    meta = onnx_metadata(onnx.load(str(onnx_path), load_external_data=False), onnx_path).to_dict()
    meta.update(
        precision=precision,
        tensorrt={"version": trt_version, "strongly_typed": True},
        gpu={"name": f"GPU sm{cc}", "compute_capability": cc},
        io={"input": "input", "output": "logits"},
        profile={"input": "input", "min": [1, 3, 96, 96], "opt": [8, 3, 96, 96], "max": [32, 3, 96, 96]},
        max_batch=32,
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"not a real plan " + cc.encode())
    sidecar_path(dest).write_text(json.dumps(meta))
    return dest


def test_plans_of_one_model_for_several_gpus(classifier_files, tmp_path):
    a = _fake_plan(classifier_files["fp32"], tmp_path / "a100" / "v.plan", cc="8.0")
    b = _fake_plan(classifier_files["fp32"], tmp_path / "l4" / "v.plan", cc="8.9")
    (model,) = write_repository([a, b], tmp_path / "repo")
    config = _config(tmp_path / "repo", "v")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 32
    assert dict(config.cc_model_filenames) == {"8.0": "model_sm80.plan", "8.9": "model_sm89.plan"}
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 32]  # the profile's opt and max
    assert _kind(config.instance_group[0]) == "KIND_GPU"
    assert (tmp_path / "repo" / "v" / "1" / "model_sm80.plan").read_bytes() == a.read_bytes()
    assert model.plans == {"8.0": "model_sm80.plan", "8.9": "model_sm89.plan"}


def test_an_engine_beside_its_onnx_file_is_a_model_of_its_own(classifier_files, tmp_path):
    """The deploy pipeline writes small.onnx and builds small.plan from it: both are served."""
    source = tmp_path / "small.onnx"
    shutil.copy(classifier_files["fp32"], source)
    plan = _fake_plan(source, tmp_path / "small.plan")
    written = write_repository([source, plan], tmp_path / "repo")
    assert [(m.name, m.platform) for m in written] == [("small", "onnxruntime_onnx"), ("small_trt", "tensorrt_plan")]
    assert [s.model_name for s in _config(tmp_path / "repo", "small_trt_pipeline").ensemble_scheduling.step] == [
        "small_trt_preprocess",
        "small_trt",
        "small_trt_softmax",
    ]
    clash = tmp_path / "small_trt.onnx"  # a file whose own name is the engine's model name
    shutil.copy(source, clash)
    with pytest.raises(RepositoryError, match="both would be model 'small_trt'; rename one"):
        write_repository([source, plan, clash], tmp_path / "repo2")
    assert not (tmp_path / "repo2").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"trt_version": "10.3.0"}, "differ in TensorRT version"),
        ({"precision": "int8"}, "differ in precision"),
        ({"cc": "8.0"}, "two plans were built on GPUs of compute capability 8.0"),
    ],
)
def test_incompatible_plans_are_refused(classifier_files, tmp_path, change, message):
    a = _fake_plan(classifier_files["fp32"], tmp_path / "a" / "v.plan", cc="8.0")
    b = _fake_plan(classifier_files["fp32"], tmp_path / "b" / "v.plan", **{"cc": "8.9", **change})
    with pytest.raises(RepositoryError, match=message):
        write_repository([a, b], tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_bad_repository_requests_are_one_line(classifier_files, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    runner = CliRunner()
    cases = [
        (["triton", str(classifier_files["fp32"]), "-o", str(tmp_path / "taken")], "already exists"),
        (["triton", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "r")], "no such model file"),
        (
            ["triton", str(classifier_files["fp32"]), str(classifier_files["fp32"]), "-o", str(tmp_path / "r")],
            "both would be model 'small'",
        ),
        (
            ["triton", str(classifier_files["fp32"]), "-o", str(tmp_path / "r"), "--max-batch", "65"],
            "takes batches up to 64",
        ),
        (
            [
                "triton",
                str(classifier_files["fp32"]),
                "-o",
                str(tmp_path / "r"),
                "--max-batch",
                "8",
                "--preferred-batch",
                "16",
            ],
            "outside 1..8",
        ),
    ]
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    cases.append((["triton", str(tmp_path / "junk.onnx"), "-o", str(tmp_path / "r")], "not a loadable ONNX model"))
    for args, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "r").exists() and (tmp_path / "taken" / "x").exists()


def test_replace_swaps_a_whole_repository(classifier_files, tmp_path):
    repo = tmp_path / "repo"
    write_repository([classifier_files["fp32"]], repo)
    write_repository([classifier_files["fp16"]], repo, replace=True)
    assert sorted(p.name for p in repo.iterdir()) == [
        "small_fp16",
        "small_fp16_pipeline",
        "small_fp16_preprocess",
        "small_fp16_softmax",
    ]
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_url_parsing():
    assert parse_url("http://127.0.0.1:9000") == ("http", "127.0.0.1:9000")
    assert parse_url("grpc://host") == ("grpc", "host:8001")
    assert parse_url("localhost:8000") == ("http", "localhost:8000")
    for bad in ("ftp://x:1", "http://x:99999", "http://x:1/v2/models"):
        with pytest.raises(InceptionDeployError):
            parse_url(bad)


def test_stub_refuses_numpy_2(monkeypatch):
    from inception_deploy.serving import server as server_module

    monkeypatch.setattr(np, "__version__", "2.1.0")
    with pytest.raises(server_module.ServerError, match="needs numpy < 2"):
        server_module.check_python_for_stub()


# ---------------------------------------------------------------------------------------------
# a real server


@needs_server
def test_every_model_loads(server):
    states = {m.name: m.state for m in server.models()}
    assert states == {
        f"{n}{s}": "READY" for n in ("small", "small_fp16") for s in ("", "_preprocess", "_softmax", "_pipeline")
    }
    assert set(server.stand_ins) == {"onnxruntime", "openvino"} and server.stand_ins_used() == ["onnxruntime"]


@needs_server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_pipeline_answers_as_predictor_does(server, classifier_files, protocol):
    photos = _photos(classifier_files)
    url = f"http://{server.url}" if protocol == "http" else f"grpc://{server.grpc_url}"
    for key, model, atol in (("fp32", "small_pipeline", 2e-6), ("fp16", "small_fp16_pipeline", 2e-3)):
        local = Predictor(classifier_files[key], device="cpu").predict(photos, topk=5)
        remote = TritonClient(url, model).predict(photos, topk=5)
        _assert_same(remote, local, atol)


def _metric(text: str, name: str, model: str) -> float:
    match = re.search(rf'^{name}{{model="{model}",version="1"}} (\S+)$', text, re.M)
    assert match, f"{name} for {model} not in /metrics"
    return float(match.group(1))


@needs_server
def test_64_concurrent_requests_are_batched_and_all_correct(server, classifier_files):
    images = [str(p) for p in classifier_files["images"]]
    local = Predictor(classifier_files["fp32"], device="cpu").predict(images, topk=3)
    before = server.metrics()
    remote = TritonClient(f"http://{server.url}", "small_pipeline", concurrency=64).predict(images, topk=3)
    after = server.metrics()
    _assert_same(remote, local, 2e-6)
    inferences = _metric(after, "nv_inference_count", "small") - _metric(before, "nv_inference_count", "small")
    executions = _metric(after, "nv_inference_exec_count", "small") - _metric(
        before, "nv_inference_exec_count", "small"
    )
    assert inferences == 64 and executions < inferences  # the dynamic batcher grouped requests


@needs_server
def test_other_clients_still_get_triton_classification_strings(server, classifier_files):
    """Clients other than ours ask Triton's classification extension for the top k."""
    import tritonclient.http as http

    client = http.InferenceServerClient(server.url)
    image = http.InferInput("IMAGE", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[sample_photos()[0].read_bytes()]], dtype=np.object_))
    result = client.infer(
        "small_pipeline", [image], outputs=[http.InferRequestedOutput("PROBABILITIES", class_count=3)]
    )
    entries = [e.decode().split(":", 2) for e in result.as_numpy("PROBABILITIES").reshape(-1)]
    local = Predictor(classifier_files["fp32"], device="cpu").predict([sample_photos()[0]], topk=3)[0]
    assert [(int(index), label) for _, index, label in entries] == list(zip(local.indices, local.labels))
    np.testing.assert_allclose([float(value) for value, _, _ in entries], local.probabilities, atol=1e-6)


@needs_server
def test_corrupt_images_get_an_error_and_the_server_stays_up(server, classifier_files, tmp_path):
    good = classifier_files["images"][0]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(sample_photos()[0].read_bytes()[:2000])
    client = TritonClient(f"http://{server.url}", "small_pipeline")
    bad_bytes, cut, fine = client.predict([b"this is not an image", str(truncated), str(good)], topk=1)
    assert bad_bytes.error == "not an image (or an unsupported format)"
    assert cut.error is not None and "truncated" in cut.error
    assert fine.error is None and server.running()


@needs_server
def test_run_cli_against_the_server_prints_what_a_local_run_prints(server, classifier_files):
    photos = [str(p) for p in sample_photos()]
    runner = CliRunner()
    local = runner.invoke(main, ["run", str(classifier_files["fp32"]), *photos, "--json", "--topk", "3"])
    for url in (f"http://{server.url}", f"grpc://{server.grpc_url}"):
        remote = runner.invoke(
            main, ["run", "--server", url, "--model", "small_pipeline", *photos, "--json", "--topk", "3"]
        )
        assert remote.exit_code == 0, remote.output
        assert remote.stdout == local.stdout  # the same lines: labels, order and every digit


@needs_server
def test_client_errors_are_one_line(server):
    runner = CliRunner()
    photo = str(sample_photos()[0])
    cases = [
        (["run", "--server", f"http://{server.url}", photo], "choose the pipeline to use with --model"),
        (["run", "--server", f"http://{server.url}", "--model", "small", photo], "expected a pipeline"),
        (["run", "--server", f"http://{server.url}", "--model", "nope_pipeline", photo], "is not available"),
        (["run", "--server", "http://127.0.0.1:9", photo], "cannot reach a Triton server"),
    ]
    for args, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, args
    result = runner.invoke(
        main, ["run", "--server", f"http://{server.url}", "--model", "small_pipeline", "--device", "cpu", photo]
    )
    assert result.exit_code == 2 and "--device: for local models" in result.output


@needs_server
def test_configs_pass_the_servers_parser(classifier_files, tmp_path):
    """Every config we write, tensorrt_plan included, parses on the real server: the plan model may
    only fail for its missing backend. A config with a syntax error shows this check can fail."""
    plan = _fake_plan(classifier_files["fp32"], tmp_path / "gpu" / "engine.plan")
    repo = tmp_path / "repo"
    write_repository([classifier_files["fp32"], plan], repo, onnx_backend="openvino")
    broken = repo / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: 8\ninput [ { name: "x" ]\n')
    with TritonServer(repo, http_port=0, grpc_port=0, metrics_port=0) as running:
        states = {m.name: m for m in running.models()}
    assert states["small"].state == "READY"  # the openvino config, on the stand-in
    assert states["engine"].state == "UNAVAILABLE"
    assert "unable to find backend library for backend 'tensorrt'" in states["engine"].reason
    assert states["engine_preprocess"].state == states["engine_softmax"].state == "READY"
    assert states["broken"].state == "UNAVAILABLE" and re.search(r"\d+:\d+", states["broken"].reason)


@needs_server
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_serve_command_stops_cleanly(classifier_files, signum):
    """inception-serve on a single model file: ready, answers, and SIGTERM or Ctrl-C (SIGINT) stop it,
    exit 0, with no process left behind."""
    command = [
        os.path.join(os.path.dirname(sys.executable), "inception-serve"),
        str(classifier_files["fp32"]),
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--metrics-port",
        "0",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any(line.startswith("HTTP") for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        url = next(line.split()[1] for line in lines if line.startswith("HTTP"))
        (prediction,) = TritonClient(url).predict([str(sample_photos()[0])], topk=1)
        assert prediction.error is None
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stderr
    server_pid = int(re.search(r"tritonserver pid (\d+)", stderr).group(1))
    assert "server stopped" in stderr
    with pytest.raises(ProcessLookupError):
        os.killpg(server_pid, 0)


def test_export_writes_a_repository_of_everything_it_wrote(tmp_path):
    """The deploy pipeline's --triton-repo: FP32 and FP16 artifacts, one model each."""
    out, repo = tmp_path / "g.onnx", tmp_path / "repo"
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--arch",
            "v1",
            "-o",
            str(out),
            "--fp16",
            "--no-parity",
            "--opset",
            "17",
            "--engine",
            "no",
            "--input-size",
            "96",
            "--triton-repo",
            str(repo),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote Triton repository {repo} (models g, g_fp16" in result.output
    assert (repo / "g_fp16" / "1" / "model.onnx").read_bytes() == (tmp_path / "g_fp16.onnx").read_bytes()
    assert _config(repo, "g").output[0].dims == [1000]
    taken = CliRunner().invoke(
        main, ["export", "--arch", "v1", "-o", str(tmp_path / "h.onnx"), "--no-parity", "--triton-repo", str(repo)]
    )
    assert taken.exit_code == 2 and "already exists" in taken.output
    assert not (tmp_path / "h.onnx").exists()  # refused before the export


def test_the_readmes_serving_flow_names_a_pipeline_that_inception_triton_writes(tmp_path):
    """issue 42: the README's inception-run --server line exited 2 ("choose the pipeline") after its
    own inception-triton step wrote two pipelines; it names one, and that one is written."""
    import shlex
    from pathlib import Path

    from hostile import tiny_classifier

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    triton = shlex.split(re.search(r"^ *(inception-triton .*)$", readme, re.M).group(1))
    run = shlex.split(re.search(r"^ *(inception-run --server .*)$", readme, re.M).group(1))
    models = [arg for arg in triton[1:] if arg.endswith(".onnx")]
    assert len(models) > 1 and "--model" in run  # two pipelines: the line must choose
    for name in models:
        tiny_classifier(tmp_path / name)
    write_repository([tmp_path / name for name in models], tmp_path / "models")
    assert (tmp_path / "models" / run[run.index("--model") + 1] / "config.pbtxt").is_file()
