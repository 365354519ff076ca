"""Inference backends behind one small interface (Polygraphy's runner idea).

Importing this package imports neither torch nor TensorRT.
"""

from .base import Backend
from .onnxruntime_backend import OnnxRuntimeBackend
from .open import open_artifact, open_backend
from .predictor import Prediction, Predictor

__all__ = ["Backend", "OnnxRuntimeBackend", "Prediction", "Predictor", "open_artifact", "open_backend"]
