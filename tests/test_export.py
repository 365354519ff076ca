import json
import os

import numpy as np
import onnx
import pytest
import torch
from archs import EXPORTED
from click.testing import CliRunner

from inception_deploy import create_model
from inception_deploy.cli import main
from inception_deploy.export import export_onnx
from inception_deploy.export import onnx as onnx_export
from inception_deploy.fileio import sha256_file
from inception_deploy.graph import metadata_keys, node_modules
from inception_deploy.labels import imagenet_labels, labels_digest
from inception_deploy.metadata import METADATA_KEY, set_onnx_metadata, validate_metadata
from inception_deploy.models import get_arch
from inception_deploy.runtime import OnnxRuntimeBackend
from inception_deploy.verify import metrics


def _metadata(path):
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[METADATA_KEY])


@pytest.mark.parametrize("arch", EXPORTED)
def test_every_arch_exports_and_passes_parity(arch, exported):
    result = exported(arch)
    assert result.parity.passed, result.parity.table()
    inputs = {row.inputs for row in result.parity.rows}
    assert inputs == {"photos b1", "photos b5", "synthetic b1", "synthetic b8"}
    for row in result.parity.rows:
        assert row.top1 == 1.0 and (row.max_rel <= 1e-4 or row.max_abs <= 5e-4) and row.images >= 5

    model = onnx.load(str(result.path))
    onnx.checker.check_model(model, full_check=True)
    size = get_arch(arch).preprocess.input_size
    assert result.input_shape == ["batch", 3, size, size] and result.output_shape == ["batch", 1000]
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert result.opset == 20 and result.exporter == "dynamo"
    assert all(init.data_location != onnx.TensorProto.EXTERNAL for init in model.graph.initializer)
    assert not [p for p in os.listdir(result.path.parent) if p.endswith(".tmp") or not p.endswith(".onnx")]


@pytest.mark.parametrize("arch", EXPORTED)
def test_every_conv_names_its_pytorch_module(arch, exported, built_models):
    """What --layerwise prints and --int8-keep-float matches: each Conv node of the export maps to
    one Conv2d of the network (batch norm folded into it), whose weight has the node's shape."""
    graph = onnx.load(str(exported(arch).path)).graph
    paths = node_modules(graph)
    weights = {init.name: init.dims for init in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    modules = dict(built_models(arch).named_modules())
    assert sorted(paths[n.name] for n in convs) == sorted(get_arch(arch).module_paths(torch.nn.Conv2d))
    for node in convs:
        module = modules[paths[node.name]]
        assert isinstance(module, torch.nn.Conv2d), node.name
        assert list(weights[node.input[1]]) == list(module.weight.shape), node.name


def test_dynamic_batch_runs_any_size_up_to_max(exported, built_models):
    backend = OnnxRuntimeBackend(exported("v1").path)
    x = np.random.default_rng(0).normal(size=(3, 3, 224, 224)).astype(np.float32)
    out = backend.session.run(None, {"input": x})[0]
    with torch.no_grad():
        expected = built_models("v1")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_metadata_carries_everything_downstream_needs(exported):
    result = exported("v2")
    meta = _metadata(result.path)
    assert meta == result.metadata.to_dict()
    spec = get_arch("v2")
    assert meta["arch"] == "v2" and meta["num_classes"] == 1000 and meta["precision"] == "fp32"
    assert meta["preprocess"] == spec.preprocess.to_dict()
    assert meta["preprocess"]["channel_order"] == "BGR" and meta["preprocess"]["pixel_scale"] == 255.0
    assert meta["labels"]["names"] == imagenet_labels()
    assert meta["labels"]["sha256"] == labels_digest(imagenet_labels())
    assert meta["weights"]["file"] is None
    assert meta["opset"] == 20 and meta["batch"] is None and meta["max_batch"] == 64
    assert meta["versions"]["torch"] == torch.__version__ and meta["versions"]["onnx"] == onnx.__version__
    assert meta["parity"]["passed"] is True and len(meta["parity"]["rows"]) == 4


def test_metadata_is_merged_not_replaced():
    model = onnx.ModelProto()
    entry = model.metadata_props.add()
    entry.key, entry.value = "author", "someone"
    set_onnx_metadata(model, {"a": 1})
    set_onnx_metadata(model, {"a": 2})
    assert {p.key: p.value for p in model.metadata_props} == {"author": "someone", METADATA_KEY: '{"a":2}'}


def test_typed_metadata_keeps_the_document_as_read_and_reads_fields(exported):
    result = exported("v1")
    document = _metadata(result.path)
    meta = validate_metadata({**document, "written_by_a_newer_version": [1, 2]}, "v1.onnx")
    assert meta.precision == "fp32" and meta.arch == "v1" and meta.labels == document["labels"]["names"]
    assert meta.preprocess.input_size == document["preprocess"]["input_size"] and meta.int8_target is None
    int8 = meta.updated("v1_int8.onnx", drop=("parity",), precision="int8")
    assert int8.int8_target == "tensorrt" and int8.int8_weight_bits == 8  # what files before either key meant
    assert json.loads(int8.to_json())["written_by_a_newer_version"] == [1, 2] and "parity" not in int8
    assert json.loads(meta.to_json()) == {**document, "written_by_a_newer_version": [1, 2]}
    assert meta["precision"] == meta.get("precision") == "fp32"  # the dict's reads, kept as aliases


def test_metadata_keys_are_read_without_loading_the_graph(exported, tmp_path):
    path = exported("v1").path
    assert metadata_keys(path) == {METADATA_KEY}
    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "author", "someone"
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    assert metadata_keys(tmp_path / "foreign.onnx") == {"author"}
    data = path.read_bytes()
    for name, content in [("truncated.onnx", data[: len(data) // 2]), ("text.onnx", b"not a model at all\n" * 50)]:
        (tmp_path / name).write_bytes(content)
        assert METADATA_KEY not in metadata_keys(tmp_path / name)
    assert metadata_keys(tmp_path / "missing.onnx") == set()


@pytest.mark.parametrize("arch,aux_modules", [("v1", ("aux1", "aux2")), ("v3", ("AuxLogits",))])
def test_aux_heads_are_stripped(arch, aux_modules, tmp_path):
    model = create_model(arch, aux_logits=True)
    result = export_onnx(model, tmp_path / "aux.onnx", batch=1, opset=17, check_parity=arch == "v1")
    graph = onnx.load(str(result.path)).graph
    names = [n.name for n in graph.node] + [i.name for i in graph.initializer] + [o.name for o in graph.output]
    names += [v for n in graph.node for v in list(n.input) + list(n.output)]
    assert not [n for n in names if any(a in n for a in aux_modules)]
    assert [o.name for o in graph.output] == ["logits"]
    assert getattr(model, aux_modules[0]) is not None  # the caller's model keeps its heads
    if arch == "v1":
        assert result.parity.passed


def test_static_batch_with_legacy_opset(tmp_path, built_models):
    result = export_onnx(built_models("v1"), tmp_path / "static.onnx", batch=2, opset=17)
    assert result.opset == 17 and result.exporter == "torchscript"
    assert result.input_shape == [2, 3, 224, 224]
    assert {row.inputs for row in result.parity.rows} == {"photos b2", "synthetic b2"}
    assert result.parity.passed
    assert _metadata(result.path)["batch"] == 2


def test_weights_labels_and_input_size_are_recorded(tmp_path):
    weights = tmp_path / "ten.pth"
    torch.save(create_model("v1", num_classes=10).state_dict(), weights)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"thing {i}\n" for i in range(10)))
    result = export_onnx(
        "googlenet",
        tmp_path / "ten.onnx",
        weights=weights,
        num_classes=10,
        labels=labels,
        input_size=160,
        batch=1,
        opset=17,
    )
    meta = _metadata(result.path)
    assert meta["weights"] == {"file": "ten.pth", "sha256": sha256_file(weights)}
    assert meta["labels"]["names"] == [f"thing {i}" for i in range(10)] and meta["labels"]["source"] == "labels.txt"
    assert meta["preprocess"]["input_size"] == 160 and meta["preprocess"]["resize_size"] == 182
    assert result.output_shape == [1, 10] and result.parity.passed


def test_failed_export_leaves_existing_file_untouched(tmp_path, built_models, monkeypatch):
    from hostile import tiny_classifier

    target = tmp_path / "model.onnx"
    previous = tiny_classifier(target).read_bytes()  # an earlier export, the toolkit's own to replace

    def broken_check(*args):
        raise onnx_export.InceptionDeployError("checker says no")

    monkeypatch.setattr(onnx_export, "_check", broken_check)
    with pytest.raises(onnx_export.InceptionDeployError, match="checker says no"):
        export_onnx(built_models("v1"), target, batch=1, opset=17)
    assert target.read_bytes() == previous
    assert os.listdir(tmp_path) == ["model.onnx"]


def _cli(*args):
    result = CliRunner().invoke(main, ["export", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_export_prints_summary_and_table(tmp_path):
    out = tmp_path / "g.onnx"
    code, stdout, _ = _cli("--arch", "googlenet", "-o", str(out), "--batch", "1", "--opset", "17")
    assert code == 0, stdout
    assert stdout.startswith(f"wrote {out} (") and "opset 17, torchscript exporter" in stdout
    assert "input[1x3x224x224] -> logits[1x1000]" in stdout
    assert stdout.count("PASS") == 2 and "FAIL" not in stdout


def test_cli_preprocessing_overrides(tmp_path):
    out = tmp_path / "p.onnx"
    code, stdout, _ = _cli(
        "--arch",
        "v1",
        "-o",
        str(out),
        "--batch",
        "1",
        "--opset",
        "17",
        "--no-parity",
        "--mean",
        "0.485,0.456,0.406",
        "--std",
        "0.229,0.224,0.225",
        "--crop-pct",
        "0.875",
        "--interpolation",
        "bicubic",
    )
    assert code == 0
    pre = _metadata(out)["preprocess"]
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["std"] == [0.229, 0.224, 0.225]
    assert pre["resize_size"] == 256 and pre["interpolation"] == "bicubic"
    assert "parity" not in _metadata(out)


def test_cli_parity_failure_keeps_file_and_exits_1(tmp_path, monkeypatch):
    monkeypatch.setitem(metrics.THRESHOLDS, "fp32", metrics.Thresholds(max_rel=0.0))
    out = tmp_path / "f.onnx"
    code, stdout, stderr = _cli("--arch", "v1", "-o", str(out), "--batch", "1", "--opset", "17")
    assert code == 1 and out.is_file()
    assert "FAIL" in stdout and f"parity FAILED against eager PyTorch for {out}; kept for inspection" in stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--arch", "v5"], "unknown arch 'v5'; choose one of: v1 (googlenet"),
        (["--arch", "v3", "--weights", "missing.pth"], "missing.pth: no such checkpoint file"),
        (["--arch", "v3", "--opset", "7"], "opset 7 cannot be written: supported are 9-"),
        (["--arch", "v3", "--input-size", "60"], "arch v3 needs an input of at least 75 pixels, not 60"),
        (["--arch", "v2", "--input-size", "299"], "input size 299 is not supported by arch v2"),
        (["--arch", "v1", "--resize", "300", "--crop-pct", "0.9"], "--resize and --crop-pct both set"),
        (["--arch", "v1", "--resize", "100"], "resize size 100 is smaller than the crop 224"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = _cli(*args, "--no-parity")
    assert code == 2
    assert stderr.startswith(f"error: {message}") and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert os.listdir(tmp_path) == []


def test_cli_weights_that_do_not_fit(tmp_path):
    weights = tmp_path / "ten.pth"
    torch.save(get_arch("v1").build(num_classes=10).state_dict(), weights)
    code, _, stderr = _cli("--arch", "v1", "--weights", str(weights), "-o", str(tmp_path / "x.onnx"))
    assert code == 2 and stderr.count("\n") == 1
    assert stderr.rstrip().endswith("hint: checkpoint has 10 classes: pass num_classes=10")


def test_cli_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, stderr = _cli("--arch", "v1", "-o", str(blocker / "x.onnx"), "--no-parity")
    assert code == 2
    assert stderr.startswith(f"error: {blocker / 'x.onnx'}: cannot write there ({blocker} is not a folder)")


def test_cli_labels_must_match_class_count(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    code, _, stderr = _cli("--arch", "v1", "--labels", str(labels), "-o", str(tmp_path / "x.onnx"))
    assert code == 2 and "has 2 labels but the model has 1000 classes" in stderr


def test_console_script_help():
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "inception-export")
    if not os.path.exists(exe):
        pytest.skip("package not installed as console scripts (pip install -e .)")
    help_text = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for section in ("Model:", "Output:", "Preprocessing overrides:", "Verification:"):
        assert section in help_text
    assert "[default: 64; 1<=x<=1024]" in help_text
    assert "None]" not in help_text and "[default: 0.2]" in help_text  # a range without bounds said "x<=None"


def test_an_artifact_recording_an_old_arch_name_is_read_as_the_new_one(exported, tmp_path):
    """Exports made before the ResNets joined record "resnet-v1" for today's inception-resnet-v1."""
    path = exported("inception-resnet-v1").path
    model = onnx.load(str(path))
    meta = _metadata(path)
    meta["arch"] = "resnet-v1"
    set_onnx_metadata(model, meta)
    old = tmp_path / "old.onnx"
    onnx.save(model, str(old))
    result = CliRunner().invoke(main, ["parity", "--arch", "inception-resnet-v1", "--onnx", str(old)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["run", str(old), "--arch", "inception-resnet-v1", "--samples"])
    assert result.exit_code == 0 and "--arch inception-resnet-v1 ignored" not in result.output, result.output
    result = CliRunner().invoke(main, ["run", str(old), "--arch", "v3", "--samples"])
    assert "was exported from resnet-v1" in result.output and "--arch v3 ignored" in result.output
