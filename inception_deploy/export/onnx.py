"""torch -> ONNX: aux heads stripped, graph checked, metadata written, parity verified.

The file is written beside its destination under a temporary name and renamed into place
only once complete, so an existing model is never replaced by half a file.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..checkpoints.weights import download
from ..checkpoints.zoo import INIT_SEED, PRETRAINED, create_model
from ..errors import InceptionDeployError, first_line, setting
from ..fileio import atomic_path, sha256_file, write_failure
from ..graph import load_onnx
from ..inputs import sample_photos
from ..labels import labels_digest, resolve_labels
from ..metadata import ONNX_MODEL, SCHEMA_VERSION, Metadata, onnx_metadata, set_onnx_metadata, validate_metadata
from ..models.registry import ArchSpec, check_input_size, get_arch, spec_for_model
from ..preprocess import PreprocessConfig
from ..progress import silent, stage
from ..runtime.onnxruntime_backend import OnnxRuntimeBackend
from ..verify.comparator import SYNTHETIC_IMAGES, check_backend, verification_batches
from ..verify.metrics import ParityReport

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME, BATCH_DIM = "input", "logits", "batch"
DYNAMO_MIN_OPSET = 18  # the dynamo exporter cannot write less (it silently writes 18 instead)
LEGACY_MIN_OPSET = 9


@dataclass
class ExportResult:
    path: Path
    arch: str
    opset: int
    exporter: str
    input_name: str
    input_shape: list
    output_name: str
    output_shape: list
    metadata: Metadata
    parity: ParityReport | None
    seconds: float
    model: object = None  # the eager torch model exported (FP32 reference of later stages)
    reused: bool = False  # an existing file of the same export request, kept
    budget: object = None  # INT8 under --int8-max-drop: the search's BudgetReport

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def __fspath__(self) -> str:
        """The file written: an ExportResult goes wherever its path would (``convert_fp16(result, ...)``)."""
        return str(self.path)

    @classmethod
    def of(cls, path: Path, proto, metadata: Metadata, parity, start: float, model=None) -> "ExportResult":
        """The result of writing ``proto`` (with ``metadata``) to ``path``, begun at ``start``
        (``time.perf_counter``): every stage's file is described the same way."""
        graph = proto.graph
        return cls(
            Path(path),
            metadata.arch,
            metadata.opset,
            metadata.exporter,
            graph.input[0].name,
            value_shape(graph.input[0]),
            graph.output[0].name,
            value_shape(graph.output[0]),
            metadata,
            parity,
            time.perf_counter() - start,
            model,
        )


def export_onnx(
    arch_or_model,
    output: str | os.PathLike | None = None,
    *,
    weights=None,
    num_classes: int = 1000,
    opset: int | None = None,
    batch: int | None = None,
    max_batch: int = 64,
    input_size: int | None = None,
    simplify: bool = True,
    check_parity: bool = True,
    labels: str | os.PathLike | None = None,
    preprocess: PreprocessConfig | None = None,
    reuse: bool = False,
    recheck_parity: bool = False,
    progress=None,
) -> ExportResult:
    """Export an architecture name (built with ``weights``) or a model of the zoo to ONNX.

    ``batch``: a static batch size; None gives a dynamic ``batch`` dimension up to ``max_batch``.
    ``preprocess`` overrides the preprocessing of the weights (``model.preprocess``, set by
    ``create_model``: the architecture's, or Keras's for a Keras checkpoint).
    ``progress``: called with one line as each slow step starts. ``reuse``: keep an existing
    ``output`` exported by the same arch, weights, options and versions (``export_request``), with
    the parity recorded in it unless ``recheck_parity``.
    """
    say = progress or silent
    start = time.perf_counter()
    spec, model, weights_info = _resolve_model(arch_or_model, weights, num_classes)
    num_classes = model.get_submodule(spec.classifier).out_features
    config = preprocess or getattr(model, "preprocess", spec.preprocess)
    if input_size is not None:
        config = config.with_input_size(input_size)
    check_input_size(spec, config.input_size)
    _check_batch(batch, max_batch)
    exporter = _choose_exporter(opset)
    label_names, label_source = resolve_labels(labels, num_classes)
    output = Path(output if output is not None else f"{spec.file_stem}.onnx")
    request = export_request(
        spec.name,
        weights_info,
        num_classes,
        config,
        batch,
        max_batch,
        opset,
        exporter,
        simplify,
        labels_digest(label_names),
    )
    if reuse:
        reused = _reuse(output, request, model, config, batch, max_batch, check_parity, recheck_parity, say, start)
        if reused is not None:
            return reused
    with atomic_path(output, ONNX_MODEL) as tmp:
        with stage(
            say, f"exporting {spec.name} ({config.input_size}x{config.input_size}) with torch's {exporter} exporter"
        ):
            proto = _export(model, tmp, config.input_size, batch, max_batch, opset, exporter, simplify)
        written = _opset_of(proto)
        if opset is not None and written != opset:
            raise InceptionDeployError(f"asked for opset {opset} but the {exporter} exporter wrote {written}")
        _name_io(proto, dynamic=batch is None)
        strip_build_details(proto)
        document = {
            "schema": SCHEMA_VERSION,
            "arch": spec.name,
            "reference": spec.reference,
            "num_classes": num_classes,
            "precision": "fp32",
            "batch": batch,
            "max_batch": batch or max_batch,
            "preprocess": config.to_dict(),
            "labels": {"source": label_source, "sha256": labels_digest(label_names), "names": label_names},
            "weights": weights_info,
            "exporter": exporter,
            "opset": written,
            "versions": _versions(),
            "export_request": request,
        }
        metadata = validate_metadata(document, output)
        set_onnx_metadata(proto, metadata)
        _check(proto, output, num_classes)
        _save(proto, tmp)
        report = None
        if check_parity:
            report = check_onnx_parity(model, tmp, config, batch, max_batch, say=say)
            metadata = metadata.updated(output, parity=report.to_dict())
            set_onnx_metadata(proto, metadata)
            _save(proto, tmp)
    return ExportResult.of(output, proto, metadata, report, start, model)


def export_request(
    arch: str,
    weights_info: dict,
    num_classes: int,
    config: PreprocessConfig,
    batch,
    max_batch: int,
    opset,
    exporter: str,
    simplify: bool,
    labels_sha: str,
) -> str:
    """A digest of everything that decides an export's content (arch, weights, options, torch and
    package versions): equal digests, equal files, so an existing file may be reused."""
    import hashlib
    import json

    fields = {
        "arch": arch,
        "weights": {k: v for k, v in weights_info.items() if k != "note"},
        "num_classes": num_classes,
        "preprocess": config.to_dict(),
        "batch": batch,
        "max_batch": max_batch,
        "opset": opset,
        "exporter": exporter,
        "simplify": simplify,
        "labels": labels_sha,
        "versions": _versions(),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _reuse(
    output: Path, request: str, model, config, batch, max_batch, check_parity: bool, recheck: bool, say, start: float
) -> ExportResult | None:
    """The existing ``output`` when it was exported by the same request (its ``export_request``
    digest). The parity recorded in it when it was written stands (the same weights and options
    made the same file); ``recheck`` measures it again against ``model``."""
    if not output.is_file():
        return None
    try:
        proto = load_onnx(output)
        metadata = onnx_metadata(proto, output)
    except InceptionDeployError:
        return None  # not ours, or unreadable: exported over, as before
    if metadata is None or metadata.precision != "fp32" or metadata.export_request != request:
        return None
    say(
        f"reusing {output}: exported earlier from the same arch, weights and options (export digest "
        f"{request[:12]}); delete it to export again"
    )
    report = None
    if check_parity and (recheck or metadata.parity is None):
        report = check_onnx_parity(model, output, config, batch, max_batch, say=say)
    elif check_parity:
        report = ParityReport.from_dict(metadata.parity)
        say(f"parity recorded when {output} was written: {report.verdict} (the same export: not measured again)")
    result = ExportResult.of(output, proto, metadata, report, start, model)
    result.reused = True
    return result


def _resolve_model(arch_or_model, weights, num_classes) -> tuple[ArchSpec, object, dict]:
    if not isinstance(arch_or_model, str):
        spec = spec_for_model(arch_or_model)
        if spec is None:
            raise InceptionDeployError(
                f"{type(arch_or_model).__name__} is not a model of this zoo; "
                f"build it with inception_deploy.create_model"
            )
        return spec, _without_aux(arch_or_model.eval(), spec), {"file": None, "note": "in-memory model"}
    spec = get_arch(arch_or_model)
    if weights is not None and str(weights) == PRETRAINED:
        if spec.pretrained is None:
            raise InceptionDeployError(f"arch {spec.name} has no published checkpoint: pass a file")
        weights = download(spec.pretrained)
    model = create_model(spec.name, num_classes, weights=weights)
    if weights is None:
        info = {
            "file": None,
            "init_seed": INIT_SEED,
            "note": "random init; batch-norm statistics from synthetic images and the shipped photos",
        }
    else:
        info = {"file": Path(weights).name, "sha256": sha256_file(weights)}
    return spec, model, info


def _without_aux(model, spec: ArchSpec):
    """A copy without auxiliary heads (they only run in training, but their parameters would
    otherwise travel into the graph as initializers)."""
    if not any(getattr(model, name, None) is not None for name in spec.aux_modules):
        return model
    model = copy.deepcopy(model)
    for name in spec.aux_modules:
        setattr(model, name, None)
    return model


def _check_batch(batch, max_batch):
    if batch is not None and batch < 1:
        raise InceptionDeployError(f"{setting('ExportRequest.batch')} must be at least 1, not {batch}")
    if batch is None and max_batch < 1:
        raise InceptionDeployError(f"{setting('ExportRequest.max_batch')} must be at least 1, not {max_batch}")


def _choose_exporter(opset: int | None) -> str:
    """torch's dynamo exporter writes opset 18 and up; below that only the legacy TorchScript
    exporter can, and asking dynamo for less silently gives 18 (docs/REFERENCE.md)."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset is None or DYNAMO_MIN_OPSET <= opset <= newest:
        return "dynamo"
    if LEGACY_MIN_OPSET <= opset < DYNAMO_MIN_OPSET:
        return "torchscript"
    raise InceptionDeployError(
        f"opset {opset} cannot be written: supported are {LEGACY_MIN_OPSET}-{newest} "
        f"({DYNAMO_MIN_OPSET} and up with the dynamo exporter)"
    )


def _export(model, path: Path, size: int, batch, max_batch, opset, exporter, simplify):
    import onnx
    import torch

    example = torch.zeros(batch or min(2, max_batch), 3, size, size)
    kwargs = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset, verbose=False)
    if exporter == "dynamo":
        kwargs.update(dynamo=True, external_data=False, optimize=simplify)
        if batch is None:
            # torch.export treats 1 as a special size: trace with 2 and allow 1..max_batch
            kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim(BATCH_DIM, min=1, max=max(2, max_batch))}}
    else:
        kwargs.update(dynamo=False, do_constant_folding=simplify)
        if batch is None:
            kwargs["dynamic_axes"] = {INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}}
    # no autograd bookkeeping while tracing: the same file, byte for byte (v3, Inception-ResNet-v2,
    # InceptionNeXt-T checked), in about 20% less time (v3: 11.9 s against 14.8 s, median of three)
    with _quiet(), torch.no_grad():
        try:
            torch.onnx.export(model, (example,), str(path), **kwargs)
        except Exception as e:
            if write_failure(e) is not None:
                raise  # the destination's fault: atomic_path names it
            raise InceptionDeployError(f"torch.onnx.export ({exporter}) failed: {first_line(e)}") from None
    return onnx.load(str(path))


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warn about optional torchvision ops; keep the CLI's
    output to what the user asked for (errors still raise)."""
    torch_log = logging.getLogger("torch.onnx")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_log.setLevel(level)


# the node metadata kept: each node's PyTorch module path (e.g. ['', 'Mixed_6b', 'Mixed_6b.branch1x1'])
KEPT_NODE_METADATA = ("pkg.torch.onnx.name_scopes",)


def strip_build_details(proto) -> None:
    """Drop what the exporters record about the machine that built the graph: stack traces with
    absolute source paths, FX node text and doc strings; keep each node's module path."""

    def nodes(graph):
        for node in graph.node:
            yield node
            for attribute in node.attribute:
                for subgraph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                    yield from nodes(subgraph)

    for node in (*nodes(proto.graph), *(n for f in proto.functions for n in f.node)):
        kept = [(m.key, m.value) for m in node.metadata_props if m.key in KEPT_NODE_METADATA]
        del node.metadata_props[:]
        for key, value in kept:
            node.metadata_props.add(key=key, value=value)
        node.doc_string = ""
    proto.graph.doc_string = ""


def _opset_of(proto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _name_io(proto, dynamic: bool):
    """One input ``input`` and one output ``logits``, batch dimension named ``batch``."""
    graph = proto.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise InceptionDeployError(
            f"exported graph has {len(graph.input)} inputs and {len(graph.output)} "
            f"outputs; expected one each (aux heads left in?)"
        )
    if dynamic:
        for value in (graph.input[0], graph.output[0]):
            dim = value.type.tensor_type.shape.dim[0]
            dim.ClearField("dim_value")
            dim.dim_param = BATCH_DIM


def _check(proto, output: Path, num_classes: int):
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise InceptionDeployError(f"{output}: exported graph fails the ONNX checker: {first_line(e)}") from None
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer):
        raise InceptionDeployError(f"{output}: exported graph refers to external data; expected one file")
    classes = value_shape(inferred.graph.output[0])[-1]
    if classes != num_classes:
        raise InceptionDeployError(f"{output}: output has {classes} classes, expected {num_classes}")


def _save(proto, path: Path):
    import onnx

    onnx.save(proto, str(path))


def check_onnx_parity(
    model,
    path: Path,
    config: PreprocessConfig,
    batch: int | None,
    max_batch: int | None,
    precision: str = "fp32",
    unjudged: str | None = None,
    say=silent,
) -> ParityReport:
    """An ONNX file on ONNX Runtime's CPU against the eager ``model``, at the verification batch
    sizes (export, FP16 and INT8 alike), announced through ``say``."""
    backend = OnnxRuntimeBackend(path, device="cpu", max_batch=batch or max_batch)
    sizes = verification_batches(batch, max_batch)
    images = len(sample_photos()) + SYNTHETIC_IMAGES
    how = f"one at a time and in batches of up to {max(sizes)}" if len(sizes) > 1 else f"in batches of {sizes[0]}"
    with stage(say, f"checking parity against eager PyTorch on {images} images, {how}"):
        return check_backend(model, backend, config, sizes, precision, "onnxruntime-cpu", unjudged=unjudged)


def value_shape(value) -> list:
    """Dimensions of an ONNX value: ints, or the names of symbolic ones (e.g. "batch")."""
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch

    return {
        "inception_deploy": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
