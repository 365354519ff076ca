"""How much each quantized layer (a Conv or pool with its input Q/DQ) costs the logits when it
alone is INT8.

From the INT8 graph written once (every Conv quantized), each layer's variant is a rewiring, not a
new quantization: every other node reads the float tensors behind its DequantizeLinear inputs, so
only that layer's input (and a Conv's weights) stay on the INT8 grid. Everything before that layer
then computes what FP32 computes, so a variant runs only the part of the network after the last
*cut* before the layer (a tensor through which every path passes, such as an Inception block's
Concat), fed with the FP32 activations of that cut computed once. Its logits are compared with
FP32's (mean squared error). A layer's own rounding error, measured in one pass, ranked layers no
better than chance on the trained test classifier (Spearman 0.07 with this measure: errors of early
layers grow through the network; scripts/int8_sensitivity.py at commit 8ebb30c), so the logits are
what is measured. The INT8 search (``calibration.budget``) keeps layers float in this order and judges
every placement it tries on held-out images. A cpu-target file stores its weights as int8: there the
weights stay as stored and each layer's input rounding alone is ranked (``layer_sensitivity``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InceptionDeployError, setting
from ..graph import fused_relus, load_onnx, node_modules, static_batch
from ..metadata import onnx_metadata
from ..runtime.base import padded_chunks
from ..runtime.onnxruntime_backend import session_options
from .qdq import QUANTIZED_OPS, float_behind_qdq

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class LayerSensitivity:
    node: str  # the Conv or pooling node of the prepared graph
    module: str  # its PyTorch module path
    error: float  # mean squared logits error against FP32 with this layer alone INT8


@dataclass
class SensitivityReport:
    """``inception-parity --sensitivity``: an INT8 file's layers, most sensitive first."""

    reference: str
    candidate: str
    images: int
    layers: list[LayerSensitivity]

    def table(self) -> str:
        from tabulate import tabulate

        total = sum(layer.error for layer in self.layers) or 1.0
        rows = [
            [rank, layer.module or "?", layer.node, f"{layer.error:.3g}", f"{layer.error / total:.1%}"]
            for rank, layer in enumerate(self.layers, 1)
        ]
        headers = ["rank", "PyTorch module", "node", "logits MSE alone INT8", "share of the sum"]
        return tabulate(rows, headers, tablefmt="github")

    def summary(self) -> str:
        top = list(dict.fromkeys(layer.module for layer in self.layers if layer.module))[:3]
        keep = " ".join(f"{setting('Int8Request.keep_float')} {module}" for module in top)
        return (
            f"{self.candidate}: {len(self.layers)} quantized layers ranked on {self.images} images; "
            f"to keep the most sensitive float: {keep or '(no module names in this file)'}"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def draw(self, ax, top: int = 20) -> None:
        """The ``top`` most sensitive layers as bars, the most sensitive on top."""
        shown = self.layers[:top]
        ax.barh(range(len(shown)), [layer.error for layer in shown], color="tab:orange")
        ax.set_yticks(range(len(shown)), [layer.module or layer.node for layer in shown], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("logits MSE with the layer alone INT8")
        ax.set_title(
            f"{Path(self.candidate).name}: the {len(shown)} most sensitive of {len(self.layers)} quantized layers, "
            f"{self.images} images",
            fontsize=10,
        )
        ax.grid(axis="x", alpha=0.3)


def ranked_files(candidates) -> list:
    """The INT8 files among ``candidates`` (made from one FP32 ONNX: ``verify.layerwise_files``;
    FP16 files have no layer to rank); one line, before any slow work, for one with an FP16
    remainder (whose own rounding every layer's error would carry), or when none is left."""
    ranked = []
    for path in candidates:
        proto = load_onnx(path)
        meta = onnx_metadata(proto, path)
        if meta is None or meta.precision != "int8":
            continue
        if meta.int8_remainder != "fp32":
            raise InceptionDeployError(
                f"{path}: {setting('sensitivity')} ranks INT8 files with an FP32 remainder, this one's is FP16"
            )
        ranked.append(path)
    if not ranked:
        raise InceptionDeployError(f"{setting('sensitivity')} needs an INT8 file")
    return ranked


def _stores_int8_weights(graph) -> bool:
    """Whether a DequantizeLinear reads integer initializers: the cpu target's weights; the
    tensorrt target's are float initializers behind a Q/DQ pair."""
    integer = {init.name for init in graph.initializer if init.data_type in (2, 3)}  # UINT8, INT8
    return any(node.op_type == "DequantizeLinear" and node.input[0] in integer for node in graph.node)


def file_sensitivity(reference, candidate, images: np.ndarray) -> SensitivityReport:
    """The layers of the tensorrt-target INT8 file ``candidate`` (``ranked_files``), most sensitive
    first, against the FP32 ``reference`` it was made from, on ``images``."""
    from ..runtime.onnxruntime_backend import OnnxRuntimeBackend

    fp32_logits = OnnxRuntimeBackend(reference).infer(images)
    modules = node_modules(load_onnx(candidate).graph)
    layers = layer_sensitivity(candidate, fp32_logits, images, modules)
    return SensitivityReport(str(reference), str(candidate), len(images), layers)


def layer_sensitivity(
    int8_path, fp32_logits: np.ndarray, images: np.ndarray, modules: dict[str, str]
) -> list[LayerSensitivity]:
    """The layers of the INT8 graph at ``int8_path`` with a quantized input (Convs and pools), most
    sensitive first (``modules``: node name -> module path; ``fp32_logits``: FP32's on ``images``).

    A cpu-target graph stores its weights as int8, which cannot be read float again: there every
    layer keeps its dequantized weights, the reference is that network with every activation float
    (not ``fp32_logits``), and the ranking is of each layer's activation rounding alone."""
    import onnx

    proto = onnx.load(str(int8_path))
    graph = proto.graph
    float_of = float_behind_qdq(graph)
    int8_weights = _stores_int8_weights(graph)
    unfused = {}  # ReLU output -> its input: cuts see through them, as a layer's quantized input reads the input
    if int8_weights:  # the cpu target: the ReLUs ONNX Runtime let Q/DQ pairs stand for, back as ReLUs
        for pair, tensor in fused_relus(graph).items():
            at = next(i for i, node in enumerate(graph.node) if node.output[0] == pair) + 1
            relu = onnx.helper.make_node("Relu", [tensor], [f"{tensor}_unfused_relu"], name=f"{tensor}_unfused_relu")
            graph.node.insert(at, relu)
            float_of[pair] = relu.output[0]
            unfused[relu.output[0]] = tensor
    quantized = {n.name: list(n.input) for n in graph.node if n.op_type in QUANTIZED_OPS and n.input[0] in float_of}
    for node in graph.node:  # the FP32 network, Q/DQ pairs left unread
        node.input[:] = [float_of.get(name, name) for name in node.input]
    cuts = _cuts(graph, unfused)
    position = {node.name: i for i, node in enumerate(graph.node)}
    cut_of = {name: max((t for t, p in cuts.items() if p < position[name]), key=cuts.get) for name in quantized}
    feed = graph.input[0].name
    inner = sorted({cut for cut in cut_of.values() if cut != feed})
    marked = onnx.ModelProto()
    marked.CopyFrom(proto)
    marked.graph.output.extend(onnx.ValueInfoProto(name=name) for name in inner)
    batch = static_batch(graph)
    if int8_weights:
        fp32_logits = run_graph(proto, images, batch=batch)
    activations = {feed: images, **dict(zip(inner, run_graph(marked, images, inner, batch)))}
    ranked = []
    for name, inputs in quantized.items():
        layer, cut = graph.node[position[name]], cut_of[name]
        float_inputs = list(layer.input)
        layer.input[:] = inputs
        logits = run_graph(_suffix(proto, cut, activations[cut]), activations[cut], batch=batch)
        layer.input[:] = float_inputs
        error = float(np.mean((logits - fp32_logits) ** 2))
        ranked.append(LayerSensitivity(name, modules.get(name, ""), error))
    return sorted(ranked, key=lambda layer: -layer.error)


def _cuts(graph, stands_for: dict[str, str] | None = None) -> dict[str, int]:
    """Tensor -> the index in ``graph.node`` of the node after which it is the only live tensor
    (-1: the graph input), Q/DQ nodes aside: every later node depends on the input through it
    alone. Constants (what nodes reading only initializers and constants write) are not live
    tensors; the graph's outputs are live to the end. ``stands_for``: tensors whose reading is a
    reading of another (an unfused ReLU's output: a layer's quantized input reads its input), their
    producers aside too."""
    stands_for = stands_for or {}
    constants = {init.name for init in graph.initializer}
    computed = []
    for node in graph.node:
        if node.op_type in QDQ_OPS or node.output[0] in stands_for:
            continue
        if all(not name or name in constants for name in node.input):
            constants.update(node.output)
        else:
            computed.append(node)
    index = {id(n): i for i, n in enumerate(graph.node)}
    last_use: dict[str, int] = {out.name: len(computed) for out in graph.output}
    for i, node in enumerate(computed):
        for name in node.input:
            name = stands_for.get(name, name)
            last_use[name] = max(last_use.get(name, -1), i)
    live = {graph.input[0].name}
    cuts = {graph.input[0].name: -1}
    for i, node in enumerate(computed):
        live = {t for t in live if last_use.get(t, -1) > i} | {t for t in node.output if last_use.get(t, -1) > i}
        if len(live) == 1:
            (tensor,) = live
            cuts.setdefault(tensor, index[id(node)])
    return cuts


def _suffix(proto, cut: str, activation: np.ndarray):
    """The part of ``proto`` from the tensor ``cut`` (which becomes its input, typed and shaped as
    ``activation``) to its first output."""
    import onnx

    graph = proto.graph
    needed = {graph.output[0].name}
    nodes = []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            nodes.append(node)
            needed.update(name for name in node.input if name != cut)
    initializers = [init for init in graph.initializer if init.name in needed]
    element = onnx.helper.np_dtype_to_tensor_dtype(activation.dtype)
    cut_input = onnx.helper.make_tensor_value_info(cut, element, ["N", *activation.shape[1:]])
    sub = onnx.helper.make_graph(list(reversed(nodes)), "suffix", [cut_input], [graph.output[0]], initializers)
    return onnx.helper.make_model(sub, opset_imports=proto.opset_import, ir_version=proto.ir_version)


def conv_macs(path, image: np.ndarray) -> dict[str, int]:
    """Conv node -> its multiply-adds per image, from one run with every Conv output marked."""
    import onnx

    proto = onnx.load(str(path))
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    float_of = float_behind_qdq(proto.graph)
    kernels = {init.name: init.dims for init in proto.graph.initializer}  # Cout, Cin / groups, kh, kw
    proto.graph.output.extend(onnx.ValueInfoProto(name=c.output[0]) for c in convs)
    values = run_graph(proto, image, [c.output[0] for c in convs], static_batch(proto.graph))
    return {
        conv.name: int(np.prod(value.shape[1:]) * np.prod(kernels[float_of.get(conv.input[1], conv.input[1])][1:]))
        for conv, value in zip(convs, values)
    }


def run_graph(proto, inputs: np.ndarray, outputs: list[str] | None = None, batch: int | None = None):
    """The logits of ``proto`` on ``inputs`` (eight at a time, or ``batch``: the static batch of the
    file it was cut from, whose reshapes may hold it), or the tensors named ``outputs``."""
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    chunks = padded_chunks(inputs, batch or 8, batch or 1)
    batches = [[tensor[:real] for tensor in session.run(outputs, {feed: chunk})] for chunk, real in chunks]
    if outputs is None:
        return np.concatenate([batch[0] for batch in batches])
    return [np.concatenate(tensors) for tensors in zip(*batches)]
