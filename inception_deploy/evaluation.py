"""Accuracy on a labelled image set: eager PyTorch and every artifact on exactly the same images.

Each image is decoded once; each model then crops and normalizes it as that model declares and
classifies it. Per model: top-1 / top-5 accuracy with Wilson 95% intervals, top-1 agreement with
the reference (eager when given, else the first artifact), the top-1 difference to the reference
with a 95% interval and McNemar's exact test on the images where exactly one of the two is right,
inference throughput, and the classes that lose most. Statistics use only the standard library.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from .errors import InceptionDeployError
from .preprocess import PreprocessConfig, decode_rgb, describe_image_error, load_image, normalize

log = logging.getLogger(__name__)

Z95 = 1.959963984540054  # the normal quantile of 97.5%
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
HEADER_WORDS = {"path", "file", "filename", "image", "imageid", "image_id", "name", "img"}


class EvalError(InceptionDeployError):
    """A labelled set that cannot be evaluated as given."""


def imagenet_wnids() -> list[str]:
    text = resources.files("inception_deploy").joinpath("data/imagenet_wnids.txt").read_text("utf-8")
    return text.split()


# ---------------------------------------------------------------------------------------------
# labelled sets

@dataclass
class LabelledSet:
    files: list[Path]
    targets: list[int]  # the model's class index of each file
    source: str  # what it was read from, for messages and reports


class ClassNames:
    """A class as written in a data set (a label, an ImageNet WNID, an index in a CSV, or a name of
    ``--class-map``) -> the model's class index."""

    def __init__(self, labels: list[str], class_map: str | os.PathLike | None = None):
        self.labels = labels
        self.by_name = {label: i for i, label in enumerate(labels)}
        self.by_name.update({label.casefold(): i for i, label in enumerate(labels)})
        if len(labels) == 1000:
            self.by_name.update({wnid: i for i, wnid in enumerate(imagenet_wnids())})
        self.mapped: dict[str, int] = {}
        self.mapped = _read_class_map(class_map, self) if class_map else {}

    def index(self, name: str, where: str, numbers: bool = False) -> int:
        """The class index of ``name`` (``numbers``: a plain index is accepted too)."""
        if name in self.mapped:
            return self.mapped[name]
        found = self.by_name.get(name, self.by_name.get(name.casefold()))
        if found is not None:
            return found
        if numbers and _is_index(name) and int(name) < len(self.labels):
            return int(name)
        raise EvalError(f"{where}: class {name!r} is not one of the model's {len(self.labels)} classes (by label"
                        f"{', ImageNet WNID' if len(self.labels) == 1000 else ''}{' or index' if numbers else ''}); "
                        f"map it with --class-map")


def _is_index(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses."""
    return re.fullmatch(r"[0-9]+", text) is not None


def _read_class_map(path, names: ClassNames) -> dict[str, int]:
    """Lines "data set class<TAB or comma>model class (label, WNID or index)"."""
    mapped = {}
    for line_no, row in _rows(Path(path)):
        if len(row) != 2:
            raise EvalError(f"{path}: line {line_no}: expected two fields (data set class, model class), got "
                            f"{len(row)}")
        mapped[row[0]] = names.index(row[1], f"{path}: line {line_no}", numbers=True)
    return mapped


def _rows(path: Path):
    """(line number, fields) of a CSV (comma), TSV (tab) or whitespace-separated file."""
    try:
        text = path.read_text("utf-8-sig")
    except FileNotFoundError:
        raise EvalError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EvalError(f"{path}: cannot read ({e})") from None
    lines = text.splitlines()
    sample = "\n".join(lines[:20])
    if "\t" in sample:
        reader = csv.reader(lines, delimiter="\t")
    elif "," in sample:
        reader = csv.reader(lines)
    else:
        reader = (line.split() for line in lines)
    line_no = 0
    try:
        for line_no, row in enumerate(reader, 1):
            row = [field.strip() for field in row]
            if any(row):
                yield line_no, row
    except csv.Error as e:  # e.g. a field over the csv module's size limit
        raise EvalError(f"{path}: line {line_no + 1}: not a readable CSV row ({e})") from None


def read_labelled(data: str | os.PathLike, names: ClassNames, ground_truth: str | os.PathLike | None = None
                  ) -> LabelledSet:
    """A labelled set in one of three layouts:

    - a folder of class subfolders (ImageFolder: the subfolder name is the class);
    - a CSV / TSV file of ``path,label`` rows (paths relative to the file; an optional header);
    - a folder of images with ``ground_truth``: ``name label`` rows, as ImageNet's validation set
      ships them (Caffe's ``val.txt``: name and class index; Kaggle's ``LOC_val_solution.csv``:
      ImageId and a PredictionString starting with the WNID); names may omit the extension.
    """
    data = Path(data)
    if not data.exists():
        raise EvalError(f"{data}: no such folder or file")
    if data.is_file():
        if ground_truth is not None:
            raise EvalError(f"{data}: --ground-truth goes with a folder of images, not a file")
        return _from_rows(data, data.parent, names, extension_optional=False)
    if ground_truth is not None:
        return _from_rows(Path(ground_truth), data, names, extension_optional=True)
    return _from_folders(data, names)


def _from_folders(folder: Path, names: ClassNames) -> LabelledSet:
    from .calibration.images import find_images

    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not subfolders:
        what = f"{len(loose)} images but no class subfolders" if loose else "no class subfolders and no images"
        raise EvalError(f"{folder}: {what}; expected one subfolder per class (ImageFolder), a CSV of path,label, "
                        f"or a folder of images with --ground-truth")
    files, targets = [], []
    for sub in subfolders:
        index = names.index(sub.name, f"{folder}: folder {sub.name!r}")
        found, _ = find_images(sub)
        files += found
        targets += [index] * len(found)
    if not files:
        raise EvalError(f"{folder}: its {len(subfolders)} class subfolders hold no images")
    return LabelledSet(files, targets, str(folder))


def _from_rows(table: Path, root: Path, names: ClassNames, extension_optional: bool) -> LabelledSet:
    rows = list(_rows(table))
    if rows and rows[0][1][0].casefold() in HEADER_WORDS:
        rows = rows[1:]
    if rows and all(len(row) == 1 and _is_index(row[0]) for _, row in rows[:50]):
        raise EvalError(f"{table}: one number per line is the ImageNet devkit's ground truth, whose IDs are not "
                        f"class indices; use Caffe's val.txt (name index) or Kaggle's LOC_val_solution.csv")
    files, targets, missing = [], [], []
    listed: dict[Path, tuple[int, str]] = {}
    duplicates = 0  # each image once: its line and label
    by_stem = {p.stem: p for p in root.iterdir() if p.is_file()} if extension_optional else {}
    for line_no, row in rows:
        if len(row) < 2:
            raise EvalError(f"{table}: line {line_no}: expected a path and a label")
        label = row[1]
        if re.fullmatch(r"n\d{8}( .*)?", label):  # Kaggle's PredictionString: "WNID x y x y WNID ..."
            label = label.split()[0]
        path = root / row[0]
        if not path.is_file() and extension_optional:
            path = by_stem.get(row[0], path)
        if not path.is_file():
            missing.append((line_no, row[0]))
            continue
        target = names.index(label, f"{table}: line {line_no}", numbers=True)
        key = path.resolve()
        if key in listed:
            first_line_no, first_label, first_target = listed[key]
            if first_target != target:
                raise EvalError(f"{table}: line {line_no}: {row[0]} is labelled {label!r} here and {first_label!r} "
                                f"on line {first_line_no}; an image has one label")
            duplicates += 1
            continue
        listed[key] = (line_no, label, target)
        files.append(path)
        targets.append(target)
    if missing:
        line_no, name = missing[0]
        raise EvalError(f"{table}: {len(missing)} listed images do not exist under {root} (first: line {line_no}: "
                        f"{name})")
    if not files:
        raise EvalError(f"{table}: lists no images")
    if duplicates:
        log.warning("%s: %d images listed more than once with the same label; each counted once", table, duplicates)
    return LabelledSet(files, targets, str(table))


# ---------------------------------------------------------------------------------------------
# statistics

def wilson(correct: int, n: int) -> tuple[float, float]:
    """Wilson's 95% interval of a proportion (sound near 0 and 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + Z95 ** 2 / (2 * n)) / (1 + Z95 ** 2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / (1 + Z95 ** 2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(only_reference: int, only_model: int) -> float:
    """Two-sided exact McNemar p-value: under "no difference" the images where exactly one model is
    right split as a fair coin."""
    n = only_reference + only_model
    if n == 0:
        return 1.0
    k = min(only_reference, only_model)
    log_terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
                 for i in range(k + 1)]
    top = max(log_terms)
    return min(1.0, 2 * math.exp(top) * sum(math.exp(t - top) for t in log_terms))


def paired_difference(only_reference: int, only_model: int, n: int) -> tuple[float, float, float]:
    """Model minus reference accuracy with its 95% interval (Wald, for paired proportions)."""
    diff = (only_model - only_reference) / n
    se = math.sqrt(max(only_model + only_reference - (only_model - only_reference) ** 2 / n, 0.0)) / n
    return diff, diff - Z95 * se, diff + Z95 * se


# ---------------------------------------------------------------------------------------------
# models and the evaluation

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
            delta = (f"{100 * m.delta_top1[0]:+.2f} [{100 * m.delta_top1[1]:+.2f}, {100 * m.delta_top1[2]:+.2f}]"
                     if m.delta_top1 else "reference")
            rows.append((m.name, m.precision, m.backend,
                         f"{pct(m.top1)} [{pct(m.top1_ci[0])}, {pct(m.top1_ci[1])}]",
                         f"{pct(m.top5)} [{pct(m.top5_ci[0])}, {pct(m.top5_ci[1])}]", delta,
                         "-" if m.mcnemar_p is None else f"{m.mcnemar_p:.3g} ({m.only_reference}/{m.only_model})",
                         "-" if m.agreement is None else pct(m.agreement), f"{m.images_per_s:.1f}"))
        return tabulate(rows, headers=("model", "precision", "backend", "top-1 % [95% CI]", "top-5 % [95% CI]",
                                       "top-1 vs reference, points", "McNemar p (ref/model only)",
                                       "agreement %", "images/s"), disable_numparse=True)

    def losing_table(self, count: int = 5) -> str:
        lines = []
        for m in self.models:
            worst = [c for c in m.losing_classes[:count] if c["delta"] < 0]
            if worst:
                lines.append(f"{m.name}: " + "; ".join(
                    f"{c['label']} {100 * c['reference']:.0f}% -> {100 * c['accuracy']:.0f}% (n={c['images']})"
                    for c in worst))
        return "\n".join(lines)


@dataclass
class _Model:
    name: str
    precision: str
    backend: str
    config: PreprocessConfig
    infer: object  # float32 N x 3 x H x W -> logits
    labels: list | None = None  # an artifact's class names
    seconds: float = 0.0
    top5: list = field(default_factory=list)


def _eager(model, config: PreprocessConfig, name: str) -> _Model:
    from .parity import eager_logits

    return _Model(name, "fp32", "torch eager cpu", config, lambda batch: eager_logits(model, batch))


def _artifacts(paths, device: str, arch: str | None, not_run: list) -> list[_Model]:
    from .metadata import preprocess_of
    from .runtime import open_backend
    from .runtime.base import ENGINE_SUFFIXES
    from .runtime.tensorrt_backend import TensorRTUnavailable

    models = []
    for path in paths:
        engine = Path(path).suffix.lower() in ENGINE_SUFFIXES
        try:
            backend = open_backend(path, device="auto" if engine else device, arch=arch)
        except TensorRTUnavailable as e:
            not_run.append((str(path), str(e)))
            continue
        models.append(_Model(str(path), backend.precision, backend.name,
                             preprocess_of(backend.metadata), backend.infer, backend.metadata["labels"]["names"]))
    return models


def evaluate(data: str | os.PathLike, *, artifacts=(), arch: str | None = None, weights=None, model=None,
             preprocess: PreprocessConfig | None = None, labels: list[str] | None = None, device: str = "auto",
             limit: int | None = None, batch_size: int = 8, class_map=None, ground_truth=None,
             workers: int | None = None, progress=None) -> EvalReport:
    """Top-1 / top-5 of eager and each artifact on the labelled set ``data`` (see ``read_labelled``).

    Eager: ``arch`` (with ``weights``, the class count of the artifacts) or a ready ``model``
    with its ``preprocess`` config; without either, the first artifact is the reference.
    ``limit``: at most this many images, spread evenly over the set. ``progress``: called with
    (images done, total) after each batch.
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
            from .models.registry import get_arch
            from .zoo import create_model

            spec = get_arch(arch)
            model = create_model(spec.name, num_classes=len(labels) if labels else 1000, weights=weights)
            preprocess = preprocess or model.preprocess
            name = f"eager {spec.name}"
        else:
            name = "eager"
            if preprocess is None or labels is None:
                raise EvalError("evaluating a model object needs its preprocess config and labels (or artifacts)")
        if labels is None:
            from .labels import resolve_labels

            labels, _ = resolve_labels(None, 1000)
        models.insert(0, _eager(model, preprocess, name))
    if not models:
        raise EvalError("nothing to evaluate: give --arch (eager) and/or artifacts" +
                        (f" ({not_run[0][0]}: {not_run[0][1]})" if not_run else ""))
    labelled = read_labelled(data, ClassNames(labels, class_map), ground_truth)
    files, targets = labelled.files, np.asarray(labelled.targets)
    if limit is not None and limit < len(files):
        keep = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files, targets = [files[i] for i in keep], targets[keep]
    report = EvalReport(str(data), 0, models[0].name, not_run=not_run)
    kept = _run(models, files, batch_size, workers or min(4, os.cpu_count() or 1), report.skipped, say)
    if not len(kept):
        raise EvalError(f"{data}: none of its {len(files)} images could be read (first: {report.skipped[0][0]}: "
                        f"{report.skipped[0][1]})")
    targets = targets[kept]
    report.images = len(targets)
    reference_right = None
    for m in models:
        top5 = np.concatenate(m.top5)
        right1, right5 = top5[:, 0] == targets, (top5 == targets[:, None]).any(axis=1)
        result = ModelResult(m.name, m.precision, m.backend, right1.mean(), wilson(int(right1.sum()), len(targets)),
                             right5.mean(), wilson(int(right5.sum()), len(targets)), len(targets) / m.seconds)
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


def _run(models: list[_Model], files: list[Path], batch_size: int, workers: int, skipped: list, say) -> np.ndarray:
    """Decode each file once, classify it with every model; the indices of the usable files."""
    kept = []
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            decoded = list(pool.map(lambda f: _decode(f, models[0].config), chunk))
            for f, (image, error) in zip(chunk, decoded):
                if error is not None:
                    skipped.append((str(f), error))
            images = [image for image, _ in decoded if image is not None]
            kept += [start + i for i, (image, _) in enumerate(decoded) if image is not None]
            if images:
                for m in models:
                    batch = normalize(np.stack([load_image(image, m.config) for image in images]), m.config)
                    begin = time.perf_counter()
                    logits = m.infer(batch)
                    m.seconds += time.perf_counter() - begin
                    m.top5.append(np.argsort(-logits, axis=1, kind="stable")[:, :5])
            say(min(start + batch_size, len(files)), len(files))
    return np.asarray(kept, dtype=int)


def _decode(path: Path, config: PreprocessConfig):
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
        rows.append({"label": labels[index], "index": int(index), "images": int(mask.sum()),
                     "reference": ref, "accuracy": acc, "delta": acc - ref})
    return sorted(rows, key=lambda r: (r["delta"], -r["images"]))[:count]


def plot_accuracy(report: EvalReport, path) -> None:
    """Top-1 accuracy (with its 95% interval) against images/s, one point per model, as a PNG."""
    from .bench import figure_class
    from .fileio import atomic_path

    figure = figure_class()(figsize=(7, 4.5))
    ax = figure.add_subplot()
    for m in report.models:
        error = [[100 * (m.top1 - m.top1_ci[0])], [100 * (m.top1_ci[1] - m.top1)]]
        ax.errorbar([m.images_per_s], [100 * m.top1], yerr=error, fmt="o", capsize=4, label=Path(m.name).name)
    ax.set_xlabel("images/s (inference only)")
    ax.set_ylabel("top-1 accuracy, % (95% interval)")
    ax.set_title(f"{Path(report.data).name}: {report.images} images", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
