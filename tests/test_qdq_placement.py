"""The tensorrt INT8 target's Q/DQ placement, checked on every architecture's graph.

The checks read the quantized graph alone and restate NVIDIA's placement recommendations
(calibration.qdq.tensorrt_placement) independently of the code that placed the nodes, so a
regression in placement fails here. Ranges are random per tensor: a Concat or MaxPool whose
tensors kept their own ranges would show different scales.
"""

from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from archs import EXPORTED
from onnx import numpy_helper

from inception_deploy.calibration import CalibrationCache, write_qdq
from inception_deploy.calibration.qdq import prepare
from inception_deploy.calibration.ranges import float_tensors

# architectures with residual Adds where a Conv output meets a skip (fusion points of rule 3)
RESIDUAL = {
    "inception-resnet-v1",
    "inception-resnet-v2",
    "xception",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnext50_32x4d",
    "seresnet50",
    "res2net50_26w_4s",
    "resnest50d",
    "skresnet18",
    "inception_next_tiny",
}
# attention gates
GATES = {
    "seresnet50": "Sigmoid",
    "resnest50d": "Softmax",
    "skresnet18": "Softmax",
}
# ops that read float, which no other arch's graph has
FLOAT_OPS = {
    "inception_next_tiny": {"Gelu", "LayerNormalization", "BatchNormalization"},
    "densenet121": {"BatchNormalization"},
}
# no pooling layer: strided Convs downsample (and a ReduceMean pools the head)
NO_POOLS = {"inception_next_tiny"}
POOLS = ("MaxPool", "AveragePool")
HEAD = ("ReduceMean", "GlobalAveragePool", "Flatten", "Reshape", "Gemm", "MatMul")
# NVIDIA Model Optimizer 0.47 (`python -m modelopt.onnx.quantization --quantize_mode int8`) quantizes
# 72 activation tensors of this project's Inception v3 (issue 13); our placement must agree.
MODELOPT_ACTIVATION_TENSORS = {"v3": 72}


def _quantize(fp32, folder, target, seed=0, keep_float=frozenset()):
    prepared = folder / "prepared.onnx"
    prepare(fp32, prepared)
    rng = np.random.default_rng(seed)
    tensors = {
        name: {"min": -1.0, "max": 1.0, "threshold": float(rng.uniform(0.5, 8.0))}
        for name in float_tensors(onnx.load(str(prepared)))
    }
    cache = CalibrationCache("minmax", None, 1, "0" * 64, "0" * 64, tensors)
    write_qdq(prepared, cache, target, folder / f"{target}.onnx", keep_float)
    return onnx.load(str(prepared)).graph, onnx.load(str(folder / f"{target}.onnx")).graph, tensors


class Graph:
    def __init__(self, graph):
        self.graph = graph
        self.init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def op(self, tensor):
        node = self.producer.get(tensor)
        return node.op_type if node else None

    def quantized(self, tensor):
        """The float tensor behind ``tensor`` when it is the output of a Q -> DQ pair, else None."""
        dq = self.producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in self.init:
            return None
        return self.producer[dq.input[0]].input[0]

    def scale(self, tensor):
        return float(self.init[self.producer[tensor].input[1]])


@pytest.mark.parametrize("arch", EXPORTED)
def test_tensorrt_placement_follows_nvidia_rules(arch, exported, tmp_path):
    fp32_graph, graph, _ = _quantize(exported(arch).path, tmp_path, "tensorrt")
    g = Graph(graph)
    fp32 = Graph(fp32_graph)
    quantizers = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    weights = [n for n in quantizers if n.input[0] in g.init]
    activations = [n for n in quantizers if n.input[0] not in g.init]

    # symmetric int8, zero point 0, each Q read by DQs with its own scale; one Q per tensor
    for q in quantizers:
        assert g.init[q.input[2]].dtype == np.int8 and not g.init[q.input[2]].any()
        assert {c.op_type for c in g.consumers[q.output[0]]} == {"DequantizeLinear"}
        assert all(c.input[1] == q.input[1] for c in g.consumers[q.output[0]])
    assert len({q.input[0] for q in activations}) == len(activations)
    assert all(g.init[q.input[1]].ndim == 0 for q in activations)  # per tensor

    # rule 1: every Conv reads a quantized input and per-channel weights on axis 0, bias float
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(weights) == len(convs) == sum(n.op_type == "Conv" for n in fp32_graph.node)
    for conv in convs:
        assert g.quantized(conv.input[0]) is not None, conv.name
        weight_dq = g.producer[conv.input[1]]
        assert weight_dq.op_type == "DequantizeLinear" and g.producer[weight_dq.input[0]].op_type == "QuantizeLinear"
        scale = g.init[weight_dq.input[1]]
        assert scale.shape == (g.init[g.producer[weight_dq.input[0]].input[0]].shape[0],)
        assert {a.name: a.i for a in weight_dq.attribute}.get("axis", 1) == 0
        assert len(conv.input) < 3 or conv.input[2] in g.init

    # rules 1 and 5: pooling is quantized exactly when a Conv follows it
    reach_conv = set()
    for node in reversed(fp32_graph.node):
        if node.op_type == "Conv" or reach_conv.intersection(node.output):
            reach_conv.add(node.name)
            reach_conv.update(node.input)
    pools = [n for n in fp32_graph.node if n.op_type in POOLS]
    assert bool(pools) != (arch in NO_POOLS)
    for pool in (n for n in graph.node if n.op_type in POOLS):
        assert (g.quantized(pool.input[0]) is not None) == (pool.output[0] in reach_conv), pool.name

    # rule 2: nothing quantized between a Conv and its activation; no output quantized as such:
    # each quantized tensor is read by a Conv, a pool or a residual Add
    fp32_relus = {n.name: n for n in fp32_graph.node if n.op_type == "Relu"}
    for node in graph.node:
        if node.op_type == "Relu" and fp32.op(fp32_relus[node.name].input[0]) == "Conv":
            assert node.input[0] == fp32_relus[node.name].input[0], node.name  # still the Conv's own output
    for q in activations:
        readers = {c.op_type for dq in g.consumers[q.output[0]] for c in g.consumers.get(dq.output[0], [])}
        assert readers & {"Conv", "Add", *POOLS}, (q.input[0], readers)

    # rule 3: an Add one of whose inputs is a Conv output read by nothing else (a fusion point)
    # reads exactly one input quantized, the skip: the other input, or of two such Convs the
    # projection shortcut, which has fewer Convs upstream than the main branch
    def convs_upstream(tensor):
        upstream, todo = {}, [tensor]
        while todo:
            node = fp32.producer.get(todo.pop())
            if node is not None and node.name not in upstream:
                upstream[node.name] = node
                todo.extend(node.input)
        return sum(node.op_type == "Conv" for node in upstream.values())

    fp32_nodes = {n.name: n for n in fp32_graph.node}
    fusion_points = 0
    for add in (n for n in graph.node if n.op_type == "Add" and not set(n.input) & set(g.init)):
        inputs = fp32_nodes[add.name].input
        fusible = [fp32.op(t) == "Conv" and len(fp32.consumers[t]) == 1 for t in inputs]
        quantized = [g.quantized(name) for name in add.input]
        if not any(fusible):
            # a gated branch and an identity skip, Res2Net's chained groups: no Q/DQ of its own, an
            # input is quantized only because a Conv or pool reads that same tensor
            for name, behind in zip(add.input, quantized):
                assert behind is None or {c.op_type for c in g.consumers[name]} & {"Conv", *POOLS}, add.name
            continue
        fusion_points += 1
        skip = min(inputs, key=convs_upstream) if all(fusible) else inputs[fusible.index(False)]
        assert quantized == [t if t == skip else None for t in inputs], add.name
    assert bool(fusion_points) == (arch in RESIDUAL)

    # attention gates stay float: the Sigmoid / Softmax reads and writes float, so does its Mul
    gates = [n for n in graph.node if n.op_type in ("Sigmoid", "Softmax")]
    assert {n.op_type for n in gates} == ({GATES[arch]} if arch in GATES else set())
    for gate in gates:
        assert g.quantized(gate.input[0]) is None, gate.name
        assert all(c.op_type != "QuantizeLinear" for c in g.consumers[gate.output[0]]), gate.name

    # GELU, LayerNorm and unfolded BatchNorms (InceptionNeXt's, after its token mixer and before
    # each downsampling Conv; DenseNet's pre-activation ones) read float: only Conv inputs
    # (depthwise ones included, rule 1) and fusion skips are quantized
    float_ops = [n for n in graph.node if n.op_type in ("Gelu", "LayerNormalization", "BatchNormalization")]
    assert {n.op_type for n in float_ops} == FLOAT_OPS.get(arch, set())
    for node in float_ops:
        assert g.quantized(node.input[0]) is None, node.name

    # rule 4: one scale for a Concat's quantized inputs and quantized output, and for a MaxPool's
    def output_scales(tensor):
        return {
            g.scale(dq.output[0])
            for q in g.consumers.get(tensor, [])
            if q.op_type == "QuantizeLinear"
            for dq in g.consumers[q.output[0]]
        }

    for node in graph.node:
        if node.op_type in ("Concat", "MaxPool"):
            scales = {g.scale(name) for name in node.input if g.quantized(name) is not None}
            scales |= output_scales(node.output[0])
            assert len(scales) <= 1, (node.name, scales)

    # rule 5: the head and the logits stay float
    for node in graph.node:
        if node.op_type in HEAD:
            assert all(g.quantized(name) is None for name in node.input), node.name
    assert all(g.op(o.name) != "DequantizeLinear" for o in graph.output)

    if arch in MODELOPT_ACTIVATION_TENSORS:
        assert len(activations) == MODELOPT_ACTIVATION_TENSORS[arch]
    # the float graph is unchanged apart from the Q/DQ pairs
    assert Counter(n.name for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")) == Counter(
        n.name for n in fp32.graph.node
    )


@pytest.mark.parametrize("arch, patterns", [("resnet50", ["layer4.0.*", "layer1.0.conv3"]), ("v3", ["Mixed_7*"])])
def test_layers_kept_float_read_float_and_the_rules_hold_around_them(arch, patterns, exported, tmp_path):
    """--int8-keep-float on the tensorrt target: the Convs named (by PyTorch module) read float
    inputs and float weights, every other Conv stays INT8, a residual Add whose fusing Conv is float
    gets no skip Q/DQ, Concat scales stay shared, and no Q/DQ pair is left without a reader."""
    from inception_deploy.calibration.float_layers import match_modules
    from inception_deploy.graph import node_modules

    prepared = tmp_path / "modules.onnx"
    prepare(exported(arch).path, prepared)
    paths = node_modules(onnx.load(str(prepared)).graph)
    conv_nodes = {paths[n.name]: n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"}
    kept = match_modules([(p, p) for p in patterns], list(conv_nodes), arch)
    float_nodes = frozenset(conv_nodes[m] for m in kept)
    assert 2 < len(float_nodes) < len(conv_nodes) / 2
    fp32_graph, graph, _ = _quantize(exported(arch).path, tmp_path, "tensorrt", keep_float=float_nodes)
    g, fp32 = Graph(graph), Graph(fp32_graph)

    for conv in (n for n in graph.node if n.op_type == "Conv"):
        weight_from = g.op(conv.input[1])
        if conv.name in float_nodes:
            assert g.quantized(conv.input[0]) is None and weight_from is None, conv.name
        else:
            assert g.quantized(conv.input[0]) is not None and weight_from == "DequantizeLinear", conv.name
    reach_quantized_conv = set()  # rule 5 with float layers: a pool is quantized when a quantized Conv follows
    for node in reversed(fp32_graph.node):
        if (node.op_type == "Conv" and node.name not in float_nodes) or reach_quantized_conv.intersection(node.output):
            reach_quantized_conv.update(node.input)
    for pool in (n for n in graph.node if n.op_type in POOLS):
        assert (g.quantized(pool.input[0]) is not None) == (pool.output[0] in reach_quantized_conv), pool.name
    fp32_nodes = {n.name: n for n in fp32_graph.node}
    for add in (n for n in graph.node if n.op_type == "Add" and not set(n.input) & set(g.init)):
        if any(fp32.producer[t].name in float_nodes for t in fp32_nodes[add.name].input if t in fp32.producer):
            for name in add.input:  # quantized only where a quantized Conv or pool reads it anyway
                assert g.quantized(name) is None or {c.op_type for c in g.consumers[name]} & {"Conv", *POOLS}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert g.consumers.get(node.output[0]), node.name
        if node.op_type == "Concat":
            scales = {g.scale(name) for name in node.input if g.quantized(name) is not None}
            assert len(scales) <= 1, node.name
    onnx.checker.check_model(onnx.load(str(tmp_path / "tensorrt.onnx")))


def test_no_scale_or_zero_point_is_left_unread_when_layers_stay_float(v1_opset17, tmp_path):
    """The Q/DQ pairs dropped around float layers take their scales and zero points with them:
    ONNX Runtime warned about each one left ("Removing initializer '/maxpool2/..._scale'") at every
    load (issue 44). v1 with inception3a float (its Convs and its pool) leaves the pool before it
    without a quantized reader."""
    from inception_deploy.calibration.float_layers import match_modules, quantizable_layers

    prepared = tmp_path / "modules.onnx"
    prepare(v1_opset17, prepared)
    layers = quantizable_layers(onnx.load(str(prepared)).graph)
    kept = match_modules([("inception3a*", "")], list(layers), "v1")
    float_nodes = frozenset(node for module in kept for node in layers[module])
    _, graph, _ = _quantize(v1_opset17, tmp_path, "tensorrt", keep_float=float_nodes)
    read = {name for node in graph.node for name in node.input}
    assert len(kept) == 7 and [i.name for i in graph.initializer if i.name not in read] == []


def test_cpu_target_quantizes_outputs_for_qlinearconv(exported, tmp_path):
    """ONNX Runtime fuses DQ -> Conv -> Q into QLinearConv, so the cpu target quantizes Conv
    outputs too (u8), which the tensorrt target must not."""
    _, graph, _ = _quantize(exported("v1").path, tmp_path, "cpu")
    g = Graph(graph)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    quantized_outputs = [c for c in convs if any(q.op_type == "QuantizeLinear" for q in g.consumers[c.output[0]])]
    assert len(quantized_outputs) == len(convs)
    (fc,) = [n for n in graph.node if n.op_type == "Gemm"]  # the head stays float, as on the tensorrt target
    assert all(g.op(name) != "DequantizeLinear" for name in fc.input), fc.input
    assert not [c for c in g.consumers.get(fc.output[0], []) if c.op_type == "QuantizeLinear"]
    assert {
        g.init[q.input[2]].dtype for q in graph.node if q.op_type == "QuantizeLinear" and q.input[0] not in g.init
    } == {np.dtype(np.uint8)}


def test_cpu_target_leaves_normalizations_without_int8_kernels_float(exported, tmp_path):
    """InceptionNeXt on the cpu target: its LayerNorm reads float and no BatchNorm or LayerNorm
    weight is quantized (ONNX Runtime has no int8 kernel for either), while every Conv, depthwise
    ones included, is QLinearConv-ready. Its Convs keep their module names through ONNX Runtime's
    fusion of the layer scale (a weight named ConvMulFusion_W_stages.1.blocks.2.mlp.fc2.weight:
    the budget search kept "modules" of that name float, and no --int8-keep-float could name them)."""
    from inception_deploy.graph import node_modules

    prepared, graph, _ = _quantize(exported("inception_next_tiny").path, tmp_path, "cpu")
    convs = [n.name for n in prepared.node if n.op_type == "Conv"]
    modules = node_modules(prepared)
    assert "stages.1.blocks.2.mlp.fc2" in {modules[c] for c in convs} and not any(
        "Fusion" in m for m in modules.values()
    )
    g = Graph(graph)
    norms = [n for n in graph.node if n.op_type in ("LayerNormalization", "BatchNormalization")]
    assert {n.op_type for n in norms} == {"LayerNormalization", "BatchNormalization"}
    for node in norms:
        assert all(g.op(name) != "DequantizeLinear" for name in node.input[1:]), node.name
        if node.op_type == "LayerNormalization":
            assert g.quantized(node.input[0]) is None, node.name
    assert len([n for n in norms if n.op_type == "LayerNormalization"]) == 1
    for conv in (n for n in graph.node if n.op_type == "Conv"):
        assert g.quantized(conv.input[0]) is not None and g.op(conv.input[1]) == "DequantizeLinear", conv.name
        assert {c.op_type for c in g.consumers[conv.output[0]]} == {"QuantizeLinear"}, conv.name
    # its MLP head (Gemm, GELU, LayerNorm, Gemm) float: quantized op by op it flipped 15 and 16 of
    # 1,000 stand-in images on ONNX Runtime and OpenVINO, float 10 and 8 (docs/precision.md)
    pool = next(i for i, n in enumerate(graph.node) if n.op_type == "ReduceMean")
    head = [n for n in graph.node[pool + 1 :] if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    assert [n.op_type for n in head if n.op_type == "Gemm"] == ["Gemm", "Gemm"]
    for node in head:
        assert all(g.op(name) != "DequantizeLinear" for name in node.input), node.name


class _SharedBranch(torch.nn.Module):
    """A branch read by a Concat and by a Conv of its own: the case where rule 4 must unify scales
    (the zoo's Inception blocks only quantize Concat outputs)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(3, 4, 1)
        self.after_concat, self.after_a = torch.nn.Conv2d(8, 4, 1), torch.nn.Conv2d(4, 4, 1)

    def forward(self, x):
        a, b = torch.relu(self.a(x)), torch.relu(self.b(x))
        return self.after_concat(torch.cat([a, b], 1)) + self.after_a(a)


def test_a_concat_input_read_elsewhere_shares_the_concat_scale(tmp_path):
    torch.onnx.export(
        _SharedBranch().eval(), torch.randn(1, 3, 8, 8), tmp_path / "shared.onnx", dynamo=False, opset_version=17
    )
    _, graph, ranges = _quantize(tmp_path / "shared.onnx", tmp_path, "tensorrt")
    g = Graph(graph)
    concat = next(n for n in graph.node if n.op_type == "Concat")
    quantized_inputs = [name for name in concat.input if g.quantized(name) is not None]
    assert len(quantized_inputs) == 1  # the branch read by the other Conv
    after = next(c for c in g.consumers[concat.output[0]] if c.op_type == "QuantizeLinear")
    assert g.scale(quantized_inputs[0]) == float(g.init[after.input[1]])
    # the Concat output's range, calibrated over all its inputs
    assert g.scale(quantized_inputs[0]) == pytest.approx(ranges[concat.output[0]]["threshold"] / 127, rel=1e-6)


class _Projection(torch.nn.Module):
    """A projection block straight from the graph input, its Add inputs in either order."""

    def __init__(self, shortcut_first: bool):
        super().__init__()
        self.shortcut_first = shortcut_first
        self.shortcut, self.reduce, self.expand = (
            torch.nn.Conv2d(3, 8, 1),
            torch.nn.Conv2d(3, 4, 1),
            torch.nn.Conv2d(4, 8, 3, padding=1),
        )

    def forward(self, x):
        main, shortcut = self.expand(torch.relu(self.reduce(x))), self.shortcut(x)
        return torch.relu(shortcut + main if self.shortcut_first else main + shortcut)


@pytest.mark.parametrize("shortcut_first", [True, False])
def test_of_two_convs_meeting_at_an_add_the_projection_shortcut_is_quantized(shortcut_first, tmp_path):
    torch.onnx.export(
        _Projection(shortcut_first).eval(),
        torch.randn(1, 3, 8, 8),
        tmp_path / "p.onnx",
        dynamo=False,
        opset_version=17,
        input_names=["input"],
    )
    fp32_graph, graph, _ = _quantize(tmp_path / "p.onnx", tmp_path, "tensorrt")
    fp32, g = Graph(fp32_graph), Graph(graph)
    add = next(n for n in graph.node if n.op_type == "Add")
    inputs = next(n for n in fp32_graph.node if n.op_type == "Add").input
    # the shortcut is the Conv that reads the graph input and feeds the Add
    shortcut = next(t for t in inputs if fp32.producer[t].input[0] == "input")
    assert [g.quantized(name) for name in add.input] == [t if t == shortcut else None for t in inputs]
