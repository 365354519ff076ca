"""Statistics of accuracy on labelled images (intervals of a proportion, and of a paired
difference with McNemar's exact test), and of one set of logits against another."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # the normal quantile of 97.5%


def wilson(correct: int, n: int) -> tuple[float, float]:
    """Wilson's 95% interval of a proportion (sound near 0 and 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    # exactly 0 and 1 at the ends, where the formula leaves rounding (2.8e-17 for 0 of 6): a drop of 0
    # with a lower bound above it was a negative error bar, which matplotlib refuses
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return (low, high)


def mcnemar_exact(only_reference: int, only_model: int) -> float:
    """Two-sided exact McNemar p-value: under "no difference" the images where exactly one model is
    right split as a fair coin."""
    n = only_reference + only_model
    if n == 0:
        return 1.0
    k = min(only_reference, only_model)
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)
    ]
    top = max(log_terms)
    return min(1.0, 2 * math.exp(top) * sum(math.exp(t - top) for t in log_terms))


def paired_difference(only_reference: int, only_model: int, n: int) -> tuple[float, float, float]:
    """Model minus reference accuracy with its 95% interval (Wald, for paired proportions)."""
    diff = (only_model - only_reference) / n
    se = math.sqrt(max(only_model + only_reference - (only_model - only_reference) ** 2 / n, 0.0)) / n
    return diff, diff - Z95 * se, diff + Z95 * se


def cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Each image's cosine similarity between two sets of logits (N x classes), in float64."""
    a, b = reference.astype(np.float64), candidate.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, np.finfo(np.float64).tiny)


def mean_kl(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean over images of KL(softmax(reference) || softmax(candidate)), in nats: how far the
    candidate's class probabilities moved, where top-1 alone moves by whole images."""
    log_p, log_q = _log_softmax(reference), _log_softmax(candidate)
    return float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1)))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x.astype(np.float64) - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
