"""Layer by layer: an FP16 or INT8 ONNX against the FP32 ONNX it was made from, every intermediate
tensor the two graphs share compared on the same images, in graph order, each row naming the
PyTorch module that produced the tensor.

Polygraphy does the mechanics (its ONNX loader marks the tensors as outputs, its Comparator runs
the graphs and keeps Polygraphy's RunResults, which ``--save-outputs`` writes for ``polygraphy run
--load-outputs``); ONNX Runtime runs both graphs with the options of our own backend. The FP32
file is the reference here because its tensors are the eager model's (its parity with eager is
checked at export); eager PyTorch stays runner 0 for the logits (``comparator.check_artifacts``).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InceptionDeployError, setting
from ..fileio import POLYGRAPHY_OUTPUTS, atomic_path, sha256_file
from ..graph import fused_relus, load_onnx, node_modules, static_batch
from ..metadata import fp32_metadata, onnx_metadata
from ..preprocess import normalize, synthetic_images
from ..runtime.base import padded_chunks
from .comparator import decode_photos, photo_files
from .metrics import THRESHOLDS

# what a layer row is about: the tensors a network computes, not bookkeeping (shapes, Q/DQ pairs)
SAVE_LIMIT_BYTES = 1 << 30  # save_outputs refuses more unless given a larger limit: it holds every tensor in memory
SKIPPED_OPS = {"QuantizeLinear", "DequantizeLinear", "Cast", "Constant", "Shape", "Gather", "Unsqueeze"}


@dataclass
class LayerRow:
    tensor: str
    op: str
    module: str  # the PyTorch module path ("" where the graph does not say)
    cosine: float  # smallest per-image cosine similarity
    rel_error: float  # ||candidate - reference|| / ||reference|| over all images
    max_abs: float


@dataclass
class LayerwiseReport:
    reference: str
    candidate: str
    precision: str
    images: int
    min_cosine: float  # the bar a layer is held to: the logits' bar of the candidate's precision
    rows: list[LayerRow] = field(default_factory=list)

    @property
    def first_below(self) -> LayerRow | None:
        """The first layer, in graph order, whose cosine falls below ``min_cosine``."""
        return next((r for r in self.rows if r.cosine < self.min_cosine), None)

    def to_dict(self) -> dict:
        first = self.first_below
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "precision": self.precision,
            "images": self.images,
            "min_cosine": self.min_cosine,
            "first_below": first.tensor if first else None,
            "layers": [asdict(r) for r in self.rows],
        }

    def table(self) -> str:
        from tabulate import tabulate

        first = self.first_below
        rows = [
            [
                i,
                r.module or "?",
                r.op,
                r.tensor,
                f"{r.cosine:.6f}",
                f"{r.rel_error:.2e}",
                f"{r.max_abs:.2e}",
                "<- first below" if r is first else "",
            ]
            for i, r in enumerate(self.rows)
        ]
        headers = ["#", "PyTorch module", "op", "tensor", "min cosine", "rel error", "max abs", ""]
        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)

    def draw(self, ax, ticks: int = 14) -> None:
        """1 - cosine of each layer along the network, on a log scale (a healthy layer sits orders
        of magnitude under the bar, a broken one near 1), the bar dashed, the first layer below it
        circled and named; ``ticks`` modules named along the axis."""
        gaps = [max(1.0 - r.cosine, 1e-9) for r in self.rows]  # 1e-9: an exact match still shows
        ax.plot(range(len(gaps)), gaps, marker=".", markersize=3, linewidth=0.8, label=self.precision)
        ax.axhline(1.0 - self.min_cosine, linestyle="--", color="grey", label=f"bar: cosine {self.min_cosine}")
        shown = set(np.linspace(0, len(self.rows) - 1, min(ticks, len(self.rows))).round().astype(int).tolist())
        first = self.first_below
        if first is not None:
            at = self.rows.index(first)
            shown.add(at)
            name = first.module or first.tensor
            ax.plot([at], [gaps[at]], "o", markersize=12, fillstyle="none", color="red", label=f"first below: {name}")
        ax.set_xticks(
            sorted(shown), [self.rows[i].module or self.rows[i].tensor for i in sorted(shown)], rotation=55, ha="right"
        )
        ax.tick_params(axis="x", labelsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("1 - min cosine (log; lower is closer)")
        ax.set_title(
            f"{Path(self.candidate).name} vs {Path(self.reference).name}: {len(self.rows)} layers in graph order, "
            f"{self.images} images",
            fontsize=10,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    def summary(self) -> str:
        first = self.first_below
        where = (
            f"first below cosine {self.min_cosine}: layer {self.rows.index(first)} {first.module or first.tensor} "
            f"({first.op}, cosine {first.cosine:.4f})"
            if first
            else f"every layer keeps cosine >= {self.min_cosine}"
        )
        return f"{self.candidate} vs {self.reference}: {len(self.rows)} layers on {self.images} images; {where}"


def compare_layers(
    reference: str | Path,
    candidates: list,
    images: np.ndarray,
    save_outputs: str | Path | None = None,
    batch: int = 4,
    save_limit: int | None = SAVE_LIMIT_BYTES,
) -> list[LayerwiseReport]:
    """Each candidate (FP16/INT8 ONNX made from the FP32 ONNX ``reference``) against it, tensor by
    tensor, on ``images`` (float32 N x 3 x H x W, preprocessed as the reference declares), ``batch``
    images at a time (a static batch's size, the last one padded, for files exported with one):
    only one batch's tensors are held, unless ``save_outputs`` keeps them all,
    which is refused before anything runs when its estimated size passes ``save_limit`` bytes
    (None: no limit)."""
    try:
        from polygraphy.backend.onnx import modify_outputs
        from polygraphy.comparator import Comparator, RunResults
        from polygraphy.comparator.struct import IterationResult
    except ImportError:
        raise InceptionDeployError(
            f"{setting('layerwise')} needs Polygraphy: pip install polygraphy (it comes with the export extra)"
        ) from None

    reference = Path(reference)
    ref_proto = load_onnx(reference)
    modules = node_modules(ref_proto.graph)
    ref_producers = {out: node for node in ref_proto.graph.node for out in node.output}
    ref_sha = sha256_file(reference)
    candidates = [(Path(path), *_made_from(path, reference, ref_sha, ref_producers)) for path in candidates]
    marked = sorted({ref for _, _, _, pairs, _ in candidates for ref, _ in pairs})
    if save_outputs is not None:
        names = [[ref for ref, _ in pairs] for _, _, _, pairs, _ in candidates]
        check_save_size(save_outputs, ref_proto, names, len(images), save_limit)
    with _quiet_polygraphy():
        runners = [_runner(modify_outputs(ref_proto, outputs=marked, copy=True), "fp32 reference")]
        runners += [
            _runner(modify_outputs(proto, outputs=[got for _, got in pairs], copy=True), str(path))
            for path, _, proto, pairs, _ in candidates
        ]
        stats = [{pair: _Statistics() for pair in pairs} for _, _, _, pairs, _ in candidates]
        saved = RunResults()
        input_name = ref_proto.graph.input[0].name
        fixed = static_batch(ref_proto.graph)
        for chunk, real in padded_chunks(images, fixed or batch, fixed or 1):
            feed = {input_name: np.ascontiguousarray(chunk, np.float32)}
            results = Comparator.run(runners, data_loader=[feed])
            if real < len(chunk):  # the padding rows of a static batch are no images of the set
                for name, iterations in results.items():
                    results[name] = [
                        IterationResult({k: v[:real] for k, v in it.items()}, it.runtime, it.runner_name)
                        for it in iterations
                    ]
            (expected,) = results[runners[0].name]
            for runner, per_tensor, (path, *_, divisors) in zip(runners[1:], stats, candidates):
                (got,) = results[runner.name]
                for (name, paired), statistics in per_tensor.items():
                    a, b = np.asarray(expected[name]), np.asarray(got[paired])
                    if name in divisors:  # equalized: the FP32 values divided per channel (calibration.equalize)
                        b = b * np.asarray(divisors[name], np.float32).reshape(1, -1, *[1] * (b.ndim - 2))
                    if a.shape != b.shape:  # its metadata says it was made from the reference; its graph does not
                        raise InceptionDeployError(
                            f"{path}: tensor {name} is {'x'.join(map(str, b.shape))} here but "
                            f"{'x'.join(map(str, a.shape))} in {reference}: it was not made from it"
                        )
                    statistics.add(a, b)
            if save_outputs is not None:
                for name, iterations in results.items():
                    if name in saved.keys():
                        saved[name].extend(iterations)
                    else:
                        saved[name] = list(iterations)
        if save_outputs is not None:
            with atomic_path(save_outputs, POLYGRAPHY_OUTPUTS) as tmp:
                saved.save(str(tmp))
    reports = []
    for (path, precision, *_), per_tensor in zip(candidates, stats):
        bar = THRESHOLDS.get(precision, THRESHOLDS["fp32"]).min_cosine or 1.0
        report = LayerwiseReport(str(reference), str(path), precision, len(images), bar)
        for (name, paired), statistics in per_tensor.items():
            if statistics.activations:  # not shapes or indices
                producer, op = ref_producers[name], ref_producers[name].op_type
                if paired != name:  # a ReLU fused into its producer's quantization: the row is both
                    producer = ref_producers.get(producer.input[0], producer)
                    op = f"{producer.op_type}+Relu"
                report.rows.append(statistics.row(name, op, modules.get(producer.name, "")))
        reports.append(report)
    return reports


def saved_bytes(ref_proto, candidate_names: list[list[str]], images: int) -> int:
    """About how large Polygraphy's RunResults of a layer-by-layer run get: every compared tensor of
    the reference and of each candidate for ``images`` images, as float32 in base64 in JSON (the
    shapes from ONNX shape inference; a tensor of unknown shape counts nothing)."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(ref_proto).graph
    per_image = {}
    for value in (*graph.value_info, *graph.output):
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim[1:]]
        per_image[value.name] = int(np.prod(dims)) if dims and all(dims) else 0
    marked = {name for names in candidate_names for name in names}
    elements = sum(per_image.get(n, 0) for n in marked) + sum(per_image.get(n, 0) for ns in candidate_names for n in ns)
    return elements * 4 * images * 4 // 3


def check_save_size(save_outputs, ref_proto, candidate_names: list[list[str]], images: int, limit: int | None) -> int:
    """The estimated size of ``save_outputs``; one line, before any work, when it passes ``limit``."""
    size = saved_bytes(ref_proto, candidate_names, images)
    if limit is not None and size > limit:
        raise InceptionDeployError(
            f"{save_outputs}: would be about {size / 1e9:.2f} GB ({images} images x every compared tensor of "
            f"{len(candidate_names) + 1} models), over the {limit / 1e9:.2f} GB limit: fewer images, or a larger "
            f"{setting('save_limit')}"
        )
    return size


def saved_size(reference, candidates, images: int, save_outputs, limit: int | None) -> int:
    """``check_save_size`` for files: the FP32 ONNX ``reference`` and the ``candidates`` made from it."""
    ref_proto = load_onnx(reference)
    ref_producers = {out: node for node in ref_proto.graph.node for out in node.output}
    ref_sha = sha256_file(reference)
    names = [[ref for ref, _ in _made_from(path, Path(reference), ref_sha, ref_producers)[2]] for path in candidates]
    return check_save_size(save_outputs, ref_proto, names, images, limit)


def _made_from(path, reference: Path, ref_sha: str, ref_producers: dict) -> tuple:
    """(precision, proto, (reference tensor, candidate tensor) pairs holding the same value, in the
    candidate's graph order, its equalized tensors' divisors) of a candidate; an error where it was
    not converted from ``reference``."""
    proto = load_onnx(path)
    meta = onnx_metadata(proto, path)
    if meta is None or meta.source_sha256 != ref_sha:
        raise _not_made_from(path, reference, setting("layerwise"))
    clipped = {tensor: pair for pair, tensor in fused_relus(proto.graph).items()}  # ReLU(tensor), quantized
    pairs = []
    for node in proto.graph.node:
        if node.op_type in SKIPPED_OPS:
            continue
        for out in node.output:
            ref = ref_producers.get(out)
            if ref is None or ref.op_type in SKIPPED_OPS:
                continue
            if ref.op_type == node.op_type:
                pairs.append((out, out))
            elif ref.op_type == "Relu" and out in clipped:  # the ReLU fused into quantization: after the Q/DQ
                pairs.append((out, clipped[out]))
            # any other pair would set a pre-activation against a post-activation: left out
    return meta.precision, proto, pairs, meta.int8_equalization


class _Statistics:
    """One tensor's agreement, accumulated batch by batch."""

    def __init__(self):
        self.cosines, self.squared_error, self.squared_norm, self.max_abs = [], 0.0, 0.0, 0.0
        self.activations = True

    def add(self, expected: np.ndarray, got: np.ndarray) -> None:
        if expected.dtype.kind != "f" or expected.ndim < 2:
            self.activations = False
            return
        a = expected.reshape(len(expected), -1).astype(np.float64)
        b = got.reshape(len(got), -1).astype(np.float64)
        norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        dot = np.sum(a * b, axis=1)
        self.cosines += [1.0 if na == nb == 0 else d / max(na * nb, 1e-300) for d, na, nb in zip(dot, norm_a, norm_b)]
        self.squared_error += float(np.sum((b - a) ** 2))
        self.squared_norm += float(np.sum(a**2))
        self.max_abs = max(self.max_abs, float(np.abs(b - a).max(initial=0.0)))

    def row(self, name: str, op: str, module: str) -> LayerRow:
        error, norm = np.sqrt(self.squared_error), np.sqrt(self.squared_norm)
        rel = error / norm if norm > 0 else (0.0 if error == 0 else float("inf"))
        return LayerRow(name, op, module, float(min(self.cosines)), float(rel), self.max_abs)


def _not_made_from(path, reference, flag: str) -> InceptionDeployError:
    return InceptionDeployError(
        f"{path}: was not made from {reference} (its source_sha256 differs): {flag} compares an "
        f"FP16/INT8 file with the FP32 ONNX it was converted from"
    )


def _runner(proto, name: str):
    """Polygraphy's ONNX Runtime runner over a session built as our backend builds it (the graph
    rewrites that change results disabled: runtime.onnxruntime_backend.UNFAITHFUL_OPTIMIZERS)."""
    import onnxruntime as ort
    from polygraphy.backend.onnxrt import OnnxrtRunner

    from ..runtime.onnxruntime_backend import UNFAITHFUL_OPTIMIZERS, session_options

    session = ort.InferenceSession(
        proto.SerializeToString(),
        session_options(),
        providers=["CPUExecutionProvider"],
        disabled_optimizers=UNFAITHFUL_OPTIMIZERS,
    )
    return OnnxrtRunner(session, name=name)


@contextlib.contextmanager
def _quiet_polygraphy():
    """Polygraphy reports each run on stdout; the CLI prints its own table."""
    from polygraphy.logger import G_LOGGER

    severity = G_LOGGER.module_severity
    G_LOGGER.module_severity = G_LOGGER.ERROR
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        G_LOGGER.module_severity = severity


def layerwise_files(onnx_files, engines=(), flag: str = "layerwise") -> tuple[Path, list[Path]]:
    """(the FP32 reference, the FP16/INT8 candidates made from it) among the files given to
    a layer-by-layer comparison (``flag``: "layerwise" or "sensitivity"); one line saying what is missing or which file
    was not made from the reference otherwise (read before any slow work)."""
    if engines:
        raise InceptionDeployError(
            f"{engines[0]}: {setting(flag)} compares ONNX files (an engine's layers are fused and renamed by "
            f"TensorRT); pass the ONNX files it was built from"
        )
    metadata = {Path(path): onnx_metadata(load_onnx(path), path) for path in onnx_files}
    references = [path for path, meta in metadata.items() if meta is None or meta.precision == "fp32"]
    candidates = [path for path, meta in metadata.items() if meta is not None and meta.precision != "fp32"]
    if len(references) != 1 or not candidates:
        raise InceptionDeployError(
            f"{setting(flag)} needs the FP32 ONNX and the FP16/INT8 files made from it, each with "
            f"{setting('onnx_files')} "
            f"(given: {len(references)} FP32 and {len(candidates)} reduced-precision files)"
        )
    reference_sha = sha256_file(references[0])
    for path in candidates:
        if metadata[path].source_sha256 != reference_sha:
            raise _not_made_from(path, references[0], flag)
    return references[0], candidates


def layer_images(reference, images=None, samples: int = 32, synthetic: int = 8) -> np.ndarray:
    """The photos and synthetic images ``inception-parity`` uses (``images`` folder or the shipped
    photos), preprocessed as the FP32 ``reference`` declares."""
    config = fp32_metadata(load_onnx(reference), reference).preprocess
    skipped: list = []
    batch = decode_photos(photo_files(images, samples, skipped), config, skipped, images)
    if synthetic:
        batch = np.concatenate([batch, normalize(synthetic_images(synthetic, config.input_size, 1234), config)])
    return batch
