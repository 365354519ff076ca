"""inception-eval: accuracy on labelled sets, checked against an independent computation."""

import json
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
import trained_classifier as tc
from click.testing import CliRunner
from PIL import Image

from inception_deploy.cli import main
from inception_deploy.labelled import ClassNames, EvalError, read_labelled
from inception_deploy.labels import imagenet_labels
from inception_deploy.statistics import mcnemar_exact, wilson
from inception_deploy.verify.evaluation import evaluate

LABELS = [f"class_{i}" for i in range(tc.CLASSES)]


@pytest.fixture(scope="module")
def classifier(trained, tmp_path_factory):
    """The trained-head classifier, its FP32 ONNX, and a labelled folder of 200 images (+1 broken)."""
    folder = tmp_path_factory.mktemp("eval")
    model, config, onnx_path = trained["model"], trained["config"], trained["fp32"]
    images, labels = tc.learnable_images(200, seed=21)
    data = folder / "data"
    for i, (image, label) in enumerate(zip(images, labels)):
        (data / f"class_{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).round().astype(np.uint8)).save(data / f"class_{label}" / f"{i:03d}.png")
    (data / "class_0" / "broken.png").write_bytes(b"not a png")
    return {"model": model, "config": config, "onnx": onnx_path, "data": data}


def _independent_predictions(classifier):
    """Top-5 of eager torch and of a plain ONNX Runtime session, written here from scratch."""
    files = sorted(p for p in classifier["data"].rglob("*.png") if p.name != "broken.png")
    targets = np.array([int(p.parent.name.split("_")[1]) for p in files])
    config = classifier["config"]  # 96x96 images, resized to resize_size then center-cropped, as declared
    filters = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
    size, crop = config.resize_size, config.input_size
    offset = round((size - crop) / 2)

    def crop_of(path):
        image = Image.open(path).convert("RGB").resize((size, size), filters[config.interpolation])
        return np.asarray(image.crop((offset, offset, offset + crop, offset + crop)), np.float32) / 255

    pixels = np.stack([crop_of(p) for p in files])
    x = ((pixels - np.array(config.mean, np.float32)) / np.array(config.std, np.float32)).transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x, np.float32)
    with torch.no_grad():
        eager = classifier["model"](torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(classifier["onnx"]), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"input": x})[0]
    return targets, np.argsort(-eager, axis=1)[:, :5], np.argsort(-onnx_logits, axis=1)[:, :5]


def _wilson_by_roots(correct, n, z=1.959963984540054):
    """Wilson's interval as the roots of (p - phat)^2 = z^2 p (1 - p) / n."""
    phat = correct / n
    a = 1 + z * z / n
    return sorted(np.roots([a, -(2 * phat + z * z / n), phat * phat]).real)


def test_accuracies_match_an_independent_computation(classifier):
    report = evaluate(
        classifier["data"],
        artifacts=[classifier["onnx"]],
        model=classifier["model"],
        preprocess=classifier["config"],
        labels=LABELS,
    )
    targets, eager_top5, onnx_top5 = _independent_predictions(classifier)
    assert report.images == len(targets) == 200
    assert [f for f, _ in report.skipped] == [str(classifier["data"] / "class_0" / "broken.png")]
    eager, onnx = report.models
    assert eager.name == "eager" and onnx.name == str(classifier["onnx"])
    right1 = eager_top5[:, 0] == targets
    assert eager.top1 == right1.mean() and 0.8 < eager.top1 < 1.0  # a real classifier, not a trivial one
    assert eager.top5 == (eager_top5 == targets[:, None]).any(axis=1).mean()
    np.testing.assert_allclose(eager.top1_ci, _wilson_by_roots(right1.sum(), len(targets)), atol=1e-9)
    onnx_right = onnx_top5[:, 0] == targets
    assert abs(onnx.top1 - onnx_right.mean()) <= 1 / len(targets)  # at most one near-tie resolved otherwise
    assert abs(onnx.agreement - (onnx_top5[:, 0] == eager_top5[:, 0]).mean()) <= 1 / len(targets)
    b, c = onnx.only_reference, onnx.only_model
    assert abs(b - int((right1 & ~onnx_right).sum())) <= 1 and abs(c - int((~right1 & onnx_right).sum())) <= 1
    exact = min(1.0, 2 * sum(math.comb(b + c, i) for i in range(min(b, c) + 1)) / 2 ** (b + c)) if b + c else 1.0
    assert onnx.mcnemar_p == pytest.approx(exact)
    assert onnx.delta_top1[0] == pytest.approx((c - b) / len(targets))


def test_statistics_on_known_values():
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(81, 100) == pytest.approx((0.7222, 0.8749), abs=1e-4)  # worked by hand
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 12) == pytest.approx(0.03515625)  # 2 * P(X <= 3), X ~ Bin(15, 1/2)


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (120, 30, 200)).save(path)


def test_layouts_map_classes_by_label_wnid_index_and_map(tmp_path):
    names = ClassNames(imagenet_labels())
    for name in ("a.png", "b.png", "c.png", "sub/d.png"):
        _touch(tmp_path / "csv" / name)
    (tmp_path / "csv" / "set.csv").write_text(
        "path,label\na.png,goldfish\nb.png,n01440764\nc.png,5\nsub/d.png,Great White Shark\n"
    )
    assert read_labelled(tmp_path / "csv" / "set.csv", names).targets == [1, 0, 5, 2]
    (tmp_path / "csv" / "set.tsv").write_text("a.png\t7\nb.png\tgoldfish\n")
    assert read_labelled(tmp_path / "csv" / "set.tsv", names).targets == [7, 1]

    val = tmp_path / "val"
    for i in (1, 2):
        _touch(val / f"ILSVRC2012_val_{i:08d}.JPEG")
    (tmp_path / "val.txt").write_text("ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 970\n")
    assert read_labelled(val, names, ground_truth=tmp_path / "val.txt").targets == [65, 970]
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000002,n01443537 1 2 3 4 n01443537 5 6 7 8\n"
        "ILSVRC2012_val_00000001,n01440764 1 2 3 4\n"
    )
    labelled = read_labelled(val, names, ground_truth=tmp_path / "LOC_val_solution.csv")
    assert [p.name for p in labelled.files] == ["ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000001.JPEG"]
    assert labelled.targets == [1, 0]

    _touch(tmp_path / "folders" / "n01443537" / "x.png")
    _touch(tmp_path / "folders" / "kitten" / "y.png")
    (tmp_path / "map.csv").write_text("kitten,tabby\n")
    labelled = read_labelled(tmp_path / "folders", ClassNames(imagenet_labels(), tmp_path / "map.csv"))
    assert labelled.targets == [imagenet_labels().index("tabby"), 1]  # folders in sorted order
    with pytest.raises(EvalError, match="folder 'kitten': class 'kitten' is not one of the model's 1000"):
        read_labelled(tmp_path / "folders", names)


def test_bad_sets_are_one_line_exit_2(classifier, tmp_path):
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "loose" / "a.png")
    _touch(tmp_path / "csvset" / "a.png")
    (tmp_path / "csvset" / "set.csv").write_text("a.png,class_1\nmissing.png,class_2\ngone.png,class_3\n")
    (tmp_path / "devkit").mkdir()
    _touch(tmp_path / "devkit" / "ILSVRC2012_val_00000001.JPEG")
    (tmp_path / "gt.txt").write_text("490\n361\n")
    _touch(tmp_path / "unknown" / "dogs" / "a.png")
    cases = [
        (["--data", str(tmp_path / "empty")], "no class subfolders and no images"),
        (["--data", str(tmp_path / "loose")], "1 images but no class subfolders"),
        (["--data", str(tmp_path / "csvset" / "set.csv")], "2 listed images do not exist"),
        (["--data", str(tmp_path / "devkit"), "--ground-truth", str(tmp_path / "gt.txt")], "devkit"),
        (["--data", str(tmp_path / "unknown")], "class 'dogs' is not one of the model's 10 classes"),
        (["--data", str(tmp_path / "nothere")], "no such folder or file"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, ["eval", "--onnx", str(classifier["onnx"]), "--no-progress", *args])
        assert result.exit_code == 2, (args, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], (args, result.output)
    result = CliRunner().invoke(main, ["eval", "--data", str(classifier["data"])])
    assert result.exit_code == 2 and "give --arch" in result.output


def test_cli_json_plot_and_an_engine_this_machine_cannot_run(classifier, tmp_path):
    plan = tmp_path / "small.plan"
    import onnx

    from inception_deploy.metadata import onnx_metadata, sidecar_path

    plan.write_bytes(b"plan")  # with the sidecar inception-build writes: the ONNX's metadata and more
    sidecar_path(plan).write_text(onnx_metadata(onnx.load(str(classifier["onnx"])), "small.onnx").to_json())
    pytest.importorskip("matplotlib")
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "--data",
            str(classifier["data"]),
            "--onnx",
            str(classifier["onnx"]),
            "--engine",
            str(plan),
            "--limit",
            "50",
            "--json",
            str(tmp_path / "r.json"),
            "--plot",
            str(tmp_path / "r.png"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 3, result.output  # the engine could not run here; the ONNX row is there
    assert f"warning: {plan} not evaluated" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["images"] == 50 and [m["name"] for m in report["models"]] == [str(classifier["onnx"])]
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_export_evaluates_everything_it_wrote(tmp_path):
    for wnid in ("n01440764", "n01443537"):
        for i in range(3):
            _touch(tmp_path / "data" / wnid / f"{i}.png")
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--arch",
            "v1",
            "-o",
            str(tmp_path / "g.onnx"),
            "--fp16",
            "--opset",
            "17",
            "--no-parity",
            "--engine",
            "no",
            "--input-size",
            "96",
            "--eval-data",
            str(tmp_path / "data"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "6 images, reference eager" in result.output
    rows = [
        line.split()[0]
        for line in result.output.splitlines()
        if line.startswith(("eager", str(tmp_path))) and "images, reference" not in line
    ]
    assert rows == ["eager", str(tmp_path / "g.onnx"), str(tmp_path / "g_fp16.onnx")]


@pytest.mark.parametrize("command", ["eval", "bench"])
def test_plot_without_matplotlib_fails_before_the_work(command, classifier, tmp_path, monkeypatch):
    import sys

    import inception_deploy.verify.bench as bench
    import inception_deploy.verify.evaluation as evaluation

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # its import fails, as when not installed
    for module, name in ((evaluation, "evaluate"), (bench, "run_benchmarks")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("the work started before --plot was checked"))
    onnx_file = str(classifier["onnx"])
    args = (
        ["eval", "--data", str(classifier["data"]), "--onnx", onnx_file, "--no-progress"]
        if command == "eval"
        else ["bench", onnx_file, "--batch-sizes", "1"]
    )
    result = CliRunner().invoke(main, [*args, "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: --plot needs matplotlib: pip install 'inception-deploy[bench]'"
    ]
    assert not (tmp_path / "p.png").exists()
