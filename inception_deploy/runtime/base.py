"""What every backend offers (the runner interface), and the helpers backends share."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import InceptionDeployError
from ..labels import resolve_labels
from ..metadata import METADATA_KEY, Metadata, parse_metadata, validate_metadata
from ..models.registry import get_arch

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".plan", ".engine", ".trt")
DEVICES = ("auto", "cpu", "cuda", "tensorrt", "openvino")


class Backend(Protocol):
    path: Path
    metadata: Metadata  # the toolkit's metadata: preprocess, labels, precision, ...
    input_shape: tuple  # (batch or None, 3, H, W)
    min_batch: int
    max_batch: int | None  # None: no limit
    precision: str  # what parity judges it as: the artifact's precision, or "bf16" where bf16 executes
    name: str  # short: backend and device, e.g. "onnxruntime cpu" (tables name rows by it)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 N x 3 x H x W (any N) -> float32 N x num_classes logits."""

    def describe(self) -> str:
        """One line: backend, device, providers actually used, precision."""


def resolve_metadata(props: dict[str, str] | None, source: Path, arch: str | None, num_classes: int) -> Metadata:
    """The artifact's own metadata, or (given ``arch``) one built from the registry.

    The artifact wins when it has metadata: its preprocessing is what it was exported with.
    """
    if props is not None and (arch is None or METADATA_KEY in props):
        return parse_metadata(props, str(source))

    spec = get_arch(arch)
    if num_classes < 1:
        raise InceptionDeployError(
            f"{source}: the output's class count is not fixed in the graph; cannot supply labels for it"
        )
    names, label_source = resolve_labels(None, num_classes)
    document = {
        "arch": spec.name,
        "num_classes": num_classes,
        "precision": "unknown",
        "preprocess": spec.preprocess.to_dict(),
        "labels": {"source": label_source, "names": names},
    }
    return validate_metadata(document, source)


def padded_chunks(batch: np.ndarray, step: int | None, min_batch: int = 1):
    """(chunk, real rows) pairs of at most ``step`` rows (None: all at once), each padded up to
    ``min_batch`` by repeating its last image; only the first ``real`` rows are genuine."""
    step = step or len(batch)
    for start in range(0, len(batch), step):
        chunk = batch[start : start + step]
        real = len(chunk)
        if real < min_batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], min_batch - real, axis=0)])
        yield chunk, real


def split_batches(batch: np.ndarray, min_batch: int, max_batch: int | None, run) -> np.ndarray:
    """Call ``run`` on chunks the model accepts (at most ``max_batch``, padded up to ``min_batch``)
    and keep the outputs of the real images only."""
    return np.concatenate([run(chunk)[:real] for chunk, real in padded_chunks(batch, max_batch, min_batch)])
