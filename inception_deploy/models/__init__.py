"""The Inception family as plain torch modules, one file per family, and their registry."""
from .batchnorm import calibrate_batchnorm
from .registry import ARCHS, ArchSpec, PretrainedWeights, check_input_size, get_arch, list_archs, spec_for_model

__all__ = ["ARCHS", "ArchSpec", "PretrainedWeights", "calibrate_batchnorm", "check_input_size",
           "get_arch", "list_archs", "spec_for_model"]
