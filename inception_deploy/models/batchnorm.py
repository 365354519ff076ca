"""Batch-norm statistics from data for models built without weights."""

from typing import Iterable

import torch
from torch import nn


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Replace every BatchNorm's running mean/var with the exact average over ``batches``.

    A freshly initialised network has running stats 0/1, so activations either grow layer after
    layer (torchvision's init: logits near 1e11, beyond FP16's range) or fade until the logits no
    longer depend on the image (PyTorch's default init); parity and precision checks on such a
    network mean nothing. Only the BN layers switch to training mode here, so dropout stays off and
    auxiliary heads (which run only in training) keep their defaults. Weights are untouched.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in norms]
    was_training = model.training
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches, not an exponential one
        m.train()
    seen = 0
    try:
        for batch in batches:
            model(batch)
            seen += 1
    finally:
        for m, (momentum, training) in zip(norms, saved):
            m.momentum = momentum
            m.train(training)
        model.train(was_training)
    if seen == 0:
        raise ValueError("calibrate_batchnorm needs at least one batch")
    return model
