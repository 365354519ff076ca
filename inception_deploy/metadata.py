"""The one JSON document every artifact carries (ONNX metadata_props, engine sidecar), and
the one place it is validated.

Every reader (run, parity, calibrate, build, bench, the precision exports) gets the document
through ``validate_metadata``, so a doctored or corrupt artifact is refused as a whole, with one
line naming the file and the field, before any image is read. Reading it needs neither torch
nor onnx: ONNX Runtime exposes metadata_props as ``custom_metadata_map``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .errors import InceptionDeployError, first_line
from .fileio import Kind
from .preprocess import INTERPOLATIONS, PreprocessConfig

METADATA_KEY = "inception_deploy"
SCHEMA_VERSION = 1

# Sane bounds: far beyond any real classifier, small enough that nothing downstream
# (label tables, batches, resize buffers) can be made to allocate absurd amounts of memory.
MAX_CLASSES = 100_000
MAX_INPUT_SIZE = 4096
MAX_RESIZE_SIZE = 8192
MAX_BATCH = 1024
MAX_LABEL_CHARS = 1000
MAX_DOCUMENT_BYTES = 32 << 20  # 100,000 long label names fit easily
PRECISIONS = ("fp32", "fp16", "int8", "unknown")
INT8_TARGETS = ("tensorrt", "cpu")
INT8_REMAINDERS = ("fp32", "fp16")  # precision of what an INT8 graph leaves unquantized


class MetadataError(InceptionDeployError):
    """An artifact's metadata is missing, corrupt or out of bounds."""


def parse_metadata(props: dict[str, str], source: str) -> dict:
    """The toolkit's metadata from an artifact's key/value props, validated."""
    if METADATA_KEY not in props:
        raise MetadataError(
            f"{source}: no {METADATA_KEY!r} metadata (not exported by inception-export); "
            f"pass --arch to supply the preprocessing"
        )
    return validate_metadata(load_json(props[METADATA_KEY], source, f"{METADATA_KEY!r} metadata"), source)


def load_json(text: str | bytes, source, what: str) -> object:
    """``json.loads`` that refuses huge and deeply nested documents with one line."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise MetadataError(
            f"{source}: {what} is {len(text) / 1e6:.0f} MB; refusing more than {MAX_DOCUMENT_BYTES >> 20} MiB"
        )
    try:
        return json.loads(text)
    except RecursionError:
        raise MetadataError(f"{source}: corrupt {what} (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, over-long integers
        raise MetadataError(f"{source}: corrupt {what} ({e})") from None


def validate_metadata(meta: object, source) -> dict:
    """``meta`` when every field the toolkit reads is present, typed and within bounds;
    otherwise a MetadataError naming ``source`` and the field."""
    check = _Checker(source)
    if not isinstance(meta, dict):
        check.fail("(document)", f"must be a JSON object, not {_kind(meta)}")
    schema = meta.get("schema", SCHEMA_VERSION)
    check.integer("schema", schema, 1, 1 << 30)
    if schema > SCHEMA_VERSION:
        check.fail(
            "schema",
            f"is {schema}: written by a newer inception-deploy (this one reads up to {SCHEMA_VERSION}); upgrade it",
        )
    check.optional_text("arch", meta.get("arch"))
    classes = meta.get("num_classes")
    check.integer("num_classes", classes, 1, MAX_CLASSES)
    check.choice("precision", meta.get("precision", "fp32"), PRECISIONS)
    if "int8_target" in meta:
        check.choice("int8_target", meta["int8_target"], INT8_TARGETS)
    if "int8_weight_bits" in meta:
        check.integer("int8_weight_bits", meta["int8_weight_bits"], 7, 8)
    if "io_dtype" in meta:
        check.choice("io_dtype", meta["io_dtype"], ("float32", "float16"))
    for name in ("batch", "max_batch"):
        if meta.get(name) is not None:
            check.integer(name, meta[name], 1, MAX_BATCH)
    if meta.get("batch") is not None and meta.get("max_batch") is not None and meta["max_batch"] < meta["batch"]:
        check.fail("max_batch", f"({meta['max_batch']}) is smaller than batch ({meta['batch']})")
    _check_preprocess(check, meta.get("preprocess"))
    _check_labels(check, meta.get("labels"), classes)
    for name in ("weights", "tensorrt", "gpu", "calibration", "versions"):
        if meta.get(name) is not None and not isinstance(meta[name], dict):
            check.fail(name, f"must be an object, not {_kind(meta[name])}")
    tensorrt = meta.get("tensorrt") or {}
    check.optional_text("tensorrt.version", tensorrt.get("version"))
    for flag in ("version_compatible", "strongly_typed"):
        if not isinstance(tensorrt.get(flag, False), bool):
            check.fail(f"tensorrt.{flag}", f"must be true or false, not {_kind(tensorrt[flag])}")
    check.optional_text("tensorrt.hardware_compatibility", tensorrt.get("hardware_compatibility"))
    gpu = meta.get("gpu") or {}
    check.optional_text("gpu.name", gpu.get("name"))
    check.optional_text("gpu.compute_capability", gpu.get("compute_capability"))
    return meta


def _check_preprocess(check: "_Checker", pre) -> None:
    if not isinstance(pre, dict):
        check.fail("preprocess", "is missing" if pre is None else f"must be an object, not {_kind(pre)}")
    known = set(PreprocessConfig.__dataclass_fields__)
    unknown = sorted(set(pre) - known)
    if unknown:
        check.fail(f"preprocess.{unknown[0]}", "is not a preprocessing field")
    for name in ("input_size", "resize_size", "interpolation", "mean", "std"):
        if name not in pre:
            check.fail(f"preprocess.{name}", "is missing")
    check.integer("preprocess.input_size", pre["input_size"], 1, MAX_INPUT_SIZE)
    check.integer("preprocess.resize_size", pre["resize_size"], pre["input_size"], MAX_RESIZE_SIZE)
    check.choice("preprocess.interpolation", pre["interpolation"], INTERPOLATIONS)
    check.choice("preprocess.channel_order", pre.get("channel_order", "RGB"), ("RGB", "BGR"))
    for name, positive in (("mean", False), ("std", True)):
        values = pre[name]
        if not isinstance(values, list) or len(values) != 3:
            check.fail(f"preprocess.{name}", f"must be a list of three numbers, not {_kind(values)}")
        for value in values:
            check.number(f"preprocess.{name}", value, positive)
    check.number("preprocess.pixel_scale", pre.get("pixel_scale", 1.0), positive=True)
    if not isinstance(pre.get("keep_aspect", True), bool):
        check.fail("preprocess.keep_aspect", f"must be true or false, not {_kind(pre['keep_aspect'])}")


def _check_labels(check: "_Checker", labels, classes: int) -> None:
    if not isinstance(labels, dict) or "names" not in labels:
        check.fail("labels", "must be an object with the class names under 'names'")
    names = labels["names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        check.fail("labels.names", "must be a list of strings")
    if len(names) != classes:
        check.fail("labels.names", f"has {len(names)} names but num_classes is {classes}")
    longest = max(names, key=len)
    if len(longest) > MAX_LABEL_CHARS:
        check.fail("labels.names", f"has a name of {len(longest)} characters (at most {MAX_LABEL_CHARS})")
    check.optional_text("labels.source", labels.get("source"))


class _Checker:
    """Typed field checks whose failures name the artifact and the field."""

    def __init__(self, source):
        self.source = source

    def fail(self, field: str, problem: str):
        raise MetadataError(f"{self.source}: invalid metadata: {field} {problem}")

    def integer(self, field, value, low: int, high: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(field, "is missing" if value is None else f"must be an integer, not {_kind(value)}")
        if not low <= value <= high:
            self.fail(field, f"is {value}; must be between {low} and {high}")

    def number(self, field, value, positive: bool) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            self.fail(field, f"must be a finite number, not {_kind(value)}")
        if positive and value <= 0:
            self.fail(field, f"is {value}; must be greater than 0")

    def choice(self, field, value, choices) -> None:
        if not isinstance(value, str) or value not in choices:
            self.fail(field, f"is {_kind(value)}; must be one of {', '.join(choices)}")

    def optional_text(self, field, value) -> None:
        if value is not None and (not isinstance(value, str) or len(value) > MAX_LABEL_CHARS):
            self.fail(field, f"must be a short string, not {_kind(value)}")


def _kind(value) -> str:
    """A short, safe description of a JSON value for an error message."""
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_graph_shape(meta: dict, source, input_shape, num_classes: int | None) -> None:
    """The declared input size and class count must be what the graph or engine really takes
    and gives (``input_shape``: N x C x H x W with None for dynamic dimensions)."""
    channels, height, width = (tuple(input_shape) + (None,) * 4)[1:4]
    size = meta["preprocess"]["input_size"]
    if channels not in (None, 3):
        raise MetadataError(f"{source}: input has {channels} channels; an image classifier takes 3")
    if (height, width) != (size, size) and None not in (height, width):
        raise MetadataError(
            f"{source}: invalid metadata: preprocess.input_size is {size} but the model's input is {height}x{width}"
        )
    if num_classes and num_classes != meta["num_classes"]:
        raise MetadataError(
            f"{source}: invalid metadata: num_classes is {meta['num_classes']} but the model "
            f"outputs {num_classes} classes"
        )


def preprocess_of(meta: dict) -> PreprocessConfig:
    return PreprocessConfig.from_dict(meta["preprocess"])


def sidecar_path(engine: str | os.PathLike) -> Path:
    """``model.plan`` -> ``model.plan.json``: the plan stays a plain plan that trtexec loads."""
    return Path(f"{engine}.json")


def read_sidecar(engine: str | os.PathLike) -> dict | None:
    """The engine's sidecar document, validated, or None when there is none."""
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise MetadataError(f"{path}: engine sidecar is larger than {MAX_DOCUMENT_BYTES >> 20} MiB")
        text = path.read_bytes()
    except OSError as e:
        raise MetadataError(f"{path}: cannot read the engine sidecar ({e.strerror})") from None
    return validate_metadata(load_json(text, path, "engine sidecar"), path)


def onnx_metadata(proto, source) -> dict | None:
    """The toolkit's metadata of an onnx.ModelProto, validated, or None when it has none."""
    props = {prop.key: prop.value for prop in proto.metadata_props}
    return parse_metadata(props, str(source)) if METADATA_KEY in props else None


def set_onnx_metadata(proto, metadata: dict) -> None:
    """Merge our key into metadata_props (onnx.helper.set_model_props would drop the others)."""
    value = json.dumps(metadata, separators=(",", ":"))
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = value
            return
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, value


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


def _our_onnx(path: Path) -> bool:
    try:
        return any(prop.key == METADATA_KEY for prop in load_onnx(path).metadata_props)
    except InceptionDeployError:
        return False


def _our_engine(path: Path) -> bool:
    try:
        return read_sidecar(path) is not None
    except InceptionDeployError:
        return False


def _our_sidecar(path: Path) -> bool:
    return _our_engine(Path(str(path).removesuffix(".json")))


# what export and build write, recognised by the toolkit's metadata: the ONNX's own, a plan's sidecar
ONNX_MODEL = Kind("an ONNX model exported by inception-deploy", _our_onnx)
ENGINE = Kind("a TensorRT engine of inception-deploy (with its sidecar)", _our_engine)
ENGINE_SIDECAR = Kind("an engine sidecar of inception-deploy", _our_sidecar)


def fp32_metadata(proto, src) -> dict:
    metadata = onnx_metadata(proto, src)
    if metadata is None:
        raise InceptionDeployError(f"{src}: no inception_deploy metadata; export it with inception-export first")
    if metadata.get("precision", "fp32") != "fp32":
        raise InceptionDeployError(f"{src}: is already {metadata['precision']}; start from the FP32 export")
    return metadata


def module_paths(graph) -> dict[str, str]:
    """Node name -> the path of the PyTorch module that produced it (``Mixed_6b.branch7x7dbl_2.conv``),
    as far as the exported graph says: a Conv or Gemm by its weight's name (the dynamo exporter
    names initializers after the parameters, batch norm folded in or not; in a Q/DQ graph, the
    weight behind its DequantizeLinear), a TorchScript node by its scoped name
    (``/Mixed_6b/branch7x7dbl_2/conv/Conv``), a dynamo node by its innermost name scope; nodes
    with none of these (ONNX Runtime's own) are left out."""
    initializers = {init.name for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    paths = {}
    for node in graph.node:
        weight = node.input[1] if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 else ""
        while weight in producers and producers[weight].op_type in ("DequantizeLinear", "QuantizeLinear", "Cast"):
            weight = producers[weight].input[0]
        if weight in initializers and weight.endswith(".weight"):
            paths[node.name] = weight[: -len(".weight")]
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
