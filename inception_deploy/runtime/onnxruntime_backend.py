"""ONNX Runtime backend: the default, and the one CI checks every artifact with."""
from __future__ import annotations

import os

import numpy as np

from ..errors import InceptionDeployError


class OnnxRuntimeBackend:
    """Runs an ONNX classifier; ``infer`` takes any batch size and splits or pads it to what the
    graph accepts (a static batch dimension, or the ``max_batch`` the export recorded)."""

    def __init__(self, path: str | os.PathLike, providers: tuple[str, ...] = ("CPUExecutionProvider",),
                 max_batch: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise InceptionDeployError(f"{path}: ONNX Runtime cannot load this model ({first})") from None
        (inp,), outputs = self.session.get_inputs(), self.session.get_outputs()
        self.input_name, self.output_name = inp.name, outputs[0].name
        self.input_shape = tuple(inp.shape)
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.max_batch = self.fixed_batch or max_batch
        self.providers = tuple(self.session.get_providers())

    @property
    def metadata_props(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 N x 3 x H x W -> N x num_classes logits."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        step = self.max_batch or len(batch)
        results = []
        for start in range(0, len(batch), step):
            chunk = batch[start:start + step]
            real = len(chunk)
            if self.fixed_batch and real < self.fixed_batch:  # pad a static graph's last chunk
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.fixed_batch - real, 0)])
            results.append(self.session.run([self.output_name], {self.input_name: chunk})[0][:real])
        return np.concatenate(results).astype(np.float32, copy=False)
