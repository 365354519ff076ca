"""AdaRound: each quantized Conv's int8 weights rounded up or down as its output needs.

Rounding every weight to its nearest step makes each weight's error smallest, not the Conv's
output error: errors of neighbouring weights can cancel on the inputs the Conv really sees.
AdaRound (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization", 2020; AIMET
and ModelOpt offer it) learns, for each weight, whether to round down or up: a soft choice
h in [0, 1] per weight (a rectified sigmoid), fitted so that the Conv on its quantized input gives
FP32's output on calibration images, and pushed to 0 or 1 by a regularizer whose exponent is
annealed from 20 to 2. Each Conv is fitted alone, fed FP32's own input through its input's Q/DQ
pair (as calibration.bias measures), and its rounding is kept only where its output error on
calibration images the fit did not see is below nearest rounding's. The weights stay in the
target's range (7 bits: [-64, 64] on the cpu target; 8: [-127, 127]) and keep their scales, so
the file is the same graph with other int8 values. Opt-in (``Int8Request.adaround``): it costs a
fit per Conv (docs/precision.md measures what it gives).
"""

from __future__ import annotations

import numpy as np

from .bias import fp32_values, quantized_convs
from .qdq import graph_tables

ITERATIONS = 500  # per Conv; the paper's 10,000 are GPU-sized: on the stand-ins 300 -> 500 still helped
BATCH = 8  # images per step
WINDOW = 16  # output rows and columns per step
ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (the paper's)
REGULARIZATION = 100.0  # the regularizer's weight against the output error (relative to nearest rounding's)
WARMUP = 0.2  # share of the steps fitted on the output error alone
JUDGED = 0.25  # share of the images kept out of the fit, on which nearest and adaptive rounding are compared


def adaptive_rounding(
    prepared_path, qdq_path, images: np.ndarray, weight_bits: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Conv node -> its weights' int8 values (the shape of its weights) for each quantized Conv of
    the Q/DQ graph at ``qdq_path`` (weights of ``weight_bits``) whose output error on the judged
    share of ``images`` adaptive rounding lowers; Convs where nearest rounding was as good are left
    out."""
    import onnx

    fp32, qdq = onnx.load(str(prepared_path)), onnx.load(str(qdq_path))
    initializers, producers = graph_tables(qdq.graph)
    pairs = [(node, conv) for node, conv in quantized_convs(fp32, qdq, producers) if _int_weight(conv, producers)]
    if not pairs or not len(images):
        return {}
    fp32_initializers, _ = graph_tables(fp32.graph)
    inputs = fp32_values(fp32, [node.input[0] for node, _ in pairs], images)
    rng = np.random.default_rng(seed)
    rounding = {}
    for (node, conv), x in zip(pairs, inputs):
        layer = _Layer(node, conv, fp32_initializers, initializers, producers, weight_bits)
        chosen = layer.fit(x, rng)
        if chosen is not None:
            rounding[conv.name] = chosen
    return rounding


def _int_weight(conv, producers) -> bool:
    """Whether the Conv's weights reach it through a per-channel DequantizeLinear."""
    dq = producers.get(conv.input[1])
    return dq is not None and dq.op_type == "DequantizeLinear"


class _Layer:
    """One quantized Conv as its Q/DQ graph computes it, in PyTorch: FP32 weights and bias (from
    the prepared graph), the weights' per-channel scales and int range, the input's Q/DQ."""

    def __init__(self, fp32_conv, conv, fp32_initializers, initializers, producers, weight_bits: int):
        import torch
        from onnx import helper, numpy_helper

        def tensor(name, table=initializers):
            return torch.from_numpy(numpy_helper.to_array(table[name]).astype(np.float32))

        self.weight = tensor(fp32_conv.input[1], fp32_initializers)
        has_bias = len(fp32_conv.input) > 2 and fp32_conv.input[2]
        self.bias = tensor(fp32_conv.input[2], fp32_initializers) if has_bias else None
        weight_dq = producers[conv.input[1]]
        self.scale = tensor(weight_dq.input[1]).reshape(-1, *[1] * (self.weight.ndim - 1))
        self.high = {7: 64, 8: 127}[weight_bits]  # ONNX Runtime's symmetric ranges (7: its reduce_range)
        self.low = -self.high
        input_dq = producers[conv.input[0]]
        self.x_scale = float(numpy_helper.to_array(initializers[input_dq.input[1]]))
        has_zero = len(input_dq.input) > 2 and input_dq.input[2]
        zero = numpy_helper.to_array(initializers[input_dq.input[2]]) if has_zero else np.int8(0)
        self.x_zero, (self.x_low, self.x_high) = int(zero), (np.iinfo(zero.dtype).min, np.iinfo(zero.dtype).max)
        attributes = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        self.stride = list(attributes.get("strides", [1, 1]))
        self.dilation = list(attributes.get("dilations", [1, 1]))
        self.groups = int(attributes.get("group", 1))
        top, left, bottom, right = attributes.get("pads", [0, 0, 0, 0])
        self.pads = (left, right, top, bottom)

    def _conv(self, padded, weight):
        """The Conv on an input already padded (the whole input, or a window of it)."""
        import torch.nn.functional as F

        return F.conv2d(padded, weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def _window(self, padded, target, rng):
        """A random ``WINDOW`` x ``WINDOW`` patch of the output (all of it where it is smaller) and
        the input window it reads: the fit's steps cost the same on a 149 px map as on a 12 px one."""
        height, width = target.shape[2:]
        kernel = [self.dilation[i] * (self.weight.shape[2 + i] - 1) + 1 for i in range(2)]
        rows, cols = min(WINDOW, height), min(WINDOW, width)
        top, left = int(rng.integers(0, height - rows + 1)), int(rng.integers(0, width - cols + 1))
        x = padded[
            :,
            :,
            top * self.stride[0] : (top + rows - 1) * self.stride[0] + kernel[0],
            left * self.stride[1] : (left + cols - 1) * self.stride[1] + kernel[1],
        ]
        return x, target[:, :, top : top + rows, left : left + cols]

    def fit(self, x: np.ndarray, rng) -> np.ndarray | None:
        """The int8 weights adaptive rounding chooses, or None where they do not lower the output
        error on the judged images."""
        import torch
        import torch.nn.functional as F

        judged = max(1, int(round(len(x) * JUDGED)))
        count = len(x) - judged  # the images fitted on; the judged ones follow
        if count < 1:
            return None
        with torch.no_grad():
            x = F.pad(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), self.pads)
            weight, scale = self.weight, self.scale
            x_q = (
                torch.clamp(torch.round(x / self.x_scale) + self.x_zero, self.x_low, self.x_high) - self.x_zero
            ) * self.x_scale  # padded with 0, as the Q/DQ graph pads its dequantized input
            target = self._conv(x, weight)
            ratio = weight / scale
            floor = torch.floor(ratio)
            nearest = torch.clamp(torch.round(ratio), self.low, self.high)

        def error(values, part):
            with torch.no_grad():
                return float(((self._conv(x_q[part], values * scale) - target[part]) ** 2).mean())

        baseline = error(nearest, slice(0, count))
        if baseline == 0.0:
            return None
        rest = torch.clamp((ratio - floor - GAMMA) / (ZETA - GAMMA), 1e-4, 1 - 1e-4)
        v = torch.log(rest / (1 - rest)).requires_grad_(True)  # h(v) starts at the weights' own fraction
        optimizer = torch.optim.Adam([v], lr=1e-2)
        warmup = int(ITERATIONS * WARMUP)
        for step in range(ITERATIONS):
            batch = torch.from_numpy(rng.choice(count, size=min(BATCH, count), replace=False))
            inputs, expected = self._window(x_q[batch], target[batch], rng)
            h = torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)
            values = torch.clamp(floor + h, self.low, self.high)
            loss = ((self._conv(inputs, values * scale) - expected) ** 2).mean() / baseline
            if step >= warmup:
                beta = 20 + (2 - 20) * (step - warmup) / max(1, ITERATIONS - warmup)
                loss = loss + REGULARIZATION * (1 - (2 * h - 1).abs() ** beta).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            chosen = torch.clamp(floor + (v >= 0).float(), self.low, self.high)
        held = slice(count, len(x))
        if error(chosen, held) >= error(nearest, held):
            return None
        return chosen.numpy().astype(np.int32)
