"""Inference backends behind one small interface (Polygraphy's runner idea).

Importing this package imports neither torch nor TensorRT.
"""
from .onnxruntime_backend import OnnxRuntimeBackend

__all__ = ["OnnxRuntimeBackend"]
