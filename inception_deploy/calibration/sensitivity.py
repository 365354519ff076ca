"""How much each quantized layer (a Conv or pool with its input Q/DQ) costs the logits when it
alone is INT8.

From the INT8 graph written once (every Conv quantized), each layer's variant is a rewiring, not a
new quantization: every other node reads the float tensors behind its DequantizeLinear inputs, so
only that layer's input (and a Conv's weights) stay on the INT8 grid. Each variant runs on a few images and
its logits are compared with FP32's (mean squared error). A layer's own rounding error, measured in
one pass, ranked layers no better than chance on the trained test classifier (Spearman 0.07 with
this measure: errors of early layers grow through the network; scripts/int8_sensitivity.py at
commit 8ebb30c), so
the logits are what is measured. The INT8 search (``export.budget``) keeps layers float in this
order and judges every placement it tries on held-out images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .qdq import QUANTIZED_OPS, float_behind_qdq


@dataclass
class LayerSensitivity:
    node: str  # the Conv or pooling node of the prepared graph
    module: str  # its PyTorch module path
    error: float  # mean squared logits error against FP32 with this layer alone INT8


def layer_sensitivity(
    int8_path, fp32_logits: np.ndarray, images: np.ndarray, modules: dict[str, str]
) -> list[LayerSensitivity]:
    """The layers of the INT8 graph at ``int8_path`` with a quantized input (Convs and pools), most
    sensitive first (``modules``: node name -> module path; ``fp32_logits``: FP32's on ``images``)."""
    import onnx

    proto = onnx.load(str(int8_path))
    graph = proto.graph
    float_of = float_behind_qdq(graph)
    layers = [n for n in graph.node if n.op_type in QUANTIZED_OPS and n.input[0] in float_of]
    ranked = []
    for layer in layers:
        original = {node.name: list(node.input) for node in graph.node}
        for node in graph.node:
            if node is not layer:
                node.input[:] = [float_of.get(name, name) for name in node.input]
        error = float(np.mean((_run(proto, images) - fp32_logits) ** 2))
        for node in graph.node:
            node.input[:] = original[node.name]
        ranked.append(LayerSensitivity(layer.name, modules.get(layer.name, ""), error))
    return sorted(ranked, key=lambda layer: -layer.error)


def conv_macs(path, image: np.ndarray) -> dict[str, int]:
    """Conv node -> its multiply-adds per image, from one run with every Conv output marked."""
    import onnx

    proto = onnx.load(str(path))
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    float_of = float_behind_qdq(proto.graph)
    kernels = {init.name: init.dims for init in proto.graph.initializer}  # Cout, Cin / groups, kh, kw
    proto.graph.output.extend(onnx.ValueInfoProto(name=c.output[0]) for c in convs)
    values = _run(proto, image, [c.output[0] for c in convs])
    return {
        conv.name: int(np.prod(value.shape[1:]) * np.prod(kernels[float_of.get(conv.input[1], conv.input[1])][1:]))
        for conv, value in zip(convs, values)
    }


def _run(proto, images: np.ndarray, outputs=None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    if outputs is not None:
        return session.run(outputs, {feed: images})
    return np.concatenate([session.run(None, {feed: images[i : i + 8]})[0] for i in range(0, len(images), 8)])
