"""Empirical bias correction of quantized Convs, before any layer is kept float.

Rounding a Conv's input and weights shifts the mean of its output, channel by channel (clipped
activation ranges, asymmetric weight rounding); the shift adds up through the network. Measured on
calibration images with each Conv fed FP32's own input (as NNCF's fast bias correction does), the
shift of one Conv depends only on its own Q/DQ pairs, so it is measured once on the full INT8
placement and added to the Conv's bias in every placement the budget search writes.
"""

from __future__ import annotations

import numpy as np

from ..graph import static_batch
from .qdq import graph_tables, quantized_convs_in
from .sensitivity import run_graph

BIAS_IMAGES = 32  # calibration images the shifts are measured on


def correction_images(folder, config, exclude=()) -> np.ndarray:
    """``BIAS_IMAGES`` images of the calibration ``folder`` (spread over it, the held-out ones
    ``exclude`` left aside), preprocessed; unreadable ones passed over (calibration counts them),
    so there may be fewer, or none."""
    from ..inputs import decoded, image_folder, spread
    from ..preprocess import normalize

    left_out = set(exclude)
    files = [f for f in image_folder(folder).files if f not in left_out]
    images = list(decoded(spread(files, BIAS_IMAGES), config, []))
    return normalize(np.stack(images), config) if images else np.zeros((0, 3, config.input_size, config.input_size))


def bias_shifts(prepared_path, qdq_path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Conv node -> per-output-channel mean of (FP32 output - INT8 output) for each quantized Conv
    of the Q/DQ graph at ``qdq_path`` (``conv_outputs``)."""
    return {
        name: (expected - got).astype(np.float64).mean(axis=(0, 2, 3))
        for name, expected, got in conv_outputs(prepared_path, qdq_path, images)
    }


def conv_outputs(prepared_path, qdq_path, images: np.ndarray):
    """(Conv node, FP32 output, INT8 output) for each quantized Conv of the Q/DQ graph at
    ``qdq_path``, each fed the input the prepared FP32 graph gives it on ``images``: the error of
    its own rounding alone."""
    import onnx

    fp32, qdq = onnx.load(str(prepared_path)), onnx.load(str(qdq_path))
    _, producers = graph_tables(qdq.graph)
    pairs = quantized_convs(fp32, qdq, producers)
    runs = fp32_values(fp32, [name for node, _ in pairs for name in (node.input[0], node.output[0])], images)
    batch = static_batch(fp32.graph)
    for i, (_, conv) in enumerate(pairs):
        x, expected = runs[2 * i], runs[2 * i + 1]
        yield conv.name, expected, run_graph(_alone(qdq, conv, producers), x, ["y"], batch)[0]


def quantized_convs(fp32, qdq, producers: dict) -> list[tuple]:
    """(the prepared FP32 graph's Conv node, the Q/DQ graph's) for each Conv quantized in ``qdq``
    (``producers``: its tensors' producing nodes, ``qdq.graph_tables``)."""
    by_name = {n.name: n for n in fp32.graph.node}
    return [(node, conv) for conv, node in quantized_convs_in(qdq.graph, by_name, producers)]


def fp32_values(fp32, names: list[str], images: np.ndarray) -> list[np.ndarray]:
    """The tensors ``names`` of the prepared FP32 graph ``fp32`` (a proto it changes) on ``images``,
    in batches of its static batch, else eight at a time."""
    import onnx

    fp32.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    return run_graph(fp32, images, names, static_batch(fp32.graph))


def _alone(proto, conv, producers):
    """A model of ``conv`` alone as the Q/DQ graph computes it: its input's Q/DQ pair (the float
    tensor behind it is the model's input), its weights and bias with their Q/DQ nodes."""
    import onnx

    nodes, needed = [], []
    pending = list(conv.input)
    first = producers[conv.input[0]]  # the input's DequantizeLinear
    source = producers[first.input[0]].input[0] if first.input[0] in producers else first.input[0]
    while pending:
        name = pending.pop()
        node = producers.get(name)
        if node is None or name == source:
            needed.append(name)
            continue
        nodes.append(node)
        pending.extend(node.input)
    initializers = [init for init in proto.graph.initializer if init.name in set(needed)]
    order = {id(node): i for i, node in enumerate(proto.graph.node)}
    nodes = sorted({id(n): n for n in nodes}.values(), key=lambda n: order[id(n)])
    copy = onnx.NodeProto()
    copy.CopyFrom(conv)
    copy.output[0] = "y"
    x = onnx.helper.make_tensor_value_info(source, onnx.TensorProto.FLOAT, None)
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    graph = onnx.helper.make_graph([*nodes, copy], "alone", [x], [y], initializers)
    return onnx.helper.make_model(graph, opset_imports=proto.opset_import, ir_version=proto.ir_version)
