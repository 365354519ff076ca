"""Numerical parity of an exported artifact against eager PyTorch.

One place defines what "matches" means per precision; export and ``inception-parity`` share it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .preprocess import PreprocessConfig, normalize, preprocess, synthetic_images
from .progress import Progress, heartbeat, silent


@dataclass(frozen=True)
class Thresholds:
    """A row passes when every set bound holds (None: not checked for this precision); ``max_abs``
    is an alternative to ``max_rel``: a row within either passes that bound."""

    max_rel: float | None = None  # max |diff| / max |reference logit|
    max_abs: float | None = None  # ... or, where that is larger, max |diff| itself
    min_cosine: float | None = None  # smallest per-image cosine similarity
    min_top1: float = 1.0  # fraction of images whose top-1 class agrees


THRESHOLDS = {
    # FP32: at most 1e-4 of the largest logit, or 5e-4 absolute where the logits are small: a
    # randomly initialised network's are near 1 (a trained ImageNet classifier's 10-20), and there
    # float32 sums in another order (batch norm folded into the convolutions) differ by up to 3e-4
    # (Inception v4 on the shipped photos)
    "fp32": Thresholds(max_rel=1e-4, max_abs=5e-4, min_top1=1.0),
    "fp16": Thresholds(min_cosine=0.999, min_top1=0.99),
    # INT8 is judged by accuracy on labelled data (at most 1 point below FP32, see tests); against
    # eager logits, on images like its calibration set, every image must keep cosine >= 0.95 and
    # 95% must keep their top-1 (the trained test classifier, tensorrt target: 0.972 / 97.8%,
    # accuracy -0.2 point; cpu target: 0.984 / 97.8%, accuracy unchanged)
    "int8": Thresholds(min_cosine=0.95, min_top1=0.95),
    # an FP32 artifact executed in bfloat16 (OpenVINO on a CPU with bf16 arithmetic): 8-bit mantissa;
    # the trained test classifier keeps cosine >= 0.9959 and 98.5-99.7% of its top-1 on 400 / 1000
    # images (accuracy equal or +0.3 point)
    "bf16": Thresholds(min_cosine=0.99, min_top1=0.98),
}


@dataclass
class ParityRow:
    inputs: str  # which images, at which batch size
    precision: str
    backend: str
    images: int
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float
    top1: float
    top5: float
    passed: bool
    accuracy: float | None = None  # top-1 accuracy of the candidate, where labels are known
    reference_accuracy: float | None = None
    judged: bool = True  # False: measured and shown, but not held against the thresholds (see check_backend)

    @property
    def verdict(self) -> str:
        """"pass", "fail", or "not judged" (measured only): the words of the table, JSON and API."""
        return "not judged" if not self.judged else "pass" if self.passed else "fail"


@dataclass
class ParityReport:
    rows: list[ParityRow] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (artifact, why it could not run here)
    skipped_inputs: list[tuple[str, str]] = field(default_factory=list)  # (photo, why it was unusable)

    @property
    def verdict(self) -> str:
        """"fail" when a judged row fails, "pass" when every row was judged and passes, else
        "not judged" (rows only measured, e.g. reduced precision of random weights; or no row)."""
        verdicts = {r.verdict for r in self.rows}
        if "fail" in verdicts:
            return "fail"
        return "pass" if verdicts == {"pass"} else "not judged"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def failed(self) -> bool:
        """A judged row failed: what makes the commands exit 1."""
        return self.verdict == "fail"

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "passed": self.passed,
                "rows": [{**asdict(r), "verdict": r.verdict} for r in self.rows],
                "skipped": [{"artifact": a, "reason": r} for a, r in self.skipped],
                "skipped_inputs": [{"file": str(f), "reason": r} for f, r in self.skipped_inputs]}

    def table(self, first_column: str = "inputs") -> str:
        from tabulate import tabulate

        labelled = any(r.accuracy is not None for r in self.rows)
        rows = []
        for r in self.rows:
            row = [r.inputs, r.precision, r.backend, r.images, f"{r.max_abs:.2e}", f"{r.max_rel:.2e}",
                   f"{r.mean_abs:.2e}", f"{r.cosine:.6f}", f"{r.top1:.1%}", f"{r.top5:.1%}"]
            if labelled:
                row.append("" if r.accuracy is None else f"{r.accuracy:.1%} ({r.reference_accuracy:.1%})")
            rows.append(row + [r.verdict.upper() if r.judged else "not judged (random weights)"])
        headers = [first_column, "precision", "backend", "n", "max abs", "max rel", "mean abs", "cosine",
                   "top-1 agree", "top-5 overlap"] + (["accuracy (eager)"] if labelled else []) + ["result"]
        for artifact, reason in self.skipped:
            rows.append([artifact] + [""] * (len(headers) - 2) + [f"SKIPPED: {reason}"])
        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def compare(inputs: str, reference: np.ndarray, candidate: np.ndarray, precision: str = "fp32",
            backend: str = "onnxruntime", labels: np.ndarray | None = None) -> ParityRow:
    """Statistics of ``candidate`` logits against ``reference`` logits (both N x classes);
    with ``labels``, also both top-1 accuracies."""
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    diff = np.abs(candidate - reference)
    scale = max(np.abs(reference).max(), np.finfo(np.float32).tiny)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosine = np.sum(reference * candidate, axis=1) / np.maximum(norms, np.finfo(np.float64).tiny)
    k = min(5, reference.shape[1])
    top_ref = np.argsort(-reference, axis=1)[:, :k]
    top_cand = np.argsort(-candidate, axis=1)[:, :k]
    top5 = np.mean([len(set(a) & set(b)) / k for a, b in zip(top_ref, top_cand)])
    row = ParityRow(inputs, precision, backend, len(reference), float(diff.max()), float(diff.max() / scale),
                    float(diff.mean()), float(cosine.min()), float(np.mean(top_ref[:, 0] == top_cand[:, 0])),
                    float(top5), passed=False)
    if labels is not None:
        row.accuracy = float(np.mean(top_cand[:, 0] == labels))
        row.reference_accuracy = float(np.mean(top_ref[:, 0] == labels))
    row.passed = _passes(row, THRESHOLDS[precision])
    return row


def _passes(row: ParityRow, t: Thresholds) -> bool:
    return (row.top1 >= t.min_top1
            and (t.max_rel is None or row.max_rel <= t.max_rel or (t.max_abs is not None and row.max_abs <= t.max_abs))
            and (t.min_cosine is None or row.cosine >= t.min_cosine))


def sample_folder() -> Path:
    """The folder of real photos shipped with the package (see inception_deploy/data/README.md)."""
    return Path(str(resources.files("inception_deploy").joinpath("data/samples")))


def sample_photos() -> list:
    return sorted(sample_folder().glob("*.jpg"), key=lambda p: p.name)


SYNTHETIC_IMAGES = 8


def parity_inputs(config: PreprocessConfig, synthetic: int = SYNTHETIC_IMAGES) -> dict[str, np.ndarray]:
    """Named input sets: the shipped photos and ``synthetic`` generated images."""
    with_photos = {"photos": preprocess(sample_photos(), config)}
    if synthetic:
        with_photos["synthetic"] = normalize(synthetic_images(synthetic, config.input_size, seed=1234), config)
    return with_photos


def eager_logits(model, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.eval()(torch.from_numpy(batch)).float().numpy()


def check_backend(model, backend, config: PreprocessConfig, batch_sizes: tuple[int, ...],
                  precision: str = "fp32", backend_name: str = "onnxruntime",
                  labelled: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                  judged: bool = True) -> ParityReport:
    """Eager ``model`` vs ``backend.infer`` on every input set at every batch size; ``labelled``
    adds named (images, labels) sets whose rows also report accuracy. ``judged=False`` measures
    without holding the rows against the thresholds: reduced precision on randomly initialised
    weights, which have no decision margins, flips near-ties that mean nothing."""
    sets = {name: (images, None) for name, images in parity_inputs(config).items()}
    sets.update(labelled or {})
    report = ParityReport()
    for name, (images, labels) in sets.items():
        reference = eager_logits(model, images)
        for batch in batch_sizes:
            got = np.concatenate([backend.infer(images[i:i + batch]) for i in range(0, len(images), batch)])
            label = f"{name} b{min(batch, len(images))}"
            row = compare(label, reference, got, precision, backend_name, labels)
            row.judged = judged
            report.rows.append(row)
    return report


def check_artifacts(arch: str, artifacts, *, weights=None, device: str = "cpu", precision: str | None = None,
                    images=None, samples: int = 32, synthetic: int = 8, batch_size: int = 8,
                    progress: Progress | None = None) -> ParityReport:
    """One row per artifact: eager ``arch`` (with ``weights``) vs the artifact on the same
    images, each preprocessed as that artifact declares, judged by the artifact's precision (or
    bf16's thresholds where ``precision="bf16"`` runs an FP32 file in bfloat16).

    ONNX files run on ONNX Runtime's ``device`` (OpenVINO for "openvino"), engines on TensorRT; an
    engine that cannot run on this machine (no TensorRT, no GPU) is listed in ``report.skipped``
    with the reason.
    Unusable photos in ``images`` are skipped and listed in ``report.skipped_inputs``.
    ``progress``: hears each step (building the reference, each artifact), and a heartbeat."""
    from .errors import InceptionDeployError
    from .fileio import sha256_file
    from .metadata import preprocess_of
    from .runtime import open_backend
    from .runtime.base import ENGINE_SUFFIXES
    from .runtime.tensorrt_backend import TensorRTUnavailable
    from .zoo import PRETRAINED, create_model

    from .models.registry import canonical_arch, get_arch

    spec = get_arch(arch)
    say = progress or silent
    report = ParityReport()
    backends = []
    for path in artifacts:
        is_engine = Path(path).suffix.lower() in ENGINE_SUFFIXES
        try:
            backends.append((path, open_backend(path, device="auto" if is_engine else device, arch=arch,
                                                precision=None if is_engine else precision)))
        except TensorRTUnavailable as e:
            report.skipped.append((str(path), str(e)))
    photos = _photo_files(images, samples, report.skipped_inputs)
    weights_sha = sha256_file(weights) if weights and str(weights) != PRETRAINED else None
    models: dict[int, object] = {}
    decoded_photos: dict[PreprocessConfig, np.ndarray] = {}
    for path, backend in backends:
        meta = backend.metadata
        if meta.get("arch") is not None and canonical_arch(meta["arch"]) != spec.name:
            raise InceptionDeployError(f"{path}: was exported from arch {meta['arch']}, not {spec.name}: pass "
                                       f"--arch {meta['arch']}")
        recorded = (meta.get("weights") or {}).get("sha256")
        if recorded and weights is None:
            raise InceptionDeployError(f"{path}: was exported from {meta['weights']['file']} (sha256 {recorded[:12]}"
                                       f"...): pass it with --weights")
        if recorded and weights_sha and recorded != weights_sha:
            raise InceptionDeployError(f"{path}: was exported from other weights ({meta['weights']['file']}, "
                                       f"sha256 {recorded[:12]}...) than {weights}")
        classes = meta["num_classes"]
        with heartbeat(say, f"checking {path}"):
            if classes not in models:
                say(f"building {spec.name} with {weights or 'random weights'} as the eager reference...")
                models[classes] = create_model(arch, num_classes=classes, weights=weights)
            config = preprocess_of(meta)
            if config not in decoded_photos:
                decoded_photos[config] = _decode_photos(photos, config, report.skipped_inputs, images)
            batch = decoded_photos[config]
            if synthetic:
                batch = np.concatenate([batch, normalize(synthetic_images(synthetic, config.input_size, 1234),
                                                         config)])
            say(f"running eager PyTorch and {path} ({backend.name}) on {len(batch)} images...")
            reference = eager_logits(models[classes], batch)
            got = np.concatenate([backend.infer(batch[i:i + batch_size]) for i in range(0, len(batch), batch_size)])
        judged_as = backend.precision if backend.precision in THRESHOLDS else "fp32"
        row = compare(str(path), reference, got, judged_as, backend.name)
        random_weights = weights is None and not (meta.get("weights") or {}).get("file")
        row.judged = judged_as == "fp32" or not random_weights
        report.rows.append(row)
    return report


def _photo_files(folder, samples: int, skipped: list) -> list:
    """``samples`` photos spread over ``folder`` (default: the shipped ones); what the folder scan
    could not look at (unreadable subfolders, dangling links) is added to ``skipped``."""
    if folder is None:
        return sample_photos()
    from .calibration.images import find_images, spread

    files, problems = find_images(folder)
    skipped += problems
    return spread(files, samples)


def _decode_photos(photos, config: PreprocessConfig, skipped: list, folder) -> np.ndarray:
    """The usable photos as a network batch; unusable ones are added to ``skipped`` (once)."""
    from .errors import InceptionDeployError
    from .inputs import decoded

    problems: list = []
    images = list(decoded(photos, config, problems))
    skipped += [p for p in problems if p not in skipped]
    if not images:
        name, reason = problems[0]
        raise InceptionDeployError(f"{folder}: no usable photo among {len(photos)} (first: {Path(name).name}: "
                                   f"{reason})")
    return normalize(np.stack(images), config)
