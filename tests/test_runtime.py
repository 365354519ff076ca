import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from inception_deploy.cli import main
from inception_deploy.errors import InceptionDeployError
from inception_deploy.inputs import sample_photos
from inception_deploy.labels import imagenet_labels
from inception_deploy.preprocess import preprocess
from inception_deploy.runtime import OnnxRuntimeBackend, Predictor, open_backend
from inception_deploy.runtime.tensorrt_backend import check_compatible
from inception_deploy.runtime.torch_runner import TorchRunner


@pytest.fixture(scope="module")
def v1_onnx(exported):
    return exported("v1").path


def _run(*args):
    result = CliRunner().invoke(main, ["run", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("omp", "threads", "expected"), [("3", None, 3), ("3", 2, 2), ("many", None, 0), ("0", None, 0)]
)
def test_onnx_runtime_takes_its_thread_count_from_omp_num_threads(v1_onnx, monkeypatch, omp, threads, expected):
    """ORT does not read $OMP_NUM_THREADS (PyTorch does): our sessions pass it on, an explicit
    count wins, and a value that is no positive count leaves ORT's default (0: one per core)."""
    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    backend = OnnxRuntimeBackend(v1_onnx, threads=threads)
    assert backend.session.get_session_options().intra_op_num_threads == expected


def test_predictor_matches_backend_on_preprocessed_photos(v1_onnx):
    predictor = Predictor(v1_onnx, batch_size=2)
    photos = sample_photos()
    results = predictor.predict(photos, topk=3)
    logits = OnnxRuntimeBackend(v1_onnx).infer(preprocess(photos, predictor.config))
    assert [r.file for r in results] == [str(p) for p in photos]
    for r, row in zip(results, logits):
        assert r.indices == list(np.argsort(-row)[:3])
        assert r.labels == [imagenet_labels()[i] for i in r.indices]
        probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        np.testing.assert_allclose(r.probabilities, probs[r.indices], rtol=1e-5)
    # PIL images in, same answers; batch size does not change them
    again = Predictor(v1_onnx, batch_size=8).predict([Image.open(p) for p in photos], topk=3)
    assert [r.indices for r in again] == [r.indices for r in results]


def test_json_output_one_object_per_image(v1_onnx):
    code, stdout, stderr = _run(v1_onnx, *sample_photos()[:2], "--json", "--topk", "4")
    assert code == 0
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert [set(d) for d in lines] == [{"file", "labels", "indices", "probabilities"}] * 2
    for d in lines:
        assert len(d["labels"]) == 4 and d["probabilities"] == sorted(d["probabilities"], reverse=True)
    assert stderr.startswith(f"{v1_onnx}: onnxruntime cpu, providers CPUExecutionProvider, precision fp32")


def test_table_output_and_folder_recursion(v1_onnx, tmp_path):
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    for photo in sample_photos()[:2]:
        (nested / photo.name).write_bytes(photo.read_bytes())
    (nested / "notes.txt").write_text("not an image, and skipped by folder expansion")
    code, stdout, _ = _run(v1_onnx, tmp_path, "--topk", "2")
    assert code == 0
    assert stdout.splitlines()[0].split() == ["file", "#", "label", "probability", "index"]
    assert sum(1 for line in stdout.splitlines() if line.startswith(str(nested))) == 2


def test_glob_patterns_are_expanded(v1_onnx):
    folder = sample_photos()[0].parent
    code, stdout, _ = _run(v1_onnx, f"{folder}/c[ah]*.jpg", "--json")
    assert code == 0
    assert [os.path.basename(json.loads(line)["file"]) for line in stdout.splitlines()] == ["camera.jpg", "chelsea.jpg"]


def test_list_files_and_uris_are_inputs_too(v1_onnx, tmp_path, monkeypatch):
    """A list file (comments, blank lines, paths relative to it, an unreadable entry) and http
    URIs served on loopback: the same predictions as the files themselves; a 404, a refused
    connection and a body over the size limit are rows of their own."""
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    import inception_deploy.inputs as inputs

    photos = sample_photos()
    folder = photos[0].parent
    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: SimpleHTTPRequestHandler(*a, directory=str(folder)))
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    listing = tmp_path / "sub" / "inputs.txt"
    listing.parent.mkdir()
    (tmp_path / photos[1].name).write_bytes(photos[1].read_bytes())
    listing.write_text(
        f"# to tag\n{photos[0]}\n\n../{photos[1].name}\nnot-here.jpg\n{url}/{photos[2].name}\n{url}/gone.jpg\n"
        f"http://127.0.0.1:1/refused.jpg\n{url}/{photos[3].name}\n"
    )
    monkeypatch.setattr(inputs, "MAX_FETCH_BYTES", photos[3].stat().st_size - 1)
    try:
        code, stdout, stderr = _run(v1_onnx, listing, "--json", "--topk", "3")
    finally:
        server.shutdown()
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert code == 1 and len(rows) == 7
    local = Predictor(v1_onnx).predict(photos[:3], topk=3)
    assert [r["indices"] for r in rows[:2]] + [rows[3]["indices"]] == [p.indices for p in local]
    assert rows[1]["file"] == str(listing.parent / ".." / photos[1].name)
    assert rows[2] == {"file": str(listing.parent / "not-here.jpg"), "error": "no such file or folder"}
    assert rows[4]["error"] == "cannot fetch: HTTP Error 404: File not found"
    assert rows[5]["error"].startswith("cannot fetch: <urlopen error [Errno 111]")
    assert rows[6]["error"].startswith("cannot fetch: larger than 0.0")  # MB: the limit, lowered for the test
    assert "Traceback" not in stderr


def _bad_files(folder):
    good = sample_photos()[2]
    data = good.read_bytes()
    files = {
        "good.jpg": data,
        "empty.jpg": b"",
        "text.jpg": b"hello, I am not an image\n" * 10,
        "truncated.jpg": data[: len(data) // 3],
        "garbage.png": b"\x89PNG\r\n\x1a\n" + os.urandom(200),
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return [folder / n for n in files] + [folder / "missing.jpg"]


def test_bad_images_are_reported_and_the_rest_still_run(v1_onnx, tmp_path):
    paths = _bad_files(tmp_path)
    code, stdout, stderr = _run(v1_onnx, *paths, "--json")
    assert code == 1
    results = {os.path.basename(json.loads(line)["file"]): json.loads(line) for line in stdout.splitlines()}
    assert "labels" in results["good.jpg"]
    assert results["missing.jpg"]["error"] == "no such file or folder"
    assert results["text.jpg"]["error"].startswith("not an image")
    assert results["empty.jpg"]["error"].startswith("not an image")
    assert results["truncated.jpg"]["error"].startswith("truncated or corrupt image")
    assert "error" in results["garbage.png"]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 5 and "Traceback" not in stderr
    assert stderr.rstrip().endswith("5 of 6 inputs failed")


def test_decompression_bomb_is_refused(v1_onnx, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300)
    bomb = tmp_path / "bomb.png"
    Image.new("L", (400, 300)).save(bomb)  # between 1x and 2x the limit: PIL itself only warns
    small = tmp_path / "small.png"
    Image.new("RGB", (90, 90), (20, 40, 60)).save(small)
    with pytest.warns(Image.DecompressionBombWarning):
        result = Predictor(v1_onnx).predict([bomb, small])
    assert result[0].error.startswith("refused: decompression bomb") and result[1].error is None


def test_unusual_modes_are_classified(v1_onnx, tmp_path):
    modes = {
        "gray16.png": Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16),
        "cmyk.jpg": Image.new("CMYK", (64, 48), (10, 200, 30, 0)),
        "palette.gif": Image.new("RGB", (64, 64), (5, 100, 200)).convert("P"),
        "rgba.png": Image.new("RGBA", (48, 64), (0, 0, 0, 0)),
        "gray.jpg": Image.new("L", (64, 64), 30),
    }
    for name, image in modes.items():
        image.save(tmp_path / name)
    results = Predictor(v1_onnx).predict(sorted(tmp_path.iterdir()))
    assert [r.error for r in results] == [None] * len(modes)


@pytest.mark.parametrize(
    "setup,message",
    [
        ("random.onnx", "ONNX Runtime cannot load this model"),
        ("missing.onnx", "no such model file"),
        ("model.bin", "unknown model type .bin"),
        ("engine.plan", "no sidecar engine.plan.json beside the engine"),
    ],
)
def test_unusable_model_is_one_line_exit_2(setup, message, tmp_path):
    path = tmp_path / setup
    if setup != "missing.onnx":
        path.write_bytes(os.urandom(256))
    code, _, stderr = _run(path, sample_photos()[0])
    assert code == 2 and stderr == f"error: {path}: {message}" + stderr.split(message, 1)[1]
    assert stderr.count("\n") == 1


def test_onnx_without_metadata_needs_arch(v1_onnx, tmp_path):
    model = onnx.load(str(v1_onnx))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    code, _, stderr = _run(bare, sample_photos()[0])
    assert code == 2 and "no 'inception_deploy' metadata" in stderr and "pass --arch" in stderr
    code, stdout, _ = _run(bare, sample_photos()[0], "--arch", "googlenet", "--json")
    assert code == 0
    expected = Predictor(v1_onnx).predict([sample_photos()[0]])[0]
    assert json.loads(stdout)["indices"] == expected.indices


def test_engine_needs_tensorrt(tmp_path):
    engine = tmp_path / "m.plan"
    engine.write_bytes(b"plan")
    (tmp_path / "m.plan.json").write_text(
        json.dumps(
            {
                "num_classes": 2,
                "labels": {"names": ["a", "b"]},
                "preprocess": {
                    "input_size": 224,
                    "resize_size": 256,
                    "interpolation": "bilinear",
                    "mean": [0.5] * 3,
                    "std": [0.5] * 3,
                },
            }
        )
    )
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    code, _, stderr = _run(engine, sample_photos()[0])
    assert code == 2 and stderr.startswith(f"error: {engine} needs TensorRT: pip install")


def test_engine_for_another_tensorrt_or_gpu_is_refused():
    sidecar = {"tensorrt": {"version": "10.3.0"}, "gpu": {"name": "NVIDIA A100", "compute_capability": "8.0"}}
    h100 = {"name": "NVIDIA H100", "compute_capability": "9.0"}
    with pytest.raises(
        InceptionDeployError,
        match=r"built with TensorRT 10.3.0 on NVIDIA A100 .* this machine has "
        r"TensorRT 10.8.0; rebuild it here",
    ):
        check_compatible(
            "m.plan",
            sidecar["tensorrt"],
            sidecar["gpu"],
            "10.8.0",
            {"name": "NVIDIA A100", "compute_capability": "8.0"},
        )
    with pytest.raises(InceptionDeployError, match=r"but this GPU is NVIDIA H100 \(compute capability 9.0\)"):
        check_compatible("m.plan", sidecar["tensorrt"], sidecar["gpu"], "10.3.0", h100)
    portable = {
        "tensorrt": {"version": "10.3.0", "version_compatible": True, "hardware_compatibility": "AMPERE_PLUS"},
        "gpu": sidecar["gpu"],
    }
    check_compatible("m.plan", portable["tensorrt"], portable["gpu"], "10.8.0", h100)


def test_forced_device_without_provider(v1_onnx):
    with pytest.raises(InceptionDeployError, match="this ONNX Runtime has no CUDAExecutionProvider.*onnxruntime-gpu"):
        open_backend(v1_onnx, device="cuda")


def test_silent_fallback_to_cpu_is_detected(v1_onnx, monkeypatch, caplog):
    import onnxruntime

    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    backend = open_backend(v1_onnx, device="cuda")
    assert backend.fell_back and backend.providers == ("CPUExecutionProvider",)
    assert "fell back from CUDAExecutionProvider" in backend.describe()
    assert "asked ONNX Runtime for CUDAExecutionProvider but it runs on CPUExecutionProvider" in caplog.text


def test_static_batch_model_pads_and_splits(tmp_path, built_models):
    from inception_deploy.export import export_onnx

    path = export_onnx(built_models("v1"), tmp_path / "b2.onnx", batch=2, opset=17, check_parity=False).path
    backend = open_backend(path)
    assert (backend.min_batch, backend.max_batch) == (2, 2)
    x = preprocess(sample_photos(), Predictor(path).config)
    np.testing.assert_allclose(backend.infer(x), OnnxRuntimeBackend(path).infer(x), rtol=0, atol=0)
    assert backend.infer(x).shape == (5, 1000)


def test_cli_run_needs_neither_torch_nor_tensorrt(v1_onnx, tmp_path):
    """inception-run on an ONNX file in a process where importing torch or tensorrt fails."""
    for blocked in ("torch", "tensorrt"):
        (tmp_path / blocked).mkdir()
        (tmp_path / blocked / "__init__.py").write_text(f"raise ImportError('{blocked} is blocked')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    code = "import sys; from inception_deploy.cli import run_main; sys.argv[0] = 'inception-run'; run_main()"
    result = subprocess.run(
        [sys.executable, "-c", code, str(v1_onnx), str(sample_photos()[0]), "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "labels" in json.loads(result.stdout)


def test_importing_the_runtime_imports_neither_torch_nor_tensorrt():
    code = (
        "import sys, inception_deploy, inception_deploy.runtime; inception_deploy.Predictor; "
        "from inception_deploy.models import get_arch; get_arch('v3'); "
        "print(sorted(m for m in ('torch', 'tensorrt', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_eager_runner_runs_its_model_once_per_input_set():
    calls = []

    class Model(torch.nn.Module):
        def forward(self, x):
            calls.append(len(x))
            return x.mean((2, 3))

    runner = TorchRunner(Model())
    zeros, ones = np.zeros((2, 3, 4, 4), np.float32), np.ones((2, 3, 4, 4), np.float32)
    runner.infer(zeros)[:] = 7  # the caller gets a copy: what is kept cannot be spoiled
    assert runner.infer(zeros.copy()).tolist() == [[0.0] * 3] * 2
    runner.infer(ones)
    runner.infer(zeros[:1])
    assert calls == [2, 2, 1]
    for i in range(TorchRunner.REMEMBERED):  # the oldest set is forgotten, and run again
        runner.infer(np.full((1, 3, 4, 4), i + 2, np.float32))
    runner.infer(zeros)
    assert calls[-1] == 2 and len(calls) == 4 + TorchRunner.REMEMBERED
