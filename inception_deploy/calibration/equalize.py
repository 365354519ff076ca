"""Cross-layer equalization: channels of a tensor that a Conv reads brought to similar ranges,
before calibration, without changing what the network computes.

An activation is quantized with one scale for all its channels (per tensor), so a channel whose
values are a hundred times smaller than its neighbours' keeps only a few steps. Where a tensor
flows from one layer into a Conv and nowhere else (Conv -> [Relu] -> Conv, BatchNormalization ->
Conv), channel i can be divided by s_i in the first layer and the Conv's weights reading it
multiplied by s_i: ReLU(x / s) = ReLU(x) / s for s > 0, so the output is unchanged (Nagel et al.,
"Data-Free Quantization Through Weight Equalization and Bias Correction", 2019). Nagel et al. choose
s from the two layers' weight ranges, which equalizes per-tensor weights; ours are per output
channel already, so s balances what is still per tensor, the activation, against the Conv's weights
reading it: s_i = a_i^alpha / w_i^(1 - alpha), a_i the channel's largest magnitude on calibration
images, w_i the largest weight reading it (SmoothQuant's rule, Xiao et al. 2023; at alpha 1/2 both
become sqrt(a_i w_i)). Per pair, alpha is chosen, or the pair left alone, by the Conv's output
error with its input and weights quantized in simulation, and only pairs whose channels are far
apart are touched (``choose_scales``). The first layer's weights change per
output channel only, which their per-channel scales absorb. InceptionNeXt's batch norm before each
MLP (after the depthwise token mixer) and GoogLeNet's 1x1 reductions before their 3x3 and 5x5
Convs are such pairs; a Conv output that also feeds a residual sum or a concatenation is not.

Opt-in (``Int8Request.equalize``): where channel ranges are far apart it lowers the Conv's error
several times over (tests/test_precision.py plants such a drift); the stand-ins and the GoogLeNet
trained on digits, whose batch norms keep channels alike, have no such pair (docs/precision.md).

The equalized graph is what gets calibrated and quantized; the tensors between each pair hold the
FP32 values divided by s, which the file records (``Metadata.int8_equalization``) so the layerwise
view compares them as FP32 values again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bias import fp32_values
from .qdq import graph_readers, graph_tables

LIMIT = 100.0  # s within [1/LIMIT, LIMIT]: a near-dead channel is not blown up
ALPHAS = (0.25, 0.5, 0.75)  # how much of each channel's range moves into the weights (SmoothQuant's alpha)
SPREAD = 4.0  # equalize only where the largest channel's range is SPREAD times the 10th percentile's or more
IMAGES = 16  # calibration images the ranges and errors are measured on
WINDOW = 32  # rows and columns of each input the error is simulated on


@dataclass(frozen=True)
class Pair:
    """A layer whose output channels are divided (``first``: Conv or BatchNormalization), the Conv
    that alone reads them (``second``, not grouped), and the tensors between the two (the first's
    output, a ReLU's) that hold the divided values."""

    first: str
    second: str
    tensors: tuple[str, ...]


def equalization_pairs(graph) -> list[Pair]:
    """Every pair of the prepared graph whose scales can move from one layer to the next: the first
    layer's weights (and bias) or batch-norm parameters are initializers, its output reaches only
    the second through ReLUs, and the second is an ungrouped Conv with initializer weights."""
    initializers, _ = graph_tables(graph)
    readers = graph_readers(graph)
    outputs = {o.name for o in graph.output}
    pairs = []
    for node in graph.node:
        if node.op_type not in ("Conv", "BatchNormalization") or not _parameters_known(node, initializers):
            continue
        tensors = [node.output[0]]
        while len(readers.get(tensors[-1], [])) == 1 and readers[tensors[-1]][0].op_type == "Relu":
            tensors.append(readers[tensors[-1]][0].output[0])
        following = readers.get(tensors[-1], [])
        if any(t in outputs for t in tensors) or len(following) != 1:
            continue
        second = following[0]
        if second.op_type == "Conv" and second.input[0] == tensors[-1] and _ungrouped(second, initializers):
            pairs.append(Pair(node.name, second.name, tuple(tensors)))
    return pairs


def equalize(proto, images: np.ndarray, target: str, weight_bits: int) -> dict[str, np.ndarray]:
    """Equalize the pairs of the prepared graph ``proto`` (changed in place) where that lowers the
    second Conv's simulated output error on ``images`` (``choose_scales``); returns tensor -> the
    per-channel divisors s its values now carry (the tensors between each equalized pair)."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    pairs = equalization_pairs(graph)
    if not pairs or not len(images):
        return {}
    measured = fp32_values(_copy(proto), [pair.tensors[-1] for pair in pairs], images[:IMAGES])
    initializers, _ = graph_tables(graph)
    nodes = {n.name: n for n in graph.node}
    reads = {name: len(nodes_reading) for name, nodes_reading in graph_readers(graph).items()}
    divisors = {}
    for pair, x in zip(pairs, measured):
        first, second = nodes[pair.first], nodes[pair.second]
        weights = numpy_helper.to_array(initializers[second.input[1]]).astype(np.float64)
        attributes = {a.name: helper.get_attribute_value(a) for a in second.attribute}
        s = choose_scales(x, weights, attributes, target, weight_bits)
        if s is None:
            continue
        _own(graph, second, 1, initializers, reads)
        _set(initializers[second.input[1]], weights * s.reshape(1, -1, 1, 1))
        scaled = (1, 2) if first.op_type == "BatchNormalization" else range(1, len(first.input))
        for index in scaled:  # Conv: weights and bias; BatchNormalization: scale and B (mean and var stay)
            if first.input[index]:
                _own(graph, first, index, initializers, reads)
                values = numpy_helper.to_array(initializers[first.input[index]]).astype(np.float64)
                _set(initializers[first.input[index]], values / s.reshape(-1, *[1] * (values.ndim - 1)))
        divisors.update({tensor: s.astype(np.float32) for tensor in pair.tensors})
    return divisors


def choose_scales(x: np.ndarray, weights: np.ndarray, attributes: dict, target: str, weight_bits: int):
    """The divisors s_i = a_i^alpha / w_i^(1 - alpha) (alpha in ALPHAS; 1/2 is the balance above)
    whose simulated quantization of the Conv reading ``x`` gives the lowest output error, or None
    where that is no lower than leaving the pair as it is, or where the channels' ranges lie within
    SPREAD of each other (at most 2.8 in the stand-ins and the digits GoogLeNet, where the
    simulation, which does not clip as entropy calibration does, chose pairs whose real error then
    rose: docs/precision.md). Simulated: the activation per tensor over its own minimum and maximum
    (uint8 on the cpu target, symmetric int8 on tensorrt), the weights per output channel with
    ``weight_bits``, on a window of ``x``."""
    activation = np.abs(x).max(axis=(0, 2, 3)).astype(np.float64)
    alive = activation[activation > 0]
    if not len(alive) or alive.max() < SPREAD * np.percentile(alive, 10):
        return None
    weight = np.abs(weights).max(axis=(0, 2, 3))
    candidates = [np.ones_like(activation)] + [channel_scales(activation, weight, alpha) for alpha in ALPHAS]
    window = x[:, :, :WINDOW, :WINDOW]
    errors = [simulated_error(window, weights, s, attributes, target, weight_bits) for s in candidates]
    best = int(np.argmin(errors))
    return candidates[best] if errors[best] < errors[0] else None


def equalized_digest(graph_sha: str, divisors: dict[str, np.ndarray]) -> str:
    """The digest a calibration of the equalized graph is cached under: the source graph's and the
    divisors' (the same graph and images give the same divisors, so the cache is found again); the
    source graph's where nothing was equalized."""
    import hashlib

    if not divisors:
        return graph_sha
    h = hashlib.sha256(graph_sha.encode())
    for tensor, s in sorted(divisors.items()):
        h.update(tensor.encode() + b"\0" + np.asarray(s, np.float32).tobytes())
    return h.hexdigest()


def channel_scales(activation: np.ndarray, weight: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """s_i = a_i^alpha / w_i^(1 - alpha), 1 where a channel or its weights are all zero, within
    the LIMIT."""
    s = np.ones_like(activation)
    alive = (activation > 0) & (weight > 0)
    s[alive] = activation[alive] ** alpha / weight[alive] ** (1 - alpha)
    return np.clip(s, 1 / LIMIT, LIMIT)


def simulated_error(x, weights, s, attributes: dict, target: str, weight_bits: int) -> float:
    """The Conv's output error (relative mean square) with its input divided by ``s`` and quantized
    per tensor, its weights multiplied by ``s`` and quantized per output channel."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    weights = torch.from_numpy(weights.astype(np.float32))
    s = torch.from_numpy(s.astype(np.float32)).reshape(1, -1, 1, 1)
    stride, dilation = attributes.get("strides", [1, 1]), attributes.get("dilations", [1, 1])
    top, left, bottom, right = attributes.get("pads", [0, 0, 0, 0])
    with torch.no_grad():
        x = F.pad(x, (left, right, top, bottom))  # zero padding, which quantization keeps exact
        expected = F.conv2d(x, weights, None, stride, 0, dilation)
        scaled = x / s
        if target == "cpu":  # uint8 from the tensor's minimum to its maximum (0 within)
            low, high = min(float(scaled.min()), 0.0), max(float(scaled.max()), 0.0)
            step = max(high - low, 1e-12) / 255
            zero = round(-low / step)
            scaled = (torch.clamp(torch.round(scaled / step) + zero, 0, 255) - zero) * step
        else:  # symmetric int8
            step = max(float(scaled.abs().max()), 1e-12) / 127
            scaled = torch.clamp(torch.round(scaled / step), -127, 127) * step
        w = weights * s
        top = {7: 64, 8: 127}[weight_bits]
        steps = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / top
        w = torch.clamp(torch.round(w / steps), -top, top) * steps
        got = F.conv2d(scaled, w, None, stride, 0, dilation)
        return float(((got - expected) ** 2).mean() / (expected**2).mean().clamp_min(1e-30))


def _parameters_known(node, initializers) -> bool:
    """Whether what ``equalize`` divides is stored in the graph (not computed at run time)."""
    needed = node.input[1:5] if node.op_type == "BatchNormalization" else node.input[1:3]
    return all(name in initializers for name in needed if name)


def _ungrouped(conv, initializers) -> bool:
    group = next((a.i for a in conv.attribute if a.name == "group"), 1)
    return group == 1 and conv.input[1] in initializers


def _own(graph, node, index: int, initializers: dict, reads: dict) -> None:
    """Give ``node`` its own copy of its input ``index`` where other inputs read the same
    initializer (exporters share equal constants: the batch norms' ones and zeros of a network
    never trained), so that scaling it changes this layer alone."""
    name = node.input[index]
    if reads[name] == 1:
        return
    copy = graph.initializer.add()
    copy.CopyFrom(initializers[name])
    copy.name = f"{node.name}_{index}_equalized"
    reads[name] -= 1
    reads[copy.name] = 1
    initializers[copy.name] = copy
    node.input[index] = copy.name


def _set(initializer, values: np.ndarray) -> None:
    from onnx import numpy_helper

    dtype = numpy_helper.to_array(initializer).dtype
    initializer.CopyFrom(numpy_helper.from_array(values.astype(dtype), initializer.name))


def _copy(proto):
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy
