"""Export stages: torch -> ONNX (onnx.py); FP16 and TensorRT engines arrive in their own modules."""

from .onnx import ExportResult, export_onnx

__all__ = ["ExportResult", "export_onnx"]
