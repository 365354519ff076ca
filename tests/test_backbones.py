"""The other backbones (ResNet, ResNeXt, SE-ResNet, DenseNet, Res2Net, ResNeSt, SK-Net) and
InceptionNeXt through the stages after export: export and its parity run in test_export (one arch
per set of operators, tests/archs.py), the reference layouts in test_reference_layouts, INT8
placement in test_qdq_placement. Here, on each exported FP32 file: inception-run, OpenVINO parity
and inception-eval against eager (not on resnet18/34/101, whose operators are resnet50's), and a
Triton repository; FP16 and INT8 for the two attention archs (seresnet50 is resnet50's
bottlenecks plus the gates); inception_next_tiny and skresnet18 from FP32 to INT8 through the CLI
with trained heads; one real Triton server for two of them.
"""

import json
import shutil

import numpy as np
import onnx
import pytest
from archs import EXPORTED
from click.testing import CliRunner

from inception_deploy.cli import main
from inception_deploy.export.precision import convert_fp16, quantize_int8
from inception_deploy.inputs import sample_folder, sample_photos
from inception_deploy.labelled import imagenet_wnids
from inception_deploy.metadata import onnx_metadata
from inception_deploy.models.registry import ARCHS, get_arch
from inception_deploy.preprocess import preprocess
from inception_deploy.runtime.torch_runner import TorchRunner, eager_logits
from inception_deploy.verify.comparator import check_backend
from inception_deploy.verify.metrics import THRESHOLDS

BACKBONES = [spec.name for spec in ARCHS if spec.family != "Inception" and spec.name in EXPORTED]
# the same operators as resnet50 in other numbers: OpenVINO and eval are checked on resnet50 for them
RESNET50_OPERATORS = {"resnet18", "resnet34", "resnet101"}


def _eager_top5(model, arch):
    logits = eager_logits(model, preprocess(sample_photos(), get_arch(arch).preprocess))
    return np.argsort(-logits, axis=1)[:, :5]


def _check_openvino_and_eval(arch, path, model, expected, tmp_path):
    """OpenVINO parity of the exported file, and inception-eval of it against eager."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed")
    from inception_deploy.runtime.openvino_backend import OpenVINOBackend

    report = check_backend(
        model, OpenVINOBackend(path, cache_dir=None), get_arch(arch).preprocess, (8,), "fp32", "openvino"
    )
    assert report.passed, report.table()

    # a labelled folder of the five photos, each under the class eager gives it: eager is 100%
    # right by construction, so the artifact's accuracy is its agreement with eager
    wnids = imagenet_wnids()  # unique, unlike the names ("crane" is two classes)
    data = tmp_path / "data"
    for photo, top5 in zip(sample_photos(), expected):
        (data / wnids[top5[0]]).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, data / wnids[top5[0]] / photo.name)
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "--data",
            str(data),
            "--arch",
            arch,
            "--onnx",
            str(path),
            "--no-progress",
            "--json",
            str(tmp_path / "eval.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    models = json.loads((tmp_path / "eval.json").read_text())["models"]
    assert [(m["top1"], m["agreement"]) for m in models] == [(1.0, None), (1.0, 1.0)]


@pytest.mark.parametrize("arch", BACKBONES)
def test_run_openvino_eval_and_repository_on_the_exported_file(arch, exported, built_models, tmp_path):
    path = exported(arch).path
    model = built_models(arch)
    expected = _eager_top5(model, arch)

    result = CliRunner().invoke(main, ["run", str(path), "--samples", "--json"])
    assert result.exit_code == 0, result.output
    ran = [json.loads(line) for line in result.stdout.splitlines()]  # one JSON object per image
    assert [r["indices"] for r in ran] == expected.tolist()

    if arch not in RESNET50_OPERATORS:
        _check_openvino_and_eval(arch, path, model, expected, tmp_path)

    pytest.importorskip("tritonclient.grpc", reason="tritonclient (the triton extra) is not installed")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from inception_deploy.serving import write_repository

    (written,) = write_repository([path], tmp_path / "repo", max_batch=8)
    config = text_format.Parse(
        (tmp_path / "repo" / written.name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    size = get_arch(arch).preprocess.input_size
    assert [list(i.dims) for i in config.input] == [[3, size, size]] and config.max_batch_size == 8


# sigmoid gates; split-attention softmax
@pytest.mark.parametrize("arch, target", [("seresnet50", "cpu"), ("resnest50d", "tensorrt")])
def test_fp16_and_int8_of_residual_and_attention_archs(arch, target, exported, built_models, tmp_path):
    """FP16 keeps FP16's cosine bound on every image and the top-1 of every photo; INT8 keeps the
    logits' direction (one target each: the Q/DQ placement of both targets on every arch is
    tests/test_qdq_placement.py's, and each INT8 file here costs ~10 s). With random weights the
    top-1 of near-ties moves (a smooth synthetic image of ResNeSt flips in FP16 with onnxruntime
    1.32 at cosine 0.99996), so neither is judged by top-1 on synthetic images (accuracy bars: the
    trained classifier, tests/test_precision.py)."""
    path, model = exported(arch).path, TorchRunner(built_models(arch))  # eager once per input set
    fp16 = convert_fp16(path, tmp_path / "fp16.onnx", reference_model=model, judge_parity=False)
    assert min(r.cosine for r in fp16.parity.rows) >= THRESHOLDS["fp16"].min_cosine, fp16.parity.table()
    assert all(r.top1 == 1.0 for r in fp16.parity.rows if r.inputs.startswith("photos")), fp16.parity.table()
    int8 = quantize_int8(
        path,
        tmp_path / f"int8_{target}.onnx",
        target=target,
        calib_dir=sample_folder(),
        method="minmax",
        reference_model=model,
        judge_parity=False,
    )
    photos = [r for r in int8.parity.rows if r.inputs.startswith("photos")]
    assert photos and min(r.cosine for r in photos) >= 0.95, (target, int8.parity.table())


@pytest.mark.parametrize("arch, target", [("inception_next_tiny", "tensorrt"), ("skresnet18", "cpu")])
def test_fp32_fp16_and_int8_from_the_cli_with_parity_judged(arch, target, tmp_path):
    """InceptionNeXt (depthwise band kernels, GELU, a LayerNorm head, layer scale) and SK-Net
    (softmax across kernel paths) through inception-export --fp16 --int8, parity judged: each with a
    head fitted on learnable images (tests/trained_classifier.py, 64 px), saved as a checkpoint so
    the CLI judges FP16 and INT8 rather than only measuring them. The TorchScript exporter (opset
    17: GELU as Erf) and INT8 calibrated on the shipped photos, whose parity rows are judged.

    The photos are not the images the head was fitted on, so their top-1 margins are whatever the
    seed gives, and INT8 moves these logits by up to 0.3 (InceptionNeXt) to 4 (SK-Net, whose
    logits are ten times larger): seed 4 gives each photo a top-2 gap of at least 0.8 with both
    (seed 0 had gaps of 0.11, and a photo flipped on one CPU and not on another)."""
    import torch
    import trained_classifier as tc

    model, config = tc.build(seed=4, arch=arch, size=64, train=300)
    with torch.no_grad():
        logits = model(torch.from_numpy(preprocess(sample_photos(), config))).sort(dim=1).values
    assert (logits[:, -1] - logits[:, -2]).min() > 0.8, "the photos' margins are too thin to judge INT8 by top-1"
    torch.save(model.state_dict(), tmp_path / "trained.pth")
    out = tmp_path / f"{arch}.onnx"
    args = ["export", "--arch", arch, "--weights", str(tmp_path / "trained.pth"), "--num-classes", "10"]
    args += ["--input-size", "64", "--opset", "17", "--fp16", "--int8", "--int8-target", target]
    result = CliRunner().invoke(main, [*args, "--calib-samples", "--calib-method", "minmax", "-q", "-o", str(out)])
    assert result.exit_code == 0, result.output

    files = [out, tmp_path / f"{arch}_fp16.onnx", tmp_path / f"{arch}_int8_{target}.onnx"]
    metadata = [onnx_metadata(onnx.load(str(f)), f) for f in files]
    assert [m["precision"] for m in metadata] == ["fp32", "fp16", "int8"]
    assert [m["parity"]["verdict"] for m in metadata] == ["pass"] * 3, result.output  # every row judged, passed
    # FP16 keeps the LayerNorm (and the Gemms) in float32: each reads a Cast to float
    fp16 = onnx.load(str(files[1])).graph
    producer = {out: node for node in fp16.node for out in node.output}
    kept = [n for n in fp16.node if n.op_type in ("LayerNormalization", "Gemm")]
    assert len(kept) == (3 if arch == "inception_next_tiny" else 1)
    for node in kept:
        cast = producer[node.input[0]]
        assert cast.op_type == "Cast" and cast.attribute[0].i == onnx.TensorProto.FLOAT, node.name


def test_two_backbones_answer_through_a_real_triton_server(exported, tmp_path):
    """resnet50 and the SE gates of seresnet50 through Triton's ensemble (preprocessing model,
    the network on the package's runtime, softmax): the answers of a local Predictor."""
    pytest.importorskip("tritonclient.grpc", reason="tritonclient (the triton extra) is not installed")
    from inception_deploy.runtime.predictor import Predictor
    from inception_deploy.serving import TritonClient, TritonServer, write_repository
    from inception_deploy.serving.server import ServerError, check_python_for_stub, find_server

    try:
        find_server()
        check_python_for_stub()
    except ServerError as e:
        pytest.skip(str(e))
    paths = [exported(arch).path for arch in ("resnet50", "seresnet50")]
    write_repository(paths, tmp_path / "repo", max_batch=4)
    photos = [str(p) for p in sample_photos()]
    with TritonServer(tmp_path / "repo", http_port=0, grpc_port=0, metrics_port=0, ready_timeout=180) as server:
        for path in paths:
            remote = TritonClient(f"grpc://{server.grpc_url}", f"{path.stem}_pipeline").predict(photos, topk=5)
            local = Predictor(path).predict(photos, topk=5)
            assert [(r.error, r.indices) for r in remote] == [(None, p.indices) for p in local]
            np.testing.assert_allclose([r.probabilities for r in remote], [p.probabilities for p in local], atol=1e-5)
