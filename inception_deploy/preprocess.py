"""Preprocessing configs: how each checkpoint expects its pixels.

A PreprocessConfig is the one source of truth for resize, crop, scale, mean/std and channel
order. It lives in the architecture registry, is written into every exported artifact, and is
read back by calibration and the runtime, so no stage re-derives it. This module stays free of
torch so the ONNX runtime path never needs it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")


@dataclass(frozen=True)
class PreprocessConfig:
    """Resize the shorter side to ``resize_size`` with ``interpolation``, center-crop
    ``input_size``, scale pixels to [0, ``pixel_scale``], reorder channels, then
    ``(x - mean) / std`` per channel (mean/std given in the output channel order)."""

    input_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "RGB"
    pixel_scale: float = 1.0

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, not {self.interpolation!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be RGB or BGR, not {self.channel_order!r}")
        if self.resize_size < self.input_size:
            raise ValueError(f"resize_size {self.resize_size} is smaller than the crop {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each, std > 0")

    @property
    def crop_pct(self) -> float:
        return self.input_size / self.resize_size

    def with_input_size(self, input_size: int) -> "PreprocessConfig":
        """Same crop fraction at another input size (timm's rule: resize = floor(size / crop_pct))."""
        if input_size == self.input_size:
            return self
        return replace(self, input_size=input_size, resize_size=math.floor(input_size / self.crop_pct))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


def normalize(images: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """N x H x W x 3 RGB floats in [0, 1] -> N x 3 x H x W float32 network input."""
    x = images.astype(np.float32) * np.float32(config.pixel_scale)
    if config.channel_order == "BGR":
        x = x[..., ::-1]
    x = (x - np.asarray(config.mean, np.float32)) / np.asarray(config.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def synthetic_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Deterministic image-like inputs (N x size x size x 3 in [0, 1]): smooth random colour
    fields plus a little fine noise. Used where no photos are at hand, e.g. to set batch-norm
    statistics of a model built without weights, and as extra parity inputs."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, size, size, 3), np.float32)
    for i in range(count):
        coarse = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32) / 255
        out[i] = np.clip(smooth + rng.normal(0, 0.03, smooth.shape), 0, 1)
    return out
