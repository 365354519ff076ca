"""Accuracy on a labelled image set: eager PyTorch and every artifact on exactly the same images.

Each image is decoded once; each runner (eager PyTorch first, as the reference, then each
artifact's backend) crops and normalizes it as its model declares and classifies it. Per model:
top-1 / top-5 accuracy with Wilson 95% intervals, top-1 agreement with the reference (eager when
given, else the first artifact), the top-1 difference to the reference with a 95% interval and
McNemar's exact test on the images where exactly one of the two is right, inference throughput,
and the classes that lose most (``statistics``). Labelled sets are read by ``labelled``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoints.zoo import create_model
from ..errors import setting
from ..fileio import json_kind
from ..labelled import ClassNames, EvalError, read_labelled
from ..labels import resolve_labels
from ..models.registry import get_arch
from ..plotting import save_panels
from ..preprocess import PreprocessConfig, decode_rgb, describe_image_error, load_image, normalize
from ..runtime.open import open_artifact
from ..runtime.torch_runner import TorchRunner
from ..statistics import mcnemar_exact, paired_difference, wilson
from .timing import timed


@dataclass
class ModelResult:
    name: str
    precision: str
    backend: str
    top1: float
    top1_ci: tuple[float, float]
    top5: float
    top5_ci: tuple[float, float]
    images_per_s: float
    agreement: float | None = None  # top-1 agreement with the reference
    delta_top1: tuple[float, float, float] | None = None  # difference, 95% interval
    only_reference: int | None = None  # images only the reference gets right (top-1)
    only_model: int | None = None
    mcnemar_p: float | None = None
    losing_classes: list[dict] = field(default_factory=list)


EVAL_REPORT = json_kind("an evaluation report of inception-eval", ("data", "images", "reference", "models"))


@dataclass
class EvalReport:
    data: str
    images: int
    reference: str
    models: list[ModelResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable images: (file, reason)
    not_run: list[tuple[str, str]] = field(default_factory=list)  # models this machine cannot run

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        from tabulate import tabulate

        pct = lambda x: f"{100 * x:.2f}"  # noqa: E731
        rows = []
        for m in self.models:
            delta = (
                f"{100 * m.delta_top1[0]:+.2f} [{100 * m.delta_top1[1]:+.2f}, {100 * m.delta_top1[2]:+.2f}]"
                if m.delta_top1
                else "reference"
            )
            rows.append(
                (
                    m.name,
                    m.precision,
                    m.backend,
                    f"{pct(m.top1)} [{pct(m.top1_ci[0])}, {pct(m.top1_ci[1])}]",
                    f"{pct(m.top5)} [{pct(m.top5_ci[0])}, {pct(m.top5_ci[1])}]",
                    delta,
                    "-" if m.mcnemar_p is None else f"{m.mcnemar_p:.3g} ({m.only_reference}/{m.only_model})",
                    "-" if m.agreement is None else pct(m.agreement),
                    f"{m.images_per_s:.1f}",
                )
            )
        return tabulate(
            rows,
            headers=(
                "model",
                "precision",
                "backend",
                "top-1 % [95% CI]",
                "top-5 % [95% CI]",
                "top-1 vs reference, points",
                "McNemar p (ref/model only)",
                "agreement %",
                "images/s",
            ),
            disable_numparse=True,
        )

    def losing_table(self, count: int = 5) -> str:
        lines = []
        for m in self.models:
            worst = [c for c in m.losing_classes[:count] if c["delta"] < 0]
            if worst:
                lines.append(
                    f"{m.name}: "
                    + "; ".join(
                        f"{c['label']} {100 * c['reference']:.0f}% -> {100 * c['accuracy']:.0f}% (n={c['images']})"
                        for c in worst
                    )
                )
        return "\n".join(lines)


@dataclass
class EvalModel:
    """A runner under evaluation, with the preprocessing and labels of its model."""

    name: str
    runner: object  # eager TorchRunner or a backend: infer(N x 3 x H x W) -> logits
    config: PreprocessConfig
    labels: list | None = None  # an artifact's class names
    open_args: dict | None = None  # an artifact's device and arch (to open it again elsewhere)


@dataclass
class Classified:
    """What a ``classify`` (``classify_here``, ``batch.on_ray``) returns for files under models."""

    kept: np.ndarray  # indices of the files that could be used
    top5: list[np.ndarray]  # per model: the top-5 classes of each kept file (len(kept) x 5)
    seconds: list[float]  # per model: the seconds its inference took
    skipped: list[tuple[str, str]]  # the unusable files: (file, why)


def _artifacts(paths, device: str, arch: str | None, not_run: list) -> list[EvalModel]:
    models = []
    for path in paths:
        backend, why_not = open_artifact(path, device, arch)
        if backend is None:
            not_run.append((str(path), why_not))
            continue
        meta = backend.metadata
        models.append(EvalModel(str(path), backend, meta.preprocess, meta.labels, {"device": device, "arch": arch}))
    return models


def evaluate(
    data: str | os.PathLike,
    *,
    artifacts=(),
    arch: str | None = None,
    weights=None,
    model=None,
    preprocess: PreprocessConfig | None = None,
    labels: list[str] | None = None,
    device: str = "auto",
    limit: int | None = None,
    batch_size: int = 8,
    class_map=None,
    ground_truth=None,
    workers: int | None = None,
    progress=None,
    classify=None,
) -> EvalReport:
    """Top-1 / top-5 of eager and each artifact on the labelled set ``data`` (see ``read_labelled``).

    Eager: ``arch`` (with ``weights``, the class count of the artifacts) or a ready ``model``
    with its ``preprocess`` config; without either, the first artifact is the reference.
    ``limit``: at most this many images, spread evenly over the set. ``progress``: called with
    (images done, total) after each batch. ``classify``: where the images are decoded and
    classified, ``classify_here`` by default (``batch.on_ray`` spreads them over a Ray
    cluster).
    """
    say = progress or (lambda done, total: None)
    not_run: list = []
    models = _artifacts(artifacts, device, arch, not_run)
    label_sets = {tuple(m.labels) for m in models}
    if len(label_sets) > 1:
        raise EvalError("the artifacts have different labels: evaluate them separately")
    if label_sets:
        labels = list(label_sets.pop())
    if arch is not None or model is not None:
        if model is None:
            spec = get_arch(arch)
            model = create_model(spec.name, num_classes=len(labels) if labels else 1000, weights=weights)
            preprocess = preprocess or model.preprocess
            name = f"eager {spec.name}"
        else:
            name = "eager"
            if preprocess is None or labels is None:
                raise EvalError("evaluating a model object needs its preprocess config and labels (or artifacts)")
        if labels is None:
            labels, _ = resolve_labels(None, 1000)
        models.insert(0, EvalModel(name, TorchRunner(model), preprocess))
    if not models:
        raise EvalError(
            f"nothing to evaluate: give {setting('arch')} (eager) and/or artifacts"
            + (f" ({not_run[0][0]}: {not_run[0][1]})" if not_run else "")
        )
    labelled = read_labelled(data, ClassNames(labels, class_map), ground_truth)
    files, targets = labelled.files, np.asarray(labelled.targets)
    if limit is not None and limit < len(files):
        keep = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files, targets = [files[i] for i in keep], targets[keep]
    classified = (classify or classify_here)(models, files, batch_size, workers or min(4, os.cpu_count() or 1), say)
    report = EvalReport(str(data), 0, models[0].name, skipped=classified.skipped, not_run=not_run)
    if not len(classified.kept):
        raise EvalError(
            f"{data}: none of its {len(files)} images could be read (first: {report.skipped[0][0]}: "
            f"{report.skipped[0][1]})"
        )
    targets = targets[classified.kept]
    report.images = len(targets)
    reference_right = None
    for m, top5, seconds in zip(models, classified.top5, classified.seconds):
        right1, right5 = top5[:, 0] == targets, (top5 == targets[:, None]).any(axis=1)
        result = ModelResult(
            m.name,
            m.runner.precision,
            m.runner.name,
            right1.mean(),
            wilson(int(right1.sum()), len(targets)),
            right5.mean(),
            wilson(int(right5.sum()), len(targets)),
            len(targets) / seconds,
        )
        if reference_right is None:
            reference_right, reference_top1 = right1, top5[:, 0]
        else:
            only_ref, only_model = int((reference_right & ~right1).sum()), int((~reference_right & right1).sum())
            result.agreement = float((top5[:, 0] == reference_top1).mean())
            result.delta_top1 = paired_difference(only_ref, only_model, len(targets))
            result.only_reference, result.only_model = only_ref, only_model
            result.mcnemar_p = mcnemar_exact(only_ref, only_model)
            result.losing_classes = _losing_classes(targets, reference_right, right1, labels)
        report.models.append(result)
    return report


def classify_here(models: list[EvalModel], files: list[Path], batch_size: int, workers: int, say) -> Classified:
    """Decode each file once (on ``workers`` threads) and classify it with every model, here."""
    kept, skipped = [], []
    top5 = [[] for _ in models]
    seconds = [0.0] * len(models)
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            decoded = list(pool.map(lambda f: decode(f, models[0].config), chunk))
            skipped += [(str(f), error) for f, (_, error) in zip(chunk, decoded) if error is not None]
            images = [image for image, _ in decoded if image is not None]
            kept += [start + i for i, (image, _) in enumerate(decoded) if image is not None]
            if images:
                for k, (classes, spent) in enumerate(classify_decoded(models, images)):
                    top5[k].append(classes)
                    seconds[k] += spent
            say(min(start + batch_size, len(files)), len(files))
    empty = np.zeros((0, 5), dtype=np.int64)
    return Classified(np.asarray(kept, dtype=int), [np.concatenate(t) if t else empty for t in top5], seconds, skipped)


def classify_decoded(models: list[EvalModel], images: list) -> list[tuple[np.ndarray, float]]:
    """Per model, the top-5 classes of the same decoded images (cropped and normalized as that
    model declares) and the seconds its inference took."""
    out = []
    for m in models:
        batch = normalize(np.stack([load_image(image, m.config) for image in images]), m.config)
        logits, seconds = timed(lambda: m.runner.infer(batch))
        out.append((np.argsort(-logits, axis=1, kind="stable")[:, :5], seconds))
    return out


def decode(path: Path, config: PreprocessConfig):
    """(RGB image, None) or (None, why not)."""
    try:
        return decode_rgb(path, config), None
    except Exception as e:  # one bad file is counted, never fatal
        return None, describe_image_error(e)


def _losing_classes(targets, reference_right, right, labels, count: int = 10) -> list[dict]:
    """Classes ordered by how much top-1 accuracy they lose against the reference."""
    rows = []
    for index in np.unique(targets):
        mask = targets == index
        ref, acc = float(reference_right[mask].mean()), float(right[mask].mean())
        rows.append(
            {
                "label": labels[index],
                "index": int(index),
                "images": int(mask.sum()),
                "reference": ref,
                "accuracy": acc,
                "delta": acc - ref,
            }
        )
    return sorted(rows, key=lambda r: (r["delta"], -r["images"]))[:count]


def plot_accuracy(report: EvalReport, path) -> None:
    """Top-1 accuracy (with its 95% interval) against images/s, one point per model, as a PNG."""

    def draw(ax):
        for m in report.models:
            error = [[100 * (m.top1 - m.top1_ci[0])], [100 * (m.top1_ci[1] - m.top1)]]
            ax.errorbar([m.images_per_s], [100 * m.top1], yerr=error, fmt="o", capsize=4, label=Path(m.name).name)
        ax.set_xlabel("images/s (inference only)")
        ax.set_ylabel("top-1 accuracy, % (95% interval)")
        ax.set_title(f"{Path(report.data).name}: {report.images} images", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    save_panels(path, [draw], width=7, height=4.5)
