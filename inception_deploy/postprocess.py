"""Logits -> probabilities -> the top k: one implementation for the local Predictor and the
Triton softmax model (this file is copied into the repository), so a server answers with the
probabilities and the order a local run prints. Needs numpy only."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of N x C logits in float64, the row's maximum subtracted first."""
    logits = np.asarray(logits)
    rows = [np.exp(row.astype(np.float64) - row.max()) for row in logits]
    return np.stack([row / row.sum() for row in rows])


def top_k(probabilities: np.ndarray, k: int) -> np.ndarray:
    """The indices of the ``k`` largest probabilities, largest first; ties in index order."""
    return np.argsort(-probabilities, kind="stable")[:k]
