"""Calibration images: found recursively, preprocessed exactly as the runtime does."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InceptionDeployError
from ..preprocess import PreprocessConfig, load_image, normalize
from ..runtime.predictor import IMAGE_SUFFIXES, describe_image_error, images_in

log = logging.getLogger(__name__)

FEW_IMAGES = 300  # below this, ranges (and INT8 accuracy) get noisy: warn


def find_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InceptionDeployError(f"{folder}: no such image folder")
    files = images_in(folder)
    if not files:
        raise InceptionDeployError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def spread(files: list, count: int) -> list:
    """At most ``count`` of ``files``, evenly spread over the list (a folder sorted by class is
    sampled across classes)."""
    if len(files) <= count:
        return files
    return [files[i] for i in np.linspace(0, len(files) - 1, count).round().astype(int)]


class CalibrationImages:
    """Up to ``count`` images of ``folder`` (evenly spread over the sorted list, so a folder
    sorted by class is sampled across classes), in preprocessed batches. Unreadable files are
    skipped and counted; too few usable images is an error."""

    def __init__(self, folder: str | os.PathLike, config: PreprocessConfig, count: int = 512, batch: int = 8):
        if count < 1 or batch < 1:
            raise InceptionDeployError("calibration image count and batch size must be at least 1")
        files = spread(find_images(folder), count)
        self.folder, self.files, self.config, self.batch = Path(folder), files, config, batch
        self.used = 0
        self.skipped: list[tuple[Path, str]] = []

    def batches(self, progress: bool = True) -> Iterator[np.ndarray]:
        from tqdm import tqdm

        images = []
        for path in tqdm(self.files, desc="calibrating", unit="img", disable=not progress, leave=False):
            try:
                images.append(load_image(path, self.config))
            except Exception as e:  # a bad file is skipped, never fatal by itself
                self.skipped.append((path, describe_image_error(e)))
                continue
            if len(images) == self.batch:
                yield self._emit(images)
                images = []
        if images:
            yield self._emit(images)
        if self.skipped:
            log.warning("%s: skipped %d unreadable image(s), e.g. %s: %s", self.folder, len(self.skipped),
                        self.skipped[0][0].name, self.skipped[0][1])
        if self.used * 2 < len(self.files):  # "too few remain": most of the folder is unreadable
            raise InceptionDeployError(f"{self.folder}: only {self.used} of {len(self.files)} calibration images "
                                       f"could be read (first failure: {self.skipped[0][0].name}: {self.skipped[0][1]})")
        if self.used < FEW_IMAGES:
            log.warning("%s: only %d calibration images (%d or more recommended)", self.folder, self.used, FEW_IMAGES)

    def _emit(self, images) -> np.ndarray:
        self.used += len(images)
        return normalize(np.stack(images), self.config)
