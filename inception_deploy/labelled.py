"""Labelled image sets as users have them: an ImageFolder, a CSV / TSV of path,label, or a folder
of images with ImageNet's ground-truth file; classes named by the model's labels, ImageNet
WNIDs, indices, or a class map. Read, checked and refused in one line naming the file and line."""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import InceptionDeployError, setting
from .inputs import IMAGE_SUFFIXES, find_images

log = logging.getLogger(__name__)

HEADER_WORDS = {"path", "file", "filename", "image", "imageid", "image_id", "name", "img"}


class EvalError(InceptionDeployError):
    """A labelled set that cannot be evaluated as given."""


def imagenet_wnids() -> list[str]:
    text = resources.files("inception_deploy").joinpath("data/imagenet_wnids.txt").read_text("utf-8")
    return text.split()


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
        raise EvalError(
            f"{where}: class {name!r} is not one of the model's {len(self.labels)} classes (by label"
            f"{', ImageNet WNID' if len(self.labels) == 1000 else ''}{' or index' if numbers else ''}); "
            f"map it with {setting('class_map')}"
        )


def _is_index(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses."""
    return re.fullmatch(r"[0-9]+", text) is not None


def _read_class_map(path, names: ClassNames) -> dict[str, int]:
    """Lines "data set class<TAB or comma>model class (label, WNID or index)"."""
    mapped = {}
    for line_no, row in _rows(Path(path)):
        if len(row) != 2:
            raise EvalError(
                f"{path}: line {line_no}: expected two fields (data set class, model class), got {len(row)}"
            )
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


def read_labelled(
    data: str | os.PathLike, names: ClassNames, ground_truth: str | os.PathLike | None = None
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
            raise EvalError(f"{data}: {setting('ground_truth')} goes with a folder of images, not a file")
        return _from_rows(data, data.parent, names, extension_optional=False)
    if ground_truth is not None:
        return _from_rows(Path(ground_truth), data, names, extension_optional=True)
    return _from_folders(data, names)


def _from_folders(folder: Path, names: ClassNames) -> LabelledSet:
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not subfolders:
        what = f"{len(loose)} images but no class subfolders" if loose else "no class subfolders and no images"
        raise EvalError(
            f"{folder}: {what}; expected one subfolder per class (ImageFolder), a CSV of path,label, "
            f"or a folder of images with {setting('ground_truth')}"
        )
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
        raise EvalError(
            f"{table}: one number per line is the ImageNet devkit's ground truth, whose IDs are not "
            f"class indices; use Caffe's val.txt (name index) or Kaggle's LOC_val_solution.csv"
        )
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
                raise EvalError(
                    f"{table}: line {line_no}: {row[0]} is labelled {label!r} here and {first_label!r} "
                    f"on line {first_line_no}; an image has one label"
                )
            duplicates += 1
            continue
        listed[key] = (line_no, label, target)
        files.append(path)
        targets.append(target)
    if missing:
        line_no, name = missing[0]
        raise EvalError(
            f"{table}: {len(missing)} listed images do not exist under {root} (first: line {line_no}: {name})"
        )
    if not files:
        raise EvalError(f"{table}: lists no images")
    if duplicates:
        log.warning("%s: %d images listed more than once with the same label; each counted once", table, duplicates)
    return LabelledSet(files, targets, str(table))
