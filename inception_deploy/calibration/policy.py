"""What a calibration request is, when an existing cache answers it, and calibrating when none
does: one policy for ``inception-export --int8`` and ``inception-calibrate``.

A cache answers a request when it was made for this graph and preprocessing and, where images
are named now, made the way asked now (method; at least as many images as asked for and
available): what the user asks for is never silently replaced by an older calibration. A stale
cache is refused, or recalibrated over where it is the toolkit's own default cache
(``replace_stale``); a cache made from few images warns each time it is reused.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import InceptionDeployError, setting
from ..fileio import check_writable
from ..graph import load_onnx
from ..inputs import image_folder
from ..metadata import fp32_metadata
from ..progress import Progress, silent, stage
from .cache import CACHE_FILE, CalibrationCache, graph_digest, preprocess_digest
from .images import FEW_IMAGES, CalibrationImages
from .qdq import prepare
from .ranges import calibrate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationRequest:
    """Calibration as asked for: images from ``folder`` (None: an existing ``cache`` only), how
    many and in which batches, the clipping ``method``; the ``cache`` file to reuse or write, and
    whether a stale one may be replaced (the default cache beside the output is ours)."""

    folder: str | os.PathLike | None = None
    images: int = 512
    batch: int = 8
    method: str = "entropy"
    percentile: float = 99.99
    cache: str | os.PathLike | None = None
    replace_stale: bool = False
    exclude: tuple = ()  # images of the folder held out of calibration (to judge the INT8 model on)

    def __post_init__(self):  # the folder listed here, once: everything after reads the listing
        if self.folder is not None:
            object.__setattr__(self, "folder", image_folder(self.folder))

    def check(self) -> None:
        """Fail before a slow export when INT8 could not be calibrated anyway: no images and no
        cache, a folder without images, a corrupt cache, a cache that cannot be written."""
        cache_exists = self.cache is not None and Path(self.cache).exists()
        if self.folder is None and not cache_exists:
            raise InceptionDeployError(
                f"INT8 needs calibration images: pass {setting('CalibrationRequest.folder')}, an existing "
                f"{setting('CalibrationRequest.cache')}, or {setting('samples')} for a demonstration"
            )
        if cache_exists:
            CalibrationCache.load(self.cache)
        if self.folder is not None and self.cache is not None:
            check_writable(self.cache, CACHE_FILE)

    def cached(self, graph_sha: str, pre_sha: str, say: Progress = silent) -> CalibrationCache | None:
        """The cache's ranges when it answers this request for this graph and preprocessing;
        None when there is none or it is stale and ours to replace; otherwise an error."""
        if self.cache is None or not Path(self.cache).exists():
            if self.folder is None:
                raise InceptionDeployError(
                    f"INT8 needs calibration images ({setting('CalibrationRequest.folder')}) or an existing "
                    f"calibration cache ({setting('CalibrationRequest.cache')})"
                )
            return None
        calibration = CalibrationCache.load(self.cache)
        replace = self.replace_stale and self.folder is not None
        try:
            calibration.check(self.cache, graph_sha, pre_sha)
            if self.folder is not None:
                self._check_made_as_asked(calibration)
        except InceptionDeployError as e:
            if not replace:
                raise
            log.info("recalibrating: %s", e)
            return None
        if calibration.images < FEW_IMAGES:  # e.g. left by a --calib-samples demonstration
            log.warning(
                "%s: reusing a calibration made from only %d images (%d or more recommended); recalibrate "
                "with %s on your own images",
                self.cache,
                calibration.images,
                FEW_IMAGES,
                setting("CalibrationRequest.folder"),
            )
        say(f"reusing calibration cache {self.cache} ({calibration.images} images, {calibration.method})")
        return calibration

    def _check_made_as_asked(self, calibration: CalibrationCache) -> None:
        made = f"{calibration.method}{f' {calibration.percentile}' if calibration.percentile else ''}"
        asked = f"{self.method}{f' {self.percentile}' if self.method == 'percentile' else ''}"
        if made != asked:
            raise InceptionDeployError(
                f"{self.cache}: stale calibration cache: made with {made}, {asked} asked for "
                f"(delete it or name another {setting('CalibrationRequest.cache')})"
            )
        if not self.replace_stale:
            # the image count only decides for our own default cache (a folder with unreadable
            # files yields fewer than it holds, so a cache the user named is never refused for it)
            return
        available = min(self.images, len(self.folder.files))
        if calibration.images < available:
            raise InceptionDeployError(
                f"{self.cache}: stale calibration cache: made from {calibration.images} "
                f"images, {available} asked for and available (delete it or name another "
                f"{setting('CalibrationRequest.cache')})"
            )

    def calibrate(
        self, prepared, config, graph_sha: str, pre_sha: str, progress: Progress | None = None
    ) -> CalibrationCache:
        """Calibrate the prepared graph on the folder's images (written to the cache when one is
        named); with ``progress``, a bar over the images and a line when the threshold search starts."""
        (progress or silent)(f"calibrating on up to {self.images} images of {self.folder} ({self.method})...")
        data = CalibrationImages(self.folder, config, count=self.images, batch=self.batch, exclude=self.exclude)
        tensors = calibrate(prepared, data.batches(progress is not None), self.method, self.percentile, progress)
        calibration = CalibrationCache(
            self.method,
            self.percentile if self.method == "percentile" else None,
            data.used,
            graph_sha,
            pre_sha,
            tensors,
        )
        if self.cache is not None:
            calibration.save(self.cache)
        return calibration


def calibrate_onnx(
    model: str | os.PathLike, request: CalibrationRequest, progress: Progress | None = None
) -> CalibrationCache:
    """Calibrate an FP32 ONNX export (``inception-calibrate``) on ``request.folder`` into
    ``request.cache``, always anew: per-tensor ranges, the method, and digests of the graph and
    its preprocessing, so a later export reuses it only for the same model."""
    say = progress or silent
    model = Path(model)
    proto = load_onnx(model)
    config = fp32_metadata(proto, model).preprocess
    check_writable(request.cache, CACHE_FILE, inputs=[model])
    with tempfile.TemporaryDirectory(prefix="inception-calib-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        with stage(say, f"preparing {model} for calibration (shape inference, graph optimization)"):
            prepare(model, prepared)
        return request.calibrate(prepared, config, graph_digest(proto), preprocess_digest(config), progress)
