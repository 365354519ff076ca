"""Preprocessing configs: how each checkpoint expects its pixels.

A PreprocessConfig is the one source of truth for resize, crop, scale, mean/std and channel
order. It lives in the architecture registry, is written into every exported artifact, and is
read back by calibration and the runtime, so no stage re-derives it. This module stays free of
torch so the ONNX runtime path never needs it.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import threading
from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ConfigError, first_line, setting

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
_PIL_FILTERS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
}


@dataclass(frozen=True)
class PreprocessConfig:
    """Resize the shorter side to ``resize_size`` with ``interpolation`` (with ``keep_aspect``
    False: both sides, as Keras's ``load_img`` does), center-crop ``input_size``, scale pixels to
    [0, ``pixel_scale``], reorder channels, then ``(x - mean) / std`` per channel (mean/std given
    in the output channel order)."""

    input_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "RGB"
    pixel_scale: float = 1.0
    keep_aspect: bool = True

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, not {self.interpolation!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ConfigError(f"channel_order must be RGB or BGR, not {self.channel_order!r}")
        if self.resize_size < self.input_size:
            raise ConfigError(f"resize size {self.resize_size} is smaller than the crop {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean and std need three values each, std > 0")

    @property
    def crop_pct(self) -> float:
        return self.input_size / self.resize_size

    def with_input_size(self, input_size: int) -> "PreprocessConfig":
        """Same crop fraction at another input size (timm's rule: resize = floor(size / crop_pct))."""
        if input_size == self.input_size:
            return self
        return replace(self, input_size=input_size, resize_size=math.floor(input_size / self.crop_pct))

    def with_overrides(
        self,
        input_size: int | None = None,
        mean=None,
        std=None,
        resize: int | None = None,
        crop_pct: float | None = None,
        interpolation: str | None = None,
        keep_aspect: bool | None = None,
    ) -> "PreprocessConfig":
        """This config with the options a user gave changed (None: kept). ``crop_pct`` sets the
        resize size as timm does, floor(input size / crop pct); ``resize`` sets it directly."""
        if resize is not None and crop_pct is not None:
            raise ConfigError(f"{setting('resize')} and {setting('crop_pct')} both set the resize size: give one")
        config = self.with_input_size(input_size) if input_size else self
        changes = {
            k: v
            for k, v in {"mean": mean, "std": std, "interpolation": interpolation, "keep_aspect": keep_aspect}.items()
            if v is not None
        }
        if resize is not None:
            changes["resize_size"] = resize
        if crop_pct is not None:
            changes["resize_size"] = math.floor(config.input_size / crop_pct)
        return replace(config, **changes) if changes else config

    def to_dict(self) -> dict:
        """The fields as JSON types; ``keep_aspect`` only where False, so artifacts and calibration
        cache digests of every other config read as they did before the field existed."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        if self.keep_aspect:
            del d["keep_aspect"]
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


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: EXIF orientation applied, alpha composited on white,
    16/32-bit grayscale scaled down (not clipped), CMYK / palette / grayscale converted."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.array(image, np.float32)  # scaled in place: one float copy, not several
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        values *= np.float32(255 / top)
        values += np.float32(0.5)
        image = Image.fromarray(np.clip(values, 0, 255, out=values).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image if image.mode == "RGB" else image.convert("RGB")


def resized_size(width: int, height: int, config: PreprocessConfig) -> tuple[int, int]:
    """Shorter side to ``resize_size``, longer side scaled and truncated (torchvision's Resize);
    both sides to ``resize_size`` where the aspect ratio is not kept."""
    if not config.keep_aspect:
        return config.resize_size, config.resize_size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = config.resize_size, int(config.resize_size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def resize_and_crop(image: Image.Image, config: PreprocessConfig) -> Image.Image:
    """Shorter side to ``resize_size`` (longer side truncated, as torchvision's Resize does; or
    both sides, see ``resized_size``), then the center ``input_size`` square (offsets rounded as
    torchvision's CenterCrop does)."""
    size = resized_size(*image.size, config)
    if size != image.size:
        image = image.resize(size, _PIL_FILTERS[config.interpolation])
    crop = config.input_size
    left = int(round((size[0] - crop) / 2.0))
    top = int(round((size[1] - crop) / 2.0))
    return image.crop((left, top, left + crop, top + crop))


# What all images being decoded at once (the runtime decodes in a thread pool) may hold in
# memory together. A 48-megapixel photo fits alone; an image that cannot fit is refused.
DECODE_BUDGET_BYTES = 400 << 20


class ImageRefused(ValueError):
    """An image that would need unreasonable memory to preprocess (refused before decoding)."""


class _MemoryBudget:
    """Bytes that concurrent decodes may hold together; a decode waits until its share is free."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self.condition = threading.Condition()

    @contextlib.contextmanager
    def hold(self, nbytes: int):
        with self.condition:
            self.condition.wait_for(lambda: self.used + nbytes <= self.limit)
            self.used += nbytes
        try:
            yield
        finally:
            with self.condition:
                self.used -= nbytes
                self.condition.notify_all()


_DECODE_BUDGET = _MemoryBudget(DECODE_BUDGET_BYTES)


def decode_cost(width: int, height: int, mode: str, config: PreprocessConfig) -> int:
    """Bytes preprocessing a ``width`` x ``height`` image of ``mode`` holds at its peak (PIL keeps
    4 bytes a pixel; conversions and alpha compositing hold copies); ImageRefused beyond the budget.

    Bounding the resized size matters as much as the source size: a 1 x 16000 strip is tiny on
    disk but would become 342 x 5,472,000 pixels once its short side is resized."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:  # PIL only warns between 1x and 2x its limit: refuse those too
        raise Image.DecompressionBombError(f"{width}x{height} pixels exceed the limit of {limit}")
    copies = 4 if mode not in ("RGB", "L", "1", "P", "YCbCr", "CMYK") else 2
    source = width * height * 4 * copies
    new_width, new_height = resized_size(width, height, config)
    resized = new_width * new_height * 4 * 2
    if source + resized > DECODE_BUDGET_BYTES:
        what = (
            f"resizing {width}x{height} to {new_width}x{new_height}"
            if resized > source
            else f"decoding {width}x{height} {mode}"
        )
        raise ImageRefused(
            f"{what} needs about {(source + resized) / 1e6:,.0f} MB (limit {DECODE_BUDGET_BYTES / 1e6:.0f} MB)"
        )
    return source + resized


@contextlib.contextmanager
def _decoded(source, config: PreprocessConfig):
    """The opened and decoded image, checked against the decode budget from its header before any
    pixel is decoded, its share of the budget held while the body runs."""
    with Image.open(source) as opened:
        with _DECODE_BUDGET.hold(decode_cost(opened.width, opened.height, opened.mode, config)):
            opened.load()
            yield opened


def load_image(source: str | os.PathLike | Image.Image, config: PreprocessConfig) -> np.ndarray:
    """Decode, convert and crop one image: H x W x 3 float32 RGB in [0, 1]."""
    if isinstance(source, Image.Image):
        return _crop_to_array(source, config)
    with _decoded(source, config) as image:
        return _crop_to_array(image, config)


def decode_rgb(source: str | os.PathLike, config: PreprocessConfig) -> Image.Image:
    """One file decoded to an RGB image (for several crops of the same pixels: evaluation.py)."""
    with _decoded(source, config) as image:
        rgb = to_rgb(image)
        return rgb.copy() if rgb is image else rgb  # closing the file frees the opened image's pixels


def _crop_to_array(image: Image.Image, config: PreprocessConfig) -> np.ndarray:
    return np.asarray(resize_and_crop(to_rgb(image), config), np.float32) / np.float32(255)


def preprocess(sources, config: PreprocessConfig) -> np.ndarray:
    """Files or PIL images -> the N x 3 x H x W float32 batch the network takes."""
    return normalize(np.stack([load_image(s, config) for s in sources]), config)


def describe_os_error(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    if isinstance(e, PermissionError):
        return "permission denied"
    if e.errno == errno.ELOOP:
        return "symbolic link loop"
    return e.strerror or type(e).__name__


def describe_image_error(e: Exception) -> str:
    """A short reason for a file that could not be used as an image."""
    if isinstance(e, Image.DecompressionBombError):
        return f"refused: decompression bomb ({e})"
    if isinstance(e, ImageRefused):
        return f"refused: {e}"
    if isinstance(e, UnidentifiedImageError):
        return "not an image (or an unsupported format)"
    if isinstance(e, OSError) and e.errno is not None:
        return describe_os_error(e)
    if isinstance(e, MemoryError):
        return "refused: out of memory while decoding"
    text = first_line(e)
    if "truncated" in text:
        return f"truncated or corrupt image ({text})"
    return f"cannot decode: {text}"


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
