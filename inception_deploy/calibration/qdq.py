"""Q/DQ ONNX from an FP32 ONNX and a calibration cache, for one of two targets.

- ``tensorrt``: what TensorRT's explicit quantization accepts (docs/REFERENCE.md): symmetric int8
  activations and weights, zero points 0, per-channel weights on axis 0, no bias Q/DQ, placed
  where TensorRT can fuse (the rules: ``tensorrt_placement``).
- ``cpu``: what ONNX Runtime's CPU kernels run fastest: u8 activations (asymmetric), s8
  per-channel weights, Q/DQ around every op ONNX Runtime quantizes (a QLinearConv needs its
  output quantized too; symmetric s8s8 gave no speed-up). Weights use 7 bits (``reduce_range``):
  on x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) the u8 x s8 kernels of ONNX Runtime and
  OpenVINO add pairs of products in 16 bits, which 8-bit weights can saturate (measured on AVX2:
  the trained test classifier 96.9% -> 94.1% top-1 with 8-bit weights, 96.6% with 7).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InceptionDeployError, setting
from ..metadata import INT8_TARGETS
from .cache import CalibrationCache

POOLS = ("MaxPool", "AveragePool")
QUANTIZED_OPS = ("Conv", *POOLS)  # rule 1
WEIGHT_BITS = {"tensorrt": 8, "cpu": 7}  # cpu: see above
# cpu target: normalizations ONNX Runtime's quantizer would wrap in Q/DQ (weights included) though
# its CPU kernels have no int8 version: InceptionNeXt's LayerNorm, and the BatchNorms that no Conv
# precedes (InceptionNeXt's after the token mixer and before each downsampling Conv, DenseNet's
# pre-activation ones; the zoo's others are folded into their Convs). They read float unless the op
# before them writes int8 anyway (a QLinearConcat); their weights and outputs stay float. DenseNet
# measured the same with or without (photos' min cosine 0.9911 both, 21.8 vs 21.6 images/s).
CPU_FLOAT_OPS = ("BatchNormalization", "LayerNormalization")


GLOBAL_POOLS = ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax")


def quantized_op_types(target: str) -> list[str]:
    """The op types INT8 quantizes on ``target``: Convs and pools for tensorrt (rule 1); on the cpu
    target every op ONNX Runtime's QDQ quantizer takes (Concat, Add, ...) but the normalizations
    above, and nowhere in the head (``head_nodes``)."""
    if target == "tensorrt":
        return list(QUANTIZED_OPS)
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - set(CPU_FLOAT_OPS))


def head_nodes(graph) -> set[str]:
    """The classifier head of a prepared graph: the nodes after the global pooling that no Conv
    follows (the Gemm or MatMul layers, their activations and norms, the logits). The cpu target
    leaves them float as rule 5 does the tensorrt target's: quantized, InceptionNeXt's MLP head (two
    Gemms around a GELU that ONNX Runtime quantizes op by op) flipped 15 and 16 of 1,000 stand-in
    images on ONNX Runtime and OpenVINO, float 10 and 8, at the same speed; one-Gemm heads
    (GoogLeNet, ResNet) measured the same either way (docs/precision.md)."""
    last_conv = max((i for i, node in enumerate(graph.node) if node.op_type == "Conv"), default=-1)
    pools = [i for i, node in enumerate(graph.node) if i > last_conv and node.op_type in GLOBAL_POOLS]
    return {node.name for node in graph.node[pools[0] + 1 :]} if pools else set()


@dataclass(frozen=True)
class Corrections:
    """What is measured once on the full INT8 placement and written into every placement after it:
    each quantized Conv's bias shift (calibration.bias) and its weights' adaptive rounding
    (calibration.adaround), by Conv node. A Conv left float takes neither."""

    shifts: dict = field(default_factory=dict)
    rounding: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.shifts or self.rounding)

    def apply(self, graph) -> None:
        """Into a Q/DQ graph written by ``write_qdq``: the rounding first, then the shifts."""
        apply_rounding(graph, self.rounding)
        apply_shifts(graph, self.shifts)

    def digest(self, h) -> None:
        """Feed what these corrections are into the hash ``h`` (a ranking made with them is theirs)."""
        for node, shift in sorted(self.shifts.items()):
            h.update(node.encode() + np.asarray(shift, np.float32).tobytes())
        for node, values in sorted(self.rounding.items()):
            h.update(b"rounding\0" + node.encode() + np.asarray(values, np.int8).tobytes())


@dataclass
class Placement:
    """Where the tensorrt target quantizes, in a prepared graph."""

    nodes: list[str]  # rules 1 and 5: Conv and pooling nodes whose inputs are quantized
    skips: list[tuple[str, int]]  # rule 3: (Add node, index of its skip input)
    range_of: dict[str, str]  # rule 4: tensor -> the tensor whose range it takes (Concat, MaxPool)


def prepare(fp32_path, prepared_path) -> None:
    """ONNX Runtime's quantization pre-processing (shape inference, graph optimization); the
    calibrated and the quantized graph are both this one, so tensor names match."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with contextlib.redirect_stdout(io.StringIO()):
        quant_pre_process(str(fp32_path), str(prepared_path))
    proto = onnx.load(str(prepared_path))
    names = [n.name for n in proto.graph.node]
    if "" in names or len(set(names)) < len(names):  # tensorrt_placement refers to nodes by name
        for i, node in enumerate(proto.graph.node):
            node.name = f"{node.op_type}_{i}"
        onnx.save(proto, str(prepared_path))


def tensorrt_placement(graph, float_nodes: frozenset[str] = frozenset()) -> Placement:
    """Where the tensorrt target quantizes a prepared ONNX graph: NVIDIA's "Q/DQ layer placement
    recommendations" (TensorRT developer guide, explicit quantization), and the placement NVIDIA's
    Model Optimizer writes (scripts/modelopt_compare.py). The rules, numbered in the code:

    1. Quantize the inputs of the layers TensorRT runs as INT8 kernels: Conv (weights per output
       channel on axis 0, activations per tensor) and MaxPool / AveragePool.
    2. Quantize no op's output as such: TensorRT fuses Conv + bias + ReLU (+ residual Add) into one
       kernel and writes INT8 when the next layer's input is quantized; a Q/DQ between a Conv and its
       ReLU would forbid that fusion and add a rounding point.
    3. Residual Add (Conv output + skip): quantize the skip input, not the Conv output, so the Conv,
       the Add and the ReLU after it fuse into one INT8 kernel. Where both inputs are Conv outputs
       (a projection shortcut), the main branch is the one farther from where the two paths meet
       (ModelOpt's rule), and the shortcut Conv's output is quantized.
    4. One scale across a Concat (all its inputs and its output) and across a MaxPool (input and
       output): both only move or select values, so a second scale would only add a rounding
       (a requantization). A Concat's output is quantized where a Conv or pool reads it, never its
       inputs as such; TensorRT moves that Q backwards through the Concat, so every branch
       writes INT8 into place. Where a Concat input is quantized in its own right (another Conv
       reads it), it takes the Concat output's range: that range was calibrated on all the
       inputs together. A MaxPool's output takes its input's range: max pooling selects values
       already on the input's grid, clipped the same way, so requantizing them is exact.
    5. The classifier head stays float: a pooling layer no Conv follows, the Gemm/MatMul and the
       logits (a GEMV gains no speed from INT8 and loses accuracy).

    Attention gates (squeeze-excitation's Sigmoid, split attention's Softmax, the Mul they feed)
    stay float by rules 1 and 2: they are no Conv's input. Where a gated branch meets a projection
    shortcut, the shortcut Conv fuses with the Add and the gated branch is the quantized input.

    Convs named in ``float_nodes`` (the nodes of the layers kept float: asked for, or by the
    accuracy budget) stay float, and the rules read "a quantized Conv": a pool only float Convs
    follow stays float (rule 5), and so does the skip input of a residual Add whose Conv is float
    (rule 3 pays only in an INT8 kernel).
    """
    _, producers = graph_tables(graph)
    consumers = graph_readers(graph)

    # rule 5: tensors some quantized Conv lies downstream of (the graph is topologically sorted)
    def quantized_conv(node) -> bool:
        return node.op_type == "Conv" and node.name not in float_nodes

    before_conv: set[str] = set()
    for node in reversed(graph.node):
        if quantized_conv(node) or before_conv.intersection(node.output):
            before_conv.update(node.input)
    nodes = [
        n.name for n in graph.node if quantized_conv(n) or (n.op_type in POOLS and before_conv.intersection(n.output))
    ]
    skips = []
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        from_conv = [
            name in producers and producers[name].op_type == "Conv" and len(consumers[name]) == 1 for name in node.input
        ]
        if any(from_conv):  # the Conv input fuses with the Add; the other one is the skip
            skip = _skip_of_two_convs(node, producers, graph) if all(from_conv) else (1 if from_conv[0] else 0)
            if producers[node.input[1 - skip]].name in float_nodes:
                continue  # a float Conv fuses with nothing in INT8
            source = producers.get(node.input[skip])
            if (source is not None and source.op_type != "Constant") or any(
                i.name == node.input[skip] for i in graph.input
            ):
                skips.append((node.name, skip))  # a computed tensor, not a constant or initializer
    return Placement(nodes, skips, _shared_ranges(graph))


def _skip_of_two_convs(add, producers, graph) -> int:
    """Rule 3 for Conv + Conv: the index of the shortcut, the input nearer to the tensor where the
    two paths split (a projection shortcut is one Conv from the block input, the main branch
    several); the second input on a tie."""
    inputs = {i.name for i in graph.input}
    meeting = {t for t, node in producers.items() if node.op_type != "Constant"} | inputs

    def distances(tensor):
        """Every computed tensor upstream of ``tensor`` (graph inputs too; weights and constants
        are no meeting point), with its distance in nodes."""
        found, queue = {tensor: 0}, deque([tensor])
        while queue:  # breadth first: each tensor is first reached by a shortest path
            name = queue.popleft()
            for source in producers[name].input if name in producers else ():
                if source in meeting and source not in found:
                    found[source] = found[name] + 1
                    queue.append(source)
        return found

    first, second = distances(add.input[0]), distances(add.input[1])
    common = first.keys() & second.keys()
    if not common:
        return 1
    split = min(common, key=lambda name: first[name] + second[name])
    return 0 if first[split] < second[split] else 1


def _shared_ranges(graph) -> dict[str, str]:
    """Rule 4: tensor -> the tensor whose range it takes, followed to the end of the chain."""
    source = {}
    for node in graph.node:  # a MaxPool's output takes its input's range
        if node.op_type == "MaxPool":
            source[node.output[0]] = node.input[0]
    for node in reversed(graph.node):  # a Concat's inputs take its output's (this wins on a tie)
        if node.op_type == "Concat":
            for name in node.input:
                source[name] = node.output[0]
    resolved = {}
    for name in source:
        seen, end = {name}, source[name]
        while end in source and end not in seen:
            seen.add(end)
            end = source[end]
        resolved[name] = end
    return resolved


def target_ranges(cache: CalibrationCache, target: str, range_of=None) -> dict[str, tuple[float, float]]:
    """Each tensor's range for ``target``: the observed min/max clipped at the threshold,
    symmetric (-t, t) for TensorRT, where ``range_of`` (rule 4) maps a tensor to the one whose
    range it shares."""
    ranges = {}
    for name, t in cache.tensors.items():
        threshold = t["threshold"]
        if target == "tensorrt":
            ranges[name] = (-threshold, threshold)
        else:
            ranges[name] = (min(max(t["min"], -threshold), 0.0), max(min(t["max"], threshold), 0.0))
    for name, source in (range_of or {}).items():
        if name in ranges and source in ranges:
            ranges[name] = ranges[source]
    return ranges


def write_qdq(
    prepared_path,
    cache: CalibrationCache,
    target: str,
    output: str | os.PathLike,
    float_nodes: frozenset[str] = frozenset(),
    weight_bits: int | None = None,
    corrections: Corrections | None = None,
) -> None:
    """Quantize the prepared FP32 graph with the cached ranges into ``output``, but the nodes named
    in ``float_nodes``: on the tensorrt target they read float inputs (no Q/DQ of their own, and a
    residual Add they would fuse with keeps its skip input float too); on the cpu target ONNX
    Runtime leaves them unquantized. ``weight_bits``: the target's default (WEIGHT_BITS) when None;
    8 on the cpu target for CPUs with VNNI or AMX. ``corrections``: bias shifts and weight rounding
    of the quantized Convs, applied where they are quantized."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    check_weight_bits(target, weight_bits)
    graph = onnx.load(str(prepared_path)).graph  # read once: the placement, the head and the ReLUs below
    if target == "tensorrt":
        placement = tensorrt_placement(graph, float_nodes)
        ranges = target_ranges(cache, target, placement.range_of)
        types = dict(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        options = dict(op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_quantize=placement.nodes)
        extra = {
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,
            "AddQDQPairToWeight": True,
            "QDQOpTypePerChannelSupportToAxis": {"Conv": 0},
            "ForceQuantizeNoInputCheck": True,
            "DedicatedQDQPair": False,  # one Q/DQ per tensor
            "OpTypesToExcludeOutputQuantization": sorted({n.op_type for n in graph.node}),
        }  # rule 2
    else:
        ranges = target_ranges(cache, target)
        types = dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        # 7-bit weights: no 16-bit saturation without VNNI
        options = dict(
            reduce_range=(weight_bits or WEIGHT_BITS[target]) == 7,
            nodes_to_exclude=sorted(float_nodes | head_nodes(graph)),
            op_types_to_quantize=quantized_op_types(target),
        )
        extra = {"WeightSymmetric": True}
    if target == "tensorrt" and not placement.nodes:  # every layer float (quantize_static reads [] as "all")
        shutil.copyfile(prepared_path, output)
        return
    ranges = {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in ranges.items()}
    with tempfile.TemporaryDirectory(prefix="inception-qdq-") as folder:
        ranges_file = Path(folder) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), ranges_file)
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(prepared_path),
                str(output),
                None,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                calibrate_method=CalibrationMethod.MinMax,
                calibration_cache_path=str(ranges_file),
                extra_options=extra,
                **types,
                **options,
            )
    if float_nodes or corrections or (target == "tensorrt" and placement.skips):
        proto = onnx.load(str(output))
        if target == "tensorrt":
            _quantize_skips(proto.graph, placement.skips, ranges)
        if float_nodes:
            relus = {n.output[0] for n in graph.node if n.op_type == "Relu"}
            _float_inputs(proto.graph, float_nodes, relus)
        if corrections:
            corrections.apply(proto.graph)
        onnx.save(proto, str(output))


def apply_shifts(graph, shifts: dict[str, np.ndarray]) -> None:
    """Add each shift to its Conv's bias where that Conv is quantized in ``graph`` (a float bias
    initializer: the tensorrt target; an int32 one behind a DequantizeLinear: the cpu target, in
    its scale's steps)."""
    from onnx import numpy_helper

    initializers, producers = graph_tables(graph)
    for conv, shift in quantized_convs_in(graph, shifts, producers):
        if len(conv.input) < 3 or not conv.input[2]:
            name = f"{conv.name}_corrected_bias"
            graph.initializer.append(numpy_helper.from_array(shift.astype(np.float32), name))
            conv.input[2:] = [name]
        elif conv.input[2] in initializers:
            bias = initializers[conv.input[2]]
            values = numpy_helper.to_array(bias).astype(np.float64) + shift
            bias.CopyFrom(numpy_helper.from_array(values.astype(np.float32), bias.name))
        else:  # int32 bias with scale input scale x weight scale
            dq = producers[conv.input[2]]
            bias, scale = initializers[dq.input[0]], numpy_helper.to_array(initializers[dq.input[1]])
            values = numpy_helper.to_array(bias).astype(np.int64) + np.round(shift / scale).astype(np.int64)
            bias.CopyFrom(numpy_helper.from_array(np.clip(values, -(2**31), 2**31 - 1).astype(np.int32), bias.name))


def apply_rounding(graph, rounding: dict[str, np.ndarray]) -> None:
    """Set each rounded Conv's weights in ``graph`` to its chosen int8 values: the int8 initializer
    behind the weights' DequantizeLinear (cpu target), or the float weights a QuantizeLinear reads
    (tensorrt target: set to value x scale, which that Q maps back to exactly those values)."""
    from onnx import numpy_helper

    initializers, producers = graph_tables(graph)
    for conv, values in quantized_convs_in(graph, rounding, producers):
        dq = producers[conv.input[1]]
        scale = numpy_helper.to_array(initializers[dq.input[1]]).astype(np.float32)
        if dq.input[0] in initializers:  # the int8 weights themselves
            stored = initializers[dq.input[0]]
            dtype = numpy_helper.to_array(stored).dtype
            stored.CopyFrom(numpy_helper.from_array(values.astype(dtype), stored.name))
        else:  # float weights -> Q -> DQ
            stored = initializers[producers[dq.input[0]].input[0]]
            weights = values.astype(np.float32) * scale.reshape(-1, *[1] * (values.ndim - 1))
            stored.CopyFrom(numpy_helper.from_array(weights, stored.name))


# what onnxruntime.quantization's QDQ quantizer folds into the Q/DQ pair of its input
# (QDQRemovableActivation), and leaves alone, unquantized, where that input is not quantized
REMOVABLE_ACTIVATIONS = ("Relu", "Clip")


def float_changes_nothing(graph, nodes: list[str], quantized: set[str]) -> bool:
    """Whether leaving ``nodes`` out of the cpu target's quantization writes the same file when
    the nodes in ``quantized`` are the ones quantized: they are removable activations whose input
    no quantized node makes or reads, which ONNX Runtime's quantizer leaves alone either way (a
    ReLU after a Conv kept float)."""
    by_name = {node.name: node for node in graph.node}
    if not nodes or any(by_name[name].op_type not in REMOVABLE_ACTIVATIONS for name in nodes):
        return False
    tensors = {by_name[name].input[0] for name in nodes}
    touching = {n.name for n in graph.node if tensors & set(n.output) or tensors & set(n.input)} - set(nodes)
    return not touching & quantized


def graph_tables(graph) -> tuple[dict, dict]:
    """A graph's initializers by name and the node producing each tensor."""
    return {init.name: init for init in graph.initializer}, {out: n for n in graph.node for out in n.output}


def graph_readers(graph) -> dict[str, list]:
    """Tensor -> the nodes that read it (a node reading it twice, twice)."""
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def quantized_convs_in(graph, by_conv: dict, producers: dict):
    """(Conv node, its entry of ``by_conv``) for each Conv quantized in ``graph`` that has one."""
    for conv in graph.node:
        entry = by_conv.get(conv.name)
        if conv.op_type == "Conv" and entry is not None and dequantized(conv.input[0], producers):
            yield conv, entry


def dequantized(name: str, producers: dict) -> bool:
    """Whether the tensor ``name`` is the output of a DequantizeLinear."""
    node = producers.get(name)
    return node is not None and node.op_type == "DequantizeLinear"


def check_weight_bits(target: str, weight_bits: int | None) -> None:
    if target not in INT8_TARGETS:
        raise InceptionDeployError(f"unknown INT8 target {target!r}; choose one of: {', '.join(INT8_TARGETS)}")
    if weight_bits not in (None, 7, 8):
        raise InceptionDeployError(f"{setting('Int8Request.weight_bits')} must be 7 or 8, not {weight_bits}")
    if target == "tensorrt" and weight_bits == 7:
        raise InceptionDeployError(
            f"{setting('Int8Request.weight_bits')} 7 is for {setting('Int8Request.target')} cpu; "
            f"TensorRT's INT8 weights are 8-bit"
        )


def float_behind_qdq(graph) -> dict[str, str]:
    """The output of each Q -> DQ pair -> the float tensor it rounds (weights stored as int8
    initializers, with no Q, are not included)."""
    quantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    return {
        n.output[0]: quantized[n.input[0]]
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in quantized
    }


def _float_inputs(graph, float_nodes: frozenset[str], relus: set[str]) -> None:
    """Feed the ``float_nodes`` nodes the float tensors quantize_static rewired to a shared
    DequantizeLinear (on the cpu target too: a float Conv after a quantized Concat read its int8
    rounding), and drop the Q/DQ pairs no node reads any more, with their scales and zero points
    (ONNX Runtime would warn about each unused initializer and drop it at every load).

    ``relus``: the prepared graph's ReLU outputs. On the cpu target ONNX Runtime drops a ReLU after
    a Conv and lets the uint8 Q/DQ pair (zero point 0) clip at 0 instead; the float tensor behind
    that pair is the Conv's output before the ReLU, so a float reader gets a ReLU of its own."""
    import onnx

    float_of = float_behind_qdq(graph)
    producers = {out: node for node in graph.node for out in node.output}
    rectified: dict[str, str] = {}  # pre-activation tensor -> a float ReLU of it
    for node in list(graph.node):
        if node.name not in float_nodes:
            continue
        for i, name in enumerate(node.input):
            if name not in float_of:
                continue  # weights of a float node are float
            tensor = float_of[name]
            if tensor in relus and producers[tensor].op_type != "Relu":  # the ReLU went into the Q/DQ pair
                if tensor not in rectified:
                    rectified[tensor] = f"{tensor}_float_relu"
                    relu = onnx.helper.make_node("Relu", [tensor], [rectified[tensor]], name=f"{tensor}_float_relu")
                    graph.node.insert(list(graph.node).index(node), relu)
                tensor = rectified[tensor]
            node.input[i] = tensor
    read = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
    while True:
        unread = [
            n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in read
        ]
        if not unread:
            break
        for node in unread:
            graph.node.remove(node)
        read = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
    for initializer in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(initializer)


def _quantize_skips(graph, skips: list[tuple[str, int]], ranges: dict) -> None:
    """Rule 3: feed each residual Add's skip input through a Q/DQ pair: the tensor's existing
    one when a Conv or pool already quantizes it (quantize_static then rewired every consumer to
    it, the Add included), else a new one before the Add."""
    import onnx
    from onnx import numpy_helper

    dequantized = {}  # float tensor -> output of the DequantizeLinear of its QuantizeLinear
    quantize_of = {n.output[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in quantize_of:
            dequantized[quantize_of[node.input[0]].input[0]] = node.output[0]
            dequantized[node.output[0]] = node.output[0]  # quantize_static rewired the Add already
    adds = {n.name: n for n in graph.node}
    for add_name, index in skips:
        add = adds[add_name]
        tensor = add.input[index]
        if tensor not in dequantized:
            if tensor not in ranges:
                raise InceptionDeployError(f"no calibrated range for the residual input {tensor!r}")
            scale = numpy_helper.from_array(np.array(ranges[tensor][1] / 127, np.float32), f"{tensor}_skip_scale")
            zero = numpy_helper.from_array(np.array(0, np.int8), f"{tensor}_skip_zero_point")
            graph.initializer.extend([scale, zero])
            quantize = onnx.helper.make_node(
                "QuantizeLinear",
                [tensor, scale.name, zero.name],
                [f"{tensor}_skip_q"],
                name=f"{tensor}_skip_QuantizeLinear",
            )
            dequantize = onnx.helper.make_node(
                "DequantizeLinear",
                [quantize.output[0], scale.name, zero.name],
                [f"{tensor}_skip_dq"],
                name=f"{tensor}_skip_DequantizeLinear",
            )
            position = list(graph.node).index(add)
            graph.node.insert(position, dequantize)
            graph.node.insert(position, quantize)
            dequantized[tensor] = dequantize.output[0]
        add.input[index] = dequantized[tensor]
