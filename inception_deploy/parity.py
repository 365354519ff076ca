"""Numerical parity of an exported artifact against eager PyTorch.

One place defines what "matches" means per precision; export and ``inception-parity`` share it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources

import numpy as np

from .preprocess import PreprocessConfig, normalize, preprocess, synthetic_images


@dataclass(frozen=True)
class Thresholds:
    """A row passes when every set bound holds (None: not checked for this precision)."""

    max_rel: float | None = None  # max |diff| / max |reference logit|
    min_cosine: float | None = None  # smallest per-image cosine similarity
    min_top1: float = 1.0  # fraction of images whose top-1 class agrees


THRESHOLDS = {
    "fp32": Thresholds(max_rel=1e-4, min_top1=1.0),
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


@dataclass
class ParityReport:
    rows: list[ParityRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "rows": [asdict(r) for r in self.rows]}

    def table(self) -> str:
        from tabulate import tabulate

        rows = [(r.inputs, r.precision, r.backend, r.images, f"{r.max_abs:.2e}", f"{r.max_rel:.2e}",
                 f"{r.mean_abs:.2e}", f"{r.cosine:.6f}", f"{r.top1:.1%}", f"{r.top5:.1%}",
                 "PASS" if r.passed else "FAIL") for r in self.rows]
        headers = ("inputs", "precision", "backend", "n", "max abs", "max rel", "mean abs", "cosine",
                   "top-1", "top-5", "result")
        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def compare(inputs: str, reference: np.ndarray, candidate: np.ndarray, precision: str = "fp32",
            backend: str = "onnxruntime") -> ParityRow:
    """Statistics of ``candidate`` logits against ``reference`` logits (both N x classes)."""
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
    row.passed = _passes(row, THRESHOLDS[precision])
    return row


def _passes(row: ParityRow, t: Thresholds) -> bool:
    return (row.top1 >= t.min_top1
            and (t.max_rel is None or row.max_rel <= t.max_rel)
            and (t.min_cosine is None or row.cosine >= t.min_cosine))


def sample_photos() -> list:
    """The real photos shipped with the package (see inception_deploy/data/README.md)."""
    folder = resources.files("inception_deploy").joinpath("data/samples")
    return sorted((p for p in folder.iterdir() if p.name.endswith(".jpg")), key=lambda p: p.name)


def parity_inputs(config: PreprocessConfig, synthetic: int = 8) -> dict[str, np.ndarray]:
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
                  precision: str = "fp32", backend_name: str = "onnxruntime") -> ParityReport:
    """Eager ``model`` vs ``backend.infer`` on every input set at every batch size."""
    report = ParityReport()
    for name, images in parity_inputs(config).items():
        reference = eager_logits(model, images)
        for batch in batch_sizes:
            got = np.concatenate([backend.infer(images[i:i + batch]) for i in range(0, len(images), batch)])
            label = f"{name} b{min(batch, len(images))}"
            report.rows.append(compare(label, reference, got, precision, backend_name))
    return report
