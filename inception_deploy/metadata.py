"""The one JSON document every artifact carries (ONNX metadata_props, engine sidecar), as a
typed ``Metadata``, with one parser and one writer.

Every reader (run, parity, calibrate, build, bench, the precision exports) gets the document
through ``validate_metadata``, so a doctored or corrupt artifact is refused as a whole, with one
line naming the file and the field, before any image is read; code elsewhere reads typed fields,
never keys. The JSON on disk is kept as read (keys this version does not know survive a rewrite).
Reading it needs neither torch nor onnx: ONNX Runtime exposes metadata_props as
``custom_metadata_map``.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InceptionDeployError, setting
from .fileio import Kind
from .graph import metadata_keys
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


@dataclass(frozen=True)
class Metadata:
    """What an artifact says about itself, validated: made only by ``validate_metadata`` (and
    ``updated``), written only through ``to_json``. ``document`` is the JSON as read, every key."""

    num_classes: int
    preprocess: PreprocessConfig
    labels: list[str]  # the class names, in output order
    labels_source: str | None
    arch: str | None
    precision: str  # fp32, fp16, int8, or unknown (no metadata; the arch's defaults)
    batch: int | None  # a static batch size; None: dynamic
    max_batch: int | None
    weights: dict  # {"file", "sha256"} of a checkpoint, {"init_seed", ...} for random weights, {} unknown
    opset: int | None
    exporter: str | None
    export_request: str | None  # the digest of what decided an FP32 export's content
    source_sha256: str | None  # the FP32 file an FP16/INT8 one was made from
    parity: dict | None  # recorded when the file was written
    int8_target: str | None  # tensorrt or cpu, for INT8 files
    int8_weight_bits: int | None
    int8_remainder: str  # the precision of what an INT8 graph leaves unquantized
    int8_float_modules: list[str]
    int8_budget: dict | None  # calibration.budget.BudgetReport.to_dict(), for INT8 under --int8-max-drop
    int8_equalization: dict  # tensor -> the per-channel divisors its values carry (calibration.equalize)
    io_dtype: str  # float32, or float16 for an FP16 file with half-precision input and output
    tensorrt: dict  # an engine's build: version, version_compatible, hardware_compatibility, ...
    gpu: dict  # the GPU an engine was built on: name, compute_capability
    io: dict  # an engine's input and output tensor names
    profile: dict | None  # an engine's optimization profile: {"min", "opt", "max"} shapes
    layers: dict | None  # an engine's layers by precision (export.engine.precision_report)
    onnx_file: str | None  # the ONNX file an engine was built from, beside it
    document: dict = field(repr=False, compare=False)

    @property
    def int8_unproven(self) -> bool:
        """An INT8 file whose accuracy budget was accepted without being shown: its drop's 95% upper
        bound is over the budget (files written before "proven" was recorded: read from the interval)."""
        if not self.int8_budget:
            return False
        budget = self.int8_budget
        return not budget.get("proven", budget["interval"][1] <= budget["max_drop"])

    @property
    def random_weights(self) -> bool:
        """Exported with randomly initialised weights: outputs, not labels, mean something."""
        return "init_seed" in self.weights

    def updated(self, source, drop=(), **changes) -> "Metadata":
        """This document with ``changes`` set and the keys in ``drop`` removed, validated again."""
        document = {k: v for k, v in self.document.items() if k not in drop}
        document.update(changes)
        return validate_metadata(document, source)

    def to_dict(self) -> dict:
        """The document, a copy the caller may change."""
        return copy.deepcopy(self.document)

    def to_json(self, indent: int | None = None) -> str:
        """The one writer: what goes into metadata_props and engine sidecars."""
        return json.dumps(self.document, indent=indent, separators=None if indent else (",", ":"))

    # thin aliases kept from the dict this used to be (``artifact.metadata["precision"]``)
    def __getitem__(self, key: str):
        return self.document[key]

    def get(self, key: str, default=None):
        return self.document.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.document


def parse_metadata(props: dict[str, str], source: str) -> Metadata:
    """The toolkit's metadata from an artifact's key/value props, validated."""
    if METADATA_KEY not in props:
        raise MetadataError(
            f"{source}: no {METADATA_KEY!r} metadata (not exported by inception-export); "
            f"pass {setting('arch')} to supply the preprocessing"
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


def validate_metadata(meta: object, source) -> Metadata:
    """``meta`` as Metadata when every field the toolkit reads is present, typed and within
    bounds; otherwise a MetadataError naming ``source`` and the field."""
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
    for name in ("opset",):
        if meta.get(name) is not None:
            check.integer(name, meta[name], 1, 1 << 30)
    for name in ("exporter", "export_request", "source_sha256", "int8_remainder", "onnx_file"):
        check.optional_text(name, meta.get(name))
    for name in ("parity", "io", "profile", "layers", "int8_budget"):
        if meta.get(name) is not None and not isinstance(meta[name], dict):
            check.fail(name, f"must be an object, not {_kind(meta[name])}")
    budget = meta.get("int8_budget")
    if budget:
        check.number("int8_budget.max_drop", budget.get("max_drop"), positive=False)
        check.integer("int8_budget.images", budget.get("images"), 0, 1 << 40)
        interval = budget.get("interval")
        if not (isinstance(interval, list) and len(interval) == 2):
            check.fail("int8_budget.interval", f"must be a list of two numbers, not {_kind(interval)}")
        for bound in interval:
            check.number("int8_budget.interval", bound, positive=False)
        if not isinstance(budget.get("proven", False), bool):
            check.fail("int8_budget.proven", f"must be true or false, not {_kind(budget['proven'])}")
    equalization = meta.get("int8_equalization") or {}
    if not isinstance(equalization, dict) or not all(
        isinstance(v, list) and v and all(isinstance(x, (int, float)) and x > 0 for x in v)
        for v in equalization.values()
    ):
        check.fail("int8_equalization", "must map tensor names to lists of positive numbers")
    modules = meta.get("int8_float_modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        check.fail("int8_float_modules", "must be a list of strings")
    precision = meta.get("precision", "fp32")
    labels = meta["labels"]
    return Metadata(
        num_classes=classes,
        preprocess=PreprocessConfig.from_dict(meta["preprocess"]),
        labels=labels["names"],
        labels_source=labels.get("source"),
        arch=meta.get("arch"),
        precision=precision,
        batch=meta.get("batch"),
        max_batch=meta.get("max_batch"),
        weights=meta.get("weights") or {},
        opset=meta.get("opset"),
        exporter=meta.get("exporter"),
        export_request=meta.get("export_request"),
        source_sha256=meta.get("source_sha256"),
        parity=meta.get("parity"),
        int8_target=meta.get("int8_target", "tensorrt" if precision == "int8" else None),  # older INT8 files
        int8_weight_bits=meta.get("int8_weight_bits", 8 if precision == "int8" else None),
        int8_remainder=meta.get("int8_remainder", "fp32"),
        int8_float_modules=modules,
        int8_budget=meta.get("int8_budget"),
        int8_equalization={t: tuple(v) for t, v in equalization.items()},
        io_dtype=meta.get("io_dtype", "float32"),
        tensorrt=tensorrt,
        gpu=gpu,
        io=meta.get("io") or {},
        profile=meta.get("profile"),
        layers=meta.get("layers"),
        onnx_file=meta.get("onnx_file"),
        document=meta,
    )


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


def check_graph_shape(meta: Metadata, source, input_shape, num_classes: int | None) -> None:
    """The declared input size and class count must be what the graph or engine really takes
    and gives (``input_shape``: N x C x H x W with None for dynamic dimensions)."""
    channels, height, width = (tuple(input_shape) + (None,) * 4)[1:4]
    size = meta.preprocess.input_size
    if channels not in (None, 3):
        raise MetadataError(f"{source}: input has {channels} channels; an image classifier takes 3")
    if (height, width) != (size, size) and None not in (height, width):
        raise MetadataError(
            f"{source}: invalid metadata: preprocess.input_size is {size} but the model's input is {height}x{width}"
        )
    if num_classes and num_classes != meta.num_classes:
        raise MetadataError(
            f"{source}: invalid metadata: num_classes is {meta.num_classes} but the model outputs {num_classes} classes"
        )


def sidecar_path(engine: str | os.PathLike) -> Path:
    """``model.plan`` -> ``model.plan.json``: the plan stays a plain plan that trtexec loads."""
    return Path(f"{engine}.json")


def read_sidecar(engine: str | os.PathLike) -> Metadata | None:
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


def onnx_metadata(proto, source) -> Metadata | None:
    """The toolkit's metadata of an onnx.ModelProto, validated, or None when it has none."""
    props = {prop.key: prop.value for prop in proto.metadata_props}
    return parse_metadata(props, str(source)) if METADATA_KEY in props else None


def set_onnx_metadata(proto, metadata: Metadata | dict) -> None:
    """Merge our key into metadata_props (onnx.helper.set_model_props would drop the others); a
    dict is written as it is (tests plant doctored documents so)."""
    value = metadata.to_json() if isinstance(metadata, Metadata) else json.dumps(metadata, separators=(",", ":"))
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = value
            return
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, value


def _our_onnx(path: Path) -> bool:
    return METADATA_KEY in metadata_keys(path)


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


def fp32_metadata(proto, src) -> Metadata:
    """The metadata of an FP32 export, or one line saying why ``src`` is not one."""
    metadata = onnx_metadata(proto, src)
    if metadata is None:
        raise InceptionDeployError(f"{src}: no inception_deploy metadata; export it with inception-export first")
    if metadata.precision != "fp32":
        raise InceptionDeployError(f"{src}: is already {metadata.precision}; start from the FP32 export")
    return metadata
