"""INT8 calibration: images from a folder -> per-tensor activation ranges (cached) -> Q/DQ ONNX.

One calibration serves both Q/DQ targets (TensorRT: symmetric int8; ONNX Runtime CPU: u8
activations / s8 weights), because what is cached is each tensor's observed min/max and its
clipping threshold, from which each target derives its own range. Under an accuracy budget
(``budget``) the most sensitive layers (``sensitivity``) stay float.
"""

from .cache import CalibrationCache
from .images import CalibrationImages, calibration_folder
from .policy import CalibrationRequest, calibrate_onnx
from .qdq import write_qdq
from .ranges import METHODS, calibrate

__all__ = [
    "CalibrationCache",
    "CalibrationImages",
    "CalibrationRequest",
    "METHODS",
    "calibrate",
    "calibrate_onnx",
    "calibration_folder",
    "write_qdq",
]
