"""The networks (the Inception family and the other backbones) as plain torch modules, one file
per family, and their registry.

The registry imports no torch (the runtime reads preprocessing from it on CPU-only installs);
``calibrate_batchnorm`` and the networks import torch when first used.
"""

from .registry import ARCHS, ArchSpec, PretrainedWeights, check_input_size, get_arch, list_archs, spec_for_model

__all__ = [
    "ARCHS",
    "ArchSpec",
    "PretrainedWeights",
    "calibrate_batchnorm",
    "check_input_size",
    "get_arch",
    "list_archs",
    "spec_for_model",
]


def __getattr__(name):
    if name == "calibrate_batchnorm":
        from .batchnorm import calibrate_batchnorm

        return calibrate_batchnorm
    raise AttributeError(f"module 'inception_deploy.models' has no attribute {name!r}")
