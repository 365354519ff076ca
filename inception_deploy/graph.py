"""Reading ONNX files and what their graphs say about the PyTorch model they came from."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InceptionDeployError, first_line


def load_onnx(path: str | os.PathLike):
    """An ONNX file as a ModelProto (external data not loaded), or one line saying why not."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InceptionDeployError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError, OSError, ...
        raise InceptionDeployError(f"{path}: not a readable ONNX file ({first_line(e)})") from None


_METADATA_PROPS = 14  # ModelProto.metadata_props (onnx.proto); its entries: key = 1, value = 2


def metadata_keys(path: str | os.PathLike) -> set[str]:
    """The metadata_props keys of the ONNX file at ``path``, read from the ModelProto's top-level
    fields alone: the graph (the weights, hundreds of MB) is skipped unread. Empty for a file that
    is not an ONNX model."""
    keys: set[str] = set()
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            while f.tell() < size:
                field, wire = divmod(_varint(f), 8)
                if wire == 0:
                    _varint(f)
                elif wire in (1, 5):
                    f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
                elif wire == 2:
                    length = _varint(f)
                    if f.tell() + length > size:
                        return set()
                    if field == _METADATA_PROPS:
                        keys.add(_entry_key(f.read(length)))
                    else:
                        f.seek(length, os.SEEK_CUR)
                else:
                    return set()
    except (OSError, ValueError, UnicodeDecodeError):
        return set()
    return keys


def _varint(f) -> int:
    value = shift = 0
    while True:
        byte = f.read(1)
        if not byte or shift > 63:
            raise ValueError("truncated or overlong varint")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7


def _entry_key(entry: bytes) -> str:
    """The key (field 1) of a serialized StringStringEntryProto."""
    import io

    f = io.BytesIO(entry)
    while f.tell() < len(entry):
        field, wire = divmod(_varint(f), 8)
        if wire != 2:
            raise ValueError("not a string entry")
        text = f.read(_varint(f))
        if field == 1:
            return text.decode()
    return ""


# what ONNX Runtime's optimizer and quantizer make of a parameter's name: a Conv with a Mul (layer
# scale), Add or BatchNorm fused into it gets "ConvMulFusion_W_<name>" (several times over when
# fused again); an int8 weight of the cpu target "<name>_quantized" (suffix removed separately)
ORT_FUSED = re.compile(r"^(Conv(Mul|Add|Bn)Fusion_W_)+")


def node_modules(graph) -> dict[str, str]:
    """Node name -> the path of the PyTorch module that produced it (``Mixed_6b.branch7x7dbl_2.conv``),
    as far as the exported graph says: a Conv or Gemm by its weight's name (the dynamo exporter
    names initializers after the parameters, batch norm folded in or not; in a Q/DQ graph, the
    weight behind its DequantizeLinear, int8 or float), a TorchScript node by its scoped name
    (``/Mixed_6b/branch7x7dbl_2/conv/Conv``), a dynamo node by its innermost name scope; nodes
    with none of these (ONNX Runtime's own) are left out."""
    initializers = {init.name for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    paths = {}
    for node in graph.node:
        weight = node.input[1] if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 else ""
        while weight in producers and producers[weight].op_type in ("DequantizeLinear", "QuantizeLinear", "Cast"):
            weight = producers[weight].input[0]
        parameter = ORT_FUSED.sub("", weight.removesuffix("_quantized"))
        if weight in initializers and parameter.endswith(".weight"):
            paths[node.name] = parameter[: -len(".weight")]
        elif node.name.startswith("/") and node.name.count("/") > 1:
            paths[node.name] = _torchscript_scope(node.name)
        else:
            scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
            scope = _innermost_scope(scopes)
            if scope:
                paths[node.name] = scope
    return paths


def _torchscript_scope(name: str) -> str:
    """``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``: TorchScript names a Sequential's
    child by the Sequential's name and its index, in a scope of its own."""
    parts: list[str] = []
    for scope in name.strip("/").split("/")[:-1]:
        if parts and scope.startswith(parts[-1] + "."):
            parts[-1] = scope
        else:
            parts.append(scope)
    return ".".join(parts)


def _innermost_scope(text: str | None) -> str | None:
    """``"['', 'conv1', 'conv1.relu', 'relu']"`` -> ``conv1.relu`` (the last entry names the op)."""
    import ast

    try:
        scopes = ast.literal_eval(text) if text else None
    except (ValueError, SyntaxError):
        return None
    if not isinstance(scopes, list) or len(scopes) < 2:
        return None
    return str(scopes[-2]) or None


def static_batch(graph) -> int | None:
    """The graph input's fixed batch size (an export with ``--batch``), None when dynamic."""
    dim = graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def fused_relus(graph) -> dict[str, str]:
    """DequantizeLinear output -> the float tensor its QuantizeLinear reads, for the Q/DQ pairs that
    also stand for a ReLU: uint8 with zero point 0, whose rounding clips at 0, reading a tensor no
    ReLU produced. ONNX Runtime's cpu target drops a ReLU whose input it quantizes and lets such a
    pair clip instead, so the float tensor behind it is the value before the ReLU (a MaxPool's or
    Concat's output after ReLUs is never negative: a ReLU there changes nothing). The graph's input
    is no ReLU's, whatever its range."""
    import numpy as np
    from onnx import numpy_helper

    initializers = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    quantize = {n.output[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    pairs = {}
    for dq in graph.node:
        q = quantize.get(dq.input[0]) if dq.op_type == "DequantizeLinear" else None
        if q is None or len(q.input) < 3 or q.input[2] not in initializers:
            continue
        zero = numpy_helper.to_array(initializers[q.input[2]])
        source = producers.get(q.input[0])
        if zero.dtype == np.uint8 and not zero.any() and source is not None and source.op_type != "Relu":
            pairs[dq.output[0]] = q.input[0]
    return pairs
