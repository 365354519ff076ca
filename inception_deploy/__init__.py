"""inception-deploy: image classifiers (the Inception family, ResNets, DenseNet, ...) from PyTorch
to verified production inference.

Public names are imported lazily, so ``import inception_deploy.runtime`` on a machine without
torch works: only the names that need torch import it.
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "list_archs": "inception_deploy.models.registry",
    "get_arch": "inception_deploy.models.registry",
    "calibrate_batchnorm": "inception_deploy.models.batchnorm",
    "create_model": "inception_deploy.checkpoints.zoo",
    "load_weights": "inception_deploy.checkpoints.weights",
    "export_onnx": "inception_deploy.export",
    "Predictor": "inception_deploy.runtime",
    "deploy": "inception_deploy.pipeline",
    "ExportRequest": "inception_deploy.pipeline",
    "Fp16Request": "inception_deploy.pipeline",
    "Int8Request": "inception_deploy.calibration.int8",
    "EngineOptions": "inception_deploy.pipeline",
    "VerifyRequest": "inception_deploy.pipeline",
    "CalibrationRequest": "inception_deploy.calibration.policy",
    "evaluate": "inception_deploy.verify.evaluation",
    "DeployResult": "inception_deploy.pipeline",
    "PreprocessConfig": "inception_deploy.preprocess",
    "InceptionDeployError": "inception_deploy.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'inception_deploy' has no attribute {name!r}")
