"""How much each quantized Conv loses to its own INT8 rounding, for all of them in one pass.

Every Conv the target quantizes gets a twin in a copy of the FP32 graph: the same Conv reading its
input through the target's Q/DQ (the calibrated range) and weights rounded to the target's grid
(per output channel). One ONNX Runtime run over a few images then gives each layer's own error,
||twin - conv|| / ||conv||, on the FP32 activations: no model re-quantized or re-run per layer.
The INT8 search (``export.budget``) keeps layers float in this order and judges every placement
it tries on held-out images, so a ranking that is off costs float layers, never the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cache import CalibrationCache
from .qdq import WEIGHT_BITS, target_ranges, tensorrt_placement


@dataclass
class LayerSensitivity:
    node: str  # the Conv node of the prepared graph
    module: str  # its PyTorch module path
    error: float  # ||twin - conv|| / ||conv|| over the images: this layer's rounding alone
    macs: int  # multiply-adds per image


def conv_sensitivity(
    prepared, cache: CalibrationCache, target: str, images: np.ndarray, modules: dict[str, str], batch: int = 8
) -> list[LayerSensitivity]:
    """The quantized Convs of the prepared FP32 graph, most sensitive first (``modules``: node
    name -> module path, ``metadata.module_paths``)."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(prepared))
    graph = proto.graph
    if target == "tensorrt":
        placement = tensorrt_placement(graph)
        quantized, ranges = set(placement.nodes), target_ranges(cache, target, placement.range_of)
    else:
        quantized, ranges = {n.name for n in graph.node}, target_ranges(cache, target)
    weights = {init.name: init for init in graph.initializer}
    convs = [
        n
        for n in graph.node
        if n.op_type == "Conv" and n.name in quantized and n.input[0] in ranges and n.input[1] in weights
    ]
    pairs = {}
    for conv in convs:
        pairs[conv.name] = (
            conv.output[0],
            _add_twin(graph, conv, ranges[conv.input[0]], weights[conv.input[1]], target),
        )
    del graph.output[:]
    for original, twin in pairs.values():
        graph.output.extend([onnx.ValueInfoProto(name=original), onnx.ValueInfoProto(name=twin)])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [name for pair in pairs.values() for name in pair]
    squared = {conv: [0.0, 0.0] for conv in pairs}
    shapes = {}
    for start in range(0, len(images), batch):
        outputs = dict(zip(names, session.run(names, {graph.input[0].name: images[start : start + batch]})))
        for conv, (original, twin) in pairs.items():
            reference = outputs[original].astype(np.float64)
            squared[conv][0] += float(np.sum((outputs[twin] - reference) ** 2))
            squared[conv][1] += float(np.sum(reference**2))
            shapes[conv] = reference.shape[1:]
    ranked = []
    for conv in convs:
        error, norm = squared[conv.name]
        kernel = weights[conv.input[1]].dims  # Cout, Cin / groups, kh, kw
        macs = int(np.prod(shapes[conv.name]) * np.prod(kernel[1:]))
        ranked.append(
            LayerSensitivity(conv.name, modules.get(conv.name, ""), float(np.sqrt(error / max(norm, 1e-300))), macs)
        )
    return sorted(ranked, key=lambda layer: -layer.error)


def _add_twin(graph, conv, activation_range: tuple[float, float], weight, target: str) -> str:
    """A copy of ``conv`` reading its input through Q/DQ and its weights rounded; its output name."""
    import onnx
    from onnx import numpy_helper

    low, high = activation_range
    if target == "tensorrt":  # symmetric int8
        scale, zero = max(high, 1e-12) / 127, np.array(0, np.int8)
    else:  # asymmetric uint8, as ONNX Runtime computes it
        scale = max(high - low, 1e-12) / 255
        zero = np.array(np.clip(round(-low / scale), 0, 255), np.uint8)
    prefix = f"{conv.name}_sensitivity"
    w = numpy_helper.to_array(weight).astype(np.float64)
    top = 2 ** (WEIGHT_BITS[target] - 1) - 1  # 127, or 63 for 7-bit weights
    channel_scale = np.maximum(np.abs(w).reshape(len(w), -1).max(1), 1e-12).reshape(-1, *[1] * (w.ndim - 1)) / top
    rounded = (np.clip(np.round(w / channel_scale), -top, top) * channel_scale).astype(np.float32)
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(scale, np.float32), f"{prefix}_scale"),
            numpy_helper.from_array(zero, f"{prefix}_zero"),
            numpy_helper.from_array(rounded, f"{prefix}_weight"),
        ]
    )
    graph.node.extend(
        [
            onnx.helper.make_node(
                "QuantizeLinear", [conv.input[0], f"{prefix}_scale", f"{prefix}_zero"], [f"{prefix}_q"]
            ),
            onnx.helper.make_node(
                "DequantizeLinear", [f"{prefix}_q", f"{prefix}_scale", f"{prefix}_zero"], [f"{prefix}_dq"]
            ),
        ]
    )
    twin = onnx.helper.make_node(
        "Conv", [f"{prefix}_dq", f"{prefix}_weight", *conv.input[2:]], [f"{prefix}_out"], name=f"{prefix}_conv"
    )
    twin.attribute.extend(conv.attribute)
    graph.node.append(twin)
    return twin.output[0]
