"""INT8 under control: Conv layers kept float by PyTorch module name, the precision file that
reproduces a placement, the cpu target's weight bits, and the layer-by-layer comparison that
shows where reduced precision loses accuracy (inception-parity --layerwise)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from commands import QUICK_V1_INT8_CPU
from onnx import numpy_helper

from inception_deploy.calibration.float_layers import precision_file
from inception_deploy.cli import main
from inception_deploy.errors import InceptionDeployError
from inception_deploy.export.precision import convert_fp16, quantize_int8
from inception_deploy.fileio import PLOT
from inception_deploy.graph import node_modules
from inception_deploy.inputs import sample_folder, sample_photos
from inception_deploy.metadata import onnx_metadata
from inception_deploy.models.registry import get_arch
from inception_deploy.preprocess import preprocess
from inception_deploy.runtime import OnnxRuntimeBackend
from inception_deploy.verify.layerwise import compare_layers

KEEP = ["conv1.conv", "inception5*"]


@pytest.fixture(scope="module")
def int8(trained, tmp_path_factory):
    """The trained classifier's INT8 (tensorrt target) with every Conv quantized, and with KEEP
    float; one calibration shared."""
    folder = tmp_path_factory.mktemp("int8_control")
    common = dict(target="tensorrt", calib_dir=sample_folder(), method="minmax", cache=folder / "calib.json")
    every = quantize_int8(trained["fp32"], folder / "every.onnx", **common)
    kept = quantize_int8(trained["fp32"], folder / "kept.onnx", keep_float=KEEP, **common)
    return {"every": every.path, "kept": kept.path, "kept_meta": kept.metadata, "folder": folder, "common": common}


@pytest.fixture(scope="module")
def images(trained):
    import trained_classifier as tc

    pixels, _ = tc.learnable_images(6, seed=7)
    from inception_deploy.preprocess import normalize

    return normalize(pixels, trained["config"])


def _graph_of(path):
    graph = onnx.load(str(path)).graph
    return [(n.op_type, list(n.input), list(n.output)) for n in graph.node], {
        i.name: numpy_helper.to_array(i).tobytes() for i in graph.initializer
    }


def test_the_layers_kept_float_are_the_modules_named_and_the_precision_file_reproduces_them(trained, int8):
    layers = (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)
    quantizable = [name for name, m in trained["model"].named_modules() if isinstance(m, layers)]
    expected = [name for name in quantizable if name == "conv1.conv" or name.startswith("inception5")]
    assert sorted(int8["kept_meta"]["int8_float_modules"]) == sorted(expected) and len(expected) == 15
    written = json.loads(precision_file(int8["kept"]).read_text())
    assert written["arch"] == "v1" and written["int8_target"] == "tensorrt"
    assert sorted(m["module"] for m in written["float_modules"]) == sorted(expected)
    assert {m["why"] for m in written["float_modules"]} == {f"--int8-keep-float {p}" for p in KEEP}

    again = quantize_int8(
        trained["fp32"], int8["folder"] / "again.onnx", keep_float=[precision_file(int8["kept"])], **int8["common"]
    )
    assert _graph_of(again.path) == _graph_of(int8["kept"])
    assert _graph_of(again.path) != _graph_of(int8["every"])


def test_layerwise_rows_name_modules_in_graph_order_and_end_at_the_logits(trained, int8, images):
    every, kept = compare_layers(trained["fp32"], [int8["every"], int8["kept"]], images)
    first = {r.module: r for r in kept.rows}
    assert first["conv1.conv"].cosine == 1.0 and first["conv1.conv"].rel_error == 0.0  # kept float
    assert {r.module: r for r in every.rows}["conv1.conv"].cosine < 1.0
    modules = dict(trained["model"].named_modules())
    assert all(isinstance(modules[r.module], torch.nn.Conv2d) for r in every.rows if r.op == "Conv")
    order = [n.output[0] for n in onnx.load(str(int8["every"])).graph.node]
    assert [r.tensor for r in every.rows] == [t for t in order if t in {r.tensor for r in every.rows}]

    # the last row is the logits, compared the same way as an independent run of the two files
    a = OnnxRuntimeBackend(trained["fp32"]).infer(images).astype(np.float64)
    b = OnnxRuntimeBackend(int8["every"]).infer(images).astype(np.float64)
    cosine = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert every.rows[-1].tensor == "logits"
    assert every.rows[-1].cosine == pytest.approx(cosine.min(), abs=1e-9)
    assert every.rows[-1].rel_error == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-9)


def test_layerwise_points_at_the_layer_that_went_wrong(trained, images, tmp_path):
    """An FP16 file with half of one Conv's output channels negated: every layer before it keeps
    FP16's cosine, and the first row below the bar names that Conv's module."""
    fp16 = convert_fp16(trained["fp32"], tmp_path / "fp16.onnx").path
    target = "inception4c.branch2.1.conv"
    plant_fault(fp16, trained["fp32"], target, tmp_path / "damaged.onnx")

    (report,) = compare_layers(trained["fp32"], [tmp_path / "damaged.onnx"], images)
    assert report.first_below is not None and report.first_below.module == target
    before = report.rows[: report.rows.index(report.first_below)]
    assert len(before) > 50 and min(r.cosine for r in before) >= 0.999


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_layerwise_names_a_planted_int8_fault_on_both_targets(trained, int8, images, target, tmp_path):
    """Half of one Conv's output channels negated in an INT8 file: the first row below the bar
    names that Conv, on both targets. On the cpu target ONNX Runtime fuses each ReLU into the
    quantization and the tensor named as the ReLU's output is the Conv's, before it: paired with
    the FP32 ReLU it read 0.3-0.7 on every healthy layer and the view blamed layer 0 (issue 44)."""
    common = {**int8["common"], "target": target}
    path = quantize_int8(trained["fp32"], tmp_path / f"{target}.onnx", **common).path
    target_module = "inception3b.branch2.1.conv"  # where the healthy file is still above the bar
    plant_fault(path, trained["fp32"], target_module, tmp_path / "damaged.onnx")

    (healthy,) = compare_layers(trained["fp32"], [path], images)
    (report,) = compare_layers(trained["fp32"], [tmp_path / "damaged.onnx"], images)
    assert healthy.first_below is None or healthy.first_below.module != "conv1.conv", healthy.table()
    assert report.first_below is not None and report.first_below.module == target_module, report.table()
    relus = [r for r in healthy.rows if r.op.endswith("Relu")]  # "Conv+Relu" where the ReLU is fused
    assert len(relus) > 50 and min(r.cosine for r in relus[:10]) > 0.95, healthy.table()


def plant_fault(path, fp32, module: str, damaged) -> None:
    """Write ``damaged``: the FP16/INT8 file ``path`` with half of the output channels of the Conv
    that ``module`` names in ``fp32`` negated (its stored weights: FP16, int8 behind a
    DequantizeLinear, or float behind a Q/DQ pair)."""
    reference = onnx.load(str(fp32)).graph
    modules = node_modules(reference)
    name = next(n.name for n in reference.node if n.op_type == "Conv" and modules.get(n.name) == module)
    proto = onnx.load(str(path))
    producers = {out: node for node in proto.graph.node for out in node.output}
    stored = next(n for n in proto.graph.node if n.name == name).input[1]
    while stored in producers:  # DequantizeLinear, QuantizeLinear, or FP16's Cast
        stored = producers[stored].input[0]
    weight = next(i for i in proto.graph.initializer if i.name == stored)
    values = numpy_helper.to_array(weight).copy()
    values[: len(values) // 2] = -values[: len(values) // 2]
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(proto, str(damaged))


@pytest.mark.parametrize("precision", ["int8 tensorrt", "int8 cpu", "fp16"])
@pytest.mark.parametrize(
    "arch, module",
    [
        ("resnet18", "layer2.1.conv2"),  # issue 44's own case: the cpu target named relu (0.69) first
        ("v3", "Conv2d_4a_3x3.conv"),  # before Mixed_5c, where these random weights' INT8 falls below 0.95
        ("inception_next_tiny", "stages.2.blocks.0.mlp.fc1"),
    ],
)
def test_layerwise_names_a_planted_fault_first(exported, arch, module, precision, tmp_path):
    """Half of one Conv's output channels negated in an INT8 file of either target or in an FP16
    file: the first row below the bar is that Conv, on the shipped photos. On the cpu target the
    ReLUs fused after Convs and after residual Adds read as such ("Conv+Relu", "Add+Relu")."""
    from inception_deploy.verify.layerwise import layer_images

    fp32 = exported(arch).path
    if precision == "fp16":
        path = convert_fp16(fp32, tmp_path / "fp16.onnx").path
    else:
        target = precision.split()[1]
        common = dict(target=target, calib_dir=sample_folder(), method="minmax", cache=tmp_path / "c.json")
        path = quantize_int8(fp32, tmp_path / f"{target}.onnx", **common).path
    plant_fault(path, fp32, module, tmp_path / "damaged.onnx")
    images = layer_images(fp32, None, 32, 0)
    (report,) = compare_layers(fp32, [tmp_path / "damaged.onnx"], images)
    assert report.first_below is not None and report.first_below.module == module, report.table()
    if arch == "resnet18" and precision == "int8 cpu":
        (healthy,) = compare_layers(fp32, [path], images)
        assert healthy.first_below is None and {r.op for r in healthy.rows} >= {"Conv+Relu", "Add+Relu"}
        # its Convs read the modules the FP32 file names (the int8 weights are renamed
        # conv1.weight_quantized; they named the folded batch norm's scope, layer1.0.bn1, and
        # --sensitivity suggested --int8-keep-float for modules no export knows)
        fp32_graph = onnx.load(str(fp32)).graph
        convs = [n.name for n in fp32_graph.node if n.op_type == "Conv"]
        fp32_modules, int8_modules = node_modules(fp32_graph), node_modules(onnx.load(str(path)).graph)
        assert [int8_modules.get(c) for c in convs] == [fp32_modules[c] for c in convs]


def test_equalization_changes_no_output(exported, tmp_path, monkeypatch):
    """calibration.equalize on InceptionNeXt's prepared graph (each MLP's batch norm -> fc1, whose
    default-initialised scales the exporter shares between layers), every pair considered (its
    channels are alike, below the SPREAD that equalization waits for): the logits stay FP32's, and
    every divided tensor holds FP32's values divided by its recorded divisors."""
    from inception_deploy.calibration import equalize as module
    from inception_deploy.calibration.equalize import equalize
    from inception_deploy.calibration.qdq import prepare
    from inception_deploy.calibration.sensitivity import run_graph
    from inception_deploy.verify.layerwise import layer_images

    monkeypatch.setattr(module, "SPREAD", 1.0)
    fp32 = exported("inception_next_tiny").path
    prepare(fp32, tmp_path / "prepared.onnx")
    images = layer_images(fp32, None, 32, 0)
    proto = onnx.load(str(tmp_path / "prepared.onnx"))
    divisors = equalize(proto, images, "cpu", 7)
    assert divisors
    tensors = sorted(divisors)[:4]
    plain = onnx.load(str(tmp_path / "prepared.onnx"))
    plain.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors)
    proto.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors)
    expected = run_graph(plain, images, ["logits", *tensors])
    got = run_graph(proto, images, ["logits", *tensors])
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-4)
    for tensor, a, b in zip(tensors, expected[1:], got[1:]):
        np.testing.assert_allclose(b * divisors[tensor].reshape(1, -1, 1, 1), a, rtol=1e-3, atol=1e-4)


def test_the_layerwise_plot_marks_and_names_the_first_layer_below_the_bar():
    """``LayerwiseReport.draw``: 1 - cosine per layer in graph order, the bar at 1 - min_cosine,
    the first layer below it circled, named in the legend and among the axis' module names."""
    from matplotlib.figure import Figure

    from inception_deploy.verify.layerwise import LayerRow, LayerwiseReport

    cosines = [0.99999, 0.9999, 0.999, 0.6, 0.9, 0.5] + [0.99] * 40
    rows = [LayerRow(f"t{i}", "Conv", f"block{i}.conv", c, 0.0, 0.0) for i, c in enumerate(cosines)]
    report = LayerwiseReport("fp32.onnx", "int8.onnx", "int8", 8, 0.95, rows)
    ax = Figure().add_subplot()
    report.draw(ax)
    curve, first = [line for line in ax.get_lines() if line.get_linestyle() != "--"]
    assert np.allclose(curve.get_ydata(), [1 - c for c in cosines])
    assert (first.get_xdata()[0], first.get_label()) == (3, "first below: block3.conv")
    assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"] == [pytest.approx(0.05)]
    assert "block3.conv" in [label.get_text() for label in ax.get_xticklabels()]


def test_saved_outputs_are_polygraphys_run_results(trained, int8, images, tmp_path):
    """What --save-outputs writes, its size said before anything runs (within 10%), and refused
    over a limit (it wrote 1.05 GB without a word before)."""
    from polygraphy.comparator import RunResults

    from inception_deploy.verify.layerwise import saved_size

    saved = tmp_path / "outputs.json"
    estimate = saved_size(trained["fp32"], [int8["kept"]], 2, saved, None)
    with pytest.raises(InceptionDeployError, match=r"outputs.json: would be about .* over the .* GB limit"):
        compare_layers(trained["fp32"], [int8["kept"]], images[:2], save_outputs=saved, save_limit=estimate // 2)
    assert not saved.exists()
    compare_layers(trained["fp32"], [int8["kept"]], images[:2], save_outputs=saved)
    assert 0.9 < saved.stat().st_size / estimate < 1.1
    results = RunResults.load(str(saved))
    assert list(results.keys()) == ["fp32 reference", str(int8["kept"])]
    (iteration,) = results[str(int8["kept"])]
    np.testing.assert_allclose(iteration["logits"], OnnxRuntimeBackend(int8["kept"]).infer(images[:2]), atol=1e-5)
    inspect = subprocess.run(
        [Path(sys.executable).with_name("polygraphy"), "inspect", "data", str(saved)], capture_output=True, text=True
    )
    assert inspect.returncode == 0 and "logits" in inspect.stdout + inspect.stderr, inspect.stderr[-2000:]
    assert not [p for p in tmp_path.iterdir() if p.name != "outputs.json"]


def test_parity_layerwise_from_the_command_line(v1_opset17, tmp_path):
    int8_file = quantize_int8(
        v1_opset17, tmp_path / "int8.onnx", target="tensorrt", calib_dir=sample_folder(), method="minmax"
    ).path
    result = CliRunner().invoke(
        main,
        ["parity", "--arch", "v1", "--onnx", str(v1_opset17), "--onnx", str(int8_file), "--layerwise"]
        + ["--samples", "3", "--synthetic", "1", "--json", str(tmp_path / "parity.json")],
    )
    assert result.exit_code == 0, result.output
    assert "PyTorch module" in result.stdout and "inception5b.branch4.1.conv" in result.stdout
    (layers,) = json.loads((tmp_path / "parity.json").read_text())["layerwise"]
    assert layers["images"] == len(sample_photos()) + 1 and layers["candidate"] == str(int8_file)
    assert [r["module"] for r in layers["layers"] if r["op"] == "Conv"] == [
        m
        for m in node_modules(onnx.load(str(int8_file)).graph).values()
        if m in get_arch("v1").module_paths(torch.nn.Conv2d)
    ]


def test_parity_sensitivity_ranks_every_quantized_layer_from_the_command_line(v1_opset17, trained, tmp_path):
    """--sensitivity: every Conv and pool with a quantized input, most sensitive first, named by
    module, and the flags that would keep the first float (drawn with --layerwise by --plot); a
    cpu-target file is ranked too (it was refused before); an FP16 file alone, or a file of another
    FP32, is one line before any slow work."""
    common = dict(calib_dir=sample_folder(), method="minmax", cache=tmp_path / "calib.json")
    int8_file = quantize_int8(v1_opset17, tmp_path / "int8.onnx", target="tensorrt", **common).path
    plot = tmp_path / "layers.png"
    result = CliRunner().invoke(
        main,
        ["parity", "--arch", "v1", "--onnx", str(v1_opset17), "--onnx", str(int8_file), "--sensitivity"]
        + ["--synthetic", "0", "--json", str(tmp_path / "parity.json"), "--layerwise", "--plot", str(plot)],
    )
    assert result.exit_code == 0, result.output
    # one panel for the layerwise view, one for the ranking: 4 inches each at 100 dpi
    assert PLOT.recognise(plot) and int.from_bytes(plot.read_bytes()[20:24], "big") == 800
    (ranked,) = json.loads((tmp_path / "parity.json").read_text())["sensitivity"]
    graph = onnx.load(str(int8_file)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    quantized = {
        n.name for n in graph.node if n.op_type in ("Conv", "MaxPool", "AveragePool") and n.input[0] in dequantized
    }
    assert sorted(layer["node"] for layer in ranked["layers"]) == sorted(quantized)
    errors = [layer["error"] for layer in ranked["layers"]]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0 and ranked["images"] == len(sample_photos())
    paths = node_modules(graph)
    assert all(layer["module"] == paths[layer["node"]] for layer in ranked["layers"])
    assert f"--int8-keep-float {ranked['layers'][0]['module']}" in result.stdout

    cpu_file = quantize_int8(v1_opset17, tmp_path / "cpu.onnx", target="cpu", **common).path
    result = CliRunner().invoke(
        main,
        ["parity", "--arch", "v1", "--onnx", str(v1_opset17), "--onnx", str(cpu_file), "--sensitivity"]
        + ["--synthetic", "0"],
    )
    assert result.exit_code == 0 and "--int8-keep-float " in result.stdout, result.output
    fp16_file = convert_fp16(v1_opset17, tmp_path / "fp16.onnx").path
    result = CliRunner().invoke(
        main, ["parity", "--arch", "v1", "--onnx", str(v1_opset17), "--onnx", str(fp16_file), "--sensitivity"]
    )
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
    assert "--sensitivity needs an INT8 file" in result.output
    result = CliRunner().invoke(
        main, ["parity", "--arch", "v1", "--onnx", str(trained["fp32"]), "--onnx", str(int8_file), "--sensitivity"]
    )
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
    assert f"{int8_file}: was not made from {trained['fp32']}" in result.output


def test_sensitivity_ranks_a_cpu_target_file_by_each_layers_input_rounding(trained, tmp_path):
    """A cpu-target file stores int8 weights: its layers keep them as stored and each one's input
    rounding alone is ranked. The network with every activation float is FP32's (cosine >= 0.99 on
    the photos) only with the ReLUs ONNX Runtime let uint8 Q/DQ pairs stand for put back
    (``fused_relus``); without them it is not (the float tensor behind such a pair is the value
    before the ReLU). A layer whose input pair is made 16 times coarser ranks first."""
    import onnxruntime as ort

    from inception_deploy.calibration.qdq import float_behind_qdq
    from inception_deploy.calibration.sensitivity import layer_sensitivity
    from inception_deploy.graph import fused_relus

    common = dict(target="cpu", calib_dir=sample_folder(), method="minmax")
    path = quantize_int8(trained["fp32"], tmp_path / "cpu.onnx", **common).path
    images = preprocess(sample_photos(), trained["config"])
    fp32 = OnnxRuntimeBackend(trained["fp32"]).infer(images)

    def activations_float(with_relus: bool):
        proto = onnx.load(str(path))
        float_of, relus = float_behind_qdq(proto.graph), fused_relus(proto.graph) if with_relus else {}
        for pair, tensor in relus.items():
            proto.graph.node.append(onnx.helper.make_node("Relu", [tensor], [f"{pair}_relu"]))
        for node in proto.graph.node:
            node.input[:] = [f"{name}_relu" if name in relus else float_of.get(name, name) for name in node.input]
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        logits = session.run(None, {session.get_inputs()[0].name: images})[0]
        return np.sum(logits * fp32, 1) / np.linalg.norm(logits, axis=1) / np.linalg.norm(fp32, axis=1)

    relus = fused_relus(onnx.load(str(path)).graph)
    assert len(relus) > 20 and activations_float(True).min() >= 0.99 > activations_float(False).min()

    proto = onnx.load(str(path))
    modules, producers = node_modules(proto.graph), {o: n for n in proto.graph.node for o in n.output}
    conv = next(n for n in proto.graph.node if modules.get(n.name) == "inception4c.branch2.1.conv")
    dq = producers[conv.input[0]]
    assert [n.name for n in proto.graph.node if dq.output[0] in n.input] == [conv.name]  # its pair alone
    for scale in {dq.input[1], producers[dq.input[0]].input[1]}:
        init = next(i for i in proto.graph.initializer if i.name == scale)
        init.CopyFrom(numpy_helper.from_array(np.asarray(numpy_helper.to_array(init) * 16, np.float32), init.name))
    onnx.save(proto, str(tmp_path / "coarse.onnx"))
    healthy = layer_sensitivity(path, fp32, images, modules)
    ranked = layer_sensitivity(tmp_path / "coarse.onnx", fp32, images, modules)
    assert healthy[0].module != "inception4c.branch2.1.conv" and healthy[0].error > 0
    assert ranked[0].module == "inception4c.branch2.1.conv", [(r.module, r.error) for r in ranked[:3]]


def test_float_layers_of_the_cpu_target_read_float_tensors(trained, tmp_path):
    """A layer kept float on the cpu target reads the float tensor, not the int8 rounding of a
    quantized neighbour's output (a float Conv after a quantized Concat read its Q/DQ before).
    Where ONNX Runtime fused the ReLU before it into a Q/DQ pair (conv3's, before maxpool2), the
    float reader gets a ReLU of its own: the tensor behind that pair is conv3's output before it."""
    import onnxruntime as ort

    keep = ["maxpool2", "inception4*"]
    result = quantize_int8(
        trained["fp32"], tmp_path / "cpu.onnx", target="cpu", calib_dir=sample_folder(), method="minmax",
        keep_float=keep,
    )  # fmt: skip
    proto = onnx.load(str(result.path))
    graph, modules = proto.graph, node_modules(proto.graph)
    producers = {out: node for node in graph.node for out in node.output}
    kept = set(result.metadata.int8_float_modules)
    floats = [n for n in graph.node if modules.get(n.name) in kept and n.op_type in ("Conv", "MaxPool", "AveragePool")]
    assert len(floats) > 20
    read = [(n.name, name) for n in floats for name in n.input if name in producers]
    assert read and not [r for r in read if producers[r[1]].op_type == "DequantizeLinear"], read
    pool = next(n for n in floats if modules.get(n.name) == "maxpool2")
    relu = producers[pool.input[0]]
    assert relu.op_type == "Relu" and producers[relu.input[0]].op_type == "Conv"  # the ReLU the pair had held
    graph.output.extend([onnx.ValueInfoProto(name=pool.input[0])])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    images = preprocess(sample_photos(), trained["config"])
    _, pooled = session.run(None, {session.get_inputs()[0].name: images})
    assert pooled.min() >= 0 and pooled.max() > 0


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_every_layer_float_is_the_fp32_network(trained, target, tmp_path):
    """The budget search's last resort, every layer float, computes what FP32 does on both targets:
    on the cpu target ONNX Runtime also quantizes Concats, the global pool and the head, which were
    no layer one could keep float, so "every layer float" still flipped images (1 of 200 on the v1
    stand-in of docs/precision.md) and a budget could not be shown at all."""
    result = quantize_int8(
        trained["fp32"], tmp_path / f"{target}.onnx", target=target, calib_dir=sample_folder(), method="minmax",
        keep_float=["*"],
    )  # fmt: skip
    graph = onnx.load(str(result.path)).graph
    assert not [n.name for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    images = preprocess(sample_photos(), trained["config"])
    expected = OnnxRuntimeBackend(trained["fp32"]).infer(images)
    np.testing.assert_allclose(OnnxRuntimeBackend(result.path).infer(images), expected, rtol=1e-5, atol=1e-5)


# OpenVINO's logits of each file named, on the sample photos, saved beside it as <file>.<tag>.npy
OPENVINO_LOGITS = """
import sys
import numpy as np
from inception_deploy.inputs import sample_photos
from inception_deploy.preprocess import preprocess
from inception_deploy.runtime.openvino_backend import OpenVINOBackend
tag, *paths = sys.argv[1:]
for path in paths:
    backend = OpenVINOBackend(path, cache_dir=None)
    np.save(f"{path}.{tag}.npy", backend.infer(preprocess(sample_photos(), backend.metadata.preprocess)))
"""


def test_cpu_target_weight_bits(trained, tmp_path, monkeypatch, caplog):
    """7-bit weights by default (portable), 8 with --int8-weight-bits 8 (VNNI/AMX): per-channel
    symmetric, so each output channel's largest weight lands on the top level. And what the 7 bits
    are for, run: OpenVINO in a process whose oneDNN kernels are capped at AVX2
    ($ONEDNN_MAX_CPU_ISA), the u8 x s8 kernels of a CPU without VNNI, which add pairs of products
    in 16 bits. The 7-bit file computes exactly what it computes with this machine's own kernels;
    on a machine with VNNI the 8-bit file does not (its sums saturate). On such a machine the
    default's export says that 8 bits would round half as coarsely."""
    from inception_deploy.cpu import has_vnni

    vnni = has_vnni()
    monkeypatch.setattr("inception_deploy.export.precision.has_vnni", lambda: True)
    tops, paths, notes = {}, {}, {}
    for bits in (None, 8):
        caplog.clear()
        result = quantize_int8(
            trained["fp32"], tmp_path / f"cpu_{bits}.onnx", target="cpu", calib_dir=sample_folder(), method="minmax",
            cache=tmp_path / "calib.json", weight_bits=bits,
        )  # fmt: skip
        graph = onnx.load(str(result.path)).graph
        values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        dequantized = [values.get(n.input[0]) for n in graph.node if n.op_type == "DequantizeLinear"]
        quantized = [q for q in dequantized if q is not None and q.dtype == np.int8]  # not the int32 biases
        bits = result.metadata.int8_weight_bits
        tops[bits] = max(int(np.abs(q.astype(np.int32)).max()) for q in quantized)
        paths[bits] = str(result.path)
        notes[bits] = [r.getMessage() for r in caplog.records if "this CPU has VNNI" in r.getMessage()]
        assert result.metadata["calibration"]["bias_correction"]["images"] == 5  # the cpu default, on what there is
    assert tops[7] <= 64 and tops[8] == 127
    assert len(notes[7]) == 1 and "weight_bits 8 rounds the weights half as coarsely" in notes[7][0] and not notes[8]

    for tag, isa in (("native", None), ("avx2", "AVX2")):
        env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"} | (
            {"ONEDNN_MAX_CPU_ISA": isa} if isa else {}
        )
        subprocess.run([sys.executable, "-c", OPENVINO_LOGITS, tag, paths[7], paths[8]], env=env, check=True)
    logits = {(bits, tag): np.load(f"{paths[bits]}.{tag}.npy") for bits in (7, 8) for tag in ("native", "avx2")}
    np.testing.assert_allclose(logits[7, "avx2"], logits[7, "native"], rtol=0, atol=1e-5)  # measured: equal
    if vnni:  # the cap changed the kernels: the 8-bit file's sums saturate without VNNI (measured: 2.5 of 8.7)
        assert np.abs(logits[8, "avx2"] - logits[8, "native"]).max() > 0.1


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--int8", "--calib-samples", "--int8-keep-float", "Mixed_9*"],
            "--int8-keep-float Mixed_9*: matches no layer of v3",
        ),
        (["--int8-keep-float", "Mixed_7*"], "--int8-keep-float needs --int8"),
        (
            ["--int8", "--calib-samples", "--int8-target", "tensorrt", "--int8-weight-bits", "7"],
            "--int8-weight-bits 7 is for",
        ),
        (["--int8", "--calib-samples", "--int8-keep-float", "{other_arch}"], "was made for arch v1, not v3"),
        (["--int8", "--calib-samples", "--int8-keep-float", "{not_precision}"], "not a precision file"),
        # issue 42: the tensorrt target never quantizes the head (refused after the export before); a FIFO
        # hung; a sparse file was read whole before its size was refused
        (
            ["--int8", "--calib-samples", "--int8-target", "tensorrt", "--int8-keep-float", "fc"],
            "fc: matches no layer of v3 that INT8 quantizes",
        ),
        (  # nor does the cpu target since 2026-12-07 (the head stays float there too)
            ["--int8", "--calib-samples", "--int8-target", "cpu", "--int8-keep-float", "fc"],
            "fc: matches no layer of v3 that INT8 quantizes",
        ),
        (["--int8", "--calib-samples", "--int8-keep-float", "{fifo}"], "pipe.json: not a regular file"),
        (["--int8", "--calib-samples", "--int8-keep-float", "{sparse}"], "precision file is 2048 MiB; refusing"),
    ],
)
def test_bad_float_layer_requests_fail_before_the_export(args, message, tmp_path):
    (tmp_path / "other.precision.json").write_text(json.dumps({"arch": "v1", "float_modules": []}))
    (tmp_path / "list.json").write_text("[1, 2]")
    os.mkfifo(tmp_path / "pipe.json")
    with open(tmp_path / "sparse.precision.json", "wb") as f:
        f.truncate(2 << 30)
    names = {"{other_arch}": str(tmp_path / "other.precision.json"), "{not_precision}": str(tmp_path / "list.json")}
    names |= {"{fifo}": str(tmp_path / "pipe.json"), "{sparse}": str(tmp_path / "sparse.precision.json")}
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(
        main,
        ["export", "--arch", "v3", "-o", str(out / "v3.onnx")] + [names.get(a, a) for a in args],
    )
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not list(out.iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--save-outputs", "x.json"], "--save-outputs needs --layerwise"),
        (["--plot", "x.png"], "--plot draws the --layerwise and --sensitivity views: give one of them"),
        (["--layerwise"], "--layerwise needs the FP32 ONNX and the FP16/INT8 files made from it"),
        (["--sensitivity"], "--sensitivity needs the FP32 ONNX and the FP16/INT8 files made from it"),
    ],
)
def test_bad_layerwise_requests(args, message, v1_opset17):
    result = CliRunner().invoke(main, ["parity", "--arch", "v1", "--onnx", str(v1_opset17)] + args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_file_not_made_from_the_reference_is_refused(trained, int8, v1_opset17, images):
    with pytest.raises(Exception, match="was not made from"):
        compare_layers(v1_opset17, [int8["kept"]], images)


def test_torchscript_exports_name_modules_too(v1_opset17):
    graph = onnx.load(str(v1_opset17)).graph
    paths = node_modules(graph)
    assert sorted(paths[n.name] for n in graph.node if n.op_type == "Conv") == sorted(
        get_arch("v1").module_paths(torch.nn.Conv2d)
    )
    assert onnx_metadata(onnx.load(str(v1_opset17)), v1_opset17).preprocess.input_size == 224


def test_each_layers_sensitivity_is_the_whole_network_with_that_layer_alone_int8(int8, images):
    """The ranking runs only the part of the network after the last cut before each layer, fed with
    FP32's activations there; the whole network, every other layer reading float, must give the
    same logits error (the first Conv, one at the start of an Inception block, the last Conv)."""
    import onnxruntime as ort

    from inception_deploy.calibration.qdq import float_behind_qdq
    from inception_deploy.calibration.sensitivity import _cuts, layer_sensitivity

    proto = onnx.load(str(int8["every"]))
    float_of = float_behind_qdq(proto.graph)
    convs = [n for n in proto.graph.node if n.op_type == "Conv" and n.input[0] in float_of]
    fp32_graph = onnx.ModelProto()
    fp32_graph.CopyFrom(proto)
    for node in fp32_graph.graph.node:
        node.input[:] = [float_of.get(name, name) for name in node.input]
    assert len(_cuts(fp32_graph.graph)) > 10  # the stem's tensors and every block's Concat

    def whole_network_alone(layer=None):
        variant = onnx.ModelProto()
        variant.CopyFrom(fp32_graph)
        for node in variant.graph.node:
            if layer is not None and node.name == layer.name:
                node.input[:] = layer.input
        session = ort.InferenceSession(variant.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: images})[0]

    cuts, position = _cuts(fp32_graph.graph), {n.name: i for i, n in enumerate(proto.graph.node)}
    assert any(position[convs[0].name] < p < position[convs[len(convs) // 2].name] for p in cuts.values())
    fp32_logits = whole_network_alone()  # no layer INT8: the FP32 network
    ranked = {layer.node: layer.error for layer in layer_sensitivity(int8["every"], fp32_logits, images, {})}
    for layer in (convs[0], convs[len(convs) // 2], convs[-1]):
        expected = float(np.mean((whole_network_alone(layer) - fp32_logits) ** 2))
        assert expected > 0 and ranked[layer.name] == pytest.approx(expected, rel=1e-4), layer.name


def test_a_replayed_placement_never_replaces_its_source_and_keeps_its_reasons(tmp_path):
    """Replaying a precision file to the output it came from would overwrite it with its own
    replay: refused before the export. Elsewhere the replay records the file it repeated and each
    layer's original reason, and says when the calibration is not the one the layers were chosen on."""
    base = QUICK_V1_INT8_CPU + ["--calib-samples", "--calib-method", "minmax"]
    first = CliRunner().invoke(main, base + ["-o", str(tmp_path / "v1.onnx"), "--int8-keep-float", "inception3a*"])
    assert first.exit_code == 0, first.output
    source = tmp_path / "v1_int8_cpu.precision.json"
    before = source.read_bytes()
    again = CliRunner().invoke(main, base + ["-o", str(tmp_path / "v1.onnx"), "--int8-keep-float", str(source)])
    assert again.exit_code == 2 and "replaying it there would replace it" in again.stderr, again.output
    assert "(--output)" in again.stderr and source.read_bytes() == before
    replay = CliRunner().invoke(
        main,
        QUICK_V1_INT8_CPU
        + [
            "--calib-samples",
            "--calib-method",
            "entropy",
            "-o",
            str(tmp_path / "r.onnx"),
            "--int8-keep-float",
            str(source),
        ],
    )
    assert replay.exit_code == 0, replay.output
    assert "its float layers were chosen on another calibration" in replay.stderr
    written = json.loads((tmp_path / "r_int8_cpu.precision.json").read_text())
    original = json.loads(before)
    assert written["replayed"] == [{"file": str(source), "calibration_sha256": original["calibration_sha256"]}]
    assert [m["why"] for m in written["float_modules"]] == [f"{source}: {m['why']}" for m in original["float_modules"]]
    assert source.read_bytes() == before


def test_layerwise_runs_files_of_a_static_batch(tmp_path):
    """A file exported with a static batch takes no other: layer by layer fed it 4 images at a time
    and ended in Polygraphy's traceback. Batches of its size now, the last padded, the padding rows
    neither compared nor saved (the 5 shipped photos and 2 synthetic images, batch 2)."""
    from polygraphy.comparator import RunResults

    args = [a if a != "1" else "2" for a in QUICK_V1_INT8_CPU]  # --batch 2
    export = CliRunner().invoke(main, args + ["--calib-samples", "-o", str(tmp_path / "s.onnx")])
    assert export.exit_code == 0, export.output
    files = ["--onnx", str(tmp_path / "s.onnx"), "--onnx", str(tmp_path / "s_int8_cpu.onnx")]
    saved = tmp_path / "o.json"
    command = ["parity", "--arch", "v1", *files, "--layerwise", "--synthetic", "2", "--save-outputs", str(saved)]
    result = CliRunner().invoke(main, command)
    assert result.exit_code in (0, 1) and "Traceback" not in result.output, result.output
    assert "layers on 7 images" in result.stdout
    assert [len(next(iter(it.values()))) for it in RunResults.load(str(saved))["fp32 reference"]] == [2, 2, 2, 1]
