"""The comparator: runners on the same decoded inputs, runner 0 the reference (eager PyTorch),
each candidate compared with ``metrics.compare`` and judged by its precision's thresholds.
Export-time checks, ``inception-parity`` and the INT8 search are choices of runners and inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..checkpoints.zoo import PRETRAINED, create_model
from ..errors import InceptionDeployError, setting
from ..fileio import sha256_file
from ..inputs import decoded, find_images, sample_photos, spread
from ..metadata import Metadata
from ..models.registry import canonical_arch, get_arch
from ..preprocess import PreprocessConfig, normalize, preprocess, synthetic_images
from ..progress import Progress, heartbeat, silent
from ..runtime.open import open_artifact
from ..runtime.torch_runner import TorchRunner
from .metrics import OUTSIDE_CALIBRATION, RANDOM_WEIGHTS, THRESHOLDS, ParityReport, compare

SYNTHETIC_IMAGES = 8


def parity_inputs(config: PreprocessConfig, synthetic: int = SYNTHETIC_IMAGES) -> dict[str, np.ndarray]:
    """Named input sets: the shipped photos and ``synthetic`` generated images."""
    with_photos = {"photos": preprocess(sample_photos(), config)}
    if synthetic:
        with_photos["synthetic"] = normalize(synthetic_images(synthetic, config.input_size, seed=1234), config)
    return with_photos


def verification_batches(batch: int | None, max_batch: int | None) -> tuple[int, ...]:
    """The batch sizes an artifact is verified at: its static batch, else one image at a time and
    the largest batch up to 8 it takes (export, precision conversions and engines alike)."""
    return (batch,) if batch else tuple(sorted({1, min(8, max_batch or 8)}))


def compare_runners(
    reference,
    candidate,
    inputs: dict[str, tuple[np.ndarray, np.ndarray | None]],
    batch_sizes: tuple[int, ...],
    precision: str,
    candidate_name: str | None = None,
    unjudged: str | None = None,
) -> ParityReport:
    """Runner 0 (``reference``) and ``candidate`` on each named input set (images, labels or
    None); the candidate at each batch size, a row per set and size judged by ``precision``
    (measured only where ``unjudged`` says why)."""
    report = ParityReport()
    for name, (images, labels) in inputs.items():
        expected = reference.infer(images)
        for batch in batch_sizes:
            got = np.concatenate([candidate.infer(images[i : i + batch]) for i in range(0, len(images), batch)])
            row = compare(
                f"{name} b{min(batch, len(images))}", expected, got, precision, candidate_name or candidate.name, labels
            )
            row.judged, row.why_unjudged = unjudged is None, unjudged or ""
            report.rows.append(row)
    return report


def check_backend(
    model,
    backend,
    config: PreprocessConfig,
    batch_sizes: tuple[int, ...],
    precision: str = "fp32",
    backend_name: str = "onnxruntime",
    labelled: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    unjudged: str | None = None,
) -> ParityReport:
    """Eager ``model`` vs ``backend`` on the shipped photos and synthetic images (and the named
    ``labelled`` (images, labels) sets, whose rows also report accuracy) at every batch size.
    ``model`` may be a ``TorchRunner``: checks that share one run the eager model once per input set.
    ``unjudged``: why the rows are measured without being held against the thresholds (None: they
    are judged): reduced precision on randomly initialised weights, which have no decision
    margins, flips near-ties that mean nothing (metrics.RANDOM_WEIGHTS); an INT8 file whose
    accuracy budget judged it (metrics.BY_BUDGET). INT8's synthetic rows are never judged: its
    ranges are calibrated on images like the user's, not on noise."""
    inputs = {name: (images, None) for name, images in parity_inputs(config).items()}
    inputs.update(labelled or {})
    reference = model if isinstance(model, TorchRunner) else TorchRunner(model)
    report = compare_runners(reference, backend, inputs, batch_sizes, precision, backend_name, unjudged)
    if precision == "int8":
        for row in report.rows:
            if row.judged and row.inputs.startswith("synthetic"):
                row.judged, row.why_unjudged = False, OUTSIDE_CALIBRATION
    return report


def check_artifacts(
    arch: str,
    artifacts,
    *,
    weights=None,
    device: str = "cpu",
    precision: str | None = None,
    images=None,
    samples: int = 32,
    synthetic: int = 8,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> ParityReport:
    """One row per artifact: eager ``arch`` (with ``weights``) vs the artifact on the same
    images, each preprocessed as that artifact declares, judged by the artifact's precision (or
    bf16's thresholds where ``precision="bf16"`` runs an FP32 file in bfloat16); ``synthetic``
    generated images join the photos, but for INT8 files.

    ONNX files run on ONNX Runtime's ``device`` (OpenVINO for "openvino"), engines on TensorRT; an
    artifact this machine cannot run (an engine without TensorRT or a GPU) is listed in
    ``report.skipped`` with the reason. Unusable photos in ``images`` are skipped and listed in
    ``report.skipped_inputs``. ``progress``: hears each step, and a heartbeat."""
    spec = get_arch(arch)
    say = progress or silent
    report = ParityReport()
    runners = []
    for path in artifacts:
        backend, why_not = open_artifact(path, device, arch, precision)
        if backend is None:
            report.skipped.append((str(path), why_not))
        else:
            runners.append((path, backend))
    photos = photo_files(images, samples, report.skipped_inputs)
    weights_sha = sha256_file(weights) if weights and str(weights) != PRETRAINED else None
    references: dict[int, TorchRunner] = {}
    decoded_photos: dict[PreprocessConfig, np.ndarray] = {}
    for path, backend in runners:
        meta = backend.metadata
        _check_made_from(path, meta, spec, weights, weights_sha)
        classes = meta.num_classes
        with heartbeat(say, f"checking {path}"):
            if classes not in references:
                say(f"building {spec.name} with {weights or 'random weights'} as the eager reference...")
                references[classes] = TorchRunner(create_model(arch, num_classes=classes, weights=weights))
            config = meta.preprocess
            if config not in decoded_photos:
                decoded_photos[config] = decode_photos(photos, config, report.skipped_inputs, images)
            batch = decoded_photos[config]
            judged_as = backend.precision if backend.precision in THRESHOLDS else "fp32"
            if synthetic and judged_as != "int8":  # INT8's ranges are calibrated on images, not on noise
                batch = np.concatenate([batch, normalize(synthetic_images(synthetic, config.input_size, 1234), config)])
            say(f"running eager PyTorch and {path} ({backend.name}) on {len(batch)} images...")
            random_weights = weights is None and not meta.weights.get("file")
            (row,) = compare_runners(
                references[classes],
                backend,
                {str(path): (batch, None)},
                (batch_size,),
                judged_as,
                unjudged=RANDOM_WEIGHTS if judged_as != "fp32" and random_weights else None,
            ).rows
        row.inputs = str(path)
        report.rows.append(row)
    return report


def _check_made_from(path, meta: Metadata, spec, weights, weights_sha: str | None) -> None:
    """An artifact is compared with the arch and weights it was exported from, or not at all."""
    if meta.arch is not None and canonical_arch(meta.arch) != spec.name:
        raise InceptionDeployError(
            f"{path}: was exported from arch {meta.arch}, not {spec.name}: pass {setting('arch')} {meta.arch}"
        )
    recorded = meta.weights.get("sha256")
    if recorded and weights is None:
        raise InceptionDeployError(
            f"{path}: was exported from {meta.weights['file']} (sha256 {recorded[:12]}...): pass it with "
            f"{setting('weights')}"
        )
    if recorded and weights_sha and recorded != weights_sha:
        raise InceptionDeployError(
            f"{path}: was exported from other weights ({meta.weights['file']}, "
            f"sha256 {recorded[:12]}...) than {weights}"
        )


def photo_files(folder, samples: int, skipped: list) -> list:
    """``samples`` photos spread over ``folder`` (default: the shipped ones); what the folder scan
    could not look at (unreadable subfolders, dangling links) is added to ``skipped``."""
    if folder is None:
        return sample_photos()
    files, problems = find_images(folder)
    skipped += problems
    return spread(files, samples)


def decode_photos(photos, config: PreprocessConfig, skipped: list, folder) -> np.ndarray:
    """The usable photos as a network batch; unusable ones are added to ``skipped`` (once)."""
    problems: list = []
    images = list(decoded(photos, config, problems))
    skipped += [p for p in problems if p not in skipped]
    if not images:
        name, reason = problems[0]
        raise InceptionDeployError(
            f"{folder}: no usable photo among {len(photos)} (first: {Path(name).name}: {reason})"
        )
    return normalize(np.stack(images), config)
