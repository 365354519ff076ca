"""``create_model``: registry + weights + batch-norm calibration, the one way models are made."""

from __future__ import annotations

import os

from torch import nn

from ..errors import InceptionDeployError
from ..inputs import sample_photos
from ..metadata import MAX_CLASSES
from ..models.batchnorm import calibrate_batchnorm
from ..models.registry import ArchSpec, get_arch
from ..preprocess import PreprocessConfig, normalize, preprocess, synthetic_images
from .keras import BUILD_OPTIONS, KERAS_PREPROCESS, is_keras_file
from .weights import download, load_weights

PRETRAINED = "pretrained"
INIT_SEED = 0  # random init is reproducible: an export and a later parity check build the same model
# (arch, num_classes, aux_logits) -> the batch-norm statistics its random init calibrates: the same
# every time (fixed seed, fixed images), so a process computes them once; buffers only, a few MB
_RANDOM_INIT_STATISTICS: dict[tuple, dict] = {}


def create_model(
    arch: str, num_classes: int = 1000, aux_logits: bool = False, weights: str | os.PathLike | None = None
) -> nn.Module:
    """Build ``arch`` in eval mode.

    ``weights``: None (random init from a fixed seed, batch-norm statistics set from images so
    logits have a realistic size), a checkpoint path, or ``"pretrained"`` (the
    reference's published checkpoint, downloaded once with a hash check). A Keras checkpoint
    builds the network with Keras's numerics (``keras_checkpoints``).
    """
    import torch

    spec = get_arch(arch)
    if not 1 <= num_classes <= MAX_CLASSES:
        raise InceptionDeployError(f"num_classes must be between 1 and {MAX_CLASSES}, not {num_classes}")
    options = {}
    if _is_keras(weights):
        options = BUILD_OPTIONS.get(spec.name, {})  # Keras's numerics; other archs are refused by the loader
    with torch.random.fork_rng():
        torch.manual_seed(INIT_SEED)
        model = spec.build(num_classes, aux_logits, **options)
    if weights is None:
        _random_init_statistics(model, spec, (spec.name, num_classes, aux_logits))
    elif str(weights) == PRETRAINED:
        if spec.pretrained is None:
            raise InceptionDeployError(f"arch {spec.name} has no published checkpoint: pass a file")
        load_weights(model, download(spec.pretrained), label_offset=spec.pretrained.label_offset)
    else:
        load_weights(model, weights)
    model.preprocess = default_preprocess(spec, weights)  # what export writes into the artifact
    return model.eval()


def _random_init_statistics(model, spec: ArchSpec, key: tuple) -> None:
    """Batch-norm statistics for a random-init network (calibrate_batchnorm on synthetic images and
    the shipped photos): forward passes at full size, 0.5 s for GoogLeNet and 3 s for Xception,
    computed once per process and copied into every later build of the same network."""
    statistics = _RANDOM_INIT_STATISTICS.get(key)
    if statistics is None:
        calibrate_batchnorm(model, [_calibration_batch(spec)])
        buffers = ("running_mean", "running_var", "num_batches_tracked")
        statistics = {k: v.clone() for k, v in model.state_dict().items() if k.rsplit(".", 1)[-1] in buffers}
        _RANDOM_INIT_STATISTICS[key] = statistics
    else:
        model.load_state_dict(statistics, strict=False)


def default_preprocess(spec: ArchSpec, weights=None) -> PreprocessConfig:
    """The preprocessing ``weights`` were trained with: Keras's for a Keras checkpoint, else the
    architecture's (its reference's checkpoints)."""
    if _is_keras(weights):
        return KERAS_PREPROCESS
    return spec.preprocess


def _is_keras(weights) -> bool:
    """A checkpoint file Keras wrote (not None, not "pretrained")."""
    return weights is not None and str(weights) != PRETRAINED and is_keras_file(weights)


def _calibration_batch(spec: ArchSpec):
    """Synthetic images and the photos shipped with the package, in one batch: the batch norms of
    attention blocks (ResNeSt's split attention) normalize one pooled vector per image, and
    statistics of a few smooth synthetic images alone blow real photos up to logits near 1e3."""
    import torch

    return torch.cat([synthetic_batch(spec), torch.from_numpy(preprocess(sample_photos(), spec.preprocess))])


def synthetic_batch(spec: ArchSpec, count: int = 4, seed: int = 0, input_size: int | None = None):
    """``count`` synthetic images, preprocessed for ``spec``, as a torch tensor."""
    import torch

    size = input_size or spec.preprocess.input_size
    return torch.from_numpy(normalize(synthetic_images(count, size, seed), spec.preprocess))
