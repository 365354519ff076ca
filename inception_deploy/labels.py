"""Class labels: the ImageNet-1k names ship with the package; other heads take a file."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from .errors import InceptionDeployError

IMAGENET = "imagenet-1k"


def imagenet_labels() -> list[str]:
    text = resources.files("inception_deploy").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    return text.splitlines()


def read_labels(path: str | Path) -> list[str]:
    """One label per line; blank lines at the end are ignored."""
    path = Path(path)
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        raise InceptionDeployError(f"{path}: no such labels file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InceptionDeployError(f"{path}: cannot read labels ({e})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InceptionDeployError(f"{path}: labels file is empty")
    return [line.strip() for line in lines]


def resolve_labels(path: str | Path | None, num_classes: int) -> tuple[list[str], str]:
    """Labels for a head of ``num_classes`` and where they came from."""
    if path is None:
        if num_classes != 1000:
            return [f"class_{i}" for i in range(num_classes)], "generated (no labels file given)"
        return imagenet_labels(), IMAGENET
    labels = read_labels(path)
    if len(labels) != num_classes:
        raise InceptionDeployError(f"{path}: has {len(labels)} labels but the model has {num_classes} classes")
    return labels, Path(path).name


def labels_digest(labels: list[str]) -> str:
    return hashlib.sha256("\n".join(labels).encode("utf-8")).hexdigest()
