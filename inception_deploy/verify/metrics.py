"""What "matches" means: statistics of candidate logits against reference logits, and the
thresholds each precision is judged by. Pure functions of arrays: no model, no file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..fileio import json_kind
from ..statistics import cosines


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


# why rows are measured and shown but not held against the thresholds (ParityRow.why_unjudged)
RANDOM_WEIGHTS = "random weights"  # no decision margins: reduced precision flips near-ties that mean nothing
BY_BUDGET = "INT8 budget judges"  # the accuracy budget's held-out images decide (calibration.budget)
OUTSIDE_CALIBRATION = "synthetic, outside INT8's calibrated ranges"


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
    why_unjudged: str = ""  # RANDOM_WEIGHTS, BY_BUDGET, OUTSIDE_CALIBRATION

    @property
    def verdict(self) -> str:
        """ "pass", "fail", or "not judged" (measured only): the words of the table, JSON and API."""
        return "not judged" if not self.judged else "pass" if self.passed else "fail"


PARITY_REPORT = json_kind("a parity report of inception-parity", ("verdict", "rows", "skipped"))


@dataclass
class ParityReport:
    rows: list[ParityRow] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (artifact, why it could not run here)
    skipped_inputs: list[tuple[str, str]] = field(default_factory=list)  # (photo, why it was unusable)

    @property
    def verdict(self) -> str:
        """ "fail" when a judged row fails, "pass" when the judged rows pass, "not judged" when no
        row is judged (rows only measured: reduced precision of random weights, an INT8 file its
        budget judged; or no row). Rows measured only beside judged ones (INT8 on synthetic
        images) do not change the verdict."""
        verdicts = {r.verdict for r in self.rows} - {"not judged"}
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
        return {
            "verdict": self.verdict,
            "passed": self.passed,
            "rows": [{**asdict(r), "verdict": r.verdict} for r in self.rows],
            "skipped": [{"artifact": a, "reason": r} for a, r in self.skipped],
            "skipped_inputs": [{"file": str(f), "reason": r} for f, r in self.skipped_inputs],
        }

    @classmethod
    def from_dict(cls, document: dict) -> "ParityReport":
        """A report as ``to_dict`` wrote it (an artifact's recorded parity)."""
        names = {f for f in ParityRow.__dataclass_fields__}
        return cls(
            [ParityRow(**{k: v for k, v in row.items() if k in names}) for row in document.get("rows", [])],
            [(s["artifact"], s["reason"]) for s in document.get("skipped", [])],
            [(s["file"], s["reason"]) for s in document.get("skipped_inputs", [])],
        )

    def table(self, first_column: str = "inputs") -> str:
        from tabulate import tabulate

        labelled = any(r.accuracy is not None for r in self.rows)
        rows = []
        for r in self.rows:
            row = [
                r.inputs,
                r.precision,
                r.backend,
                r.images,
                f"{r.max_abs:.2e}",
                f"{r.max_rel:.2e}",
                f"{r.mean_abs:.2e}",
                f"{r.cosine:.6f}",
                f"{r.top1:.1%}",
                f"{r.top5:.1%}",
            ]
            if labelled:
                row.append("" if r.accuracy is None else f"{r.accuracy:.1%} ({r.reference_accuracy:.1%})")
            rows.append(row + [r.verdict.upper() if r.judged else f"not judged ({r.why_unjudged or RANDOM_WEIGHTS})"])
        headers = (
            [
                first_column,
                "precision",
                "backend",
                "n",
                "max abs",
                "max rel",
                "mean abs",
                "cosine",
                "top-1 agree",
                "top-5 overlap",
            ]
            + (["accuracy (eager)"] if labelled else [])
            + ["result"]
        )
        for artifact, reason in self.skipped:
            rows.append([artifact] + [""] * (len(headers) - 2) + [f"SKIPPED: {reason}"])
        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def compare(
    inputs: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    precision: str = "fp32",
    backend: str = "onnxruntime",
    labels: np.ndarray | None = None,
) -> ParityRow:
    """Statistics of ``candidate`` logits against ``reference`` logits (both N x classes);
    with ``labels``, also both top-1 accuracies."""
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    diff = np.abs(candidate - reference)
    scale = max(np.abs(reference).max(), np.finfo(np.float32).tiny)
    cosine = cosines(reference, candidate)
    k = min(5, reference.shape[1])
    top_ref = np.argsort(-reference, axis=1)[:, :k]
    top_cand = np.argsort(-candidate, axis=1)[:, :k]
    top5 = np.mean([len(set(a) & set(b)) / k for a, b in zip(top_ref, top_cand)])
    row = ParityRow(
        inputs,
        precision,
        backend,
        len(reference),
        float(diff.max()),
        float(diff.max() / scale),
        float(diff.mean()),
        float(cosine.min()),
        float(np.mean(top_ref[:, 0] == top_cand[:, 0])),
        float(top5),
        passed=False,
    )
    if labels is not None:
        row.accuracy = float(np.mean(top_cand[:, 0] == labels))
        row.reference_accuracy = float(np.mean(top_ref[:, 0] == labels))
    row.passed = _passes(row, THRESHOLDS[precision])
    return row


def _passes(row: ParityRow, t: Thresholds) -> bool:
    return (
        row.top1 >= t.min_top1
        and (t.max_rel is None or row.max_rel <= t.max_rel or (t.max_abs is not None and row.max_abs <= t.max_abs))
        and (t.min_cosine is None or row.cosine >= t.min_cosine)
    )
