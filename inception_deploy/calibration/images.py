"""Calibration images: found recursively, preprocessed exactly as the runtime does."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ConfigError, InceptionDeployError, printable, setting
from ..inputs import decoded, image_folder, sample_folder, spread
from ..preprocess import PreprocessConfig, normalize
from ..progress import bar

log = logging.getLogger(__name__)

FEW_IMAGES = 300  # below this, ranges (and INT8 accuracy) get noisy: warn


def calibration_folder(calib_dir, samples: bool):
    """The folder to calibrate on: ``calib_dir``, or with ``samples`` the photos shipped with the
    package (a demonstration: five images are far too few, which calibration then warns about)."""
    if calib_dir is not None and samples:
        raise ConfigError(
            f"{setting('CalibrationRequest.folder')} and {setting('samples')} both name the calibration "
            f"images: give one"
        )
    if samples:
        return sample_folder()
    return calib_dir


def warn_skipped(folder, skipped: list) -> None:
    if skipped:
        name, reason = skipped[0]
        log.warning(
            "%s: skipped %d unusable image(s) or folder(s), e.g. %s: %s",
            printable(folder),
            len(skipped),
            printable(Path(name).name),
            reason,
        )


class CalibrationImages:
    """Up to ``count`` images of ``folder`` (evenly spread over the sorted list, so a folder
    sorted by class is sampled across classes), in preprocessed batches. Unreadable files and
    folders are skipped and counted; too few usable images is an error."""

    def __init__(
        self, folder: str | os.PathLike, config: PreprocessConfig, count: int = 512, batch: int = 8, exclude=()
    ):
        if count < 1 or batch < 1:
            raise InceptionDeployError("calibration image count and batch size must be at least 1")
        listed = image_folder(folder)
        self.skipped = list(listed.problems)
        files = [f for f in listed.files if f not in set(exclude)]  # held out to judge the result
        self.folder, self.files, self.config, self.batch = listed.path, spread(files, count), config, batch
        self.used = 0

    def batches(self, progress: bool = True) -> Iterator[np.ndarray]:
        """Preprocessed batches. The bar counts images the consumer has finished with (the model
        pass is the slow part), advanced when it asks for the next batch."""
        images = []
        shown = bar(total=len(self.files), desc="calibrating", unit="img", disable=not progress, leave=False)
        skipped_before = len(self.skipped)

        def advance():  # images through the model, and those skipped on the way to them
            shown.update(self.used + len(self.skipped) - skipped_before - shown.n)

        for image in decoded(self.files, self.config, self.skipped):
            images.append(image)
            if len(images) == self.batch:
                yield self._emit(images)
                advance()
                images = []
        if images:
            yield self._emit(images)
        advance()
        shown.close()
        warn_skipped(self.folder, self.skipped)
        if self.used * 2 < len(self.files):  # "too few remain": most of the folder is unreadable
            name, reason = self.skipped[0]
            raise InceptionDeployError(
                f"{self.folder}: only {self.used} of {len(self.files)} calibration images "
                f"could be read (first failure: {Path(name).name}: {reason})"
            )
        if self.used < FEW_IMAGES:
            log.warning("%s: only %d calibration images (%d or more recommended)", self.folder, self.used, FEW_IMAGES)

    def _emit(self, images) -> np.ndarray:
        self.used += len(images)
        return normalize(np.stack(images), self.config)
