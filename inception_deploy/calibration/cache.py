"""The calibration cache: per-tensor ranges plus what they were computed from.

Reused only when the graph and the preprocessing match the digests it records; a stale or
corrupt cache is refused with a message, never silently recomputed over. Its content is
validated on every load (finite positive thresholds, known method, sane counts), so a doctored
cache cannot reach the quantizer.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import InceptionDeployError
from ..fileio import json_kind, write_json
from ..metadata import MAX_DOCUMENT_BYTES, load_json
from ..preprocess import PreprocessConfig
from .ranges import METHODS

FORMAT = "inception-deploy-calibration/2"
CACHE_FILE = json_kind("a calibration cache of inception-deploy", ("format", "tensors"))
_SHA256 = re.compile(r"[0-9a-f]{64}")


def preprocess_digest(config: PreprocessConfig) -> str:
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()


def graph_digest(proto) -> str:
    """sha256 of what the ranges depend on: the graph (nodes and weights) and its opsets, not the
    metadata document, so re-exporting without a parity report keeps the cache valid."""
    sha = hashlib.sha256()
    for opset in proto.opset_import:
        sha.update(f"{opset.domain}:{opset.version};".encode())
    sha.update(proto.graph.SerializeToString(deterministic=True))
    return sha.hexdigest()


@dataclass
class CalibrationCache:
    method: str
    percentile: float | None
    images: int
    graph_sha256: str  # of the FP32 ONNX graph calibrated (graph_digest)
    preprocess_sha256: str
    tensors: dict[str, dict]  # name -> {"min", "max", "threshold"}

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def save(self, path: str | os.PathLike) -> Path:
        write_json(path, {"format": FORMAT, **asdict(self)}, CACHE_FILE)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CalibrationCache":
        path = Path(path)
        try:
            if path.stat().st_size > MAX_DOCUMENT_BYTES:
                raise InceptionDeployError(f"{path}: calibration cache is larger than {MAX_DOCUMENT_BYTES >> 20} MiB")
            text = path.read_bytes()
        except FileNotFoundError:
            raise InceptionDeployError(f"{path}: no such calibration cache") from None
        except OSError as e:
            raise InceptionDeployError(f"{path}: cannot read the calibration cache ({e.strerror})") from None
        data = load_json(text, path, "calibration cache")
        problem = _problem(data)
        if problem:
            raise InceptionDeployError(f"{path}: corrupt calibration cache ({problem}); delete it or calibrate again")
        data.pop("format")
        return cls(**data)

    def check(self, path, graph_sha256: str, preprocess_sha256: str) -> None:
        """Refuse a cache made for another graph or other preprocessing."""
        if self.graph_sha256 != graph_sha256:
            raise InceptionDeployError(
                f"{path}: stale calibration cache: made for graph sha256 "
                f"{self.graph_sha256[:12]}..., this model's graph is {graph_sha256[:12]}...; "
                f"delete it or calibrate again"
            )
        if self.preprocess_sha256 != preprocess_sha256:
            raise InceptionDeployError(
                f"{path}: stale calibration cache: made with other preprocessing than this "
                f"model declares; delete it or calibrate again"
            )


def _problem(data) -> str | None:
    """What is wrong with a parsed cache document, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("format") != FORMAT:
        found = data.get("format")
        return f"format is {json.dumps(found)[:40] if found is not None else 'missing'}, expected {FORMAT}"
    expected = {f.name for f in fields(CalibrationCache)} | {"format"}
    if set(data) != expected:
        extra, missing = sorted(set(data) - expected), sorted(expected - set(data))
        return f"unknown field {extra[0]!r}" if extra else f"missing field {missing[0]!r}"
    if data["method"] not in METHODS:
        return f"method must be one of {', '.join(METHODS)}"
    percentile = data["percentile"]
    if data["method"] == "percentile" and not (_is_number(percentile) and 50 < percentile <= 100):
        return "percentile must be a number in (50, 100] for the percentile method"
    if data["method"] != "percentile" and percentile is not None:
        return f"percentile must be null for the {data['method']} method"
    if not isinstance(data["images"], int) or isinstance(data["images"], bool) or not 1 <= data["images"] <= 10**9:
        return "images must be a positive integer"
    for name in ("graph_sha256", "preprocess_sha256"):
        if not isinstance(data[name], str) or not _SHA256.fullmatch(data[name]):
            return f"{name} must be a sha256 hex digest"
    tensors = data["tensors"]
    if not isinstance(tensors, dict) or not tensors:
        return "tensors must be a non-empty object"
    for name, t in tensors.items():
        if not isinstance(t, dict) or set(t) != {"min", "max", "threshold"}:
            return f"tensor {name[:60]!r} must have exactly min, max and threshold"
        if not all(_is_number(t[k]) for k in ("min", "max", "threshold")):
            return f"tensor {name[:60]!r} has a value that is not a finite number"
        if t["threshold"] <= 0 or t["min"] > t["max"]:
            return f"tensor {name[:60]!r} needs threshold > 0 and min <= max"
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
