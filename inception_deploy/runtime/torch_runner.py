"""Eager PyTorch as a runner: the reference every comparison starts from (runner 0), behind the
same small interface as the backends (``name``, ``precision``, ``infer``)."""
from __future__ import annotations

import numpy as np


def eager_logits(model, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.eval()(torch.from_numpy(batch)).float().numpy()


class TorchRunner:
    """An eager torch model on the CPU, in FP32: ``infer`` takes a normalized N x 3 x H x W batch."""

    name = "torch eager cpu"
    precision = "fp32"
    max_batch = None

    def __init__(self, model):
        self.model = model

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return eager_logits(self.model, batch)
