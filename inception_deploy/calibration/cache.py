"""The calibration cache: per-tensor ranges plus what they were computed from.

Reused only when the model file and the preprocessing match the digests it records; a stale or
corrupt cache is refused with a message, never silently recomputed over.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InceptionDeployError
from ..fileio import atomic_path
from ..preprocess import PreprocessConfig

FORMAT = "inception-deploy-calibration/1"


def preprocess_digest(config: PreprocessConfig) -> str:
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()


@dataclass
class CalibrationCache:
    method: str
    percentile: float | None
    images: int
    model_sha256: str  # of the FP32 ONNX file calibrated
    preprocess_sha256: str
    tensors: dict[str, dict]  # name -> {"min", "max", "threshold"}

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def save(self, path: str | os.PathLike) -> Path:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"format": FORMAT, **asdict(self)}, indent=1))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CalibrationCache":
        path = Path(path)
        try:
            data = json.loads(path.read_text("utf-8"))
            if data.pop("format", None) != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            cache = cls(**data)
            for name, t in cache.tensors.items():
                if not {"min", "max", "threshold"} <= set(t):
                    raise ValueError(f"tensor {name!r} lacks min/max/threshold")
        except FileNotFoundError:
            raise InceptionDeployError(f"{path}: no such calibration cache") from None
        except (ValueError, TypeError, UnicodeDecodeError) as e:
            raise InceptionDeployError(f"{path}: corrupt calibration cache ({e})") from None
        return cache

    def check(self, path, model_sha256: str, preprocess_sha256: str) -> None:
        """Refuse a cache made for another model or other preprocessing."""
        if self.model_sha256 != model_sha256:
            raise InceptionDeployError(f"{path}: stale calibration cache: made for model sha256 "
                                       f"{self.model_sha256[:12]}..., this model is {model_sha256[:12]}...; "
                                       f"delete it or calibrate again")
        if self.preprocess_sha256 != preprocess_sha256:
            raise InceptionDeployError(f"{path}: stale calibration cache: made with other preprocessing than this "
                                       f"model declares; delete it or calibrate again")
