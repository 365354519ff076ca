"""Files or PIL images -> top-k labels, with decoding overlapped with inference.

Decoding (PIL releases the GIL while it decodes and resizes) runs in a thread pool a few
batches ahead of the model; a bad image becomes an error entry in its place and the rest go on.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from ..cpu import int8_may_saturate
from ..errors import InceptionDeployError, first_line, printable, setting
from ..inputs import InputError, describe_image_error, fetch_uri, is_uri
from ..labels import read_labels
from ..models.registry import canonical_arch, get_arch
from ..postprocess import softmax, top_k
from ..preprocess import load_image, normalize
from .open import open_backend


@dataclass
class Prediction:
    file: str
    labels: list[str] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {k: v for k, v in asdict(self).items() if k != "error"}


def prediction(name: str, probabilities: np.ndarray, labels: list[str], topk: int) -> Prediction:
    """The top ``topk`` of one image's probabilities (``postprocess``: as the Triton pipeline ranks them)."""
    order = top_k(probabilities, topk)
    return Prediction(
        name, [labels[i] for i in order], [int(i) for i in order], [float(probabilities[i]) for i in order]
    )


class Predictor:
    """``Predictor("model.onnx").predict(["a.jpg", pil_image], topk=5)``.

    Preprocessing and labels come from the artifact; ``arch`` supplies them for an ONNX file
    or engine exported elsewhere, ``labels`` replaces the label names. ``workers``: decoding
    threads; ``threads``: inference threads (ONNX Runtime, OpenVINO).
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        device: str = "auto",
        arch: str | None = None,
        labels: str | os.PathLike | None = None,
        batch_size: int | None = None,
        workers: int | None = None,
        precision: str | None = None,
        openvino_mode: str = "latency",
        threads: int | None = None,
    ):
        self.backend = open_backend(
            model_path, device=device, arch=arch, precision=precision, openvino_mode=openvino_mode, threads=threads
        )
        meta = self.backend.metadata
        self.config = meta.preprocess
        self.labels = read_labels(labels) if labels else meta.labels
        if len(self.labels) != meta.num_classes:
            raise InceptionDeployError(
                f"{labels}: has {len(self.labels)} labels but {model_path} has {meta.num_classes} classes"
            )
        limit = self.backend.max_batch or 64
        self.batch_size = min(batch_size or min(8, limit), limit)
        if self.batch_size < 1:
            raise InceptionDeployError(f"batch size must be at least 1, not {batch_size}")
        self.workers = workers or min(4, os.cpu_count() or 1)

    def predict(self, sources: Iterable, topk: int = 5) -> list[Prediction]:
        return list(self.iter_predict(sources, topk))

    def iter_predict(self, sources: Iterable, topk: int = 5) -> Iterator[Prediction]:
        """Predictions in the order of ``sources`` (paths, URIs, PIL images, or the InputErrors of
        ``expand_inputs``, which come back as errors), lazily."""
        topk = max(1, min(topk, len(self.labels)))
        pending: list[tuple[str, np.ndarray | None, str | None]] = []
        for item in self._decoded(sources):
            pending.append(item)
            if sum(1 for _, image, _ in pending if image is not None) == self.batch_size:
                yield from self._flush(pending, topk)
                pending = []
        if pending:
            yield from self._flush(pending, topk)

    def _decoded(self, sources: Iterable):
        """(name, image or None, error or None) in order; at most a few batches in flight. When
        the caller stops early (Ctrl-C), queued work is dropped and downloads stop waiting."""
        window = self.batch_size * 2 + self.workers
        pool, stop = ThreadPoolExecutor(self.workers, thread_name_prefix="decode"), threading.Event()
        try:
            in_flight: deque = deque()
            for source in sources:
                in_flight.append(pool.submit(self._decode, source, stop))
                if len(in_flight) >= window:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _decode(self, source, stop: threading.Event):
        if isinstance(source, InputError):  # from expand_inputs: reported in its place
            return source.name, None, source.reason
        name = getattr(source, "filename", None) or "<image>" if isinstance(source, Image.Image) else str(source)
        if is_uri(source):
            try:
                source = fetch_uri(source, stop)
            except Exception as e:  # a network or storage failure is this input's error
                return name, None, f"cannot fetch: {first_line(e)}"
        try:
            return name, load_image(source, self.config), None
        except Exception as e:  # per-image failures are reported, never raised
            return name, None, describe_image_error(e)

    def _flush(self, pending, topk) -> Iterator[Prediction]:
        images = [image for _, image, _ in pending if image is not None]
        probabilities = softmax(self.backend.infer(normalize(np.stack(images), self.config))) if images else None
        row = 0
        for name, image, error in pending:
            if image is None:
                yield Prediction(name, error=error)
                continue
            yield prediction(name, probabilities[row], self.labels, topk)
            row += 1


def caveats(backend, model_path, arch: str | None = None) -> list[str]:
    """What to know before trusting a run of ``backend``, as "warning: ..." / "note: ..." lines:
    an ignored --arch, random weights, an INT8 budget accepted unproven, an INT8 placement meant
    for another runtime, 8-bit INT8 weights on a CPU whose int8 sums can saturate."""
    meta, name, lines = backend.metadata, backend.name, []
    model = printable(model_path)
    if arch is not None and canonical_arch(meta.arch) != get_arch(arch).name:
        lines.append(
            f"warning: {model} was exported from {meta.arch} and carries its preprocessing and labels; "
            f"{setting('arch')} {printable(arch)} ignored"
        )
    if meta.random_weights:
        lines.append(f"note: {model} was exported with randomly initialised weights: its labels mean nothing")
    if meta.int8_unproven:
        budget = meta.int8_budget
        lines.append(
            f"warning: {model}'s INT8 accuracy budget of {budget['max_drop']:g} points was accepted unproven: "
            f"its drop's 95% upper bound is {budget['interval'][1]:.2f} points on {budget['images']} images"
        )
    if meta.int8_target == "tensorrt" and name.startswith("onnxruntime cpu"):
        lines.append(
            f"warning: {model} places INT8 for TensorRT; ONNX Runtime's CPU runs it slower than FP32 "
            f"(export with {setting('Int8Request.target')} cpu for CPU serving)"
        )
    if int8_may_saturate(meta, name):
        lines.append(
            f"warning: {model} has 8-bit INT8 weights and this CPU has no VNNI: {name}'s int8 sums can "
            f"saturate (check its parity; {setting('Int8Request.target')} cpu writes 7-bit weights, which "
            f"cannot)"
        )
    return lines
