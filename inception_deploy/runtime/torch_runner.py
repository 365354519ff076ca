"""Eager PyTorch as a runner: the reference every comparison starts from (runner 0), behind the
same small interface as the backends (``name``, ``precision``, ``infer``)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np


def eager_logits(model, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.eval()(torch.from_numpy(batch)).float().numpy()


class TorchRunner:
    """An eager torch model on the CPU, in FP32: ``infer`` takes a normalized N x 3 x H x W batch.

    The outputs of the last few batches are kept, keyed by the batch's bytes: a comparison of
    several candidates with one reference (FP32, FP16 and INT8 files, or a layer search) runs the
    slow eager model once per input set. The model must not change while a runner holds it."""

    name = "torch eager cpu"
    precision = "fp32"
    max_batch = None
    REMEMBERED = 8  # input sets

    def __init__(self, model):
        self.model = model
        self._outputs: OrderedDict[str, np.ndarray] = OrderedDict()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch)
        key = f"{batch.dtype}{batch.shape}" + hashlib.blake2b(batch.data, digest_size=16).hexdigest()
        if key not in self._outputs:
            self._outputs[key] = eager_logits(self.model, batch)
            if len(self._outputs) > self.REMEMBERED:
                self._outputs.popitem(last=False)
        self._outputs.move_to_end(key)
        return self._outputs[key].copy()
